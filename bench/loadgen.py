"""A small HTTP/1.1 keep-alive load generator, for machines without wrk.

``python bench/loadgen.py URL --connections 64 --seconds 10`` prints one JSON object
(requests_per_second, p50_ms, p99_ms, requests, failures). The request's method,
Authorization and body come from BENCH_METHOD, BENCH_AUTHORIZATION and BENCH_BODY_FILE,
as for wrk's request.lua.
"""

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from urllib.parse import urlsplit


def build_request(url: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    method = os.environ.get("BENCH_METHOD", "GET")
    body_file = os.environ.get("BENCH_BODY_FILE")
    body = Path(body_file).read_bytes() if body_file else b""
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}"]
    if authorization := os.environ.get("BENCH_AUTHORIZATION"):
        lines.append(f"Authorization: {authorization}")
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return parts.hostname, parts.port or 80, ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise RuntimeError("response without Content-Length: this generator cannot frame it")


async def connection(
    host: str,
    port: int,
    request: bytes,
    deadline: float,
    latencies: list[float],
    failures: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(content_length(head))
            latencies.append(time.perf_counter() - started)
            if head[9:10] not in (b"2", b"3"):
                failures.append(1)
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    host, port, request = build_request(args.url)
    latencies: list[float] = []
    failures: list[int] = []
    started = time.perf_counter()
    deadline = started + args.seconds
    results = await asyncio.gather(
        *(
            connection(host, port, request, deadline, latencies, failures)
            for _ in range(args.connections)
        ),
        return_exceptions=True,
    )
    elapsed = time.perf_counter() - started
    errors = sum(1 for result in results if isinstance(result, BaseException))
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    print(
        json.dumps(
            {
                "requests_per_second": len(latencies) / elapsed,
                "p50_ms": cuts[49] * 1000,
                "p99_ms": cuts[98] * 1000,
                "requests": len(latencies),
                "failures": len(failures) + errors,
            }
        )
    )


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
