"""Dashboard sessions: expiry, logout, environments, and access that ends mid-write."""

import httpx
import pytest
from helpers import (
    member_session,
    open_transaction,
    owner_session,
    queued_on_locks,
    session_headers,
)

from conftest import TEST_PEPPER, bearer, wait_for
from ventryx_server.auth import hash_secret

pytestmark = pytest.mark.usefixtures("forget_local_login_failures")


async def test_an_idle_session_expires(client, db, ledger, org):
    token = await owner_session(client, ledger, org)
    assert (await client.get("/v1/org", headers=bearer(token))).status_code == 200
    # No wait for the activity flush of that request: a flush never revives a session
    # whose idle expiry has passed (record-session-activity), whenever it comes.
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE sessions SET idle_expires_at = now() - interval '1 second' WHERE org_id = $1",
            org.id,
        )
    response = await client.get("/v1/org", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_session"


async def test_a_session_past_its_absolute_lifetime_expires(client, db, ledger, org):
    token = await owner_session(client, ledger, org)
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE sessions SET absolute_expires_at = now() - interval '1 second' "
            "WHERE org_id = $1",
            org.id,
        )
    assert (await client.get("/v1/me", headers=bearer(token))).status_code == 401


async def test_using_a_session_pushes_its_idle_expiry_forward(client, db, ledger, org):
    from ventryx_server.controllers.sessions import SESSION_IDLE_SECONDS

    token = await owner_session(client, ledger, org)
    session_id = (await client.get("/v1/me", headers=bearer(token))).json()["data"]["credential_id"]
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE sessions SET idle_expires_at = now() + interval '1 minute' "
            "WHERE org_id = $1 AND id = $2",
            org.id,
            session_id,
        )

    async def pushed() -> bool:
        assert (await client.get("/v1/me", headers=bearer(token))).status_code == 200
        async with db.acquire() as conn:
            left = await conn.fetchval(
                "SELECT extract(epoch FROM idle_expires_at - now()) FROM sessions "
                "WHERE org_id = $1 AND id = $2",
                org.id,
                session_id,
            )
        return left > SESSION_IDLE_SECONDS - 60

    assert await wait_for(pushed)


async def test_logout_ends_the_session_at_once(client, db, ledger, org):
    token = await owner_session(client, ledger, org)
    response = await client.delete("/v1/sessions/current", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["ended_at"] is not None
    after = await client.get("/v1/me", headers=bearer(token))
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "invalid_session"
    assert (await client.delete("/v1/sessions/current", headers=bearer(token))).status_code == 401
    async with db.acquire() as conn:
        ended = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = 'session.ended'", org.id
        )
    assert ended == 1


async def test_an_api_key_cannot_log_out(client, db, org):
    response = await client.delete("/v1/sessions/current", headers=bearer(org.admin_key))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "session_required"
    assert (await client.get("/v1/me", headers=bearer(org.admin_key))).status_code == 200


async def test_a_malformed_or_made_up_session_token_gets_401(client, org):
    made_up = "vtxs_" + "A" * 50
    for token in [made_up, "vtxs_short"]:
        response = await client.get("/v1/me", headers=bearer(token))
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_session"


async def test_a_session_chooses_its_environment_per_request(client, ledger, org):
    token = await owner_session(client, ledger, org)
    default = await client.get("/v1/me", headers=bearer(token))
    assert default.json()["data"]["environment"] == "live"
    test = await client.get("/v1/me", headers=session_headers(token, "test"))
    assert test.json()["data"]["environment"] == "test"
    bad = await client.get("/v1/me", headers=session_headers(token, "staging"))
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "Ventryx-Environment"


async def test_a_live_session_creates_keys_of_either_environment(client, ledger, org):
    token = await owner_session(client, ledger, org)
    for environment in ("live", "test"):
        response = await client.post(
            "/v1/api-keys",
            headers=bearer(token),
            json={
                "name": f"from the dashboard ({environment})",
                "scopes": ["events:write"],
                "environment": environment,
            },
        )
        assert response.status_code == 201, response.text
        data = response.json()["data"]
        ledger.add(data["key"])
        assert data["environment"] == environment
        assert data["created_by"] == org.owner_id
        works = await client.get("/v1/me", headers=bearer(data["key"]))
        assert works.json()["data"]["environment"] == environment


async def test_a_test_environment_session_cannot_create_live_keys(client, ledger, org):
    token = await owner_session(client, ledger, org)
    response = await client.post(
        "/v1/api-keys",
        headers=session_headers(token, "test"),
        json={"name": "escalation", "scopes": ["events:write"], "environment": "live"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "environment_escalation"
    test_key = await client.post(
        "/v1/api-keys",
        headers=session_headers(token, "test"),
        json={"name": "sandbox", "scopes": ["events:write"]},
    )
    assert test_key.status_code == 201
    assert ledger.add(test_key.json()["data"]["key"]).startswith("vtx_test_")
    # A test session sees only test keys: the bootstrap (live) key is 404 to it.
    hidden = await client.get(
        f"/v1/api-keys/{org.admin_key_id}", headers=session_headers(token, "test")
    )
    assert hidden.status_code == 404


async def test_a_session_creates_keys_only_within_its_roles_scopes(client, ledger, org):
    developer, token, _ = await member_session(client, ledger, org, "developer")
    allowed = await client.post(
        "/v1/api-keys",
        headers=bearer(token),
        json={"name": "ci", "scopes": ["workflows:read", "events:write"]},
    )
    assert allowed.status_code == 201, allowed.text
    ledger.add(allowed.json()["data"]["key"])
    assert allowed.json()["data"]["created_by"] == developer["id"]
    escalation = await client.post(
        "/v1/api-keys", headers=bearer(token), json={"name": "admin", "scopes": ["org:admin"]}
    )
    assert escalation.status_code == 403
    assert escalation.json()["error"]["code"] == "scope_escalation"
    _, viewer_token, _ = await member_session(client, ledger, org, "viewer")
    refused = await client.post(
        "/v1/api-keys",
        headers=bearer(viewer_token),
        json={"name": "ci", "scopes": ["workflows:read"]},
    )
    assert refused.status_code == 403
    assert "api-keys:write" in refused.json()["error"]["message"]


async def test_a_removed_members_session_ends_but_keys_they_made_keep_working(client, ledger, org):
    developer, token, _ = await member_session(client, ledger, org, "developer")
    created = await client.post(
        "/v1/api-keys",
        headers=bearer(token),
        json={"name": "made by the developer", "scopes": ["events:write"]},
    )
    key = ledger.add(created.json()["data"]["key"])
    removed = await client.delete(f"/v1/members/{developer['id']}", headers=bearer(org.admin_key))
    assert removed.status_code == 200, removed.text
    data = removed.json()["data"]
    assert data["sessions_ended"] == 1
    assert data["api_keys_still_active"] == [created.json()["data"]["id"]]
    assert "keep working" in data["note"]
    assert (await client.get("/v1/me", headers=bearer(token))).status_code == 401
    assert (await client.get("/v1/me", headers=bearer(key))).status_code == 200


async def test_logout_through_one_process_is_seen_by_another(client, second_server, ledger, org):
    token = await owner_session(client, ledger, org)
    async with httpx.AsyncClient(base_url=second_server.url) as other:
        assert (await other.get("/v1/members", headers=bearer(token))).status_code == 200
        assert (
            await client.delete("/v1/sessions/current", headers=bearer(token))
        ).status_code == 200
        assert (await other.get("/v1/members", headers=bearer(token))).status_code == 401


async def test_a_write_in_flight_when_a_session_ends_gets_401_and_writes_nothing(
    client, db, ledger, org
):
    """Hold a logout open exactly as DELETE /v1/sessions/current does it (the session row
    locked FOR UPDATE, ended_at set), start a write with the session, then commit."""
    token = await owner_session(client, ledger, org)
    session_id = (await client.get("/v1/me", headers=bearer(token))).json()["data"]["credential_id"]
    before = await db.fetchval("SELECT count(*) FROM api_keys WHERE org_id = $1", org.id)
    async with open_transaction(
        db,
        ("SELECT 1 FROM sessions WHERE org_id = $1 AND id = $2 FOR UPDATE", org.id, session_id),
        ("UPDATE sessions SET ended_at = now() WHERE org_id = $1 AND id = $2", org.id, session_id),
    ):
        write = await queued_on_locks(
            db,
            client.post(
                "/v1/api-keys",
                headers=bearer(token),
                json={"name": "in flight", "scopes": ["events:read"]},
            ),
            "the write did not wait for the logout's lock",
        )
    response = await write
    assert response.status_code == 401, response.text
    assert await db.fetchval("SELECT count(*) FROM api_keys WHERE org_id = $1", org.id) == before


async def _hold_a_write_of(conn, member: dict, token: str) -> None:
    """What a write with the member's session does first: lock its caller."""
    locked = await conn.fetchrow(
        "SELECT * FROM locked_session_caller($1, $2, 'live', 'events:write')",
        token[len("vtxs_") :][:12],
        hash_secret(TEST_PEPPER, token),
    )
    assert locked["member_id"] == member["id"]


async def test_removing_a_member_waits_for_a_write_already_holding_their_session(
    client, db, ledger, org
):
    member, token, _ = await member_session(client, ledger, org, "developer")
    async with open_transaction(db) as write:
        await _hold_a_write_of(write, member, token)
        removal = await queued_on_locks(
            db,
            client.delete(f"/v1/members/{member['id']}", headers=bearer(org.admin_key)),
            "the removal did not wait for the write in flight",
        )
    assert (await removal).status_code == 200
    assert (await client.get("/v1/me", headers=bearer(token))).status_code == 401


async def test_a_role_change_waits_for_a_write_already_holding_the_members_session(
    client, db, ledger, org
):
    member, token, _ = await member_session(client, ledger, org, "developer")
    async with open_transaction(db) as write:
        await _hold_a_write_of(write, member, token)
        demotion = await queued_on_locks(
            db,
            client.patch(
                f"/v1/members/{member['id']}",
                headers=bearer(org.admin_key),
                json={"role": "viewer"},
            ),
            "the role change did not wait for the write in flight",
        )
    assert (await demotion).status_code == 200
    refused = await client.post(
        "/v1/api-keys",
        headers=bearer(token),
        json={"name": "after demotion", "scopes": ["events:read"]},
    )
    assert refused.status_code == 403
