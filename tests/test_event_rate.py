"""GET /v1/events/rate: events received per minute, for the dashboard's overview."""

from datetime import UTC, datetime, timedelta

from conftest import bearer


async def _rate(client, token, **params):
    response = await client.get("/v1/events/rate", headers=bearer(token), params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_counts_this_environments_events_per_minute_zero_filled(client, make_org, make_key):
    org = await make_org()
    other_org = await make_org()
    _test_id, test_key = await make_key(org, ["events:write", "events:read"], "test")
    live = bearer(org.admin_key)
    for number in range(3):
        response = await client.post(
            "/v1/events", headers=live, json={"type": "order.created", "payload": {"n": number}}
        )
        assert response.status_code == 201
    batch = await client.post(
        "/v1/events/batch",
        headers=live,
        json={"events": [{"type": "order.paid", "payload": {}} for _ in range(4)]},
    )
    assert batch.status_code == 201
    assert (
        await client.post(
            "/v1/events", headers=bearer(test_key), json={"type": "order.created", "payload": {}}
        )
    ).status_code == 201

    rate = await _rate(client, org.admin_key)
    buckets = rate["buckets"]
    assert len(buckets) == 60
    starts = [datetime.fromisoformat(b["start"].replace("Z", "+00:00")) for b in buckets]
    assert all(
        later - earlier == timedelta(minutes=1)
        for earlier, later in zip(starts, starts[1:], strict=False)
    )
    assert all(start.second == 0 and start.microsecond == 0 for start in starts)
    assert starts[-1] <= datetime.now(UTC) < starts[-1] + timedelta(minutes=1)
    assert rate["until"].replace("Z", "+00:00") == (starts[-1] + timedelta(minutes=1)).isoformat()
    # Emitted within the last seconds: the last two minutes hold them all, the rest is zero.
    assert sum(b["events"] for b in buckets[-2:]) == 7
    assert sum(b["events"] for b in buckets[:-2]) == 0

    assert sum(b["events"] for b in (await _rate(client, test_key))["buckets"]) == 1
    assert sum(b["events"] for b in (await _rate(client, other_org.admin_key))["buckets"]) == 0
    assert len((await _rate(client, org.admin_key, minutes=5))["buckets"]) == 5


async def test_old_events_fall_outside_the_window(client, org, db):
    emitted = await client.post(
        "/v1/events", headers=bearer(org.admin_key), json={"type": "order.created", "payload": {}}
    )
    assert emitted.status_code == 201
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE events SET created_at = now() - interval '61 minutes' WHERE org_id = $1", org.id
        )
    assert sum(b["events"] for b in (await _rate(client, org.admin_key))["buckets"]) == 0


async def test_needs_events_read_and_a_valid_key(client, org, make_key):
    _writer_id, writer = await make_key(org, ["events:write"])
    refused = await client.get("/v1/events/rate", headers=bearer(writer))
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    reader_id, reader = await make_key(org, ["events:read"])
    assert (await client.get("/v1/events/rate", headers=bearer(reader))).status_code == 200
    revoked = await client.delete(f"/v1/api-keys/{reader_id}", headers=bearer(org.admin_key))
    assert revoked.status_code == 200
    assert (await client.get("/v1/events/rate", headers=bearer(reader))).status_code == 401
    assert (await client.get("/v1/events/rate")).status_code == 401


async def test_bad_minutes_are_400(client, org):
    for bad in ("0", "61", "abc", "-5", "1.5"):
        response = await client.get(
            "/v1/events/rate", headers=bearer(org.admin_key), params={"minutes": bad}
        )
        assert response.status_code == 400, (bad, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error.get("param") == "minutes"
        assert error["request_id"]


async def test_the_openapi_document_lists_its_refusals(client):
    document = (await client.get("/schema/openapi.json")).json()
    operation = document["paths"]["/v1/events/rate"]["get"]
    assert operation["operationId"] == "getEventRate"
    assert {"200", "400", "401", "403", "429", "503"} <= set(operation["responses"])
