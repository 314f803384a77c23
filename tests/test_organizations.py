"""``GET``/``PATCH /v1/org``: the caller's own organization, renamed only with org:admin."""

import json

import pytest
from helpers import owner_session

from conftest import bearer

# Every test here starts with 127.0.0.1's login failures cleared.
pytestmark = pytest.mark.usefixtures("forget_local_login_failures")


async def _state(db, org_id: str):
    async with db.acquire() as conn:
        return (
            await conn.fetchrow(
                "SELECT name, updated_at FROM organizations WHERE org_id = $1", org_id
            ),
            await conn.fetchval("SELECT count(*) FROM audit_log WHERE org_id = $1", org_id),
        )


async def test_any_valid_credential_reads_its_own_organization(client, org, make_key):
    _, events_only = await make_key(org, ["events:write"], environment="test")
    for key in (org.admin_key, events_only):
        response = await client.get("/v1/org", headers=bearer(key))
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert data["id"] == org.id and data["name"] == org.name
        assert data["created_at"].endswith("Z")


async def test_org_admin_renames_the_organization_and_it_is_audited(client, db, org):
    response = await client.patch(
        "/v1/org", headers=bearer(org.admin_key), json={"name": "Acme Renamed"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["name"] == "Acme Renamed"
    me = await client.get("/v1/me", headers=bearer(org.admin_key))
    assert me.json()["data"]["organization"]["name"] == "Acme Renamed"
    async with db.acquire() as conn:
        entry = await conn.fetchrow(
            "SELECT * FROM audit_log WHERE org_id = $1 AND action = 'organization.updated'", org.id
        )
    assert entry["actor_id"] == org.admin_key_id
    assert entry["target_id"] == org.id
    assert entry["request_id"] == response.headers["request-id"]


async def test_an_owner_session_renames_the_organization_as_its_member(client, db, ledger, org):
    token = await owner_session(client, ledger, org)
    response = await client.patch("/v1/org", headers=bearer(token), json={"name": "By Owner"})
    assert response.status_code == 200
    async with db.acquire() as conn:
        actor = await conn.fetchval(
            "SELECT actor_id FROM audit_log WHERE org_id = $1 AND action = 'organization.updated'",
            org.id,
        )
    assert actor == org.owner_id


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x" * 101},
        {"name": "tab\there"},
        {"name": 7},
        {"name": "Fine", "id": "org_01HXYZ"},
        {"name": None},
    ],
)
async def test_bad_renames_are_refused_and_change_nothing(client, db, org, body):
    before = await _state(db, org.id)
    response = await client.patch("/v1/org", headers=bearer(org.admin_key), json=body)
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert await _state(db, org.id) == before


async def test_renaming_needs_org_admin_a_valid_key_and_touches_only_ones_own_org(
    client, db, org, make_org, make_key
):
    other = await make_org("Other")
    _, no_admin = await make_key(org, ["api-keys:write"])
    revoked_id, revoked = await make_key(org, ["org:admin"])
    await client.delete(f"/v1/api-keys/{revoked_id}", headers=bearer(org.admin_key))
    _, test_admin = await make_key(org, ["org:admin"], environment="test")
    before = await _state(db, org.id)
    refused = await client.patch("/v1/org", headers=bearer(no_admin), json={"name": "No"})
    assert refused.status_code == 403
    assert "org:admin" in refused.json()["error"]["message"]
    gone = await client.patch("/v1/org", headers=bearer(revoked), json={"name": "No"})
    assert gone.status_code == 401
    assert await _state(db, org.id) == before
    # An org:admin key of the test environment is still the organization's admin.
    renamed = await client.patch("/v1/org", headers=bearer(test_admin), json={"name": "T"})
    assert renamed.status_code == 200
    other_now = await client.get("/v1/org", headers=bearer(other.admin_key))
    assert other_now.json()["data"]["name"] == "Other"


async def test_the_default_rate_limit_is_shown_changed_and_audited(client, db, org, make_key):
    shown = await client.get("/v1/org", headers=bearer(org.admin_key))
    assert shown.json()["data"]["default_rate_limit"] == {"requests": 6000, "window_seconds": 60}
    _, no_admin = await make_key(org, ["workflows:write", "api-keys:write"])
    refused = await client.patch(
        "/v1/org",
        headers=bearer(no_admin),
        json={"default_rate_limit": {"requests": 1, "window_seconds": 60}},
    )
    assert refused.status_code == 403
    changed = await client.patch(
        "/v1/org",
        headers=bearer(org.admin_key),
        json={"default_rate_limit": {"requests": 120, "window_seconds": 10}},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["name"] == org.name
    async with db.acquire() as conn:
        details = await conn.fetchval(
            "SELECT details FROM audit_log WHERE org_id = $1 AND action = 'organization.updated'",
            org.id,
        )
    assert json.loads(details) == {
        "default_rate_limit": {
            "from": {"requests": 6000, "window_seconds": 60},
            "to": {"requests": 120, "window_seconds": 10},
        }
    }
