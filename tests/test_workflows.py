"""Workflows: the contract of issue 3, against a real server and database."""

import asyncio

import pytest
from helpers import revocation_locks

from conftest import bearer, wait_for
from ventryx_shared.ids import new_id

STEPS = [
    {"name": "notify sales", "action": "slack.send", "config": {"channel": "#sales"}},
    {"name": "call crm", "action": "http.request", "config": {"url": "https://crm.example"}},
]


def workflow_body(**overrides):
    return {
        "name": f"wf {new_id('wf')[-8:]}",
        "trigger": "order.created",
        "description": "New orders",
        "steps": STEPS,
        **overrides,
    }


async def create(client, key, **overrides):
    response = await client.post(
        "/v1/workflows", headers=bearer(key), json=workflow_body(**overrides)
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def count_workflows(db, org_id):
    return await db.fetchval("SELECT count(*) FROM workflows WHERE org_id = $1", org_id)


async def audit_actions(db, org_id, workflow_id):
    rows = await db.fetch(
        "SELECT action FROM audit_log WHERE org_id = $1 AND target_id = $2 ORDER BY id",
        org_id,
        workflow_id,
    )
    return [row["action"] for row in rows]


async def test_create_returns_the_workflow_at_version_1(client, org, db):
    body = workflow_body()
    response = await client.post("/v1/workflows", headers=bearer(org.admin_key), json=body)
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["id"].startswith("wf_")
    assert data["name"] == body["name"]
    assert data["trigger"] == "order.created"
    assert data["enabled"] is True
    assert data["steps"] == STEPS
    assert data["version"] == 1
    assert data["environment"] == "live"
    assert data["created_by"] == org.admin_key_id
    assert data["created_at"].endswith("Z")
    assert response.headers["request-id"].startswith("req_")
    got = await client.get(f"/v1/workflows/{data['id']}", headers=bearer(org.admin_key))
    assert got.status_code == 200
    assert got.json()["data"] == data
    assert await audit_actions(db, org.id, data["id"]) == ["workflow.created"]


async def test_duplicate_name_in_the_same_environment_is_409(client, org, make_org, make_key):
    first = await create(client, org.admin_key, name="Fulfil orders")
    response = await client.post(
        "/v1/workflows", headers=bearer(org.admin_key), json=workflow_body(name="Fulfil orders")
    )
    assert response.status_code == 409
    assert response.json()["error"]["type"] == "conflict_error"
    assert response.json()["error"]["param"] == "name"
    _, test_key = await make_key(org, ["workflows:write"], "test")
    in_test = await create(client, test_key, name="Fulfil orders")
    other = await make_org("Other")
    in_other_org = await create(client, other.admin_key, name="Fulfil orders")
    assert len({first["id"], in_test["id"], in_other_org["id"]}) == 3


async def test_other_organization_and_environment_ids_are_404_like_unknown_ones(
    client, org, make_org, make_key
):
    live = await create(client, org.admin_key)
    other = await make_org("Other")
    _, test_key = await make_key(org, ["workflows:read", "workflows:write"], "test")

    def without_request_id(response):
        error = response.json()["error"]
        error.pop("request_id")
        return response.status_code, error

    unknown_id = new_id("wf")
    for key in (other.admin_key, test_key):
        for method, extra in (
            ("GET", {}),
            ("PATCH", {"json": {"version": 1, "name": "x"}}),
            ("DELETE", {}),
        ):
            seen = await client.request(
                method, f"/v1/workflows/{live['id']}", headers=bearer(key), **extra
            )
            never = await client.request(
                method, f"/v1/workflows/{unknown_id}", headers=bearer(key), **extra
            )
            assert seen.status_code == 404
            expected = without_request_id(never)
            expected[1]["message"] = expected[1]["message"].replace(unknown_id, live["id"])
            assert without_request_id(seen) == expected
        listed = await client.get("/v1/workflows", headers=bearer(key), params={"limit": 100})
        assert live["id"] not in [w["id"] for w in listed.json()["data"]]
    still = await client.get(f"/v1/workflows/{live['id']}", headers=bearer(org.admin_key))
    assert still.json()["data"]["version"] == 1


async def test_a_test_key_sees_only_test_workflows(client, org, make_key):
    _, test_key = await make_key(org, ["workflows:read", "workflows:write"], "test")
    in_test = await create(client, test_key)
    assert in_test["environment"] == "test"
    live = await create(client, org.admin_key)
    listed = await client.get("/v1/workflows", headers=bearer(test_key), params={"limit": 100})
    ids = [w["id"] for w in listed.json()["data"]]
    assert in_test["id"] in ids and live["id"] not in ids
    live_listed = await client.get(
        "/v1/workflows", headers=bearer(org.admin_key), params={"limit": 100}
    )
    assert in_test["id"] not in [w["id"] for w in live_listed.json()["data"]]


async def test_update_needs_the_current_version_and_a_stale_one_changes_nothing(client, org, db):
    workflow = await create(client, org.admin_key)
    path = f"/v1/workflows/{workflow['id']}"
    updated = await client.patch(
        path,
        headers=bearer(org.admin_key),
        json={"version": 1, "enabled": False, "trigger": "order.*"},
    )
    assert updated.status_code == 200, updated.text
    data = updated.json()["data"]
    assert (data["version"], data["enabled"], data["trigger"]) == (2, False, "order.*")
    assert data["name"] == workflow["name"] and data["steps"] == STEPS
    assert data["updated_at"] >= workflow["updated_at"]
    stale = await client.patch(
        path, headers=bearer(org.admin_key), json={"version": 1, "name": "lost edit"}
    )
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "stale_version"
    row = await db.fetchrow(
        "SELECT name, version FROM workflows WHERE org_id = $1 AND id = $2", org.id, workflow["id"]
    )
    assert (row["name"], row["version"]) == (workflow["name"], 2)
    assert await audit_actions(db, org.id, workflow["id"]) == [
        "workflow.created",
        "workflow.updated",
    ]


async def test_two_concurrent_patches_of_one_version_one_wins_one_409(client, org, db):
    workflow = await create(client, org.admin_key)
    path = f"/v1/workflows/{workflow['id']}"
    first, second = await asyncio.gather(
        client.patch(path, headers=bearer(org.admin_key), json={"version": 1, "name": "A"}),
        client.patch(path, headers=bearer(org.admin_key), json={"version": 1, "name": "B"}),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    winner = first if first.status_code == 200 else second
    row = await db.fetchrow(
        "SELECT name, version FROM workflows WHERE org_id = $1 AND id = $2", org.id, workflow["id"]
    )
    assert (row["name"], row["version"]) == (winner.json()["data"]["name"], 2)


async def test_renaming_onto_a_taken_name_is_409(client, org):
    await create(client, org.admin_key, name="Taken")
    workflow = await create(client, org.admin_key)
    response = await client.patch(
        f"/v1/workflows/{workflow['id']}",
        headers=bearer(org.admin_key),
        json={"version": 1, "name": "Taken"},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "workflow_name_taken"


async def test_patch_without_changes_or_version_is_refused(client, org):
    workflow = await create(client, org.admin_key)
    path = f"/v1/workflows/{workflow['id']}"
    empty = await client.patch(path, headers=bearer(org.admin_key), json={"version": 1})
    assert empty.status_code == 422
    no_version = await client.patch(path, headers=bearer(org.admin_key), json={"name": "x"})
    assert no_version.status_code in (400, 422)
    assert no_version.json()["error"]["param"] == "version"


async def test_delete_removes_it_and_writes_one_audit_entry(client, org, db):
    workflow = await create(client, org.admin_key)
    path = f"/v1/workflows/{workflow['id']}"
    stale = await client.delete(path, headers=bearer(org.admin_key), params={"version": 7})
    assert stale.status_code == 409
    response = await client.delete(path, headers=bearer(org.admin_key), params={"version": 1})
    assert response.status_code == 200
    assert response.json()["data"] == {"id": workflow["id"], "deleted": True}
    assert (await client.get(path, headers=bearer(org.admin_key))).status_code == 404
    again = await client.delete(path, headers=bearer(org.admin_key))
    assert again.status_code == 404
    assert await audit_actions(db, org.id, workflow["id"]) == [
        "workflow.created",
        "workflow.deleted",
    ]


async def test_scopes_guard_each_operation(client, org, make_key):
    workflow = await create(client, org.admin_key)
    path = f"/v1/workflows/{workflow['id']}"
    _, reader = await make_key(org, ["workflows:read"])
    _, writer = await make_key(org, ["workflows:write"])
    _, events_only = await make_key(org, ["events:read", "events:write"])
    assert (await client.get(path, headers=bearer(reader))).status_code == 200
    assert (await client.get("/v1/workflows", headers=bearer(reader))).status_code == 200
    refused = await client.post("/v1/workflows", headers=bearer(reader), json=workflow_body())
    assert refused.status_code == 403
    assert "workflows:write" in refused.json()["error"]["message"]
    # write does not imply read
    assert (await client.get(path, headers=bearer(writer))).status_code == 403
    assert (
        await client.patch(path, headers=bearer(writer), json={"version": 1, "enabled": False})
    ).status_code == 200
    for method, extra in (
        ("GET", {}),
        ("DELETE", {}),
        ("PATCH", {"json": {"version": 2, "name": "n"}}),
    ):
        response = await client.request(method, path, headers=bearer(events_only), **extra)
        assert response.status_code == 403


async def test_a_revoked_key_gets_401_on_every_operation(client, org, make_key, db):
    workflow = await create(client, org.admin_key)
    key_id, key = await make_key(org, ["workflows:read", "workflows:write"])
    revoked = await client.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
    assert revoked.status_code == 200
    before = await count_workflows(db, org.id)
    path = f"/v1/workflows/{workflow['id']}"
    for method, target, extra in (
        ("GET", path, {}),
        ("GET", "/v1/workflows", {}),
        ("POST", "/v1/workflows", {"json": workflow_body()}),
        ("PATCH", path, {"json": {"version": 1, "name": "n"}}),
        ("DELETE", path, {}),
    ):
        response = await client.request(method, target, headers=bearer(key), **extra)
        assert response.status_code == 401, (method, target, response.text)
    assert await count_workflows(db, org.id) == before


BAD_BODIES = [
    ({"trigger": "order.created"}, "name"),
    (workflow_body(name=""), "name"),
    (workflow_body(name="tab\there"), "name"),
    (workflow_body(name="nul\x00here"), "name"),
    (workflow_body(name="trailing newline\n"), "name"),
    (workflow_body(name="x" * 101), "name"),
    (workflow_body(trigger="Order.Created"), "trigger"),
    (workflow_body(trigger="order"), "trigger"),
    (workflow_body(trigger="order.*.created"), "trigger"),
    (workflow_body(trigger="order.created'; DROP TABLE workflows; --"), "trigger"),
    (workflow_body(description="d" * 1001), "description"),
    (workflow_body(steps="not a list"), "steps"),
    (workflow_body(steps=[{"name": "no action"}]), "steps|action"),
    (workflow_body(steps=[{"name": "s", "action": "Not Valid"}]), "steps|action"),
    (workflow_body(steps=[{"name": "s", "action": "a.b", "extra": 1}]), "extra"),
    (workflow_body(steps=[{"name": "s", "action": "a.b", "config": []}]), "steps|config"),
    (workflow_body(steps=[{"name": "same", "action": "a.b"}] * 2), "steps"),
    (workflow_body(steps=[{"name": f"s{i}", "action": "a.b"} for i in range(51)]), "steps"),
    (
        workflow_body(steps=[{"name": "big", "action": "a.b", "config": {"x": "y" * 66000}}]),
        "steps",
    ),
    (workflow_body(steps=[{"name": "nul", "action": "a.b", "config": {"x": "\x00"}}]), "steps"),
    (workflow_body(enabled="yes"), "enabled"),
    (workflow_body(org_id="org_01HXYZ"), "org_id"),
    (workflow_body(id="wf_01HXYZ"), "id"),
    (workflow_body(environment="test"), "environment"),
    (workflow_body(version=3), "version"),
]


@pytest.mark.parametrize(("body", "param"), BAD_BODIES)
async def test_bad_workflow_bodies_are_4xx_and_write_nothing(client, org, db, body, param):
    before = await count_workflows(db, org.id)
    response = await client.post("/v1/workflows", headers=bearer(org.admin_key), json=body)
    assert response.status_code in (400, 422), response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    said = f"{error.get('param')} {error['message']}"
    assert any(name in said for name in param.split("|")), error
    assert await count_workflows(db, org.id) == before


async def test_non_json_and_wrong_content_type_are_refused(client, org, db):
    before = await count_workflows(db, org.id)
    headers = bearer(org.admin_key)
    not_json = await client.post(
        "/v1/workflows",
        content=b"{name: oops",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert not_json.status_code == 400
    form = await client.post(
        "/v1/workflows",
        content=b"name=x&trigger=a.b",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 415
    array = await client.post("/v1/workflows", json=[workflow_body()], headers=headers)
    assert array.status_code in (400, 422)
    assert await count_workflows(db, org.id) == before


async def test_sql_and_unicode_in_strings_are_stored_verbatim(client, org):
    name = "Robert'); DROP TABLE workflows;-- 🚀 ü 漢字"
    description = "line one\nline two ' \" \\ %s %% $1"
    workflow = await create(
        client,
        org.admin_key,
        name=name,
        description=description,
        steps=[
            {
                "name": "ëmoji 🎉",
                "action": "http.request",
                "config": {"q": "' OR 1=1 --", "nested": {"a": [1, None]}},
            }
        ],
    )
    got = await client.get(f"/v1/workflows/{workflow['id']}", headers=bearer(org.admin_key))
    data = got.json()["data"]
    assert (data["name"], data["description"]) == (name, description)
    assert data["steps"][0]["config"]["q"] == "' OR 1=1 --"
    found = await client.get(
        "/v1/workflows", headers=bearer(org.admin_key), params={"name": "drop table"}
    )
    assert [w["id"] for w in found.json()["data"]] == [workflow["id"]]


async def test_list_filters_and_pages_newest_first(client, make_org):
    org = await make_org("Lister")
    key = org.admin_key
    a = await create(client, key, name="Alpha orders", trigger="order.created")
    b = await create(client, key, name="Beta refunds", trigger="order.refund.*", enabled=False)
    c = await create(client, key, name="Gamma all", trigger="*")
    d = await create(client, key, name="Delta users", trigger="user.signed_up")

    async def ids(**params):
        response = await client.get("/v1/workflows", headers=bearer(key), params=params)
        assert response.status_code == 200, response.text
        return [w["id"] for w in response.json()["data"]]

    assert await ids() == [d["id"], c["id"], b["id"], a["id"]]
    assert await ids(enabled="false") == [b["id"]]
    assert await ids(trigger="order.created") == [a["id"]]
    assert await ids(event_type="order.refund.issued") == [c["id"], b["id"]]
    assert await ids(event_type="order.created") == [c["id"], a["id"]]
    assert await ids(name="ORDERS") == [a["id"]]
    first = await client.get("/v1/workflows", headers=bearer(key), params={"limit": 3})
    assert first.json()["has_more"] is True
    rest = await client.get(
        "/v1/workflows", headers=bearer(key), params={"limit": 3, "starting_after": c["id"]}
    )
    assert [w["id"] for w in rest.json()["data"]] == [b["id"], a["id"]]
    assert rest.json()["has_more"] is False


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 1000},
        {"limit": 0},
        {"limit": "many"},
        {"starting_after": "key_123"},
        {"starting_after": "wf_' OR 1=1 --"},
        {"trigger": "Not A Trigger"},
        {"event_type": "nodots"},
        {"enabled": "perhaps"},
        {"name": "x" * 101},
    ],
)
async def test_bad_list_parameters_are_400(client, org, params):
    response = await client.get("/v1/workflows", headers=bearer(org.admin_key), params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_create_with_idempotency_key_replays_the_first_response(client, org, db):
    body = workflow_body()
    headers = {**bearer(org.admin_key), "Idempotency-Key": new_id("req")}
    first, second = await asyncio.gather(
        client.post("/v1/workflows", headers=headers, json=body),
        client.post("/v1/workflows", headers=headers, json=body),
    )
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert (
        await db.fetchval(
            "SELECT count(*) FROM workflows WHERE org_id = $1 AND name = $2", org.id, body["name"]
        )
        == 1
    )
    other_body = await client.post("/v1/workflows", headers=headers, json=workflow_body())
    assert other_body.status_code == 409


async def test_a_write_in_flight_when_its_key_is_revoked_gets_401_and_writes_nothing(
    client, make_org, make_key, db
):
    org = await make_org("Workflow revoked in flight")
    key_id, key = await make_key(org, ["workflows:write"])
    async with db.acquire() as revoker:
        revocation = revoker.transaction()
        await revocation.start()
        for statement in revocation_locks(org.id, key_id):
            await revoker.execute(*statement)
        await revoker.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE org_id = $1 AND id = $2", org.id, key_id
        )
        create = asyncio.create_task(
            client.post("/v1/workflows", headers=bearer(key), json=workflow_body())
        )

        async def create_is_waiting_on_the_key():
            return await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%locked_api_key_caller%' AND datname = current_database()"
            )

        assert await wait_for(create_is_waiting_on_the_key, timeout=10)
        await revocation.commit()
    response = await create
    assert response.status_code == 401, response.text
    assert await count_workflows(db, org.id) == 0
    assert (
        await db.fetchval(
            "SELECT count(*) FROM audit_log WHERE org_id = $1 AND target_type = 'workflow'", org.id
        )
        == 0
    )
