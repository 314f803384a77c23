"""PostgreSQL going away mid-request is a 503 with Retry-After, never a 500, and the
background work that writes usage logs its failures and keeps running.

The outage is real: a server on its own database has every backend of that database
terminated (as a PostgreSQL restart or failover does) again and again while clients
read and write; the suite's other databases are left alone."""

import asyncio
import logging
import socket

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
