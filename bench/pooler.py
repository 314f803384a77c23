"""What PgBouncer in transaction mode costs: ``uv run python bench/pooler.py``.

Needs the pgbouncer binary (``apt-get install -y pgbouncer``) and wrk. On a fresh
embedded PostgreSQL, one real server connects directly and another through PgBouncer
(VENTRYX_DATABASE_POOLER=transaction, README "Connection poolers"); each scenario runs on
both, rounds interleaved, and prints the pooled server's req/s as a ratio to the direct
one's, and the CPU per request of everything serving it (server, PgBouncer, PostgreSQL),
which a shared machine disturbs less. Then, in this process, the price of the timeouts alone: the same statement through
PgBouncer on the server's pool (each statement in a transaction that carries the
timeouts) and on a plain pool without them (what role-level settings would cost).
"""

import argparse
import asyncio
import atexit
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
from harness import Scenario, median, pick_load_generator, process_tree_cpu_seconds
from run import Process, prepare_database

from ventryx_server import embedded
from ventryx_server.db import create_pool
from ventryx_server.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import PgBouncer  # noqa: E402 - the suite's launcher, so both run it alike

STATEMENT = "SELECT id, name FROM api_keys WHERE org_id = $1 AND id = $2"


async def statements_per_second(
    pool: asyncpg.Pool, args: tuple, tasks: int, seconds: float, cpu_seconds
) -> tuple[float, float]:
    """Statements a second, and the CPU per statement of this process, PgBouncer and the
    database's backends."""
    done = 0
    cpu_before = cpu_seconds()
    deadline = time.monotonic() + seconds

    async def run() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            async with pool.acquire() as connection:
                await connection.fetchrow(STATEMENT, *args)
            done += 1

    await asyncio.gather(*(run() for _ in range(tasks)))
    return done / seconds, (cpu_seconds() - cpu_before) / max(1, done) * 1e6


async def price_of_the_timeouts(
    pooled_url: str, direct_url: str, args: tuple, rounds: int, seconds: float, cpu_seconds
) -> None:
    bounded = await create_pool(
        Settings(
            database_url=pooled_url,
            pepper=b"",
            transaction_pooler=True,
            listen_database_url=direct_url,
        )
    )
    plain = await asyncpg.create_pool(pooled_url, min_size=2, max_size=20, statement_cache_size=0)
    try:
        ratios, cpu = [], {"plain": [], "bounded": []}
        for _ in range(rounds):
            plain_rate, plain_cpu = await statements_per_second(
                plain, args, 32, seconds, cpu_seconds
            )
            bounded_rate, bounded_cpu = await statements_per_second(
                bounded, args, 32, seconds, cpu_seconds
            )
            ratios.append(bounded_rate / plain_rate)
            cpu["plain"].append(plain_cpu)
            cpu["bounded"].append(bounded_cpu)
        print(
            f"\none statement through PgBouncer: without the timeouts "
            f"{median(cpu['plain']):.0f} µs CPU, with them (its own transaction) "
            f"{median(cpu['bounded']):.0f} µs CPU; ratio {median(ratios):.2f} (per round: "
            + " ".join(f"{r:.2f}" for r in ratios)
            + "), cpu ratio "
            f"{median(cpu['plain']) / median(cpu['bounded']):.2f}"
        )
    finally:
        await bounded.close()
        await plain.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load = pick_load_generator(1)

    run_dir = Path(tempfile.mkdtemp(prefix="ventryx-bench-pooler-"))
    atexit.register(shutil.rmtree, run_dir, True)
    pepper = secrets.token_bytes(32)
    admin_url = embedded.start(run_dir)
    database_url, org = asyncio.run(prepare_database(admin_url, pepper))
    bouncer_dir = Path(tempfile.mkdtemp(prefix="ventryx-pgbouncer-"))
    atexit.register(shutil.rmtree, bouncer_dir, True)
    bouncer = PgBouncer(admin_url, bouncer_dir)
    env = {**os.environ, "DATABASE_URL": database_url, "VENTRYX_PEPPER": pepper.hex()}
    command = [sys.executable, "-m", "ventryx_server", "serve"]
    servers = {
        "direct": Process("direct", command, env, run_dir),
        "pgbouncer": Process(
            "pgbouncer", command, {**env, **bouncer.server_env(database_url)}, run_dir
        ),
    }
    try:
        for server in servers.values():
            server.wait_answering("/readyz")
        with httpx.Client(base_url=servers["direct"].url, timeout=30) as api:
            made = api.post(
                "/v1/api-keys",
                headers={"Authorization": f"Bearer {org.key}"},
                json={"name": "bench reader", "scopes": ["api-keys:read"]},
            )
            made.raise_for_status()
        reader = made.json()["data"]["key"]
        scenarios = [
            Scenario("GET /v1/api-keys/{id}", "server", f"/v1/api-keys/{org.key_id}", token=reader),
            Scenario(
                "POST /v1/events",
                "server",
                "/v1/events",
                method="POST",
                token=org.key,
                body=b'{"type": "order.created", "payload": {"n": 1}}',
                expect_status=201,
            ),
        ]
        print(
            f"PgBouncer in transaction mode against direct: {load.version}, "
            f"{args.connections} connections, {args.seconds:g}s x {args.rounds} rounds "
            f"interleaved; {os.cpu_count()} CPUs shared by app, PgBouncer, PostgreSQL "
            "and load\n"
        )
        postmaster = int((run_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        backends_of = f" {database_url.split('?')[0].rsplit('/', 1)[1]} "

        def cpu_seconds(name: str) -> float:
            """CPU of everything that serves ``name``'s requests: the server's processes,
            the database's backends, and PgBouncer for the pooled one."""
            total = process_tree_cpu_seconds(servers[name].process.pid) + process_tree_cpu_seconds(
                postmaster, backends_of
            )
            if name == "pgbouncer":
                total += process_tree_cpu_seconds(bouncer.process.pid)
            return total

        for scenario in scenarios:
            rates: dict[str, list[float]] = {name: [] for name in servers}
            cpu_us: dict[str, list[float]] = {name: [] for name in servers}
            for server in servers.values():  # warm-up
                load.run(server.url, scenario, args.connections, 2)
            for round_number in range(args.rounds):
                names = list(servers)[:: 1 if round_number % 2 == 0 else -1]
                for name in names:
                    cpu_before = cpu_seconds(name)
                    result = load.run(servers[name].url, scenario, args.connections, args.seconds)
                    cpu_us[name].append(
                        (cpu_seconds(name) - cpu_before) / max(1, result.requests) * 1e6
                    )
                    if result.failures:
                        print(
                            f"{scenario.name} ({name}): {result.failures} failed requests",
                            file=sys.stderr,
                        )
                    rates[name].append(result.requests_per_second)
            ratios = [
                pooled / direct
                for pooled, direct in zip(rates["pgbouncer"], rates["direct"], strict=True)
            ]
            print(
                f"{scenario.name:<24} direct {median(rates['direct']):>7,.0f} req/s "
                f"{median(cpu_us['direct']):>5.0f} µs CPU   through PgBouncer "
                f"{median(rates['pgbouncer']):>7,.0f} req/s "
                f"{median(cpu_us['pgbouncer']):>5.0f} µs CPU   ratio {median(ratios):.2f} "
                f"(per round: {' '.join(f'{r:.2f}' for r in ratios)})   cpu ratio "
                f"{median(cpu_us['direct']) / median(cpu_us['pgbouncer']):.2f}"
            )
        asyncio.run(
            price_of_the_timeouts(
                bouncer.url_for(database_url),
                database_url,
                (org.org_id, org.key_id),
                args.rounds,
                args.seconds,
                lambda: (
                    time.process_time()
                    + process_tree_cpu_seconds(bouncer.process.pid)
                    + process_tree_cpu_seconds(postmaster, backends_of)
                ),
            )
        )
    finally:
        for server in servers.values():
            server.stop()
        bouncer.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
