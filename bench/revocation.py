"""How long revocation takes while a key is hammered: ``uv run python bench/revocation.py``.

Starts a throwaway embedded PostgreSQL and two real server processes (as behind a load
balancer). For each number of writers (0, 8 and 64 by default) and each of ``--trials``
trials: a new key with events:write, a writer process with that many keep-alive
connections split over the two servers, each cycling nonstop through a single emit, an
emit with a fresh Idempotency-Key and a batch of 10; after a second of that, the key is
revoked (DELETE, revoke-leaked and rotation with grace 0, in turn) and the time until the
revocation's response is recorded. Each trial also checks what must hold: no event of the
key was created after the moment of revocation, and every 201 the writers got is an
event in the database. Then it runs bench/run.py's read and emit scenarios
(``--only bench_api_keys --only bench_events``, no batches) so the price of the fix
shows in the same run. ``--writer`` is the writer process itself (internal).
"""

import argparse
import asyncio
import collections
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

BENCH_DIR = Path(__file__).resolve().parent
BATCH = 10
METHODS = ("DELETE", "revoke-leaked", "rotate grace 0")


# ---- the writer process ------------------------------------------------------------------


def _request(host: str, path: str, token: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


async def _connection(
    url: str, token: str, number: int, stop: asyncio.Event, statuses: collections.Counter
) -> None:
    parts = urlsplit(url)
    host = parts.netloc
    single = _request(host, "/v1/events", token, b'{"type":"bench.single","payload":{}}')
    batch_body = json.dumps(
        {"events": [{"type": "bench.batch", "payload": {"n": n}} for n in range(BATCH)]}
    ).encode()
    batch = _request(host, "/v1/events/batch", token, batch_body)
    keyed_body = b'{"type":"bench.keyed","payload":{}}'
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        for sent in range(number, 1 << 62):
            if stop.is_set():
                return
            kind = sent % 3
            if kind == 0:
                request = single
            elif kind == 1:
                request = _request(
                    host,
                    "/v1/events",
                    token,
                    keyed_body,
                    f"Idempotency-Key: {secrets.token_hex(8)}\r\n",
                )
            else:
                request = batch
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            status = int(head[9:12])
            statuses[f"{status}{'/batch' if kind == 2 and status == 201 else ''}"] += 1
    finally:
        writer.close()


async def _writer_main(urls: list[str], connections: int) -> None:
    """Writes until SIGTERM, then prints the answers it got, by status, as JSON."""
    token = os.environ["BENCH_TOKEN"]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    statuses: collections.Counter = collections.Counter()
    results = await asyncio.gather(
        *(_connection(urls[n % len(urls)], token, n, stop, statuses) for n in range(connections)),
        return_exceptions=True,
    )
    statuses["errors"] = sum(isinstance(r, BaseException) for r in results)
    print(json.dumps(statuses), flush=True)


# ---- the benchmark -----------------------------------------------------------------------


async def _revoke(api, method: str, key_id: str, key: str, admin: dict) -> int:
    if method == "DELETE":
        response = await api.delete(f"/v1/api-keys/{key_id}", headers=admin)
    elif method == "revoke-leaked":
        response = await api.post("/v1/api-keys/revoke-leaked", json={"key": key})
    else:
        response = await api.post(
            f"/v1/api-keys/{key_id}/rotate", headers=admin, json={"grace_period_seconds": 0}
        )
    return response.status_code


async def _trial(api, db, servers, org, writers: int, method: str) -> dict:
    admin = {"Authorization": f"Bearer {org.key}"}
    created = await api.post(
        "/v1/api-keys", headers=admin, json={"name": "hammered", "scopes": ["events:write"]}
    )
    key_id, key = created.json()["data"]["id"], created.json()["data"]["key"]
    process = None
    if writers:
        # The token travels in the environment, never on a command line.
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--writer",
            ",".join(s.url for s in servers),
            "--connections",
            str(writers),
            env={**os.environ, "BENCH_TOKEN": key},
            stdout=subprocess.PIPE,
        )
        await asyncio.sleep(1.0)
    started = time.perf_counter()
    status = await _revoke(api, method, key_id, key, admin)
    latency = time.perf_counter() - started
    answers: dict = {}
    if process is not None:
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
        answers = json.loads(output)
    moment = await db.fetchval(
        "SELECT coalesce(revoked_at, expires_at) FROM api_keys WHERE id = $1", key_id
    )
    stored, late = await db.fetchrow(
        "SELECT count(*), count(*) FILTER (WHERE created_at > $3) FROM events "
        "WHERE org_id = $1 AND emitted_by = $2",
        org.org_id,
        key_id,
        moment,
    )
    accepted = answers.get("201", 0) + BATCH * answers.get("201/batch", 0)
    return {
        "latency": latency,
        "status": status,
        "late": late,
        "stored": stored,
        "accepted": accepted,
        "answers": answers,
    }


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _measure(
    servers, database_url: str, org, writer_counts: list[int], trials: int
) -> list[str]:
    import asyncpg
    import httpx

    lines = [
        f"{'writers':>7} {'trials':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  "
        f"{'writes ok / refused':>20}  checks"
    ]
    db = await asyncpg.connect(database_url)
    try:
        async with httpx.AsyncClient(base_url=servers[0].url, timeout=60) as api:
            for writers in writer_counts:
                results = []
                for trial in range(trials):
                    result = await _trial(
                        api, db, servers, org, writers, METHODS[trial % len(METHODS)]
                    )
                    results.append(result)
                    print(
                        f"{writers} writers, trial {trial + 1}/{trials} "
                        f"({METHODS[trial % len(METHODS)]}): "
                        f"{result['latency'] * 1000:.0f} ms",
                        file=sys.stderr,
                        flush=True,
                    )
                latencies = [r["latency"] * 1000 for r in results]
                ok = sum(r["accepted"] for r in results)
                refused = sum(r["answers"].get("401", 0) for r in results)
                problems = [
                    r
                    for r in results
                    if r["late"]
                    or r["stored"] != r["accepted"]
                    or r["status"] not in (200, 201, 202)
                    or set(r["answers"]) - {"201", "201/batch", "401", "errors"}
                    or r["answers"].get("errors")
                ]
                checks = (
                    "all held"
                    if not problems
                    else f"!! {len(problems)} trials broke a rule: {problems[:2]}"
                )
                lines.append(
                    f"{writers:>7} {trials:>6} {statistics.median(latencies):>8.1f} "
                    f"{_percentile(latencies, 0.99):>8.1f} {max(latencies):>8.1f}  "
                    f"{f'{ok:,} / {refused:,}':>20}  {checks}"
                )
    finally:
        await db.close()
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20, help="per number of writers")
    parser.add_argument("--writers", default="0,8,64", help="comma-separated writer counts")
    parser.add_argument(
        "--ratio-rounds",
        type=int,
        default=3,
        help="bench/run.py rounds for the read and emit ratios (0: skip)",
    )
    parser.add_argument("--ratio-seconds", type=float, default=5)
    parser.add_argument("--writer", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        import uvloop

        uvloop.run(_writer_main(args.writer.split(","), args.connections))
        return 0

    sys.path.insert(0, str(BENCH_DIR))
    import atexit
    import shutil

    from run import Process, prepare_database

    from ventryx_server import embedded

    run_dir = Path(tempfile.mkdtemp(prefix="ventryx-bench-revocation-"))
    atexit.register(shutil.rmtree, run_dir, True)
    pepper = secrets.token_bytes(32)
    admin_url = embedded.start(run_dir)
    database_url, org = asyncio.run(prepare_database(admin_url, pepper))
    env = {**os.environ, "DATABASE_URL": database_url, "VENTRYX_PEPPER": pepper.hex()}
    servers = [
        Process(name, [sys.executable, "-m", "ventryx_server", "serve"], env, run_dir)
        for name in ("server-a", "server-b")
    ]
    try:
        for server in servers:
            server.wait_answering("/readyz")
        lines = asyncio.run(
            _measure(
                servers, database_url, org, [int(n) for n in args.writers.split(",")], args.trials
            )
        )
    finally:
        for server in servers:
            server.stop()
    print(
        f"\nRevocation latency through two server processes ({os.cpu_count()} CPUs shared "
        f"by servers, PostgreSQL and writers); methods in turn: {', '.join(METHODS)}.\n"
    )
    print("\n".join(lines))
    print(
        "\nwrites ok / refused: events the writers got 201 for / requests refused with 401."
        "\nchecks: no event created after the revocation's moment, every 201 stored, no "
        "other status."
    )
    if args.ratio_rounds:
        print(
            "\nThe price of the locking, same run: bench/run.py's reads and single emits "
            "(64 connections).\n",
            flush=True,
        )
        subprocess.run(
            [
                sys.executable,
                str(BENCH_DIR / "run.py"),
                "--only",
                "bench_api_keys",
                "--only",
                "bench_events",
                "--rounds",
                str(args.ratio_rounds),
                "--seconds",
                str(args.ratio_seconds),
            ],
            env={**os.environ, "BENCH_BATCH_SIZE": "0"},
            check=False,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
