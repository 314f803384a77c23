"""Stopping a server process (SIGTERM, SIGINT) while streams are open: each stream gets a
final message and ends, a request in flight still gets its answer, the process exits."""

import asyncio
import signal
import time

import httpx
import pytest
from test_event_stream import SseReader, stream

from conftest import ServerProcess, bearer

EXIT_SECONDS = 5


async def _slow_body(chunks: list[bytes], pause: float):
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(pause)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stopping_server_ends_its_streams_finishes_requests_and_exits(
    signum, database_url, server_log_dir, make_org
):
    process = ServerProcess(database_url, server_log_dir / f"server-stop-{signum.name}.log")
    try:
        await asyncio.to_thread(process.wait_ready)
        org = await make_org(f"Stopping {signum.name}")
        async with (
            stream(process.url, org.admin_key) as first,
            stream(process.url, org.admin_key, params={"type": "order.*"}) as second,
        ):
            assert (first.status_code, second.status_code) == (200, 200)
            # A request in flight: its body is still arriving when the signal comes.
            body = b'{"type": "order.created", "payload": {"n": 1}}'
            async with httpx.AsyncClient(base_url=process.url, timeout=10) as http:
                in_flight = asyncio.create_task(
                    http.post(
                        "/v1/events",
                        content=_slow_body([body[:10], body[10:20], body[20:]], 0.4),
                        headers={**bearer(org.admin_key), "Content-Type": "application/json"},
                    )
                )
                await asyncio.sleep(0.2)
                started = time.monotonic()
                process.process.send_signal(signum)
                for response in (first, second):
                    reader = SseReader(response)
                    farewell = await reader.next(timeout=EXIT_SECONDS)
                    assert (farewell.event, farewell.data["error"]["code"]) == (
                        "error",
                        "server_shutting_down",
                    )
                    assert await reader.next(timeout=EXIT_SECONDS) is None
                answered = await in_flight
                assert answered.status_code == 201, answered.text
            exit_code = await asyncio.to_thread(process.process.wait, EXIT_SECONDS)
            assert time.monotonic() - started < EXIT_SECONDS
            assert exit_code is not None
    finally:
        await asyncio.to_thread(process.stop)
