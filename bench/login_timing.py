"""Does a failed login tell an attacker whether the email exists? Compares the time of a
wrong password for a real member with the time of an unknown email, interleaved.

    uv run python bench/login_timing.py [--pairs 200]

Starts a throwaway embedded PostgreSQL and a real `ventryx-server serve`, then sends one
login with a wrong password and one with an unknown email, alternately, one at a time
over loopback, and prints each one's median and p90 and the ratio of the medians. Both
must answer the same 401; an unknown email is checked against a dummy argon2id hash so
that both pay for one verification. The login throttle is emptied before every pair (it
would otherwise answer 429 after ten failures), which affects both paths alike.
"""

import argparse
import asyncio
import atexit
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
from run import Process, prepare_database

from ventryx_server import embedded


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"median {statistics.median(ordered):6.1f} ms   p90 {p90:6.1f} ms"


async def measure(server_url: str, database_url: str, email: str, pairs: int) -> None:
    attempts = {
        "wrong password": {"email": email, "password": "not the password at all"},
        "unknown email": {
            "email": f"nobody-{secrets.token_hex(4)}@example.com",
            "password": "not the password at all",
        },
    }
    times: dict[str, list[float]] = {name: [] for name in attempts}
    conn = await asyncpg.connect(database_url)
    try:
        async with httpx.AsyncClient(base_url=server_url, timeout=30) as http:
            for pair in range(pairs + 10):
                await conn.execute("DELETE FROM login_attempts")
                order = list(attempts) if pair % 2 else list(reversed(attempts))
                for name in order:
                    started = time.perf_counter()
                    response = await http.post("/v1/sessions", json=attempts[name])
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code != 401:
                        raise SystemExit(f"{name}: HTTP {response.status_code}, expected 401")
                    if pair >= 10:  # the first ten pairs warm both paths up
                        times[name].append(elapsed)
    finally:
        await conn.close()
    print(f"\nFailed logins, one at a time over loopback, {pairs} interleaved pairs:\n")
    for name, values in times.items():
        print(f"  {name:<15} {summary(values)}")
    ratio = statistics.median(times["unknown email"]) / statistics.median(times["wrong password"])
    print(f"\n  unknown email / wrong password, medians: {ratio:.2f} (1.00: indistinguishable)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="ventryx-login-bench-"))
    atexit.register(shutil.rmtree, run_dir, True)  # before PostgreSQL's own exit handler
    pepper = secrets.token_bytes(32)
    database_url, org = asyncio.run(prepare_database(embedded.start(run_dir), pepper))
    # Hundreds of logins from one address: above the per-address login limit.
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "VENTRYX_PEPPER": pepper.hex(),
        "VENTRYX_LOGIN_LIMIT_PER_ADDRESS": "1000000/60",
    }
    server = Process("server", [sys.executable, "-m", "ventryx_server", "serve"], env, run_dir)
    try:
        server.wait_answering("/readyz")
        asyncio.run(measure(server.url, database_url, org.owner_email, args.pairs))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
