"""The audit log: one entry per change, in the change's transaction; append-only; filters."""

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from helpers import (
    add_member,
    login,
    member_session,
    owner_session,
)

from conftest import bearer, wait_for

# Every test here starts with 127.0.0.1's login failures cleared.
pytestmark = pytest.mark.usefixtures("forget_local_login_failures")


async def _entry_ids(db, org_id: str) -> set[str]:
    async with db.acquire() as conn:
        return {
            r["id"] for r in await conn.fetch("SELECT id FROM audit_log WHERE org_id = $1", org_id)
        }


async def _entries(db, org_id: str, ids: set[str]) -> list[dict]:
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT * FROM audit_log WHERE org_id = $1 AND id = ANY($2)", org_id, list(ids)
        )
    return [dict(r) for r in rows]


async def _one_entry(db, org, change):
    """Runs ``change`` and returns (its response, the one audit entry it wrote)."""
    before = await _entry_ids(db, org.id)
    response = await change()
    assert response.status_code < 300, response.text
    added = await _entries(db, org.id, await _entry_ids(db, org.id) - before)
    assert len(added) == 1, added
    entry = added[0]
    assert entry["request_id"] == response.headers["request-id"]
    assert entry["client_address"] == "127.0.0.1"
    return response, entry


async def test_every_mutating_endpoint_writes_exactly_one_entry(client, db, ledger, org):
    admin = bearer(org.admin_key)
    actor = org.admin_key_id

    response, entry = await _one_entry(
        db,
        org,
        lambda: client.post(
            "/v1/api-keys", headers=admin, json={"name": "audited", "scopes": ["events:read"]}
        ),
    )
    key = response.json()["data"]
    ledger.add(key["key"])
    assert (
        entry["actor_id"],
        entry["action"],
        entry["target_type"],
        entry["target_id"],
        entry["environment"],
    ) == (actor, "api_key.created", "api_key", key["id"], "live")

    _, entry = await _one_entry(
        db,
        org,
        lambda: client.patch(f"/v1/api-keys/{key['id']}", headers=admin, json={"name": "renamed"}),
    )
    assert (entry["actor_id"], entry["action"], entry["target_id"]) == (
        actor,
        "api_key.updated",
        key["id"],
    )

    response, entry = await _one_entry(
        db,
        org,
        lambda: client.post(
            f"/v1/api-keys/{key['id']}/rotate", headers=admin, json={"grace_period_seconds": 0}
        ),
    )
    successor = response.json()["data"]
    ledger.add(successor["key"])
    assert (entry["actor_id"], entry["action"], entry["target_id"]) == (
        actor,
        "api_key.rotated",
        key["id"],
    )

    _, entry = await _one_entry(
        db, org, lambda: client.delete(f"/v1/api-keys/{successor['id']}", headers=admin)
    )
    assert (entry["actor_id"], entry["action"], entry["target_id"]) == (
        actor,
        "api_key.revoked",
        successor["id"],
    )

    leaked = await client.post(
        "/v1/api-keys", headers=admin, json={"name": "leaks", "scopes": ["events:read"]}
    )
    leaked_key = ledger.add(leaked.json()["data"]["key"])
    _, entry = await _one_entry(
        db, org, lambda: client.post("/v1/api-keys/revoke-leaked", json={"key": leaked_key})
    )
    assert (entry["actor_id"], entry["action"], entry["target_id"]) == (
        "leak_report",
        "api_key.revoked_as_leaked",
        leaked.json()["data"]["id"],
    )

    _, entry = await _one_entry(
        db, org, lambda: client.patch("/v1/org", headers=admin, json={"name": "Audited Org"})
    )
    assert (entry["actor_id"], entry["action"], entry["target_type"], entry["target_id"]) == (
        actor,
        "organization.updated",
        "organization",
        org.id,
    )

    email = f"audited-{secrets.token_hex(4)}@example.com"
    response, entry = await _one_entry(
        db,
        org,
        lambda: client.post(
            "/v1/members", headers=admin, json={"email": email, "name": "A", "role": "viewer"}
        ),
    )
    member = response.json()["data"]
    one_time = ledger.add(member["one_time_password"])
    assert (entry["actor_id"], entry["action"], entry["target_type"], entry["target_id"]) == (
        actor,
        "member.created",
        "member",
        member["id"],
    )
    assert one_time not in str(entry["details"])

    _, entry = await _one_entry(
        db,
        org,
        lambda: client.patch(
            f"/v1/members/{member['id']}", headers=admin, json={"role": "developer"}
        ),
    )
    assert (entry["actor_id"], entry["action"], entry["target_id"]) == (
        actor,
        "member.updated",
        member["id"],
    )
    assert '"from": "viewer"' in entry["details"] and '"to": "developer"' in entry["details"]

    response, entry = await _one_entry(db, org, lambda: login(client, email, one_time))
    token = ledger.add(response.json()["data"]["token"])
    session_id = response.json()["data"]["session"]["id"]
    assert (entry["actor_id"], entry["action"], entry["target_type"], entry["target_id"]) == (
        member["id"],
        "session.created",
        "session",
        session_id,
    )

    new_password = ledger.add(secrets.token_urlsafe(24))
    _, entry = await _one_entry(
        db,
        org,
        lambda: client.post(
            "/v1/members/me/password",
            headers=bearer(token),
            json={"current_password": one_time, "new_password": new_password},
        ),
    )
    assert (entry["actor_id"], entry["action"], entry["target_id"]) == (
        member["id"],
        "member.password_changed",
        member["id"],
    )
    assert new_password not in entry["details"] and one_time not in entry["details"]

    _, entry = await _one_entry(
        db, org, lambda: client.delete("/v1/sessions/current", headers=bearer(token))
    )
    assert (entry["actor_id"], entry["action"], entry["target_id"]) == (
        member["id"],
        "session.ended",
        session_id,
    )

    _, entry = await _one_entry(
        db, org, lambda: client.delete(f"/v1/members/{member['id']}", headers=admin)
    )
    assert (entry["actor_id"], entry["action"], entry["target_id"]) == (
        actor,
        "member.removed",
        member["id"],
    )


async def test_a_session_is_the_actor_of_what_it_changes(client, db, ledger, org):
    member, token, _ = await member_session(client, ledger, org, "developer")
    response, entry = await _one_entry(
        db,
        org,
        lambda: client.post(
            "/v1/api-keys",
            headers={**bearer(token), "Ventryx-Environment": "test"},
            json={"name": "by a person", "scopes": ["events:read"]},
        ),
    )
    ledger.add(response.json()["data"]["key"])
    assert entry["actor_id"] == member["id"]
    assert entry["environment"] == "test"


async def test_failed_changes_write_no_entry_but_failed_logins_do(
    client, db, ledger, org, make_key
):
    admin = bearer(org.admin_key)
    key_id, _ = await make_key(org, ["events:read"])
    revoked_id, _ = await make_key(org, ["events:read"])
    await client.delete(f"/v1/api-keys/{revoked_id}", headers=admin)
    member = await add_member(client, ledger, org, "viewer")
    owner_token = await owner_session(client, ledger, org)
    _, viewer_key = await make_key(org, ["workflows:read"])
    missing = f"key_{'0' * 26}"
    failures = [
        ("POST", "/v1/api-keys", admin, {"name": "", "scopes": ["events:read"]}),
        ("POST", "/v1/api-keys", bearer(viewer_key), {"name": "x", "scopes": ["events:read"]}),
        ("PATCH", f"/v1/api-keys/{missing}", admin, {"name": "x"}),
        ("PATCH", f"/v1/api-keys/{revoked_id}", admin, {"name": "x"}),
        ("DELETE", f"/v1/api-keys/{missing}", admin, None),
        ("POST", f"/v1/api-keys/{revoked_id}/rotate", admin, {}),
        ("POST", f"/v1/api-keys/{key_id}/rotate", admin, {"grace_period_seconds": -1}),
        ("PATCH", "/v1/org", admin, {"name": ""}),
        ("PATCH", "/v1/org", bearer(viewer_key), {"name": "x"}),
        ("POST", "/v1/members", admin, {"email": member["email"], "name": "x", "role": "viewer"}),
        ("POST", "/v1/members", admin, {"email": "a@example.com", "name": "x", "role": "owner"}),
        ("PATCH", f"/v1/members/{member['id']}", admin, {"role": "king"}),
        ("PATCH", f"/v1/members/{org.owner_id}", bearer(owner_token), {"role": "viewer"}),
        ("DELETE", f"/v1/members/{org.owner_id}", bearer(owner_token), None),
        ("DELETE", f"/v1/members/mem_{'0' * 26}", admin, None),
        (
            "POST",
            "/v1/members/me/password",
            bearer(owner_token),
            {"current_password": "wrong wrong", "new_password": "y" * 20},
        ),
        ("DELETE", "/v1/sessions/current", admin, None),
    ]
    before = await _entry_ids(db, org.id)
    for method, path, headers, body in failures:
        response = await client.request(method, path, headers=headers, json=body)
        assert 400 <= response.status_code < 500, (method, path, response.text)
    assert await _entry_ids(db, org.id) == before
    failed_login = await login(client, org.owner_email, "not the password")
    assert failed_login.status_code == 401

    async def added() -> list[dict]:  # written just after the response is sent
        return await _entries(db, org.id, await _entry_ids(db, org.id) - before)

    assert [(e["action"], e["actor_id"]) for e in await wait_for(added)] == [
        ("session.login_failed", org.owner_id)
    ]


async def test_the_database_itself_refuses_to_change_or_delete_entries(db, org):
    async with db.acquire() as conn:
        for statement in (
            "UPDATE audit_log SET action = 'forged' WHERE org_id = $1",
            "DELETE FROM audit_log WHERE org_id = $1",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(statement, org.id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("TRUNCATE audit_log")
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM audit_log WHERE org_id = $1 "
                "AND action = 'organization.created'",
                org.id,
            )
            == 1
        )


async def test_no_endpoint_changes_the_audit_log(client, org):
    for method in ("POST", "PATCH", "PUT", "DELETE"):
        response = await client.request(
            method,
            "/v1/audit-log",
            headers=bearer(org.admin_key),
            json={} if method != "DELETE" else None,
        )
        assert response.status_code == 405, (method, response.text)


async def test_listing_filters_by_actor_action_target_and_time(client, db, ledger, org):
    admin = bearer(org.admin_key)
    member, token, _ = await member_session(client, ledger, org, "admin")
    await client.patch("/v1/org", headers=bearer(token), json={"name": "Renamed By Member"})
    created = await client.post(
        "/v1/api-keys", headers=admin, json={"name": "filtered", "scopes": ["events:read"]}
    )
    key_id = created.json()["data"]["id"]
    ledger.add(created.json()["data"]["key"])

    async def listed(**params) -> list[dict]:
        response = await client.get("/v1/audit-log", headers=admin, params=params)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    everything = await listed(limit=100)
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    assert {e["action"] for e in everything} >= {
        "organization.created",
        "member.created",
        "session.created",
        "member.password_changed",
        "organization.updated",
        "api_key.created",
    }
    by_member = await listed(actor=member["id"])
    assert {e["action"] for e in by_member} == {
        "session.created",
        "member.password_changed",
        "organization.updated",
    }
    assert [e["action"] for e in await listed(action="organization.updated")] == [
        "organization.updated"
    ]
    assert {e["action"] for e in await listed(action="member.*")} == {
        "member.created",
        "member.password_changed",
    }
    about_key = await listed(target=key_id)
    assert [(e["action"], e["actor_id"], e["target_type"]) for e in about_key] == [
        ("api_key.created", org.admin_key_id, "api_key")
    ]
    entry = about_key[0]
    assert entry["request_id"] == created.headers["request-id"]
    assert entry["environment"] == "live" and entry["client_address"] == "127.0.0.1"
    assert entry["details"] == {"scopes": ["events:read"]}
    created_at = datetime.fromisoformat(entry["created_at"].replace("Z", "+00:00"))
    assert key_id in [e["target_id"] for e in await listed(since=created_at.isoformat())]
    assert key_id not in [e["target_id"] for e in await listed(until=created_at.isoformat())]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await listed(since=future) == []


async def test_listing_pages_newest_first_with_a_cursor(client, org):
    admin = bearer(org.admin_key)
    for n in range(5):
        await client.patch("/v1/org", headers=admin, json={"name": f"Name {n}"})
        await asyncio.sleep(0.002)  # ids sort by millisecond, then at random within one
    seen, cursor = [], None
    while True:
        params = {"limit": 2, "action": "organization.updated"}
        if cursor:
            params["starting_after"] = cursor
        page = (await client.get("/v1/audit-log", headers=admin, params=params)).json()
        seen += page["data"]
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    assert [e["details"]["name"]["to"] for e in seen] == [f"Name {n}" for n in range(4, -1, -1)]


async def test_listing_needs_org_admin_and_shows_only_ones_own_organization(
    client, ledger, org, make_org, make_key
):
    other = await make_org("Other")
    await client.patch("/v1/org", headers=bearer(other.admin_key), json={"name": "Secret"})
    _, no_admin = await make_key(org, ["api-keys:read", "api-keys:write"])
    revoked_id, revoked = await make_key(org, ["org:admin"])
    await client.delete(f"/v1/api-keys/{revoked_id}", headers=bearer(org.admin_key))
    refused = await client.get("/v1/audit-log", headers=bearer(no_admin))
    assert refused.status_code == 403 and "org:admin" in refused.json()["error"]["message"]
    assert (await client.get("/v1/audit-log", headers=bearer(revoked))).status_code == 401
    _, viewer_token, _ = await member_session(client, ledger, org, "viewer")
    assert (await client.get("/v1/audit-log", headers=bearer(viewer_token))).status_code == 403
    ours = await client.get("/v1/audit-log", headers=bearer(org.admin_key), params={"limit": 100})
    assert other.id not in ours.text and "Secret" not in ours.text
    theirs = await client.get(
        "/v1/audit-log", headers=bearer(org.admin_key), params={"target": other.id}
    )
    assert theirs.json()["data"] == []


async def test_a_test_credential_sees_test_and_organization_wide_entries_only(
    client, org, make_key
):
    await make_key(org, ["events:read"], environment="live")
    await make_key(org, ["events:read"], environment="test")
    _, test_admin = await make_key(org, ["org:admin"], environment="test")
    response = await client.get("/v1/audit-log", headers=bearer(test_admin), params={"limit": 100})
    assert response.status_code == 200
    environments = {e["environment"] for e in response.json()["data"]}
    assert "live" not in environments and "test" in environments


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "many"},
        {"since": "yesterday"},
        {"since": "2026-04-02T10:00:00"},
        {"until": "2026-13-40T10:00:00Z"},
        {"starting_after": "key_01HXYZ"},
        {"actor": "x" * 101},
    ],
)
async def test_bad_listing_parameters_are_400(client, org, params):
    response = await client.get("/v1/audit-log", headers=bearer(org.admin_key), params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
