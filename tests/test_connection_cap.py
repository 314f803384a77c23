"""VENTRYX_MAX_CONNECTIONS caps the connections one process serves at once (granian's
backpressure: a permit is taken before each accept and held for the connection's life).
A connection past the cap is not refused: the kernel completes its handshake and it waits
in the listen backlog, unserved, until a served connection closes; the connections being
served go on as before."""

import asyncio
import contextlib

import pytest

from conftest import ServerProcess

CAP = 6
EXCESS = 3
ANSWER_SECONDS = 10  # a request that is served is answered long before this
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: ventryx\r\n\r\n"


@pytest.fixture(scope="module")
def capped_server(database_url, server_log_dir):
    process = ServerProcess(
        database_url,
        server_log_dir / "server-connection-cap.log",
        {
            "VENTRYX_MAX_CONNECTIONS": str(CAP),
            # Idle keep-alive connections are closed after the header timeout: keep them.
            "VENTRYX_HEADER_READ_TIMEOUT_SECONDS": "120",
        },
    )
    process.wait_ready()
    yield process
    process.stop()


class Connection:
    """One keep-alive HTTP/1.1 connection, spoken by hand to see exactly when it is served."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> "Connection":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(self) -> None:
        self.writer.write(REQUEST)

    async def answer(self) -> int:
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await self.reader.readexactly(length)
        return int(head.split(b" ")[1])

    async def get(self) -> int:
        self.send()
        async with asyncio.timeout(ANSWER_SECONDS):
            return await self.answer()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def test_connections_past_the_cap_wait_unserved_while_served_ones_go_on(capped_server):
    port = capped_server.port
    served = [await Connection.open(port) for _ in range(CAP - 1)]
    waiting: list[Connection] = []
    try:
        assert [await connection.get() for connection in served] == [200] * (CAP - 1)
        # The twin: below the cap, a new connection is served at once.
        last_place = await Connection.open(port)
        served.append(last_place)
        assert await last_place.get() == 200

        waiting = [await Connection.open(port) for _ in range(EXCESS)]  # accepted by the kernel
        answers = [asyncio.create_task(connection.answer()) for connection in waiting]
        for connection in waiting:
            connection.send()
        # Traffic on the served connections goes on, requests sent after the waiting
        # ones' are answered first, and the waiting ones stay unanswered all along.
        for _ in range(3):
            assert [await connection.get() for connection in served] == [200] * CAP
        assert not any(answer.done() for answer in answers)

        # Each served connection that closes lets one waiting connection in.
        for connection in served[:EXCESS]:
            await connection.close()
        async with asyncio.timeout(ANSWER_SECONDS):
            assert await asyncio.gather(*answers) == [200] * EXCESS
        assert [await connection.get() for connection in served[EXCESS:] + waiting] == [200] * CAP
    finally:
        for connection in served + waiting:
            await connection.close()
