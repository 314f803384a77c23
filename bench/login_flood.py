"""Can a flood of bad logins starve the API? Authenticated GET /v1/me latency, idle and
under concurrent floods of failed logins, with password hashing bounded (the server's
default: half the cores) and, in the same run, unbounded for comparison.

    uv run python bench/login_flood.py [--floods 8] [--seconds 10]

Starts a throwaway embedded PostgreSQL and two real `ventryx-server serve` processes
(one at a time): the default one, and one with VENTRYX_PASSWORD_HASH_CONCURRENCY=64.
Each trusts 127.0.0.1 as a proxy, and every flood request claims a new client address
in X-Forwarded-For, with a new email: the per-address limits and the login throttle
never stop it, so every login costs one argon2id verification (a botnet's worst case).
One client sends GET /v1/me one at a time and records each latency, in rounds that
alternate between the server idle and the server answering `--floods` other
connections (another process) that log in with wrong passwords as fast as they can.

Target: p99 under the flood within 2x the idle p99 for the bounded server.
"""

import argparse
import asyncio
import atexit
import multiprocessing
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from run import Process, prepare_database

from ventryx_server import embedded


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def _probe(url: str, key: str, seconds: float) -> list[float]:
    """GET /v1/me latencies in ms, one request at a time, for ``seconds``."""
    times = []
    async with httpx.AsyncClient(
        base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as http:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = await http.get("/v1/me")
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"GET /v1/me: HTTP {response.status_code}")
    return times


async def _flood(url: str, connections: int, flooding, stop, counts) -> None:
    async def one_connection(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            if not flooding.is_set():
                await asyncio.sleep(0.05)
                continue
            address = "10." + ".".join(str(secrets.randbelow(256)) for _ in range(3))
            response = await http.post(
                "/v1/sessions",
                headers={"X-Forwarded-For": address},
                json={
                    "email": f"x-{secrets.token_hex(6)}@example.com",
                    "password": "a wrong guess",
                },
            )
            counts[response.status_code] = counts.get(response.status_code, 0) + 1

    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        await asyncio.gather(*[one_connection(http) for _ in range(connections)])


def _flood_process(url: str, connections: int, flooding, stop, counts) -> None:
    asyncio.run(_flood(url, connections, flooding, stop, counts))


def _line(name: str, times: list[float], idle_p99: float | None = None) -> str:
    p99 = _percentile(times, 0.99)
    text = (
        f"  {name:<34} {len(times):>6} requests   p50 {statistics.median(times):6.2f} ms"
        f"   p99 {p99:7.2f} ms"
    )
    if idle_p99:
        text += f"   p99 / idle p99: {p99 / idle_p99:5.2f}"
    return text


def measure(server: Process, key: str, floods: int, seconds: float, rounds: int) -> None:
    """Idle and flooded probes alternate, round by round, so that whatever else loads the
    machine weighs on both sides of each round's ratio alike."""
    asyncio.run(_probe(server.url, key, 2))  # warm-up
    idle: list[float] = []
    loaded: list[float] = []
    ratios = []
    with multiprocessing.Manager() as manager:
        # Events of multiprocessing itself, not the manager's: checking one costs no IPC.
        counts, flooding, stop = manager.dict(), multiprocessing.Event(), multiprocessing.Event()
        flood = multiprocessing.Process(
            target=_flood_process, args=(server.url, floods, flooding, stop, counts)
        )
        flood.start()
        try:
            for _ in range(rounds):
                flooding.clear()
                time.sleep(0.5)  # logins in flight finish
                round_idle = asyncio.run(_probe(server.url, key, seconds))
                flooding.set()
                time.sleep(0.5)  # the flood reaches its pace
                round_loaded = asyncio.run(_probe(server.url, key, seconds))
                idle += round_idle
                loaded += round_loaded
                ratios.append(_percentile(round_loaded, 0.99) / _percentile(round_idle, 0.99))
        finally:
            stop.set()
            flood.join(30)
        statuses = dict(counts)
    print(f"\n{server.name}:")
    print(_line("GET /v1/me, idle", idle))
    print(_line(f"GET /v1/me, {floods} bad-login floods", loaded, _percentile(idle, 0.99)))
    print(
        f"  p99 ratio per round: {' '.join(f'{r:.2f}' for r in ratios)}   "
        f"median {statistics.median(ratios):.2f}"
    )
    logins = sum(statuses.values())
    print(
        f"  the floods' logins: {logins} in {rounds * (seconds + 0.5):g} s flooding, "
        f"statuses {statuses}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--floods", type=int, default=8, help="concurrent login connections")
    parser.add_argument("--seconds", type=float, default=3, help="per probe")
    parser.add_argument("--rounds", type=int, default=5, help="idle/flooded probe pairs")
    args = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="ventryx-flood-bench-"))
    atexit.register(shutil.rmtree, run_dir, True)  # before PostgreSQL's own exit handler
    pepper = secrets.token_bytes(32)
    database_url, org = asyncio.run(prepare_database(embedded.start(run_dir), pepper))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "VENTRYX_PEPPER": pepper.hex(),
        "VENTRYX_TRUSTED_PROXIES": "127.0.0.1",
    }
    print(
        f"Login flood benchmark: {os.cpu_count()} CPUs shared by the server, PostgreSQL "
        f"and both clients; {args.rounds} rounds of {args.seconds:g} s idle, then "
        f"{args.seconds:g} s flooded."
    )
    for name, extra in (
        ("bounded hashing (default)", {}),
        ("unbounded hashing (64 at once)", {"VENTRYX_PASSWORD_HASH_CONCURRENCY": "64"}),
    ):
        server = Process(
            name, [sys.executable, "-m", "ventryx_server", "serve"], {**env, **extra}, run_dir
        )
        try:
            server.wait_answering("/readyz")
            measure(server, org.key, args.floods, args.seconds, args.rounds)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
