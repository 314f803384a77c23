"""Events: emit, batch, list, get, idempotency and revocation of in-flight emits."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from helpers import revocation_locks

from conftest import bearer, wait_for
from ventryx_shared.ids import new_id


async def emit(client, key, event_type="order.created", payload=None, **extra):
    response = await client.post(
        "/v1/events",
        headers=bearer(key),
        json={"type": event_type, "payload": payload if payload is not None else {"n": 1}, **extra},
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def count_events(db, org_id):
    return await db.fetchval("SELECT count(*) FROM events WHERE org_id = $1", org_id)


async def make_workflow(client, key, name, trigger, enabled=True):
    response = await client.post(
        "/v1/workflows",
        headers=bearer(key),
        json={"name": name, "trigger": trigger, "enabled": enabled},
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


async def test_emit_returns_the_event_and_stores_it(client, org, db):
    occurred = "2026-04-02T10:00:00Z"
    payload = {"order_id": "ord_1", "total": 12.5, "items": [{"sku": "a"}], "note": None}
    event = await emit(client, org.admin_key, "order.created", payload, occurred_at=occurred)
    assert event["id"].startswith("evt_")
    assert event["type"] == "order.created"
    assert event["payload"] == payload
    assert event["occurred_at"] == occurred
    assert event["environment"] == "live"
    assert event["emitted_by"] == org.admin_key_id
    assert event["matched_workflows"] == []
    got = await client.get(f"/v1/events/{event['id']}", headers=bearer(org.admin_key))
    assert got.status_code == 200
    assert got.json()["data"] == event
    assert await count_events(db, org.id) == 1


async def test_an_event_names_the_enabled_workflows_its_type_matches(client, org, make_key):
    exact = await make_workflow(client, org.admin_key, "exact", "order.created")
    prefix = await make_workflow(client, org.admin_key, "prefix", "order.*")
    everything = await make_workflow(client, org.admin_key, "all", "*")
    await make_workflow(client, org.admin_key, "off", "order.*", enabled=False)
    await make_workflow(client, org.admin_key, "other type", "order.refunded")
    await make_workflow(client, org.admin_key, "deeper", "order.created.*")
    _, test_key = await make_key(org, ["workflows:write"], "test")
    await make_workflow(client, test_key, "test env", "order.*")
    event = await emit(client, org.admin_key, "order.created")
    assert event["matched_workflows"] == sorted([exact, prefix, everything])
    unmatched = await emit(client, org.admin_key, "user.signed_up")
    assert unmatched["matched_workflows"] == [everything]


BAD_EVENTS = [
    ({"type": "Order.Created"}, "type"),
    ({"type": "order"}, "type"),
    ({"type": "order..created"}, "type"),
    ({"type": ".order"}, "type"),
    ({"type": "order.created."}, "type"),
    ({"type": "order.créé"}, "type"),
    ({"type": "order.created\n"}, "type"),
    ({"type": "order.created'; DROP TABLE events;--"}, "type"),
    ({"type": "a." + "b" * 200}, "type"),
    ({"type": 5}, "type"),
    ({}, "type"),
    ({"type": "order.created", "payload": [1, 2]}, "payload"),
    ({"type": "order.created", "payload": "text"}, "payload"),
    ({"type": "order.created", "payload": {"big": "x" * (64 * 1024)}}, "payload"),
    ({"type": "order.created", "payload": {"nul": "a\x00b"}}, "payload"),
    ({"type": "order.created", "payload": {"a\x00": 1}}, "payload"),
    ({"type": "order.created", "occurred_at": "yesterday"}, "occurred_at"),
    ({"type": "order.created", "occurred_at": "2026-04-02T10:00:00"}, "occurred_at"),
    ({"type": "order.created", "occurred_at": "0001-01-01T00:00:00Z"}, "occurred_at"),
    ({"type": "order.created", "occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"),
    ({"type": "order.created", "occurred_at": "9999-12-31T23:59:59-14:00"}, "occurred_at"),
    ({"type": "order.created", "id": "evt_01HXYZ"}, "id"),
    ({"type": "order.created", "environment": "test"}, "environment"),
    ({"type": "order.created", "org_id": "org_01HXYZ"}, "org_id"),
    ({"type": "order.created", "matched_workflows": []}, "matched_workflows"),
]


@pytest.mark.parametrize(("body", "param"), BAD_EVENTS)
async def test_bad_events_are_4xx_and_write_nothing(client, make_org, db, body, param):
    org = await make_org("Bad input")
    response = await client.post("/v1/events", headers=bearer(org.admin_key), json=body)
    assert response.status_code in (400, 422), response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert param in f"{error.get('param')} {error['message']}", error
    assert await count_events(db, org.id) == 0


async def test_payload_of_exactly_64_kb_is_accepted_and_escaped_nul_text_is_fine(client, org):
    filler = 64 * 1024 - len('{"x":""}')
    event = await emit(client, org.admin_key, payload={"x": "y" * filler})
    assert len(event["payload"]["x"]) == filler
    odd = {
        "path": "C:\\u0000dir",
        "ü": "漢字 🚀 \u202e",
        "sql": "'); DROP TABLE events; --",
        "$1": "%s %% \\",
        "nested": {"deep": [[[{"x": None}]]]},
    }
    text = await emit(client, org.admin_key, payload=odd)
    assert text["payload"] == odd
    got = await client.get(f"/v1/events/{text['id']}", headers=bearer(org.admin_key))
    assert got.json()["data"]["payload"] == odd


async def test_non_json_wrong_content_type_and_deep_nesting_are_refused(client, make_org, db):
    org = await make_org("Raw bodies")
    headers = {**bearer(org.admin_key), "Content-Type": "application/json"}
    for body in (
        b"{type: 1}",
        b"",
        b"null",
        b'"order.created"',
        b'{"type":"order.created","payload":' + b'{"a":' * 5000 + b"1" + b"}" * 5001,
    ):
        response = await client.post("/v1/events", content=body, headers=headers)
        assert 400 <= response.status_code < 500, (body[:40], response.text)
    form = await client.post(
        "/v1/events",
        content=b"type=order.created",
        headers={**bearer(org.admin_key), "Content-Type": "text/plain"},
    )
    assert form.status_code == 415
    assert await count_events(db, org.id) == 0


async def test_batch_writes_every_event_in_order(client, org, db):
    workflow = await make_workflow(client, org.admin_key, "batch matcher", "invoice.*")
    events = [{"type": "invoice.paid", "payload": {"i": i}} for i in range(5)]
    events.append({"type": "user.created", "payload": {}, "occurred_at": "2026-01-01T00:00:00Z"})
    response = await client.post(
        "/v1/events/batch", headers=bearer(org.admin_key), json={"events": events}
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert [e["payload"] for e in data] == [e["payload"] for e in events]
    assert [e["matched_workflows"] for e in data] == [[workflow]] * 5 + [[]]
    assert data[-1]["occurred_at"] == "2026-01-01T00:00:00Z"
    stored = await db.fetch(
        "SELECT id FROM events WHERE org_id = $1 AND id = ANY($2)", org.id, [e["id"] for e in data]
    )
    assert len(stored) == 6


async def test_a_batch_with_bad_items_names_each_and_writes_none(client, make_org, db):
    org = await make_org("Batch errors")
    events = [
        {"type": "order.created"},
        {"type": "Bad Type"},
        {"type": "order.created"},
        {"type": "order.created", "payload": []},
        {"type": "order.created", "x": 1},
        {"type": "order.created", "payload": {"big": "x" * 70000}},
        {"type": "order.created", "occurred_at": "1969-12-31T23:59:59Z"},
    ]
    response = await client.post(
        "/v1/events/batch", headers=bearer(org.admin_key), json={"events": events}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_batch"
    assert error["request_id"] == response.headers["request-id"]
    assert [item["index"] for item in error["errors"]] == [1, 3, 4, 5, 6]
    assert error["errors"][0]["param"] == "events[1].type"
    assert error["errors"][2]["code"] == "unknown_field"
    assert error["errors"][3]["code"] == "invalid_payload"
    assert error["errors"][4]["param"] == "events[6].occurred_at"
    assert await count_events(db, org.id) == 0


async def test_a_well_formed_batch_with_one_unstorable_payload_writes_none(client, make_org, db):
    org = await make_org("Batch payloads")
    events = [{"type": "order.created", "payload": {"i": i}} for i in range(4)]
    events[2]["payload"] = {"text": "nul \u0000 here".encode().decode("unicode_escape")}
    response = await client.post(
        "/v1/events/batch", headers=bearer(org.admin_key), json={"events": events}
    )
    assert response.status_code == 422, response.text
    assert [(e["index"], e["param"]) for e in response.json()["error"]["errors"]] == [
        (2, "events[2].payload")
    ]
    assert response.json()["error"]["message"].startswith("1 of 4 events")
    assert await count_events(db, org.id) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"events": [{"type": "order.created"}] * 501},
        {"events": []},
        {"events": "many"},
        {"events": [{"type": "order.created"}], "extra": True},
        {},
        [],
    ],
)
async def test_bad_batch_envelopes_are_4xx_and_write_nothing(client, make_org, db, body):
    org = await make_org("Batch envelope")
    response = await client.post("/v1/events/batch", headers=bearer(org.admin_key), json=body)
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert await count_events(db, org.id) == 0


async def test_a_batch_of_500_is_one_all_or_nothing_write(client, make_org, db):
    org = await make_org("Batch 500")
    events = [{"type": "load.tested", "payload": {"i": i}} for i in range(500)]
    response = await client.post(
        "/v1/events/batch", headers=bearer(org.admin_key), json={"events": events}
    )
    assert response.status_code == 201, response.text
    assert len(response.json()["data"]) == 500
    assert await count_events(db, org.id) == 500


async def test_list_filters_by_type_prefix_and_time(client, make_org):
    org = await make_org("Event lister")
    key = org.admin_key
    created = await emit(client, key, "order.created")
    refunded = await emit(client, key, "order.refund.issued")
    ordering = await emit(client, key, "orderly.thing")
    signed_up = await emit(client, key, "user.signed_up")

    async def ids(**params):
        response = await client.get("/v1/events", headers=bearer(key), params=params)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["data"]]

    assert await ids() == [signed_up["id"], ordering["id"], refunded["id"], created["id"]]
    assert await ids(type="order.created") == [created["id"]]
    assert await ids(type="order.*") == [refunded["id"], created["id"]]
    assert await ids(type="order.refund.*") == [refunded["id"]]
    assert await ids(type="nothing.here") == []
    assert await ids(since=refunded["created_at"], until=signed_up["created_at"]) == [
        ordering["id"],
        refunded["id"],
    ]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert await ids(since=future) == []
    assert await ids(until=future) == await ids()
    page = await client.get(
        "/v1/events", headers=bearer(key), params={"limit": 2, "starting_after": refunded["id"]}
    )
    assert [e["id"] for e in page.json()["data"]] == [created["id"]]
    assert page.json()["has_more"] is False


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 101},
        {"limit": 10**12},
        {"limit": -1},
        {"starting_after": "wf_01HXYZ"},
        {"starting_after": "evt_' OR ''='"},
        {"type": "Order.*"},
        {"type": "*"},
        {"type": "order.*.x"},
        {"type": "order"},
        {"since": "not a time"},
        {"since": "2026-04-02T10:00:00"},
        {"until": "2026-13-45T99:00:00Z"},
        {"since": "0001-01-01T00:00:00+14:00"},
        {"until": "9999-12-31T23:59:59-14:00"},
    ],
)
async def test_bad_list_parameters_are_400(client, org, params):
    response = await client.get("/v1/events", headers=bearer(org.admin_key), params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_other_organization_and_environment_events_are_404_like_unknown_ones(
    client, org, make_org, make_key
):
    event = await emit(client, org.admin_key)
    other = await make_org("Other")
    _, test_key = await make_key(org, ["events:read", "events:write"], "test")
    in_test = await emit(client, test_key)
    assert in_test["environment"] == "test"
    unknown_id = new_id("evt")
    for key in (other.admin_key, test_key):
        seen = await client.get(f"/v1/events/{event['id']}", headers=bearer(key))
        never = await client.get(f"/v1/events/{unknown_id}", headers=bearer(key))
        assert seen.status_code == never.status_code == 404
        seen_error, never_error = seen.json()["error"], never.json()["error"]
        for error in (seen_error, never_error):
            error.pop("request_id")
        assert seen_error["message"].replace(event["id"], unknown_id) == never_error["message"]
        assert {**seen_error, "message": ""} == {**never_error, "message": ""}
        listed = await client.get("/v1/events", headers=bearer(key), params={"limit": 100})
        assert event["id"] not in [e["id"] for e in listed.json()["data"]]
    test_listed = await client.get("/v1/events", headers=bearer(test_key))
    assert [e["id"] for e in test_listed.json()["data"]] == [in_test["id"]]
    live_listed = await client.get(
        "/v1/events", headers=bearer(org.admin_key), params={"limit": 100}
    )
    assert in_test["id"] not in [e["id"] for e in live_listed.json()["data"]]


async def test_scopes_guard_each_operation(client, org, make_key, db):
    event = await emit(client, org.admin_key)
    _, reader = await make_key(org, ["events:read"])
    _, writer = await make_key(org, ["events:write"])
    _, workflows_only = await make_key(org, ["workflows:read", "workflows:write"])
    before = await count_events(db, org.id)
    for key, allowed in ((reader, {"read"}), (writer, {"write"}), (workflows_only, set())):
        reads = [
            await client.get(f"/v1/events/{event['id']}", headers=bearer(key)),
            await client.get("/v1/events", headers=bearer(key)),
        ]
        writes = [
            await client.post("/v1/events", headers=bearer(key), json={"type": "scope.checked"}),
            await client.post(
                "/v1/events/batch",
                headers=bearer(key),
                json={"events": [{"type": "scope.checked"}]},
            ),
        ]
        for response in reads:
            assert response.status_code == (200 if "read" in allowed else 403), response.text
        for response in writes:
            assert response.status_code == (201 if "write" in allowed else 403), response.text
            if response.status_code == 403:
                assert "events:write" in response.json()["error"]["message"]
    assert await count_events(db, org.id) == before + 2


async def test_a_revoked_key_cannot_emit_or_read(client, org, make_key, db):
    key_id, key = await make_key(org, ["events:read", "events:write"])
    event = await emit(client, key)
    assert (
        await client.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
    ).status_code == 200
    before = await count_events(db, org.id)
    for method, path, body in (
        ("POST", "/v1/events", {"type": "a.b"}),
        ("POST", "/v1/events/batch", {"events": [{"type": "a.b"}]}),
        ("GET", "/v1/events", None),
        ("GET", f"/v1/events/{event['id']}", None),
    ):
        response = await client.request(method, path, headers=bearer(key), json=body)
        assert response.status_code == 401, (path, response.text)
    assert await count_events(db, org.id) == before


async def test_50_concurrent_emits_with_one_idempotency_key_make_one_event(client, make_org, db):
    org = await make_org("Idempotent")
    headers = {**bearer(org.admin_key), "Idempotency-Key": f"emit-{new_id('req')}"}
    body = {"type": "payment.captured", "payload": {"amount": 100}}
    responses = await asyncio.gather(
        *[client.post("/v1/events", headers=headers, json=body) for _ in range(50)]
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["data"]["id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 49
    assert await count_events(db, org.id) == 1
    different = await client.post(
        "/v1/events", headers=headers, json={**body, "payload": {"amount": 200}}
    )
    assert different.status_code == 409
    assert await count_events(db, org.id) == 1


async def test_a_batch_retried_with_its_idempotency_key_is_written_once(client, make_org, db):
    org = await make_org("Idempotent batch")
    headers = {**bearer(org.admin_key), "Idempotency-Key": new_id("req")}
    body = {"events": [{"type": "a.b", "payload": {"i": i}} for i in range(3)]}
    first, second = await asyncio.gather(
        client.post("/v1/events/batch", headers=headers, json=body),
        client.post("/v1/events/batch", headers=headers, json=body),
    )
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert await count_events(db, org.id) == 3


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/events", {"type": "order.created"}),
        ("/v1/events/batch", {"events": [{"type": "order.created"}] * 10}),
    ],
)
async def test_an_emit_in_flight_when_its_key_is_revoked_gets_401_and_writes_nothing(
    client, make_org, make_key, db, path, body
):
    org = await make_org("Revoked in flight")
    key_id, key = await make_key(org, ["events:write"])
    async with db.acquire() as revoker:
        revocation = revoker.transaction()
        await revocation.start()
        for statement in revocation_locks(org.id, key_id):
            await revoker.execute(*statement)
        await revoker.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE org_id = $1 AND id = $2", org.id, key_id
        )
        emit_task = asyncio.create_task(client.post(path, headers=bearer(key), json=body))

        async def emit_is_waiting_on_the_key():
            return await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%locked_api_key_caller%' AND datname = current_database()"
            )

        assert await wait_for(emit_is_waiting_on_the_key, timeout=10)
        assert not emit_task.done()
        await revocation.commit()
    response = await emit_task
    assert response.status_code == 401, response.text
    assert await count_events(db, org.id) == 0


async def test_a_batch_answers_each_payload_with_the_same_json_as_a_single_emit(client, org):
    # The batch answers with the payload JSON it stored (encoded once); a single emit
    # encodes the decoded payload again. Both must give the same bytes for the same input:
    # whitespace dropped, escapes resolved, the last of duplicate keys kept.
    payload = (
        b'{ "s" : "first" , "e": "caf\\u00e9\\/", "n": 1.50, "s": "last",'
        b' "list": [ 1 , {"x": null} ] }'
    )
    expected = '"payload":{"s":"last","e":"café/","n":1.5,"list":[1,{"x":null}]}'.encode()
    headers = {**bearer(org.admin_key), "Content-Type": "application/json"}
    single = await client.post(
        "/v1/events",
        headers=headers,
        content=b'{"type": "order.created", "payload": ' + payload + b"}",
    )
    batch = await client.post(
        "/v1/events/batch",
        headers=headers,
        content=(b'{"events": [{"type": "order.created", "payload": ' + payload + b"}]}"),
    )
    assert single.status_code == batch.status_code == 201, (single.text, batch.text)
    assert expected in single.content
    assert expected in batch.content
    stored = await client.get(
        f"/v1/events/{batch.json()['data'][0]['id']}", headers=bearer(org.admin_key)
    )
    assert stored.json()["data"]["payload"] == {
        "s": "last",
        "e": "café/",
        "n": 1.5,
        "list": [1, {"x": None}],
    }


async def test_a_batch_is_written_by_one_transaction(client, org, db):
    # One transaction: the events share one xact_id, so the gapless feed hands them out
    # together and in id order, and none is visible before all are.
    response = await client.post(
        "/v1/events/batch",
        headers=bearer(org.admin_key),
        json={"events": [{"type": "order.created", "payload": {"i": i}} for i in range(20)]},
    )
    assert response.status_code == 201, response.text
    ids = [event["id"] for event in response.json()["data"]]
    rows = await db.fetch(
        "SELECT DISTINCT xact_id, created_at FROM events WHERE org_id = $1 AND id = ANY($2)",
        org.id,
        ids,
    )
    assert len(rows) == 1
    assert rows[0]["created_at"] == datetime.fromisoformat(response.json()["data"][0]["created_at"])
