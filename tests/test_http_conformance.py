"""HTTP as clients and intermediaries expect it: 405 with Allow, OPTIONS naming the real
methods, 401 with a Bearer challenge, no-store on secrets, framing errors as 400; strict
input refused in our envelope, naming the parameter, changing nothing."""

import asyncio

import pytest

from conftest import bearer

JSON_ERROR_KEYS = {"type", "code", "message", "request_id"}


def refused(response, status: int, param: str | None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert JSON_ERROR_KEYS <= set(error)
    assert error.get("param") == param
    return error


async def test_an_unsupported_method_gets_405_with_allow(client, org):
    response = await client.put("/v1/api-keys", headers=bearer(org.admin_key))
    refused(response, 405, None)
    assert set(response.headers["Allow"].split(", ")) == {"GET", "POST", "OPTIONS"}
    assert response.headers["Request-Id"].startswith("req_")
    allowed = await client.get("/v1/api-keys", headers=bearer(org.admin_key))
    assert allowed.status_code == 200


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/v1/api-keys", {"GET", "POST", "OPTIONS"}),
        ("/v1/api-keys/key_01HXYZ", {"GET", "PATCH", "DELETE", "OPTIONS"}),
        ("/v1/events", {"GET", "POST", "OPTIONS"}),
        ("/v1/sessions", {"POST", "OPTIONS"}),
    ],
)
async def test_options_lists_every_method_of_the_path_without_a_credential(client, path, methods):
    response = await client.options(path)
    assert response.status_code == 204
    assert set(response.headers["Allow"].split(", ")) == methods


async def test_every_401_carries_a_bearer_challenge(client, org, make_key):
    missing = await client.get("/v1/me")
    refused(missing, 401, None)
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="ventryx", error="invalid_request"'
    malformed = await client.get("/v1/me", headers={"Authorization": "Basic abc"})
    assert 'error="invalid_request"' in malformed.headers["WWW-Authenticate"]
    invented = await client.get("/v1/me", headers=bearer("vtx_live_" + "a" * 50))
    assert invented.headers["WWW-Authenticate"] == 'Bearer realm="ventryx", error="invalid_token"'
    key_id, key = await make_key(org, ["events:read"])
    await client.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
    revoked = await client.get("/v1/me", headers=bearer(key))
    refused(revoked, 401, None)
    assert 'error="invalid_token"' in revoked.headers["WWW-Authenticate"]
    authorized = await client.get("/v1/me", headers=bearer(org.admin_key))
    assert authorized.status_code == 200
    assert "WWW-Authenticate" not in authorized.headers


async def test_responses_carrying_a_secret_are_not_stored(client, org, ledger):
    created = await client.post(
        "/v1/api-keys",
        headers=bearer(org.admin_key),
        json={"name": "ci", "scopes": ["events:read"]},
    )
    assert created.status_code == 201
    ledger.add(created.json()["data"]["key"])
    assert created.headers["Cache-Control"] == "no-store"
    key_id = created.json()["data"]["id"]
    rotated = await client.post(f"/v1/api-keys/{key_id}/rotate", headers=bearer(org.admin_key))
    assert rotated.status_code == 201
    ledger.add(rotated.json()["data"]["key"])
    assert rotated.headers["Cache-Control"] == "no-store"
    member = await client.post(
        "/v1/members",
        headers=bearer(org.admin_key),
        json={"email": f"new-{org.id}@example.com", "name": "New", "role": "viewer"},
    )
    assert member.status_code == 201
    ledger.add(member.json()["data"]["one_time_password"])
    assert member.headers["Cache-Control"] == "no-store"
    login = await client.post(
        "/v1/sessions", json={"email": org.owner_email, "password": org.owner_password}
    )
    assert login.status_code == 201
    ledger.add(login.json()["data"]["token"])
    assert login.headers["Cache-Control"] == "no-store"
    listed = await client.get("/v1/api-keys", headers=bearer(org.admin_key))
    assert "no-store" not in listed.headers.get("Cache-Control", "")


async def raw_request(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()


async def test_a_malformed_chunk_size_is_400_and_writes_nothing(server, client, org):
    before = await client.get("/v1/workflows", headers=bearer(org.admin_key))
    head = (
        f"POST /v1/workflows HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {org.admin_key}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = await raw_request(server.port, head + b'zz\r\n{"name":"w","trigger":"*"}\r\n0\r\n\r\n')
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b'"code":"malformed_body"' in answer
    after = await client.get("/v1/workflows", headers=bearer(org.admin_key))
    assert after.json()["data"] == before.json()["data"]
    well_formed = b'1a\r\n{"name":"w","trigger":"*"}\r\n0\r\n\r\n'
    assert (await raw_request(server.port, head + well_formed)).startswith(b"HTTP/1.1 201")


@pytest.mark.parametrize("until", ["0.5", "0", "1700000000", "2026-01-01T00:00:00", "tomorrow"])
async def test_a_number_or_zoneless_time_is_not_a_timestamp_in_the_query(client, org, until):
    for path in ("/v1/audit-log", "/v1/events"):
        response = await client.get(path, headers=bearer(org.admin_key), params={"until": until})
        error = refused(response, 400, "until")
        assert "RFC 3339" in error["message"] or "time zone" in error["message"]
    accepted = await client.get(
        "/v1/audit-log", headers=bearer(org.admin_key), params={"until": "2026-01-01T00:00:00Z"}
    )
    assert accepted.status_code == 200


async def test_a_number_is_not_a_timestamp_in_a_body_and_nothing_is_written(client, org):
    response = await client.post(
        "/v1/events",
        headers=bearer(org.admin_key),
        json={"type": "order.created", "occurred_at": 0},
    )
    refused(response, 422, "occurred_at")
    listed = await client.get("/v1/events", headers=bearer(org.admin_key))
    assert listed.json()["data"] == []
    accepted = await client.post(
        "/v1/events",
        headers=bearer(org.admin_key),
        json={"type": "order.created", "occurred_at": "2026-04-02T10:00:00Z"},
    )
    assert accepted.status_code == 201


async def test_a_string_is_not_an_integer_and_the_key_is_not_rotated(client, org, make_key):
    key_id, _ = await make_key(org, ["events:read"])
    response = await client.post(
        f"/v1/api-keys/{key_id}/rotate",
        headers=bearer(org.admin_key),
        json={"grace_period_seconds": "10"},
    )
    refused(response, 422, "grace_period_seconds")
    key = await client.get(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
    assert key.json()["data"]["rotated_to"] is None
    # JSON Schema counts 10.0 as an integer, so the document allows it: accepted.
    rotated = await client.post(
        f"/v1/api-keys/{key_id}/rotate",
        headers=bearer(org.admin_key),
        json={"grace_period_seconds": 10.0},
    )
    assert rotated.status_code == 201, rotated.text


async def test_an_out_of_range_time_says_so_and_creates_nothing(client, org):
    response = await client.post(
        "/v1/api-keys",
        headers=bearer(org.admin_key),
        json={"name": "far", "scopes": ["events:read"], "expires_at": "9999-12-31T23:59:59-14:00"},
    )
    error = refused(response, 422, "expires_at")
    assert "NUL" not in error["message"]
    assert "between 1970-01-01 and 9000-01-01" in error["message"]
    listed = await client.get("/v1/api-keys", headers=bearer(org.admin_key))
    assert "far" not in [key["name"] for key in listed.json()["data"]]


@pytest.mark.parametrize("bidi", ["\u202a", "\u202e", "\u2066", "\u2069"])
async def test_names_refuse_bidirectional_control_characters(client, org, bidi):
    name = f"invoice{bidi}fdp.exe"
    attempts = [
        ("post", "/v1/api-keys", {"name": name, "scopes": ["events:read"]}, "name"),
        ("post", "/v1/workflows", {"name": name, "trigger": "*"}, "name"),
        (
            "post",
            "/v1/workflows",
            {"name": "w", "trigger": "*", "description": name},
            "description",
        ),
        ("patch", "/v1/org", {"name": name}, "name"),
        ("post", "/v1/members", {"email": "b@example.com", "name": name, "role": "viewer"}, "name"),
    ]
    for method, path, body, param in attempts:
        response = await client.request(method, path, headers=bearer(org.admin_key), json=body)
        error = refused(response, 422, param)
        assert "bidirectional" in error["message"], error
    workflows = await client.get("/v1/workflows", headers=bearer(org.admin_key))
    assert workflows.json()["data"] == []
    organization = await client.get("/v1/org", headers=bearer(org.admin_key))
    assert organization.json()["data"]["name"] == org.name
    plain = await client.post(
        "/v1/workflows",
        headers=bearer(org.admin_key),
        json={"name": "invoice pdf", "trigger": "*", "description": "two\nlines"},
    )
    assert plain.status_code == 201, plain.text


async def test_an_unknown_field_is_named(client, org):
    response = await client.post(
        "/v1/workflows",
        headers=bearer(org.admin_key),
        json={"name": "w", "trigger": "*", "steps": [{"name": "s", "action": "a.b", "extra": 1}]},
    )
    error = refused(response, 422, "steps[0].extra")
    assert error["code"] == "unknown_field"


async def test_null_is_not_a_value_of_an_enum_or_boolean_filter(client, org):
    for path, name in (
        ("/v1/api-keys", "status"),
        ("/v1/workflows", "enabled"),
        ("/v1/members", "role"),
    ):
        response = await client.get(path, headers=bearer(org.admin_key), params={name: "null"})
        refused(response, 400, name)
    text_filter = await client.get(
        "/v1/workflows", headers=bearer(org.admin_key), params={"name": "null"}
    )
    assert text_filter.status_code == 200, "a text filter searches for the text null"


async def test_nul_in_a_query_filter_is_400_naming_it(client, org):
    response = await client.get(
        "/v1/audit-log", headers=bearer(org.admin_key), params={"actor": "a\x00b"}
    )
    refused(response, 400, "actor")


async def test_a_header_parameter_too_long_is_400(client, org):
    response = await client.get(
        "/v1/events/stream",
        headers={**bearer(org.admin_key), "Last-Event-ID": "x" * 65},
        params={"follow": "false"},
    )
    assert response.status_code == 400, response.text
