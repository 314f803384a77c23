"""What rate limiting adds per request, measured where a busy shared machine cannot blur it:
the in-memory decision of the before-request hook (CPU per call, same-run baseline: the
same loop without the decision), and the once-per-interval sync statement against a real
PostgreSQL for a process that knows many credentials.

    uv run python bench/rate_limit_cost.py [--keys 1000]

Compare the per-request figure with the ~340 µs of app CPU an authenticated read costs
(PERFORMANCE.md): that is the share of throughput the limiter can take.
"""

import argparse
import asyncio
import atexit
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg
from run import prepare_database

from ventryx_server import embedded
from ventryx_server.auth import Credential, hash_secret
from ventryx_server.db import Queries
from ventryx_server.rate_limits import CredentialWindow, RateLimiter
from ventryx_server.services.api_keys import KeyFields, add_key
from ventryx_server.settings import find_sql_dir


def per_call_ns(function, calls: int = 200_000, repeats: int = 7) -> float:
    """Median over repeats of the time per call, in ns."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        for _ in range(calls):
            function()
        samples.append((time.perf_counter_ns() - started) / calls)
    return statistics.median(samples)


def decision_cost() -> None:
    credential = Credential("api_key", "l" * 12, b"h" * 32, "live")
    window = CredentialWindow(
        credential,
        {"requests": 10**9, "window_seconds": 60, "window_start": 0, "used": 0},
        time.time(),
    )
    headers: list = []
    clock = time.time

    def with_limit() -> None:
        headers.extend(window.admit(clock()) or ())
        headers.clear()

    def without_limit() -> None:
        headers.extend(())
        headers.clear()

    limited, baseline = per_call_ns(with_limit), per_call_ns(without_limit)
    print(
        f"decision per request: {limited - baseline:,.0f} ns "
        f"({limited:,.0f} with it, {baseline:,.0f} without, same loop); "
        f"{(limited - baseline) / 340_000:.2%} of a 340 µs authenticated read"
    )


async def sync_cost(keys: int) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="ventryx-limit-bench-"))
    atexit.register(shutil.rmtree, run_dir, True)
    pepper = secrets.token_bytes(32)
    database_url, org = await prepare_database(embedded.start(run_dir), pepper)
    queries = Queries.from_dir(find_sql_dir())
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        credentials = []
        async with pool.acquire() as db:
            for n in range(keys):
                added = await add_key(
                    db,
                    queries,
                    pepper,
                    org_id=org.org_id,
                    created_by=org.owner_id,
                    caller_environment="live",
                    caller_scopes=["org:admin"],
                    fields=KeyFields(name=f"k{n}", environment="live", scopes=["workflows:read"]),
                )
                credentials.append(
                    Credential(
                        "api_key", added.row["lookup_id"], hash_secret(pepper, added.token), "live"
                    )
                )
        limiter = RateLimiter(pool, queries, 1.0)
        for credential in credentials:
            (await limiter.learn(credential)).admit(limiter.clock())
        times = []
        for _ in range(20):
            for credential in credentials:
                limiter.known(credential).admit(limiter.clock())
            started = time.perf_counter()
            await limiter.sync()
            times.append((time.perf_counter() - started) * 1000)
        print(
            f"sync of {keys} credentials, each used since the last sync: median "
            f"{statistics.median(times):.1f} ms, max {max(times):.1f} ms per interval "
            f"(one statement)"
        )
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=1000)
    args = parser.parse_args()
    decision_cost()
    asyncio.run(sync_cost(args.keys))


if __name__ == "__main__":
    main()
