"""The API-keys API: create, list, get, update, revoke, rotate, leaked-key reports."""

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest

from conftest import bearer, wait_for
from ventryx_shared.tokens import parse_token

KEY_SHAPE = re.compile(r"^vtx_(live|test)_[0-9A-Za-z]{50}$")


def without_request_id(response) -> dict:
    body = response.json()
    body["error"].pop("request_id")
    return body


async def expired_by_the_databases_clock(db, org_id: str, key_id: str) -> bool:
    """Whether the clock the server's statements compare expires_at with has passed it."""
    return await db.fetchval(
        "SELECT expires_at <= now() FROM api_keys WHERE org_id = $1 AND id = $2", org_id, key_id
    )


async def count_keys(db, org_id: str) -> int:
    return await db.fetchval("SELECT count(*) FROM api_keys WHERE org_id = $1", org_id)


async def test_create_returns_the_seed_shape_with_the_key_shown_once(client, org, ledger):
    response = await client.post(
        "/v1/api-keys",
        headers=bearer(org.admin_key),
        json={"name": "ci-pipeline", "scopes": ["workflows:read", "events:write"]},
    )
    assert response.status_code == 201
    data = response.json()["data"]
    ledger.add(data["key"])
    assert data["id"].startswith("key_01") or data["id"].startswith("key_")
    assert data["name"] == "ci-pipeline"
    assert KEY_SHAPE.match(data["key"]) and data["key"].startswith("vtx_live_")
    assert parse_token(data["key"]) is not None
    assert data["scopes"] == ["workflows:read", "events:write"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", data["created_at"])
    assert data["environment"] == "live" and data["status"] == "active"
    assert data["redacted_key"] == f"vtx_live_…{data['key'][-4:]}"

    shown = await client.get(f"/v1/api-keys/{data['id']}", headers=bearer(org.admin_key))
    listed = await client.get("/v1/api-keys", headers=bearer(org.admin_key))
    for body in (shown.text, listed.text):
        assert data["key"] not in body
        assert data["key"][9:-4] not in body
    assert "key" not in shown.json()["data"]
    assert shown.json()["data"]["redacted_key"] == data["redacted_key"]


async def test_new_key_authenticates_with_exactly_its_scopes(client, org, make_key):
    _, key = await make_key(org, ["api-keys:read"])
    me = await client.get("/v1/me", headers=bearer(key))
    assert me.json()["data"]["scopes"] == ["api-keys:read"]
    assert (await client.get("/v1/api-keys", headers=bearer(key))).status_code == 200
    denied = await client.post(
        "/v1/api-keys", headers=bearer(key), json={"name": "x", "scopes": ["api-keys:read"]}
    )
    assert denied.status_code == 403
    assert "api-keys:write" in denied.json()["error"]["message"]


async def test_list_pages_newest_first_with_cursor(client, org, make_key):
    ids = [(await make_key(org, ["events:read"], name=f"k{i}"))[0] for i in range(5)]
    first = await client.get("/v1/api-keys", params={"limit": 2}, headers=bearer(org.admin_key))
    body = first.json()
    assert [k["id"] for k in body["data"]] == ids[::-1][:2]
    assert body["has_more"] is True
    rest = await client.get(
        "/v1/api-keys",
        headers=bearer(org.admin_key),
        params={"limit": 100, "starting_after": body["data"][-1]["id"]},
    )
    rest_ids = [k["id"] for k in rest.json()["data"]]
    assert rest_ids == ids[::-1][2:] + [org.admin_key_id]
    assert rest.json()["has_more"] is False


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"limit": 10**30},
        {"starting_after": "not-an-id"},
        {"starting_after": "wf_01HXYZ"},
        {"status": "deleted"},
        {"environment": "prod"},
    ],
)
async def test_list_refuses_bad_parameters_with_400(client, org, params):
    response = await client.get("/v1/api-keys", params=params, headers=bearer(org.admin_key))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"]


async def test_list_filters_by_status(client, org, make_key):
    revoked_id, _ = await make_key(org, ["events:read"])
    await client.delete(f"/v1/api-keys/{revoked_id}", headers=bearer(org.admin_key))
    revoked = await client.get(
        "/v1/api-keys", params={"status": "revoked"}, headers=bearer(org.admin_key)
    )
    assert [k["id"] for k in revoked.json()["data"]] == [revoked_id]
    active = await client.get(
        "/v1/api-keys", params={"status": "active"}, headers=bearer(org.admin_key)
    )
    assert revoked_id not in [k["id"] for k in active.json()["data"]]


async def test_update_renames_and_narrows_scopes(client, org, make_key, db):
    key_id, key = await make_key(org, ["events:read", "events:write"])
    response = await client.patch(
        f"/v1/api-keys/{key_id}",
        headers=bearer(org.admin_key),
        json={"name": "renamed", "scopes": ["events:read"]},
    )
    assert response.status_code == 200
    assert response.json()["data"]["name"] == "renamed"
    me = await client.get("/v1/me", headers=bearer(key))
    assert me.json()["data"]["scopes"] == ["events:read"]


async def test_a_key_cannot_grant_or_widen_beyond_its_own_scopes(client, org, make_key, db):
    _, manager = await make_key(org, ["api-keys:write"])
    target_id, _ = await make_key(org, ["api-keys:write"])
    before = await count_keys(db, org.id)
    create = await client.post(
        "/v1/api-keys", headers=bearer(manager), json={"name": "wider", "scopes": ["org:admin"]}
    )
    assert create.status_code == 403 and create.json()["error"]["code"] == "scope_escalation"
    widen = await client.patch(
        f"/v1/api-keys/{target_id}",
        headers=bearer(manager),
        json={"scopes": ["api-keys:write", "workflows:write"]},
    )
    assert widen.status_code == 403 and widen.json()["error"]["code"] == "scope_escalation"
    stronger = await client.patch(
        f"/v1/api-keys/{org.admin_key_id}", headers=bearer(manager), json={"name": "mine now"}
    )
    assert stronger.status_code == 403
    rotate_stronger = await client.post(
        f"/v1/api-keys/{org.admin_key_id}/rotate", headers=bearer(manager)
    )
    assert rotate_stronger.status_code == 403
    assert await count_keys(db, org.id) == before
    # Within its own scopes it may create.
    same = await client.post(
        "/v1/api-keys", headers=bearer(manager), json={"name": "same", "scopes": ["api-keys:write"]}
    )
    assert same.status_code == 201


async def test_test_key_cannot_create_live_keys_but_live_admin_can_create_test_keys(
    client, org, make_key, db
):
    _, test_admin = await make_key(org, ["org:admin"], environment="test")
    live = await client.post(
        "/v1/api-keys",
        headers=bearer(test_admin),
        json={"name": "x", "scopes": ["events:read"], "environment": "live"},
    )
    assert live.status_code == 403
    assert live.json()["error"]["code"] == "environment_escalation"
    default = await client.post(
        "/v1/api-keys", headers=bearer(test_admin), json={"name": "x", "scopes": ["events:read"]}
    )
    assert default.status_code == 201 and default.json()["data"]["key"].startswith("vtx_test_")
    made = await client.post(
        "/v1/api-keys",
        headers=bearer(org.admin_key),
        json={"name": "t", "scopes": ["events:read"], "environment": "test"},
    )
    assert made.json()["data"]["environment"] == "test"


async def test_other_organization_and_environment_ids_are_404_like_unknown_ones(
    client, org, make_org, make_key
):
    other = await make_org("Other")
    other_key_id, _ = await make_key(other, ["events:read"])
    live_key_id, _ = await make_key(org, ["events:read"])
    _, test_admin = await make_key(org, ["org:admin"], environment="test")
    unknown = "key_01HZZZZZZZZZZZZZZZZZZZZZZZ"

    def probe(method, key_id, token, suffix=""):
        body = {"name": "n"} if method == "PATCH" else None
        return client.request(
            method, f"/v1/api-keys/{key_id}{suffix}", headers=bearer(token), json=body
        )

    for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/rotate")):
        baseline = await probe(method, unknown, org.admin_key, suffix)
        assert baseline.status_code == 404
        expected = without_request_id(baseline)
        expected["error"]["message"] = expected["error"]["message"].replace(unknown, "{id}")
        for key_id, token in ((other_key_id, org.admin_key), (live_key_id, test_admin)):
            response = await probe(method, key_id, token, suffix)
            assert response.status_code == 404
            got = without_request_id(response)
            got["error"]["message"] = got["error"]["message"].replace(key_id, "{id}")
            assert got == expected
            assert response.headers["content-length"] == str(
                len(baseline.content) - len(unknown) + len(key_id)
            )
    listed = await client.get("/v1/api-keys", params={"limit": 100}, headers=bearer(test_admin))
    assert all(k["environment"] == "test" for k in listed.json()["data"])
    other_listed = await client.get(
        "/v1/api-keys", params={"limit": 100}, headers=bearer(other.admin_key)
    )
    assert live_key_id not in other_listed.text


async def test_revoke_is_the_seed_delete_and_is_idempotent(client, org, make_key):
    key_id, key = await make_key(org, ["events:read"])
    response = await client.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["status"] == "revoked" and data["revoked_at"]
    assert (await client.get("/v1/me", headers=bearer(key))).status_code == 401
    again = await client.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
    assert again.status_code == 200 and again.json()["data"]["revoked_at"] == data["revoked_at"]
    changed = await client.patch(
        f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key), json={"name": "back"}
    )
    assert changed.status_code == 409


async def test_rotate_makes_a_successor_and_retires_the_old_key_after_grace(
    client, org, make_key, ledger
):
    key_id, old = await make_key(org, ["events:read", "workflows:read"], name="deploy")
    response = await client.post(
        f"/v1/api-keys/{key_id}/rotate",
        headers=bearer(org.admin_key),
        json={"grace_period_seconds": 3600},
    )
    assert response.status_code == 201
    data = response.json()["data"]
    new = ledger.add(data["key"])
    assert data["name"] == "deploy" and data["scopes"] == ["events:read", "workflows:read"]
    assert data["previous_key"]["id"] == key_id
    assert data["previous_key"]["rotated_to"] == data["id"]
    expires = datetime.fromisoformat(data["previous_key"]["expires_at"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)
    assert (await client.get("/v1/me", headers=bearer(old))).status_code == 200
    assert (await client.get("/v1/me", headers=bearer(new))).status_code == 200
    twice = await client.post(f"/v1/api-keys/{key_id}/rotate", headers=bearer(org.admin_key))
    assert twice.status_code == 409


async def test_rotate_with_no_grace_ends_the_old_key_at_once(client, org, make_key, ledger):
    key_id, old = await make_key(org, ["events:read"])
    response = await client.post(
        f"/v1/api-keys/{key_id}/rotate",
        headers=bearer(org.admin_key),
        json={"grace_period_seconds": 0},
    )
    ledger.add(response.json()["data"]["key"])
    assert response.json()["data"]["previous_key"]["status"] == "expired"
    assert (await client.get("/v1/me", headers=bearer(old))).status_code == 401


async def test_rotate_without_body_means_no_grace(client, org, make_key, ledger):
    key_id, old = await make_key(org, ["events:read"])
    response = await client.post(f"/v1/api-keys/{key_id}/rotate", headers=bearer(org.admin_key))
    assert response.status_code == 201, response.text
    ledger.add(response.json()["data"]["key"])
    assert (await client.get("/v1/me", headers=bearer(old))).status_code == 401


async def test_expired_key_gets_401(client, db, org, make_key):
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    key_id, key = await make_key(org, ["events:read"], expires_at=soon)
    assert (await client.get("/v1/me", headers=bearer(key))).status_code == 200
    assert await wait_for(lambda: expired_by_the_databases_clock(db, org.id, key_id))
    response = await client.get("/v1/me", headers=bearer(key))
    assert response.status_code == 401


async def test_expires_at_in_the_past_or_without_zone_is_refused(client, org, db):
    before = await count_keys(db, org.id)
    for value in ("2020-01-01T00:00:00Z", "2999-01-01T00:00:00", "tomorrow"):
        response = await client.post(
            "/v1/api-keys",
            headers=bearer(org.admin_key),
            json={"name": "x", "scopes": ["events:read"], "expires_at": value},
        )
        assert response.status_code in (400, 422), response.text
        assert response.json()["error"]["param"] == "expires_at"
    assert await count_keys(db, org.id) == before


async def test_last_used_at_is_kept(client, org, make_key):
    key_id, key = await make_key(org, ["events:read"])
    first = await client.get(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
    assert first.json()["data"]["last_used_at"] is None
    await client.get("/v1/me", headers=bearer(key))

    async def used():
        shown = await client.get(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
        return shown.json()["data"]["last_used_at"]

    assert await wait_for(used)


async def test_idempotent_create_replays_without_the_key(client, org, db):
    headers = {**bearer(org.admin_key), "Idempotency-Key": "create-ci-key-1"}
    body = {"name": "ci", "scopes": ["events:write"]}
    first = await client.post("/v1/api-keys", headers=headers, json=body)
    second = await client.post("/v1/api-keys", headers=headers, json=body)
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["data"]["id"] == first.json()["data"]["id"]
    assert second.json()["data"]["key"] is None
    assert first.json()["data"]["key"] not in second.text
    assert (
        await db.fetchval("SELECT count(*) FROM api_keys WHERE org_id = $1 AND name = 'ci'", org.id)
        == 1
    )
    other = await client.post(
        "/v1/api-keys", headers=headers, json={"name": "ci", "scopes": ["events:read"]}
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


async def test_concurrent_idempotent_creates_make_one_key(client, org, db):
    headers = {**bearer(org.admin_key), "Idempotency-Key": "race-1"}
    body = {"name": "raced", "scopes": ["events:write"]}
    responses = await asyncio.gather(
        *[client.post("/v1/api-keys", headers=headers, json=body) for _ in range(10)]
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["data"]["id"] for r in responses}) == 1
    assert sum(r.json()["data"]["key"] is not None for r in responses) == 1
    assert (
        await db.fetchval(
            "SELECT count(*) FROM api_keys WHERE org_id = $1 AND name = 'raced'", org.id
        )
        == 1
    )


async def test_bad_idempotency_key_is_400(client, org):
    response = await client.post(
        "/v1/api-keys",
        json={"name": "x", "scopes": ["events:read"]},
        headers={**bearer(org.admin_key), "Idempotency-Key": "x" * 256},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"


BAD_BODIES = [
    ({"name": "x", "scopes": ["events:read"], "org_id": "org_01HX"}, "org_id"),
    ({"name": "x", "scopes": ["events:read"], "id": "key_01HX"}, "id"),
    ({"name": "x", "scopes": ["events:read"], "created_at": "2026-01-01T00:00:00Z"}, "created_at"),
    ({"name": 5, "scopes": ["events:read"]}, "name"),
    ({"name": "x", "scopes": "events:read"}, "scopes"),
    ({"name": "x" * (900 * 1024), "scopes": ["events:read"]}, "name"),
    ({"name": "x" * 101, "scopes": ["events:read"]}, "name"),
    ({"name": "", "scopes": ["events:read"]}, "name"),
    ({"name": "bad\nname", "scopes": ["events:read"]}, "name"),
    ({"name": "trailing newline\n", "scopes": ["events:read"]}, "name"),
    ({"name": "x", "scopes": ["events:read"] * 100}, "scopes"),
    ({"name": "x", "scopes": ["events:delete"]}, "scopes[0]"),
    ({"name": "x", "scopes": ["events:read", "events:read"]}, "scopes"),
    ({"name": "x", "scopes": []}, "scopes"),
    ({"scopes": ["events:read"]}, "name"),
    ({"name": "x", "scopes": ["events:read"], "environment": "prod"}, "environment"),
    ([], None),
    ("just a string", None),
]


@pytest.mark.parametrize(
    ("body", "param"), BAD_BODIES, ids=[f"bad-body-{i}" for i in range(len(BAD_BODIES))]
)
async def test_bad_create_bodies_get_4xx_naming_the_problem_and_write_nothing(
    client, org, db, body, param
):
    before = await count_keys(db, org.id)
    response = await client.post("/v1/api-keys", headers=bearer(org.admin_key), json=body)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] == param, error
    assert await count_keys(db, org.id) == before


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        # The strict decoder finds that name is not a string before it reaches the depth.
        (b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json", 422),
        (b"name=x&scopes=events:read", "application/x-www-form-urlencoded", 415),
        (b'{"name":"x","scopes":["events:read"]}', "text/plain", 415),
        (b"\xff\xfe\x00", "application/json", 400),
    ],
)
async def test_non_json_bodies_are_refused(client, org, db, content, content_type, status):
    before = await count_keys(db, org.id)
    response = await client.post(
        "/v1/api-keys",
        content=content,
        headers={**bearer(org.admin_key), "Content-Type": content_type},
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert await count_keys(db, org.id) == before


async def test_leaked_key_report_revokes_a_real_key_and_always_answers_202(
    client, org, make_key, db
):
    key_id, key = await make_key(org, ["events:read"])
    for report in ("vtx_live_nonsense", key[:-1] + ("A" if key[-1] != "A" else "B"), "", key):
        response = await client.post("/v1/api-keys/revoke-leaked", json={"key": report})
        assert response.status_code == 202
        assert response.json() == {"data": {"received": True}}
    assert (await client.get("/v1/me", headers=bearer(key))).status_code == 401
    revoked_at = await db.fetchval("SELECT revoked_at FROM api_keys WHERE id = $1", key_id)
    assert revoked_at is not None
    again = await client.post("/v1/api-keys/revoke-leaked", json={"key": key})
    assert again.status_code == 202


async def test_changes_to_keys_are_audited_with_actor_and_request_id(client, org, make_key, db):
    key_id, _ = await make_key(org, ["events:read"])
    response = await client.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
    rows = await db.fetch(
        "SELECT action, actor_id, request_id FROM audit_log WHERE org_id = $1 AND target_id = $2 "
        "ORDER BY id",
        org.id,
        key_id,
    )
    assert [r["action"] for r in rows] == ["api_key.created", "api_key.revoked"]
    assert rows[1]["actor_id"] == org.admin_key_id
    assert rows[1]["request_id"] == response.headers["Request-Id"]


@pytest.mark.parametrize(
    "key_id",
    [
        "key_%00",
        "%F0%9F%98%80",
        "'%3B%20DROP%20TABLE%20api_keys%3B--",
        "%FF",
        "key_01HZZZZZZZZZZZZZZZZZZZZZZZ%00",
    ],
)
async def test_hostile_ids_in_the_path_are_4xx_never_500(client, org, key_id, db):
    before = await count_keys(db, org.id)
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(
            method,
            f"/v1/api-keys/{key_id}",
            headers=bearer(org.admin_key),
            json={"name": "x"} if method == "PATCH" else None,
        )
        assert 400 <= response.status_code < 500, response.text
        assert "error" in response.json()
    assert await count_keys(db, org.id) == before


async def test_out_of_range_numbers_in_a_body_are_400_with_the_reason(client, org):
    response = await client.post(
        "/v1/api-keys",
        headers={**bearer(org.admin_key), "Content-Type": "application/json"},
        content=b'{"name":"x","scopes":["events:read"],"expires_at":1e400}',
    )
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["message"] != "The request is not valid."


async def test_a_body_over_one_megabyte_is_413_before_it_is_read(server, org):
    """The server answers from the Content-Length alone, so this sends only the headers
    (a client still writing a refused body may see the connection close after the 413)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"POST /v1/api-keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {org.admin_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {2 * 1024 * 1024}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413")


async def test_revoking_a_key_needs_every_scope_it_holds(client, org, make_key, db):
    """A key with api-keys:write alone cannot take an org:admin key offline, nor any key
    holding a scope it lacks; revoke-leaked stays open to whoever holds the key."""
    _, manager = await make_key(org, ["api-keys:write"])
    wider_id, wider = await make_key(org, ["api-keys:write", "events:write"])
    for target in (org.admin_key_id, wider_id):
        refused = await client.delete(f"/v1/api-keys/{target}", headers=bearer(manager))
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "scope_escalation"
    assert (
        await db.fetchval(
            "SELECT count(*) FROM api_keys WHERE org_id = $1 AND id = ANY($2) "
            "AND revoked_at IS NOT NULL",
            org.id,
            [org.admin_key_id, wider_id],
        )
        == 0
    )
    assert (await client.get("/v1/me", headers=bearer(org.admin_key))).status_code == 200
    # The twins: a key within the caller's scopes is revoked, and so is any key its
    # holder reports as leaked.
    same_id, _ = await make_key(org, ["api-keys:write"])
    assert (
        await client.delete(f"/v1/api-keys/{same_id}", headers=bearer(manager))
    ).status_code == 200
    leaked = await client.post("/v1/api-keys/revoke-leaked", json={"key": wider})
    assert leaked.status_code == 202
    assert (await client.get("/v1/me", headers=bearer(wider))).status_code == 401


async def test_an_expired_or_revoked_key_cannot_be_rotated(client, org, make_key, db):
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    expired_id, _ = await make_key(org, ["events:read"], expires_at=soon)
    revoked_id, _ = await make_key(org, ["events:read"])
    await client.delete(f"/v1/api-keys/{revoked_id}", headers=bearer(org.admin_key))
    assert await wait_for(lambda: expired_by_the_databases_clock(db, org.id, expired_id))
    before = await count_keys(db, org.id)
    for key_id, code in ((expired_id, "key_expired"), (revoked_id, "key_revoked")):
        response = await client.post(f"/v1/api-keys/{key_id}/rotate", headers=bearer(org.admin_key))
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == code and code.split("_")[1] in error["message"]
    assert await count_keys(db, org.id) == before


async def test_a_successor_never_outlives_its_predecessor(client, org, make_key, ledger):
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    key_id, _ = await make_key(org, ["events:read"], expires_at=in_an_hour.isoformat())
    rotated = await client.post(
        f"/v1/api-keys/{key_id}/rotate",
        headers=bearer(org.admin_key),
        json={"grace_period_seconds": 60},
    )
    assert rotated.status_code == 201
    data = rotated.json()["data"]
    ledger.add(data["key"])
    assert datetime.fromisoformat(data["expires_at"]) == in_an_hour
    assert datetime.fromisoformat(data["previous_key"]["expires_at"]) < in_an_hour
    # The twin: a key without an end has a successor without one.
    open_id, _ = await make_key(org, ["events:read"])
    successor = await client.post(f"/v1/api-keys/{open_id}/rotate", headers=bearer(org.admin_key))
    ledger.add(successor.json()["data"]["key"])
    assert successor.json()["data"]["expires_at"] is None


async def test_a_short_lived_key_cannot_rotate_itself_into_a_permanent_one(
    client, org, make_key, ledger
):
    in_a_minute = (datetime.now(UTC) + timedelta(seconds=60)).replace(microsecond=0)
    key_id, key = await make_key(org, ["api-keys:write"], expires_at=in_a_minute.isoformat())
    rotated = await client.post(
        f"/v1/api-keys/{key_id}/rotate", headers=bearer(key), json={"grace_period_seconds": 0}
    )
    assert rotated.status_code == 201, rotated.text
    successor = ledger.add(rotated.json()["data"]["key"])
    assert datetime.fromisoformat(rotated.json()["data"]["expires_at"]) == in_a_minute
    assert (await client.get("/v1/me", headers=bearer(key))).status_code == 401
    me = await client.get("/v1/me", headers=bearer(successor))
    assert me.status_code == 200


async def test_idempotent_rotation_replays_without_the_key(client, org, ledger, db):
    created = await client.post(
        "/v1/api-keys",
        headers=bearer(org.admin_key),
        json={"name": "rotated once", "scopes": ["events:read"]},
    )
    ledger.add(created.json()["data"]["key"])
    key_id = created.json()["data"]["id"]
    headers = {**bearer(org.admin_key), "Idempotency-Key": "rotate-once-1"}
    body = {"grace_period_seconds": 60}
    first = await client.post(f"/v1/api-keys/{key_id}/rotate", headers=headers, json=body)
    assert first.status_code == 201, first.text
    ledger.add(first.json()["data"]["key"])
    # The retry replays the rotation; it is not refused as a second rotation of the key.
    second = await client.post(f"/v1/api-keys/{key_id}/rotate", headers=headers, json=body)
    assert second.status_code == 201, second.text
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["data"]["id"] == first.json()["data"]["id"]
    assert second.json()["data"]["key"] is None
    assert (
        await db.fetchval(
            "SELECT count(*) FROM api_keys WHERE org_id = $1 AND name = 'rotated once'", org.id
        )
        == 2
    )
    # Without the key, a second rotation is what it is.
    again = await client.post(
        f"/v1/api-keys/{key_id}/rotate", headers=bearer(org.admin_key), json=body
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "key_already_rotated"
