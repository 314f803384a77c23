"""Every wait of a request is bounded, and one stuck credential never holds up the others.

A revocation left open (an operator's psql holding the key's write lock and row, a stuck
revocation) makes every write with that key wait for its lock: those writes end in 503 with
Retry-After once lock_timeout runs out, and meanwhile other keys keep being served."""

import asyncio
import secrets
from collections.abc import Awaitable

import httpx
import pytest
from helpers import (
    QUEUE_TIMEOUT_SECONDS,
    queued_on_locks,
    revocation_locks,
    statements_waiting_for_locks,
)

from conftest import ServerProcess, bearer, wait_for
from ventryx_server.db import ConnectionsPerCredential
from ventryx_server.settings import Settings

STUCK_WRITERS = 40
# The pooled connections one credential's requests may hold at once.
CREDENTIAL_SHARE = Settings(database_url="unused", pepper=b"unused").credential_connections


async def _at_least_waiting(db, count: int) -> bool:
    return await statements_waiting_for_locks(db) >= count


@pytest.fixture(scope="module")
def short_waits_server(database_url, server_log_dir):
    """A server whose lock waits end after 3 s (the default is 5 s)."""
    process = ServerProcess(
        database_url,
        server_log_dir / "server-short-waits.log",
        extra_env={"VENTRYX_LOCK_TIMEOUT_SECONDS": "3"},
    )
    process.wait_ready()
    yield process
    process.stop()


async def _emit(http: httpx.AsyncClient, key: str, name: str = "order.created"):
    return await http.post("/v1/events", headers=bearer(key), json={"type": name, "payload": {}})


async def test_writes_with_a_stuck_key_end_in_503_while_other_keys_are_served(
    short_waits_server, org, make_key, db
):
    stuck_id, stuck_key = await make_key(org, ["events:write"], name="stuck")
    _, other_key = await make_key(org, ["events:write", "events:read"], name="other")
    limits = httpx.Limits(max_connections=STUCK_WRITERS + 8)
    async with (
        httpx.AsyncClient(base_url=short_waits_server.url, timeout=30, limits=limits) as http,
        db.acquire() as conn,
    ):
        assert (await _emit(http, stuck_key)).status_code == 201
        holder = conn.transaction()
        await holder.start()
        for statement in revocation_locks(org.id, stuck_id):
            await conn.execute(*statement)
        try:
            stuck = [asyncio.create_task(_emit(http, stuck_key)) for _ in range(STUCK_WRITERS)]
            # They take what they can of the pool: the credential's share, each waiting.
            assert await wait_for(
                lambda: _at_least_waiting(db, CREDENTIAL_SHARE), timeout=QUEUE_TIMEOUT_SECONDS
            )
            served = [
                await _emit(http, other_key, "order.other"),
                await http.get("/v1/events?limit=1", headers=bearer(other_key)),
                await _emit(http, other_key, "order.other"),
            ]
            still_waiting = sum(not task.done() for task in stuck)
            answers = await asyncio.gather(*stuck)
        finally:
            await holder.rollback()
    assert [r.status_code for r in served] == [201, 200, 201], [r.text for r in served]
    # The other key was served while the stuck key's writes were still waiting.
    assert still_waiting == STUCK_WRITERS
    assert {r.status_code for r in answers} == {503}
    for response in answers:
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("api_error", "service_unavailable")
        assert response.headers["Retry-After"] == "1"
        assert error["request_id"] == response.headers["Request-Id"]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM events WHERE org_id = $1 AND emitted_by = $2", org.id, stuck_id
        )
        == 1
    )


async def test_the_same_key_writes_again_once_the_row_is_released(
    short_waits_server, org, make_key, db
):
    """The negative twin: an emit that waits for a lock held briefly commits (201)."""
    key_id, key = await make_key(org, ["events:write"])
    async with (
        httpx.AsyncClient(base_url=short_waits_server.url, timeout=30) as http,
        db.acquire() as conn,
    ):
        holder = conn.transaction()
        await holder.start()
        for statement in revocation_locks(org.id, key_id):
            await conn.execute(*statement)
        write = await queued_on_locks(db, _emit(http, key), "the write did not wait for the key")
        await holder.rollback()
        assert (await write).status_code == 201


async def test_no_connection_in_time_is_503_and_other_keys_still_answer(
    database_url, server_log_dir, org, make_key, db
):
    """With a connection wait of 0.3 s: the stuck key's writes beyond its share of the
    pool are turned away with 503 after that wait, while another key reads."""
    process = ServerProcess(
        database_url,
        server_log_dir / "server-pool-timeout.log",
        extra_env={"VENTRYX_POOL_TIMEOUT_SECONDS": "0.3", "VENTRYX_LOCK_TIMEOUT_SECONDS": "3"},
    )
    process.wait_ready()
    try:
        stuck_id, stuck_key = await make_key(org, ["events:write"])
        _, other_key = await make_key(org, ["events:read"])
        async with (
            httpx.AsyncClient(
                base_url=process.url, timeout=30, limits=httpx.Limits(max_connections=64)
            ) as http,
            db.acquire() as conn,
            conn.transaction(),
        ):
            for statement in revocation_locks(org.id, stuck_id):
                await conn.execute(*statement)
            stuck = [asyncio.create_task(_emit(http, stuck_key)) for _ in range(30)]
            assert await wait_for(
                lambda: _at_least_waiting(db, CREDENTIAL_SHARE), timeout=QUEUE_TIMEOUT_SECONDS
            )
            read = await http.get("/v1/events", headers=bearer(other_key))
            turned_away = [r for r in await asyncio.gather(*stuck) if r.status_code == 503]
        assert read.status_code == 200
        # 16 ran out of lock time, the 14 beyond the 16 connections a credential may hold
        # got no connection within 0.3 s: all are 503.
        assert len(turned_away) == 30
        assert {r.json()["error"]["code"] for r in turned_away} == {"service_unavailable"}
        assert {r.headers["Retry-After"] for r in turned_away} == {"1"}
    finally:
        process.stop()


async def test_the_configured_pool_and_share_bound_what_stuck_keys_hold(
    database_url, server_log_dir, org, make_key, db
):
    """VENTRYX_POOL_SIZE=5, VENTRYX_CONNECTIONS_PER_CREDENTIAL=2: writes with three keys,
    each stuck behind a revocation, hold two connections per key and never more than the
    pool's five in all; once the revocations let go, every write commits."""
    process = ServerProcess(
        database_url,
        server_log_dir / "server-small-pool.log",
        extra_env={
            "VENTRYX_POOL_SIZE": "5",
            "VENTRYX_CONNECTIONS_PER_CREDENTIAL": "2",
            "VENTRYX_LOCK_TIMEOUT_SECONDS": "20",
            "VENTRYX_POOL_TIMEOUT_SECONDS": "20",
        },
    )
    process.wait_ready()
    try:
        keys = [await make_key(org, ["events:write"], name=f"stuck {n}") for n in range(3)]
        writes: list[asyncio.Task[httpx.Response]] = []
        async with (
            httpx.AsyncClient(
                base_url=process.url, timeout=30, limits=httpx.Limits(max_connections=32)
            ) as http,
            db.acquire() as conn,
        ):
            holder = conn.transaction()
            await holder.start()
            try:
                for key_id, _ in keys:
                    for statement in revocation_locks(org.id, key_id):
                        await conn.execute(*statement)
                # Each key's share is 2; the third key finds one connection left.
                for (_, key), holding in zip(keys, (2, 4, 5), strict=True):
                    writes += [asyncio.create_task(_emit(http, key)) for _ in range(6)]
                    assert await wait_for(
                        lambda holding=holding: _at_least_waiting(db, holding),
                        timeout=QUEUE_TIMEOUT_SECONDS,
                    )
                    await asyncio.sleep(0.5)  # time for any more to arrive: none may
                    assert await statements_waiting_for_locks(db) == holding
            finally:
                await holder.rollback()
            answers = await asyncio.gather(*writes)
        assert [r.status_code for r in answers] == [201] * 18, [r.text for r in answers]
    finally:
        process.stop()


async def test_with_the_pool_taken_other_waits_for_a_connection_end_in_503_too(
    database_url, server_log_dir, org, make_key, db, ledger
):
    """VENTRYX_POOL_SIZE=1, its connection held by a write stuck behind a revocation: a
    credential's first request (which reads its rate limit) and a route that authorizes
    before hashing (adding a member) wait for a connection at most
    VENTRYX_POOL_TIMEOUT_SECONDS and get 503, while the write still waits. The twin: once
    the write has committed, both succeed."""
    process = ServerProcess(
        database_url,
        server_log_dir / "server-one-connection.log",
        extra_env={
            "VENTRYX_POOL_SIZE": "1",
            "VENTRYX_POOL_TIMEOUT_SECONDS": "0.5",
            "VENTRYX_LOCK_TIMEOUT_SECONDS": "30",
        },
    )
    process.wait_ready()
    try:
        stuck_id, stuck_key = await make_key(org, ["events:write"], name="stuck")
        _, newcomer_key = await make_key(org, ["events:read"], name="first request")
        member = {
            "email": f"pool-{secrets.token_hex(4)}@example.com",
            "name": "P",
            "role": "viewer",
        }
        admin = bearer(org.admin_key)

        def add_member() -> Awaitable[httpx.Response]:
            return http.post("/v1/members", headers=admin, json=member)

        def first_request() -> Awaitable[httpx.Response]:
            return http.get("/v1/events?limit=1", headers=bearer(newcomer_key))

        async with (
            httpx.AsyncClient(base_url=process.url, timeout=30) as http,
            db.acquire() as conn,
        ):
            # The admin key's limit is known to this process before the pool is taken.
            assert (await http.get("/v1/me", headers=admin)).status_code == 200
            holder = conn.transaction()
            await holder.start()
            try:
                for statement in revocation_locks(org.id, stuck_id):
                    await conn.execute(*statement)
                write = await queued_on_locks(db, _emit(http, stuck_key), "the stuck write")
                refused = [await add_member(), await first_request()]
                write_still_waiting = not write.done()
            finally:
                await holder.rollback()
            assert (await write).status_code == 201
            added, answered = await add_member(), await first_request()
        assert write_still_waiting
        for response in refused:
            error = response.json()["error"]
            assert (response.status_code, error["code"]) == (503, "service_unavailable")
            assert response.headers["Retry-After"] == "1"
        assert (added.status_code, answered.status_code) == (201, 200), added.text
        ledger.add(added.json()["data"]["one_time_password"])
    finally:
        process.stop()


async def test_a_retry_of_an_abandoned_emit_with_its_idempotency_key_makes_one_event(
    client, org, make_key, db
):
    """A client that gives up on a slow emit cannot know whether it will still commit (it
    may, within the lock and statement timeouts). Retrying with the same Idempotency-Key
    is what makes that safe: the retry replays the first attempt's event, or makes it."""
    key_id, key = await make_key(org, ["events:write"])
    headers = {**bearer(key), "Idempotency-Key": "abandoned-emit-1"}
    body = {"type": "order.created", "payload": {"n": 1}}
    async with db.acquire() as conn:
        holder = conn.transaction()
        await holder.start()
        for statement in revocation_locks(org.id, key_id):
            await conn.execute(*statement)
        async with httpx.AsyncClient(base_url=client.base_url, timeout=0.5) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                await impatient.post("/v1/events", headers=headers, json=body)
        # The abandoned attempt still waits for the key; the retry waits behind it.
        retry = await queued_on_locks(
            db,
            client.post("/v1/events", headers=headers, json=body),
            "the retry did not wait for the first attempt",
            waiting=2,
        )
        await holder.rollback()
    retried = await retry
    assert retried.status_code == 201, retried.text
    again = await client.post("/v1/events", headers=headers, json=body)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["data"]["id"] == retried.json()["data"]["id"]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM events WHERE org_id = $1 AND emitted_by = $2", org.id, key_id
        )
        == 1
    )


async def test_a_credentials_share_of_connections_queues_in_order_and_forgets_who_gave_up():
    shares = ConnectionsPerCredential(limit=1)
    await shares.take("key-a")
    assert shares.try_take("key-b")  # another credential is not held up
    gave_up = asyncio.create_task(asyncio.wait_for(shares.take("key-a"), 0.05))
    second = asyncio.create_task(shares.take("key-a"))
    with pytest.raises(TimeoutError):
        await gave_up
    assert not second.done() and not shares.try_take("key-a")
    shares.give_back("key-a")  # passes to the one still waiting, not to a newcomer
    await asyncio.wait_for(second, 1)
    shares.give_back("key-a")
    shares.give_back("key-b")
    assert shares.try_take("key-a")  # nothing left over from the queue
