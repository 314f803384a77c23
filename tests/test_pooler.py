"""Behind PgBouncer in transaction pooling mode (README "Connection poolers"): every
statement and transaction keeps the server's timeouts although each transaction may run
in another PostgreSQL session, and a server refuses to start without the direct
connection its event streams LISTEN on."""

import asyncio
import os
import subprocess
import sys
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from conftest import ROOT, TEST_PEPPER, ServerProcess, bearer
from ventryx_server.db import create_pool
from ventryx_server.settings import Settings

LOCK_SECONDS = 0.3
STATEMENT_SECONDS = IDLE_SECONDS = 0.6  # above LOCK_SECONDS: a lock wait ends as one
NEVER_SECONDS = 10  # a bounded statement ends long before this


@pytest.fixture
async def pooled(pgbouncer, database_url):
    """The server's pool, set up as for VENTRYX_DATABASE_POOLER=transaction."""
    settings = Settings(
        database_url=pgbouncer.url_for(database_url),
        pepper=TEST_PEPPER,
        transaction_pooler=True,
        listen_database_url=database_url,
        lock_timeout_seconds=LOCK_SECONDS,
        statement_timeout_seconds=STATEMENT_SECONDS,
        idle_in_transaction_timeout_seconds=IDLE_SECONDS,
    )
    pool = await create_pool(settings)
    yield pool
    await pool.close()


async def test_statements_alone_and_in_transactions_keep_the_timeouts(pooled):
    assert await pooled.fetchval("SHOW statement_timeout") == "600ms"
    async with pooled.acquire() as connection, connection.transaction():
        assert await connection.fetchval("SHOW lock_timeout") == "300ms"
        assert await connection.fetchval("SHOW statement_timeout") == "600ms"
        assert await connection.fetchval("SHOW idle_in_transaction_session_timeout") == "600ms"
    async with asyncio.timeout(NEVER_SECONDS):
        with pytest.raises(asyncpg.QueryCanceledError):
            await pooled.fetchval("SELECT pg_sleep($1)", NEVER_SECONDS)
        async with pooled.acquire() as connection:
            with pytest.raises(asyncpg.QueryCanceledError):
                async with connection.transaction():
                    await connection.execute("SELECT pg_sleep($1)", NEVER_SECONDS)


async def test_the_bounds_come_from_the_server_not_from_postgresql(pgbouncer, database_url):
    # The twin: a plain connection through the same pooler runs unbounded.
    plain = await asyncpg.connect(pgbouncer.url_for(database_url), statement_cache_size=0)
    try:
        assert await plain.fetchval("SHOW statement_timeout") == "0"
        assert await plain.fetchval("SHOW lock_timeout") == "0"
    finally:
        await plain.close()


async def test_a_lock_wait_ends_at_the_lock_timeout(pooled, db, make_org):
    org = await make_org()
    async with db.acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM organizations WHERE org_id = $1 FOR UPDATE", org.id)
        async with asyncio.timeout(NEVER_SECONDS):
            with pytest.raises(asyncpg.LockNotAvailableError):
                await pooled.execute(
                    "UPDATE organizations SET name = name WHERE org_id = $1", org.id
                )
            async with pooled.acquire() as connection:
                with pytest.raises(asyncpg.LockNotAvailableError):
                    async with connection.transaction():
                        await connection.execute(
                            "UPDATE organizations SET name = name WHERE org_id = $1", org.id
                        )


async def test_a_transaction_left_idle_is_ended(pooled):
    async with pooled.acquire() as connection:
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            async with asyncio.timeout(NEVER_SECONDS), connection.transaction():
                await connection.fetchval("SELECT 1")
                await asyncio.sleep(IDLE_SECONDS + 1)
                await connection.fetchval("SELECT 1")


async def test_many_requests_share_few_sessions(pooled, pgbouncer):
    # More concurrent statements than the pooler has sessions: with named prepared
    # statements some would land in a session that never prepared them.
    async def read(n: int) -> int:
        async with pooled.acquire() as connection:
            return await connection.fetchval("SELECT $1::int + count(*) * 0 FROM organizations", n)

    total = pgbouncer.POOL_SIZE * 10
    assert await asyncio.gather(*map(read, range(total))) == list(range(total))


def test_a_server_behind_a_pooler_refuses_to_start_without_a_direct_listen_url(
    pgbouncer, database_url
):
    env = {**os.environ, **pgbouncer.server_env(database_url), "VENTRYX_PEPPER": TEST_PEPPER.hex()}
    del env["VENTRYX_LISTEN_DATABASE_URL"]
    finished = subprocess.run(
        [sys.executable, "-m", "ventryx_server", "serve", "--port", "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert finished.returncode != 0
    assert b"needs VENTRYX_LISTEN_DATABASE_URL" in finished.stdout + finished.stderr


async def test_a_server_behind_the_pooler_reaches_postgresql_through_it(
    pgbouncer, database_url, server_log_dir, org
):
    database = urlsplit(database_url).path.lstrip("/")

    def pooled_logins() -> int:
        return pgbouncer.log_path.read_text().count(f"login attempt: db={database} ")

    before = pooled_logins()
    process = ServerProcess(database_url, server_log_dir / "server-pooler.log", pooler=pgbouncer)
    try:
        await asyncio.to_thread(process.wait_ready, 120)  # a shared machine starts slowly
        async with httpx.AsyncClient(base_url=process.url, timeout=10) as http:
            response = await http.get("/v1/me", headers=bearer(org.admin_key))
        assert response.status_code == 200
        assert response.json()["data"]["organization"]["id"] == org.id
    finally:
        process.stop()
    assert pooled_logins() > before
