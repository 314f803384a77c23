"""The app-side CPU of each scenario, without network or load generator.

``uv run python bench/inprocess.py`` builds the server app (``create_app``) and the
baseline app in this one process, on a fresh embedded PostgreSQL, prepares every
bench/bench_*.py scenario as run.py does, then calls each app's ASGI entry directly, one
request at a time, rounds interleaved, and prints the process's CPU time per request.

It leaves out granian, the socket and the database server's own CPU, so it shows only
what the Python side of a request costs, and it is far more repeatable than req/s on a
machine that other work shares: the figure to watch while optimising the request path.
Its difference to the baseline is the Python price of authentication.
"""

import argparse
import asyncio
import atexit
import logging
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
from harness import BenchContext, Scenario, discover_modules
from run import prepare_database

from ventryx_server import embedded
from ventryx_server.app import create_app
from ventryx_server.settings import Settings


async def run_lifespan(app):
    """Starts an ASGI app's lifespan; returns the coroutine function that ends it."""
    to_app: asyncio.Queue = asyncio.Queue()
    from_app: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, to_app.get, from_app.put)
    )
    await to_app.put({"type": "lifespan.startup"})
    started = await from_app.get()
    if started["type"] != "lifespan.startup.complete":
        raise SystemExit(f"app did not start: {started}")

    async def stop():
        await to_app.put({"type": "lifespan.shutdown"})
        await from_app.get()
        await task

    return stop


async def call(app, scenario: Scenario) -> int:
    """One request straight into the ASGI app; returns the response status."""
    path, _, query = scenario.path.partition("?")
    headers = [(b"host", b"bench")]
    if scenario.token:
        headers.append((b"authorization", f"Bearer {scenario.token}".encode()))
    body = scenario.body or b""
    if scenario.body is not None:
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": scenario.method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    status = 0

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def main(args) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per set-up request
    modules, problems = discover_modules(set(args.only) if args.only else None)
    run_dir = Path(tempfile.mkdtemp(prefix="ventryx-bench-"))
    atexit.register(shutil.rmtree, run_dir, True)  # before PostgreSQL's own exit handler
    pepper = secrets.token_bytes(32)
    admin_url = embedded.start(run_dir)
    database_url, org = await prepare_database(admin_url, pepper)
    os.environ.update(
        DATABASE_URL=database_url,
        VENTRYX_PEPPER=pepper.hex(),
        BENCH_MODULES=",".join(module.__name__ for module in modules),
    )
    import baseline_app

    apps = {
        "server": create_app(Settings(database_url=database_url, pepper=pepper)),
        "baseline": baseline_app.create_app(),
    }
    stops = [await run_lifespan(app) for app in apps.values()]
    scenarios: list[Scenario] = []
    try:
        transport = httpx.ASGITransport(app=apps["server"])
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as api:
            conn = await asyncpg.connect(database_url)
            try:
                ctx = BenchContext(
                    "http://bench",
                    "http://baseline",
                    database_url,
                    org.org_id,
                    org.key_id,
                    org.key,
                    api,
                    conn,
                )
                for module in modules:
                    if hasattr(module, "prepare"):
                        try:
                            scenarios += await module.prepare(ctx)
                        except Exception as exc:
                            problems.append(f"{module.__name__}: prepare() failed: {exc}")
            finally:
                await conn.close()
        if args.skip_writes:
            scenarios = [s for s in scenarios if s.method == "GET"]
        for scenario in list(scenarios):
            status = await call(apps[scenario.target], scenario)
            if status != scenario.expect_status:
                problems.append(
                    f"{scenario.name}: HTTP {status}, expected {scenario.expect_status}"
                )
                scenarios.remove(scenario)
        for scenario in scenarios:
            for _ in range(args.warmup):
                await call(apps[scenario.target], scenario)
        cpu: dict[str, list[float]] = {scenario.name: [] for scenario in scenarios}
        for _ in range(args.rounds):
            for scenario in scenarios:
                app = apps[scenario.target]
                started = time.process_time()
                for _ in range(args.requests):
                    await call(app, scenario)
                cpu[scenario.name].append((time.process_time() - started) / args.requests * 1e6)
    finally:
        for stop in stops:
            await stop()

    print(
        f"\nPython CPU per request, in process, one request at a time: {args.rounds} rounds of "
        f"{args.requests} requests per scenario, after {args.warmup} warm-up requests.\n"
    )
    width = max(len(s.name) for s in scenarios) + 2
    print(f"{'scenario':<{width}}{'µs':>7}{'vs baseline':>13}   per round")
    medians = {name: statistics.median(values) for name, values in cpu.items()}
    for scenario in scenarios:
        own = medians[scenario.name]
        extra = f"{own - medians[scenario.baseline]:+.0f} µs" if scenario.baseline else "(baseline)"
        rounds = " ".join(f"{value:.0f}" for value in cpu[scenario.name])
        print(f"{scenario.name:<{width}}{own:>7.0f}{extra:>13}   {rounds}")
    for problem in problems:
        print(f"not measured: {problem}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="per scenario per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=300, help="requests per scenario")
    parser.add_argument("--only", action="append", help="run only this bench module")
    parser.add_argument(
        "--skip-writes",
        action="store_true",
        help="only GET scenarios (writes grow tables as they run)",
    )
    arguments = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(arguments))
    else:
        uvloop.run(main(arguments))
    sys.exit(0)
