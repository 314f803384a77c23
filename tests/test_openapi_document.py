"""The OpenAPI document the server serves is the truth clients are generated from: every
status with our error envelope, the headers we send, closed bodies, the formats we check;
and its docs page works without internet access."""

import re

import pytest

from conftest import bearer

SCHEMA = "/schema/openapi.json"
METHODS = {"get", "post", "patch", "put", "delete"}


@pytest.fixture(scope="module")
async def document(client):
    response = await client.get(SCHEMA)
    assert response.status_code == 200
    return response.json()


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def is_public(operation) -> bool:
    return operation.get("security") == [{}]


async def test_every_error_status_is_documented_with_our_error_envelope(document):
    for path, method, operation in operations(document):
        errors = {
            status: response
            for status, response in operation["responses"].items()
            if not status.startswith("2")
        }
        for status, response in errors.items():
            schema = response["content"]["application/json"]["schema"]["$ref"]
            batch = operation["operationId"] == "createEventBatch" and status == "422"
            assert schema.endswith("/BatchErrorBody" if batch else "/ErrorBody"), (path, method)
        if not is_public(operation):
            assert {"400", "401", "403", "429", "503"} <= set(errors), (path, method)
            assert "WWW-Authenticate" in errors["401"]["headers"]
            assert "Retry-After" in errors["429"]["headers"]
        if "requestBody" in operation:
            assert {"413", "415", "422"} <= set(errors), (path, method)
        if "{" in path:
            assert "404" in errors, (path, method)
    health = document["paths"]["/healthz"]["get"]["responses"]
    assert set(health) == {"200"}, "the liveness probe touches nothing that can fail"


async def test_the_error_envelope_schema_is_ours_not_litestars(document):
    schemas = document["components"]["schemas"]
    assert schemas["ErrorBody"]["required"] == ["error"]
    detail = schemas["ErrorDetail"]
    assert set(detail["required"]) == {"type", "code", "message", "request_id"}
    assert "param" in detail["properties"]
    assert "errors" in schemas["BatchErrorDetail"]["properties"]
    assert "status_code" not in str(document)


async def test_every_response_documents_request_id_and_writes_their_headers(document):
    for _, method, operation in operations(document):
        for response in operation["responses"].values():
            assert "Request-Id" in response["headers"]
        success = next(r for s, r in operation["responses"].items() if s.startswith("2"))
        if method == "post" and not is_public(operation) and "201" in operation["responses"]:
            assert "Idempotent-Replayed" in success["headers"]
            assert "Idempotency-Key" in [p["name"] for p in operation["parameters"]]
        if not is_public(operation):
            assert {"RateLimit", "RateLimit-Policy"} <= set(success["headers"])


async def test_responses_with_secrets_document_no_store(document):
    secret_bearing = {"createApiKey", "rotateApiKey", "createMember", "createSession"}
    for _, _, operation in operations(document):
        success = next(r for s, r in operation["responses"].items() if s.startswith("2"))
        documented = "Cache-Control" in success["headers"]
        assert documented == (operation["operationId"] in secret_bearing), operation["operationId"]


async def test_request_bodies_are_closed(document):
    schemas = document["components"]["schemas"]
    for path, method, operation in operations(document):
        if "requestBody" not in operation:
            continue
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
        assert schema["additionalProperties"] is False, (path, method)
    assert schemas["Step"]["additionalProperties"] is False  # nested bodies too
    assert schemas["ApiKeyCreate"]["properties"]["scopes"]["uniqueItems"] is True


async def test_the_stream_is_documented_as_server_sent_events(document):
    stream = document["paths"]["/v1/events/stream"]["get"]["responses"]["200"]
    assert list(stream["content"]) == ["text/event-stream"]


async def test_an_optional_body_is_not_a_required_null(document):
    rotate = document["paths"]["/v1/api-keys/{key_id}/rotate"]["post"]["requestBody"]
    assert rotate["required"] is False
    assert rotate["content"]["application/json"]["schema"]["$ref"].endswith("/ApiKeyRotate")


async def test_the_cursor_pattern_is_the_one_the_server_enforces(client, document, org):
    listing = document["paths"]["/v1/api-keys"]["get"]["parameters"]
    pattern = next(p for p in listing if p["name"] == "starting_after")["schema"]["pattern"]
    assert re.search(pattern, org.admin_key_id)
    accepted = await client.get(
        "/v1/api-keys", headers=bearer(org.admin_key), params={"starting_after": org.admin_key_id}
    )
    assert accepted.status_code == 200
    assert not re.search(pattern, "wf_" + org.admin_key_id[4:])
    refused = await client.get(
        "/v1/api-keys",
        headers=bearer(org.admin_key),
        params={"starting_after": "wf_" + org.admin_key_id[4:]},
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "starting_after"


async def test_the_docs_page_loads_only_assets_the_server_serves(client):
    page = await client.get("/schema")
    assert page.status_code == 200
    sources = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert sources, "the page loads Swagger UI"
    assert not [s for s in sources if s.startswith(("http:", "https:", "//"))], sources
    for source in sources:
        asset = await client.get(source)
        assert asset.status_code == 200, source
        assert len(asset.content) > 100, source
    script = await client.get("/schema/static/swagger-ui-bundle.js")
    assert script.headers["content-type"].startswith("text/javascript")
    missing = await client.get("/schema/static/no-such-file.js")
    assert missing.status_code == 404
