"""PostgreSQL going away mid-request is a 503 with Retry-After, never a 500, and the
background work that writes usage logs its failures and keeps running.

The outage is real: a server on its own database has every backend of that database
terminated (as a PostgreSQL restart or failover does) again and again while clients
read and write; the suite's other databases are left alone."""

import asyncio
import logging
import socket
from functools import partial
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from conftest import (
    TEST_PEPPER,
    ServerProcess,
    bearer,
    create_migrated_database,
    drop_database,
    wait_for,
)
from ventryx_server.bootstrap import bootstrap
from ventryx_server.errors import is_outage
from ventryx_server.usage import UsageRecorder


@pytest.fixture
async def outage_database(admin_url):
    url = await create_migrated_database(admin_url, "vtx_outage")
    yield url
    await drop_database(admin_url, url)


async def _bootstrap(database_url: str, queries, name: str):
    conn = await asyncpg.connect(database_url)
    try:
        return await bootstrap(
            conn, queries, TEST_PEPPER, org_name=name, owner_email=f"{name.lower()}@example.com"
        )
    finally:
        await conn.close()


async def _terminate_backends(admin: asyncpg.Connection, database_url: str) -> int:
    name = database_url.split("?")[0].rsplit("/", 1)[1]
    return await admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()",
        name,
    )


async def test_terminated_connections_under_load_answer_503_never_500(
    admin_url, outage_database, server_log_dir, queries, ledger
):
    key = ledger.add((await _bootstrap(outage_database, queries, "Outage")).key)
    log_path = server_log_dir / "server-outage.log"
    server = ServerProcess(outage_database, log_path)
    server.wait_ready()
    statuses: list[httpx.Response] = []
    stop = asyncio.Event()

    async def client_loop(http: httpx.AsyncClient, number: int) -> None:
        while not stop.is_set():
            if number % 2:
                response = await http.post(
                    "/v1/events", headers=bearer(key), json={"type": "outage.test", "payload": {}}
                )
            else:
                response = await http.get("/v1/api-keys", headers=bearer(key))
            statuses.append(response)

    try:
        admin = await asyncpg.connect(admin_url)
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                clients = [asyncio.create_task(client_loop(http, n)) for n in range(8)]
                for _ in range(10):
                    await asyncio.sleep(0.2)
                    await _terminate_backends(admin, outage_database)
                stop.set()
                await asyncio.gather(*clients)
                # The pool reconnects by itself: the next requests are served.
                recovered = await wait_for(lambda: _answers_200(http, key), timeout=10)
        finally:
            await admin.close()
    finally:
        server.stop()
    codes = {r.status_code for r in statuses}
    assert codes <= {200, 201, 503}, codes
    assert 503 in codes, "no request met the outage: the test did not test it"
    for response in statuses:
        if response.status_code == 503:
            error = response.json()["error"]
            assert (error["type"], error["code"]) == ("api_error", "service_unavailable")
            assert response.headers["Retry-After"] == "1"
    assert recovered
    log = log_path.read_text()
    assert "unhandled" not in log, log[-3000:]  # what errors.py logs with every 500
    # (The event hub's announcing task has its own failures to log: the streams' work.)
    assert "ventryx_server/auth.py" not in log, log[-3000:]


async def _answers_200(http: httpx.AsyncClient, key: str) -> bool:
    return (await http.get("/v1/api-keys", headers=bearer(key))).status_code == 200


async def test_a_listen_database_that_never_answers_is_a_503_for_streams_only(
    database_url, server_log_dir, org, make_key
):
    """The streams' LISTEN connection goes to an address that accepts and never answers
    (a firewall dropping the traffic, a hung proxy): opening a stream is 503 once the
    connection wait (VENTRYX_POOL_TIMEOUT_SECONDS) runs out, not held for asyncpg's 60 s,
    and the rest of the API, on its own connections, answers as usual."""
    silent = socket.create_server(("127.0.0.1", 0))  # connections queue, nothing is read
    port = silent.getsockname()[1]
    process = ServerProcess(
        database_url,
        server_log_dir / "server-silent-listener.log",
        extra_env={
            "VENTRYX_LISTEN_DATABASE_URL": f"postgresql://ventryx@127.0.0.1:{port}/ventryx",
            "VENTRYX_POOL_TIMEOUT_SECONDS": "1",
        },
    )
    process.wait_ready()
    try:
        _, key = await make_key(org, ["events:read"])
        async with httpx.AsyncClient(base_url=process.url, timeout=15) as http:
            async with http.stream("GET", "/v1/events/stream", headers=bearer(key)) as opened:
                await opened.aread()
            listed = await http.get("/v1/events?limit=1", headers=bearer(key))
        assert opened.status_code == 503, opened.text
        assert opened.json()["error"]["code"] == "service_unavailable"
        assert opened.headers["Retry-After"] == "1"
        assert listed.status_code == 200
    finally:
        process.stop()
        silent.close()


class FreezableProxy:
    """A TCP proxy to PostgreSQL that can stop forwarding without closing anything: the
    database's connections stay open and nothing comes back, as when the network between
    the server and the database starts dropping packets."""

    def __init__(self, database_url: str) -> None:
        target = urlsplit(database_url)
        query = parse_qs(target.query)
        port = int(query.get("port", [target.port or 5432])[0])
        if socket_dir := query.get("host", [""])[0]:  # the embedded PostgreSQL's socket
            self._open = partial(asyncio.open_unix_connection, f"{socket_dir}/.s.PGSQL.{port}")
        else:
            self._open = partial(asyncio.open_connection, target.hostname, port)
        self._user, self._database = target.username, target.path
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> "FreezableProxy":
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"postgresql://{self._user}@127.0.0.1:{port}{self._database}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await self._open()
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self.flowing.wait()  # frozen: the bytes are held, never delivered
                sink.write(data)
                await sink.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            sink.close()


async def test_a_database_that_stops_answering_mid_request_is_a_503_and_then_recovers(
    database_url, server_log_dir, org, make_key
):
    """The network to PostgreSQL starts dropping everything while requests are in flight:
    PostgreSQL's own statement_timeout cannot help (its answer never arrives), so the
    server bounds each statement itself, a little past statement_timeout, and answers
    503 instead of holding the request until TCP gives up (about 15 minutes on Linux).
    Once the network is back, requests succeed again."""
    _, key = await make_key(org, ["events:write", "events:read"])
    # Under VENTRYX_TEST_PGBOUNCER=1 the network that freezes is the one to PgBouncer.
    pooler = ServerProcess.suite_pooler
    async with FreezableProxy(pooler.url_for(database_url) if pooler else database_url) as proxy:
        process = ServerProcess(
            database_url,
            server_log_dir / "server-frozen-network.log",
            extra_env={
                "DATABASE_URL": proxy.url,
                "VENTRYX_STATEMENT_TIMEOUT_SECONDS": "2",
                "VENTRYX_LISTEN_DATABASE_URL": database_url,
            },
        )
        await asyncio.to_thread(process.wait_ready)  # the proxy runs on this event loop
        try:
            async with httpx.AsyncClient(base_url=process.url, timeout=30) as http:
                assert (await http.get("/v1/me", headers=bearer(key))).status_code == 200
                proxy.flowing.clear()
                emit = {"type": "order.created", "payload": {}}
                during = await asyncio.gather(
                    http.get("/v1/me", headers=bearer(key)),
                    http.post("/v1/events", headers=bearer(key), json=emit),
                    # In a transaction: its rollback gets no answer either.
                    http.post(
                        "/v1/events",
                        headers={**bearer(key), "Idempotency-Key": "frozen-network-1"},
                        json=emit,
                    ),
                )
                proxy.flowing.set()
                recovered = await wait_for(lambda: _answers_200(http, org.admin_key), timeout=20)
        finally:
            await asyncio.to_thread(process.stop)  # its clean stop still writes through us
    for response in during:
        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (503, "service_unavailable"), response.text
        assert response.headers["Retry-After"] == "1"
    assert recovered


async def test_usage_recorder_logs_a_failed_flush_and_keeps_running(
    outage_database, queries, caplog
):
    """While api_keys is locked past the pool's lock_timeout, flushes fail: each failure
    is logged, the task goes on, and once the lock is gone a flush writes the usage the
    failed ones could not."""
    made = await _bootstrap(outage_database, queries, "Usage")
    pool = await asyncpg.create_pool(
        outage_database, min_size=1, max_size=1, server_settings={"lock_timeout": "100"}
    )
    blocker = await asyncpg.connect(outage_database)
    recorder = UsageRecorder(pool, queries, interval=0.1)
    caplog.set_level(logging.WARNING, logger="ventryx.usage")
    try:
        async with recorder.running():
            async with blocker.transaction():
                await blocker.execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
                recorder.touch(made.org_id, made.key_id)
                assert await wait_for(lambda: _logged(caplog), timeout=5)
            last_used = await wait_for(
                lambda: _last_used(pool, made.org_id, made.key_id), timeout=5
            )
    finally:
        await blocker.close()
        await pool.close()
    assert last_used is not None


async def _logged(caplog) -> bool:
    return any("could not record key usage" in r.getMessage() for r in caplog.records)


async def _last_used(pool: asyncpg.Pool, org_id: str, key_id: str):
    return await pool.fetchval(
        "SELECT last_used_at FROM api_keys WHERE org_id = $1 AND id = $2", org_id, key_id
    )


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.InternalClientError("cannot switch to state 12"),
        asyncpg.exceptions.LockNotAvailableError("canceling statement due to lock timeout"),
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.exceptions.IdleInTransactionSessionTimeoutError("terminating connection"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        TimeoutError(),
    ],
)
def test_outages_and_timeouts_are_503(error):
    assert is_outage(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        ValueError("a bug"),
    ],
)
def test_other_failures_are_not_outages(error):
    assert not is_outage(error)
