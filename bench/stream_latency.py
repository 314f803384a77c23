"""How long after an emit is acknowledged does a stream on another server process get it?

    uv run python bench/stream_latency.py [--probes 300] [--writers 0 8]

Starts a throwaway embedded PostgreSQL and two real `ventryx-server serve` processes, opens
a stream on the second, and emits probe events through the first, one at a time (every
20 ms), while `--writers` other clients emit nonstop through both processes. For each
probe it records the time from the emit's 201 (the event is committed) to the moment the
stream delivers it, and prints p50, p99 and the maximum for each number of writers.

The stream filters on `probe.*`, so the writers' events cost the stream's process their
fetch and filtering but are not read by this client.
"""

import argparse
import asyncio
import atexit
import contextlib
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

PROBE_INTERVAL = 0.02


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def _write_nonstop(url: str, key: str, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while not stop.is_set():
            await http.post(
                "/v1/events",
                headers={"Authorization": f"Bearer {key}"},
                json={"type": "load.generated", "payload": {"n": 1}},
            )


async def _read_stream(
    url: str, key: str, arrived: dict[str, float], connected: asyncio.Event, changed: asyncio.Event
) -> None:
    # No read timeout: the stream is quiet between probes.
    timeout = httpx.Timeout(30, read=None)
    async with (
        httpx.AsyncClient(base_url=url, timeout=timeout) as http,
        http.stream(
            "GET",
            "/v1/events/stream",
            params={"type": "probe.*"},
            headers={"Authorization": f"Bearer {key}"},
        ) as response,
    ):
        connected.set()
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                arrived[line[4:]] = time.perf_counter()
                changed.set()


async def measure(urls: list[str], key: str, probes: int, writers: int) -> list[float]:
    arrived: dict[str, float] = {}
    connected, stop, changed = asyncio.Event(), asyncio.Event(), asyncio.Event()
    reader = asyncio.create_task(_read_stream(urls[1], key, arrived, connected, changed))
    await connected.wait()
    load = [asyncio.create_task(_write_nonstop(urls[i % 2], key, stop)) for i in range(writers)]
    acknowledged: dict[str, float] = {}
    try:
        async with httpx.AsyncClient(base_url=urls[0], timeout=30) as http:
            for _ in range(probes + 20):
                response = await http.post(
                    "/v1/events",
                    headers={"Authorization": f"Bearer {key}"},
                    json={"type": "probe.sent", "payload": {}},
                )
                acknowledged[response.json()["data"]["id"]] = time.perf_counter()
                await asyncio.sleep(PROBE_INTERVAL)

        async def all_arrived() -> None:
            while set(acknowledged) - set(arrived):
                changed.clear()
                await changed.wait()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_arrived(), 10)
    finally:
        stop.set()
        await asyncio.gather(*load)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    missing = set(acknowledged) - set(arrived)
    if missing:
        print(f"  {len(missing)} probes never arrived", file=sys.stderr)
    # The first 20 probes warm up the connections and the feed.
    ids = list(acknowledged)[20:]
    return [(arrived[i] - acknowledged[i]) * 1000 for i in ids if i in arrived]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--writers", type=int, nargs="+", default=[0, 8])
    args = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="ventryx-stream-bench-"))
    atexit.register(shutil.rmtree, run_dir, True)  # before PostgreSQL's own exit handler
    pepper = secrets.token_bytes(32)
    database_url, org = asyncio.run(prepare_database(embedded.start(run_dir), pepper))
    env = {**os.environ, "DATABASE_URL": database_url, "VENTRYX_PEPPER": pepper.hex()}
    servers = [
        Process(name, [sys.executable, "-m", "ventryx_server", "serve"], env, run_dir)
        for name in ("server-a", "server-b")
    ]
    try:
        for server in servers:
            server.wait_answering("/readyz")
        print(
            f"\nStream delivery after the emit's 201, emits through one process and the "
            f"stream on another, {args.probes} probes every {PROBE_INTERVAL * 1000:g} ms:\n"
        )
        for writers in args.writers:
            latencies = sorted(
                asyncio.run(measure([s.url for s in servers], org.key, args.probes, writers))
            )
            print(
                f"  {writers:>2} other writers: p50 {statistics.median(latencies):6.1f} ms   "
                f"p99 {percentile(latencies, 0.99):6.1f} ms   "
                f"max {latencies[-1]:6.1f} ms   ({len(latencies)} probes)"
            )
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
