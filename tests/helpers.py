"""What many test modules do: sign members in, and hold a transaction open while a
request queues behind its locks (a revocation's, or a write's in flight)."""

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from conftest import bearer, wait_for

NEW_PASSWORD_LENGTH = 24
# Generous: a request reaches its lock in milliseconds, but the machine may be busy.
QUEUE_TIMEOUT_SECONDS = 10.0


def session_headers(token: str, environment: str | None = None) -> dict[str, str]:
    headers = bearer(token)
    if environment is not None:
        headers["Ventryx-Environment"] = environment
    return headers


async def login(client, email: str, password: str, organization: str | None = None):
    body = {"email": email, "password": password}
    if organization is not None:
        body["organization"] = organization
    return await client.post("/v1/sessions", json=body)


async def first_login(client, ledger, email: str, one_time_password: str) -> tuple[str, str]:
    """Logs in with a one-time password and replaces it; returns (token, new password)."""
    response = await login(client, email, one_time_password)
    assert response.status_code == 201, response.text
    token = ledger.add(response.json()["data"]["token"])
    new_password = ledger.add(secrets.token_urlsafe(NEW_PASSWORD_LENGTH))
    changed = await client.post(
        "/v1/members/me/password",
        headers=bearer(token),
        json={"current_password": one_time_password, "new_password": new_password},
    )
    assert changed.status_code == 200, changed.text
    return token, new_password


async def owner_session(client, ledger, org) -> str:
    """A session of the organization's (bootstrapped) owner, password already changed."""
    token, org.owner_password = await first_login(
        client, ledger, org.owner_email, org.owner_password
    )
    return token


async def add_member(client, ledger, org, role: str, by: str | None = None) -> dict:
    """Adds a member through the API (by the admin key unless ``by`` is given)."""
    email = f"{role}-{secrets.token_hex(4)}@example.com"
    response = await client.post(
        "/v1/members",
        headers=bearer(by or org.admin_key),
        json={"email": email, "name": f"A {role}", "role": role},
    )
    assert response.status_code == 201, response.text
    member = response.json()["data"]
    ledger.add(member["one_time_password"])
    return member


async def member_session(client, ledger, org, role: str, by: str | None = None):
    """A new member of ``role`` with a ready session: (member, token, password)."""
    member = await add_member(client, ledger, org, role, by=by)
    token, password = await first_login(
        client, ledger, member["email"], member["one_time_password"]
    )
    return member, token, password


def revocation_locks(org_id: str, key_id: str) -> tuple[tuple[Any, ...], ...]:
    """The locks DELETE /v1/api-keys/{id} takes before it changes the key, as statements
    for open_transaction: the key's exclusive write lock (which every write with the key
    waits on: 0014_fair_revocation, 0023_key_writes_without_row_lock), then its row."""
    return (
        (
            "SELECT stop_credential_writes(lookup_id) FROM api_keys WHERE org_id = $1 AND id = $2",
            org_id,
            key_id,
        ),
        ("SELECT 1 FROM api_keys WHERE org_id = $1 AND id = $2 FOR UPDATE", org_id, key_id),
    )


@asynccontextmanager
async def open_transaction(
    db: asyncpg.Pool,
    *statements: tuple[Any, ...],
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction that has run ``statements`` (each ``(sql, *args)``) and holds their
    locks for the block (a revocation or a write in flight), then commits."""
    async with db.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            for sql, *args in statements:
                await conn.execute(sql, *args)
            yield conn
        except BaseException:
            await transaction.rollback()
            raise
        await transaction.commit()


async def statements_waiting_for_locks(db: asyncpg.Pool) -> int:
    """How many statements of the test database wait for a lock someone else holds."""
    async with db.acquire() as conn:
        return await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )


async def queued_on_locks(
    db: asyncpg.Pool, request: Awaitable, what: str, waiting: int = 1
) -> asyncio.Task:
    """Starts ``request`` and returns it once ``waiting`` statements of this database wait
    for a lock (``what`` says what should have waited when the request finishes first
    or nothing queues within QUEUE_TIMEOUT_SECONDS)."""
    task = asyncio.ensure_future(request)

    async def queued() -> bool:
        return task.done() or await statements_waiting_for_locks(db) >= waiting

    await wait_for(queued, timeout=QUEUE_TIMEOUT_SECONDS)
    assert not task.done(), f"{what}: it finished without waiting ({task!r})"
    if not await queued():
        task.cancel()
        raise AssertionError(f"{what}: nothing waited for a lock")
    return task
