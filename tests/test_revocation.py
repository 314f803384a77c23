""" "Revocation is instantaneous. Any in-flight requests using the revoked key will return
401 Unauthorized." — on every server process, and for writes still in flight."""

import httpx
from helpers import member_session, open_transaction, queued_on_locks, revocation_locks

from conftest import TEST_PEPPER, bearer
from ventryx_server.auth import hash_secret


async def _hold_write(
    conn,
    function: str,
    token: str,
    prefix_length: int,
    scope: str,
    expected_id: str,
    column: str = "credential_id",
) -> None:
    """A write in flight: its transaction has run the locked caller and not committed."""
    caller = await conn.fetchrow(
        f"SELECT * FROM {function}($1, $2, 'live', $3)",
        token[prefix_length:][:12],
        hash_secret(TEST_PEPPER, token),
        scope,
    )
    assert caller[column] == expected_id


async def test_next_request_after_delete_gets_401(client, org, make_key):
    key_id, key = await make_key(org, ["api-keys:read"])
    assert (await client.get("/v1/api-keys", headers=bearer(key))).status_code == 200
    revoked = await client.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
    assert revoked.status_code == 200
    response = await client.get("/v1/api-keys", headers=bearer(key))
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


async def test_revocation_through_one_process_is_seen_by_another(
    client, second_server, org, make_key
):
    key_id, key = await make_key(org, ["api-keys:read", "api-keys:write"])
    async with httpx.AsyncClient(base_url=second_server.url) as other:
        assert (await other.get("/v1/api-keys", headers=bearer(key))).status_code == 200
        await client.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
        for method, path in (("GET", "/v1/api-keys"), ("GET", "/v1/me"), ("POST", "/v1/api-keys")):
            response = await other.request(
                method,
                path,
                headers=bearer(key),
                json={"name": "x", "scopes": ["api-keys:read"]} if method == "POST" else None,
            )
            assert response.status_code == 401, (method, path, response.text)


async def test_write_in_flight_when_revocation_commits_gets_401_and_writes_nothing(
    client, org, make_key, db
):
    """Hold a revocation open exactly as DELETE does it (the key's write lock and row,
    revoked_at set), start a write with the key, then commit the revocation."""
    key_id, key = await make_key(org, ["api-keys:write"])
    before = await db.fetchval("SELECT count(*) FROM api_keys WHERE org_id = $1", org.id)
    async with open_transaction(
        db,
        *revocation_locks(org.id, key_id),
        ("UPDATE api_keys SET revoked_at = now() WHERE org_id = $1 AND id = $2", org.id, key_id),
    ):
        write = await queued_on_locks(
            db,
            client.post(
                "/v1/api-keys",
                headers=bearer(key),
                json={"name": "in flight", "scopes": ["api-keys:write"]},
            ),
            "the write did not wait for the revocation's lock",
        )
    response = await write
    assert response.status_code == 401, response.text
    assert await db.fetchval("SELECT count(*) FROM api_keys WHERE org_id = $1", org.id) == before


async def test_revocation_waits_for_a_write_already_holding_the_key(client, org, make_key, db):
    """A write that locked its key before the revocation commits first; the revocation
    returns only after it, so nothing the key wrote commits after its revocation."""
    key_id, key = await make_key(org, ["api-keys:write"])
    async with open_transaction(db) as write:
        await _hold_write(write, "locked_api_key_caller", key, 9, "api-keys:write", key_id)
        revoke = await queued_on_locks(
            db,
            client.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key)),
            "the revocation did not wait for the write in flight",
        )
    assert (await revoke).status_code == 200
    assert (await client.get("/v1/me", headers=bearer(key))).status_code == 401


async def test_the_kind_dispatching_caller_functions_agree_with_the_per_kind_ones(
    client, org, make_key, db
):
    """authorized_caller(kind, ...) stays for callers that bind the kind; it must answer
    exactly as api_key_caller does for a key, nothing for the wrong kind, and nothing
    once the key is revoked."""
    key_id, key = await make_key(org, ["events:read"])
    args = (key[9:21], hash_secret(TEST_PEPPER, key), "live")
    for function in ("authorized_caller", "locked_authorized_caller"):
        async with db.acquire() as conn, conn.transaction():
            per_kind = await conn.fetch(
                f"SELECT * FROM {function.replace('authorized', 'api_key')}($1, $2, $3, $4)",
                *args,
                "events:read",
            )
            by_kind = await conn.fetch(
                f"SELECT * FROM {function}('api_key', $1, $2, $3, $4)", *args, "events:read"
            )
            as_session = await conn.fetch(
                f"SELECT * FROM {function}('session', $1, $2, $3, $4)", *args, "events:read"
            )
            wrong_scope = await conn.fetch(
                f"SELECT * FROM {function}('api_key', $1, $2, $3, $4)", *args, "events:write"
            )
        assert [dict(r) for r in by_kind] == [dict(r) for r in per_kind]
        assert by_kind[0]["credential_id"] == key_id
        assert as_session == [] and wrong_scope == []
    assert (
        await client.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
    ).status_code == 200
    assert (
        await db.fetch("SELECT * FROM authorized_caller('api_key', $1, $2, $3, NULL)", *args) == []
    )


async def test_a_new_write_cannot_overtake_a_waiting_revocation(client, org, make_key, db):
    """PostgreSQL lets a new FOR KEY SHARE overtake a waiting FOR UPDATE, which starved
    revocations under steady writes. A write that arrives while a revocation waits for
    the writes in flight now queues behind it, and is refused once it commits."""
    key_id, key = await make_key(org, ["events:write"])
    async with open_transaction(db) as in_flight:
        await _hold_write(in_flight, "locked_api_key_caller", key, 9, "events:write", key_id)
        revoke = await queued_on_locks(
            db,
            client.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key)),
            "the revocation did not wait for the write in flight",
        )
        newcomer = await queued_on_locks(
            db,
            client.post(
                "/v1/events", headers=bearer(key), json={"type": "late.write", "payload": {}}
            ),
            "the new write did not queue behind the revocation",
            waiting=2,
        )
        assert not revoke.done()
    assert (await revoke).status_code == 200
    late = await newcomer
    assert late.status_code == 401, late.text
    assert (
        await db.fetchval(
            "SELECT count(*) FROM events WHERE org_id = $1 AND emitted_by = $2", org.id, key_id
        )
        == 0
    )


async def test_a_new_write_of_another_key_does_not_wait_for_a_revocation(client, org, make_key, db):
    """The negative twin: only the revoked key's writes queue; another key's go through."""
    key_id, key = await make_key(org, ["events:write"])
    other_id, other = await make_key(org, ["events:write"])
    async with open_transaction(db) as in_flight:
        await _hold_write(in_flight, "locked_api_key_caller", key, 9, "events:write", key_id)
        revoke = await queued_on_locks(
            db,
            client.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key)),
            "the revocation did not wait for the write in flight",
        )
        passing = await client.post(
            "/v1/events", headers=bearer(other), json={"type": "other.write", "payload": {}}
        )
        assert passing.status_code == 201
        assert not revoke.done()
    assert (await revoke).status_code == 200


async def test_writes_in_flight_with_a_key_hold_its_write_lock_but_not_its_row(org, make_key, db):
    """Writes order themselves against a revocation with the key's shared advisory lock
    alone (0023_key_writes_without_row_lock): a row lock per write made every concurrent
    write with one key write a MultiXact into the key's row. With two writes in flight the
    row can be locked at once, while the key's exclusive write lock, which every
    revocation takes first, cannot (the twin that keeps revocation ordered)."""
    key_id, key = await make_key(org, ["events:write"])
    async with open_transaction(db) as first, open_transaction(db) as second:
        for in_flight in (first, second):
            await _hold_write(in_flight, "locked_api_key_caller", key, 9, "events:write", key_id)
        async with open_transaction(db) as checker:
            locked = await checker.fetchval(
                "SELECT id FROM api_keys WHERE org_id = $1 AND id = $2 FOR UPDATE NOWAIT",
                org.id,
                key_id,
            )
            assert locked == key_id
            assert not await checker.fetchval(
                "SELECT pg_try_advisory_xact_lock(credential_write_lock_class(), "
                "hashtext(lookup_id)) FROM api_keys WHERE org_id = $1 AND id = $2",
                org.id,
                key_id,
            )


async def test_a_new_write_cannot_overtake_a_waiting_member_removal(client, org, ledger, db):

    member, token, _ = await member_session(client, ledger, org, "developer")
    async with open_transaction(db) as in_flight:
        await _hold_write(
            in_flight,
            "locked_session_caller",
            token,
            5,
            "events:write",
            member["id"],
            column="member_id",
        )
        removal = await queued_on_locks(
            db,
            client.delete(f"/v1/members/{member['id']}", headers=bearer(org.admin_key)),
            "the removal did not wait for the write in flight",
        )
        newcomer = await queued_on_locks(
            db,
            client.post(
                "/v1/events", headers=bearer(token), json={"type": "late.write", "payload": {}}
            ),
            "the new write did not queue behind the removal",
            waiting=2,
        )
        assert not removal.done()
    assert (await removal).status_code == 200
    assert (await newcomer).status_code == 401
    assert (
        await db.fetchval(
            "SELECT count(*) FROM events WHERE org_id = $1 AND emitted_by = $2",
            org.id,
            member["id"],
        )
        == 0
    )
