"""Quotas per organization: active API keys and workflows, refused at the quota (403
quota_exceeded), race-safe, with nothing written by a refused creation."""

import asyncio
import secrets

import asyncpg
import pytest
from helpers import queued_on_locks

from conftest import bearer
from ventryx_shared.ids import new_id


async def _set_quotas(
    db, org_id: str, *, keys: int | None = None, workflows: int | None = None
) -> None:
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE organizations SET max_active_api_keys = coalesce($2, max_active_api_keys), "
            "max_workflows = coalesce($3, max_workflows) WHERE org_id = $1",
            org_id,
            keys,
            workflows,
        )


async def _counts(db, org_id: str) -> tuple[int, int, int]:
    async with db.acquire() as conn:
        return (
            await conn.fetchval("SELECT count(*) FROM api_keys WHERE org_id = $1", org_id),
            await conn.fetchval("SELECT count(*) FROM workflows WHERE org_id = $1", org_id),
            await conn.fetchval("SELECT count(*) FROM audit_log WHERE org_id = $1", org_id),
        )


async def _active_keys(db, org_id: str) -> int:
    """The organization's keys that count against its quota (none here expires)."""
    async with db.acquire() as conn:
        return await conn.fetchval(
            "SELECT count(*) FROM api_keys WHERE org_id = $1 AND revoked_at IS NULL "
            "AND (expires_at IS NULL OR expires_at > now())",
            org_id,
        )


async def _create_key(client, org, name: str = "quota key", **extra):
    return await client.post(
        "/v1/api-keys",
        headers=bearer(org.admin_key),
        json={"name": name, "scopes": ["workflows:read"], **extra},
    )


def _assert_quota_refusal(response, quota: str, limit: int) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "permission_error",
        "quota_exceeded",
        quota,
    )
    assert quota in error["message"] and str(limit) in error["message"]


async def test_the_organization_shows_its_quotas(client, org):
    response = await client.get("/v1/org", headers=bearer(org.admin_key))
    assert response.json()["data"]["quotas"] == {"active_api_keys": 500, "workflows": 1000}


async def test_keys_over_the_quota_are_refused_and_nothing_is_written(client, db, ledger, org):
    await _set_quotas(db, org.id, keys=3)  # the bootstrap key is one of them
    for n in range(2):
        created = await _create_key(client, org, f"key {n}")
        assert created.status_code == 201
        ledger.add(created.json()["data"]["key"])
    before = await _counts(db, org.id)
    refused = await _create_key(client, org, "one too many")
    _assert_quota_refusal(refused, "active_api_keys", 3)
    assert await _counts(db, org.id) == before
    # Revoked and expired keys do not count: revoking one makes room.
    await client.delete(
        f"/v1/api-keys/{created.json()['data']['id']}", headers=bearer(org.admin_key)
    )
    again = await _create_key(client, org, "after a revocation")
    assert again.status_code == 201
    ledger.add(again.json()["data"]["key"])


async def test_rotation_counts_the_successor_unless_the_old_key_stops_at_once(
    client, db, ledger, org
):
    await _set_quotas(db, org.id, keys=2)
    created = await _create_key(client, org, "rotated")
    key_id = created.json()["data"]["id"]
    ledger.add(created.json()["data"]["key"])
    with_grace = await client.post(
        f"/v1/api-keys/{key_id}/rotate",
        headers=bearer(org.admin_key),
        json={"grace_period_seconds": 3600},
    )
    _assert_quota_refusal(with_grace, "active_api_keys", 2)
    immediate = await client.post(
        f"/v1/api-keys/{key_id}/rotate",
        headers=bearer(org.admin_key),
        json={"grace_period_seconds": 0},
    )
    assert immediate.status_code == 201, immediate.text
    ledger.add(immediate.json()["data"]["key"])


async def test_concurrent_key_creations_cannot_exceed_the_quota(client, db, ledger, org):
    await _set_quotas(db, org.id, keys=4)
    responses = await asyncio.gather(*[_create_key(client, org, f"racer {n}") for n in range(12)])
    for response in responses:
        if response.status_code == 201:
            ledger.add(response.json()["data"]["key"])
    assert sorted(r.status_code for r in responses) == [201] * 3 + [403] * 9
    assert await _active_keys(db, org.id) == 4


# add_api_key's quota slots (0024_parallel_key_creation): creations far from the quota
# run side by side, at most this many at once.
QUOTA_SLOTS = 8


async def _add_key(conn, org_id: str) -> str:
    """add_api_key as the server calls it (an org:admin caller, no audit entry); its
    outcome. Inside the caller's transaction its quota slot is held until commit."""
    return await conn.fetchval(
        "SELECT outcome FROM add_api_key($1, 'quota test', 'live', ARRAY['org:admin'], $2, "
        "$3, $4, 'abcd', 'slot test', 'live', ARRAY['workflows:read'], NULL, NULL, NULL, "
        "NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        org_id,
        new_id("key"),
        secrets.token_hex(6),
        secrets.token_bytes(32),
    )


async def _creations_in_flight(database_url: str, org_id: str, count: int, holders: list) -> None:
    """Adds to ``holders`` ``count`` connections of their own, each holding one key
    creation uncommitted (the caller ends them, also when one of these fails)."""
    for _ in range(count):
        holder = await asyncpg.connect(database_url)
        holders.append(holder)
        await holder.execute("BEGIN")
        assert await _add_key(holder, org_id) == "created"


async def _end(holders: list) -> None:
    for holder in holders:
        try:
            await holder.execute("COMMIT")
        finally:
            await holder.close()


async def _created_once_they_commit(db, org_id: str, holders: list, what: str) -> None:
    """A creation that must wait for the ones ``holders`` hold open: it queues, and is
    created once they commit (``holders`` is left empty)."""
    async with db.acquire() as conn, conn.transaction():
        waiting = await queued_on_locks(db, _add_key(conn, org_id), f"{what} did not wait")
        await _end(holders)
        holders.clear()
        assert await asyncio.wait_for(waiting, timeout=10) == "created"


async def test_creations_far_from_the_quota_run_side_by_side_up_to_the_slots(database_url, db, org):
    """Far from the quota, a creation does not wait for the ones in flight, up to
    QUOTA_SLOTS of them; one more waits for a slot and goes on once they commit."""
    await _set_quotas(db, org.id, keys=100)
    holders: list = []
    try:
        # Each of these would wait for the others if creations took turns.
        await asyncio.wait_for(
            _creations_in_flight(database_url, org.id, QUOTA_SLOTS, holders), timeout=10
        )
        # It waits for one slot (picked at random), not for all of them.
        await _created_once_they_commit(db, org.id, holders, "a creation past the slots")
    finally:
        await _end(holders)
    assert await _active_keys(db, org.id) == 1 + QUOTA_SLOTS + 1


async def test_near_the_quota_a_creation_waits_for_every_one_in_flight(database_url, db, org):
    """The twin: within QUOTA_SLOTS of the quota, a creation waits until no other is in
    flight, then counts exactly, and creations stop at the quota."""
    await _set_quotas(db, org.id, keys=100)
    holders: list = []
    try:
        await _creations_in_flight(database_url, org.id, 1, holders)  # far from it: a slot
        await _set_quotas(db, org.id, keys=5)
        await _created_once_they_commit(db, org.id, holders, "a creation near the quota")
    finally:
        await _end(holders)
    # The bootstrap key and these two: two more fit, then the quota refuses.
    outcomes = [await _add_key_alone(db, org.id) for _ in range(3)]
    assert outcomes == ["created", "created", "quota_exceeded"]


async def test_the_slots_bound_never_falls_below_the_keys_that_count(client, db, ledger, org):
    """The fast path trusts the slots' sum as an upper bound on the active keys; through
    creations on both paths, revocations and a rotation in its grace period it stays one,
    and after an exact count it is exact again."""

    async def bound_and_active() -> tuple[int, int]:
        async with db.acquire() as conn:
            bound = await conn.fetchval(
                "SELECT sum(keys_added) FROM api_key_quota_slots WHERE org_id = $1", org.id
            )
        return bound, await _active_keys(db, org.id)

    await _set_quotas(db, org.id, keys=100)
    created = []
    for n in range(4):  # far from the quota: the fast path
        response = await _create_key(client, org, f"bound {n}")
        assert response.status_code == 201
        ledger.add(response.json()["data"]["key"])
        created.append(response.json()["data"])
    for key in created[:3]:
        revoked = await client.delete(f"/v1/api-keys/{key['id']}", headers=bearer(org.admin_key))
        assert revoked.status_code == 200
    bound, active = await bound_and_active()
    assert (bound, active) == (5, 2)  # loose after the revocations
    rotated = await client.post(
        f"/v1/api-keys/{created[3]['id']}/rotate",
        headers=bearer(org.admin_key),
        json={"grace_period_seconds": 3600},
    )
    assert rotated.status_code in (200, 201), rotated.text
    ledger.add(rotated.json()["data"]["key"])
    bound, active = await bound_and_active()
    assert active == 3 and bound >= active  # the old key still counts in its grace
    await _set_quotas(db, org.id, keys=bound + QUOTA_SLOTS - 1)  # now near: an exact count
    response = await _create_key(client, org, "after an exact count")
    assert response.status_code == 201
    ledger.add(response.json()["data"]["key"])
    assert await bound_and_active() == (4, 4)


async def _add_key_alone(db, org_id: str) -> str:
    async with db.acquire() as conn, conn.transaction():
        return await _add_key(conn, org_id)


async def test_racing_creations_across_the_slot_margin_stop_at_the_quota(client, db, ledger, org):
    """Creations that start far from the quota (side by side) and end near it (one at a
    time) together stop exactly at the quota."""
    await _set_quotas(db, org.id, keys=QUOTA_SLOTS + 4)
    responses = await asyncio.gather(*[_create_key(client, org, f"racer {n}") for n in range(30)])
    for response in responses:
        if response.status_code == 201:
            ledger.add(response.json()["data"]["key"])
    assert sorted(r.status_code for r in responses) == [201] * (QUOTA_SLOTS + 3) + [403] * (
        30 - QUOTA_SLOTS - 3
    )
    for refused in (r for r in responses if r.status_code == 403):
        _assert_quota_refusal(refused, "active_api_keys", QUOTA_SLOTS + 4)
    assert await _active_keys(db, org.id) == QUOTA_SLOTS + 4


def _workflow(name: str) -> dict:
    return {"name": name, "trigger": "order.created", "steps": []}


async def test_concurrent_workflow_creations_cannot_exceed_the_quota(client, db, org, make_key):
    await _set_quotas(db, org.id, workflows=3)
    _, test_key = await make_key(org, ["workflows:write"], environment="test")
    first = await client.post(
        "/v1/workflows", headers=bearer(test_key), json=_workflow("a test one")
    )
    assert first.status_code == 201
    # Both environments count against the one quota.
    responses = await asyncio.gather(
        *[
            client.post(
                "/v1/workflows",
                headers=bearer(org.admin_key),
                json=_workflow(f"flow {secrets.token_hex(3)}"),
            )
            for _ in range(8)
        ]
    )
    assert sorted(r.status_code for r in responses) == [201] * 2 + [403] * 6
    refused = next(r for r in responses if r.status_code == 403)
    _assert_quota_refusal(refused, "workflows", 3)
    assert (await _counts(db, org.id))[1] == 3
    # Deleting one makes room.
    made = next(r for r in responses if r.status_code == 201).json()["data"]
    deleted = await client.delete(f"/v1/workflows/{made['id']}", headers=bearer(org.admin_key))
    assert deleted.status_code == 200, deleted.text
    assert (
        await client.post(
            "/v1/workflows", headers=bearer(org.admin_key), json=_workflow("room again")
        )
    ).status_code == 201


@pytest.mark.parametrize("field", ["quotas", "max_active_api_keys"])
async def test_an_organization_cannot_raise_its_own_quota(client, db, org, field):
    before = await _counts(db, org.id)
    response = await client.patch(
        "/v1/org", headers=bearer(org.admin_key), json={field: {"active_api_keys": 10**6}}
    )
    assert response.status_code in (400, 422)
    assert response.json()["error"]["param"] == field
    assert await _counts(db, org.id) == before


async def test_a_refusal_at_the_quota_leaves_the_idempotency_key_unclaimed(client, db, ledger, org):
    # add_api_key claims the Idempotency-Key before it counts: the refusal must take the
    # claim back, or the retry would replay nothing (or a 409) instead of creating.
    await _set_quotas(db, org.id, keys=2)
    first = await _create_key(client, org, "fills the quota")
    assert first.status_code == 201
    ledger.add(first.json()["data"]["key"])
    headers = {**bearer(org.admin_key), "Idempotency-Key": f"quota-{secrets.token_hex(4)}"}
    body = {"name": "retried", "scopes": ["workflows:read"]}
    refused = await client.post("/v1/api-keys", headers=headers, json=body)
    _assert_quota_refusal(refused, "active_api_keys", 2)
    async with db.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM idempotency_keys WHERE org_id = $1 AND idempotency_key = $2",
                org.id,
                headers["Idempotency-Key"],
            )
            == 0
        )
    await client.delete(f"/v1/api-keys/{first.json()['data']['id']}", headers=bearer(org.admin_key))
    retried = await client.post("/v1/api-keys", headers=headers, json=body)
    assert retried.status_code == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    ledger.add(retried.json()["data"]["key"])
    replayed = await client.post("/v1/api-keys", headers=headers, json=body)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json()["data"]["id"] == retried.json()["data"]["id"]
    assert replayed.json()["data"]["key"] is None
