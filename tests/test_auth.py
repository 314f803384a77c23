"""Credentials are checked offline first: a malformed one never reaches the database."""

import asyncio

import httpx
import pytest

from conftest import ServerProcess, bearer, create_migrated_database, drop_database
from ventryx_shared.tokens import BASE62, generate_api_key


def _bad_checksum(token: str) -> str:
    last = token[-1]
    return token[:-1] + (BASE62[(BASE62.index(last) + 1) % 62])


def malformed_tokens(real: str) -> dict[str, str]:
    return {
        "empty": "",
        "wrong prefix": "sk_live_" + real[9:],
        "other environment prefix": "vtx_prod_" + real[9:],
        "bad checksum": _bad_checksum(real),
        "truncated": real[:-6],
        "ten kilobytes": "vtx_live_" + "a" * 10_240,
        "non-ascii": real[:-3] + "é" + real[-2:],
        "spaces inside": real[:20] + " " + real[20:],
    }


async def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["type"] == "authentication_error"
    assert error["request_id"] == response.headers["Request-Id"]


@pytest.mark.parametrize("case", list(malformed_tokens(generate_api_key("live"))))
async def test_malformed_credentials_get_401_in_the_envelope(client, org, case, ledger):
    token = malformed_tokens(org.admin_key)[case]
    headers = {"Authorization": f"Bearer {token}".strip().encode("utf-8")}
    response = await client.get("/v1/me", headers=headers)
    await assert_401(response)
    assert token[9:-4] not in response.text or len(token) < 20


@pytest.mark.parametrize("header", ["", "Bearer", "Basic dXNlcjpwYXNz", "Token x", "bearer"])
async def test_missing_or_non_bearer_authorization_gets_401(client, header):
    response = await client.get("/v1/api-keys", headers={"Authorization": header} if header else {})
    await assert_401(response)


@pytest.mark.parametrize("param", ["api_key", "key", "token", "access_token", "anything"])
async def test_keys_in_the_query_string_are_refused(client, org, param):
    response = await client.get(
        "/v1/me", params={param: org.admin_key}, headers=bearer(org.admin_key)
    )
    await assert_401(response)
    assert response.json()["error"]["code"] == "credential_in_query"
    assert org.admin_key not in response.text


async def test_malformed_tokens_are_refused_without_touching_the_database(
    admin_url, org, server_log_dir
):
    """With its database gone, the server still answers 401 to a malformed token (no query
    was needed) while a well-formed one gets 503: the database is only asked about keys
    that could be real."""
    url = await create_migrated_database(admin_url)
    process = ServerProcess(url, server_log_dir / "server-without-db.log")
    try:
        await asyncio.to_thread(process.wait_ready)
        await drop_database(admin_url, url)
        async with httpx.AsyncClient(base_url=process.url, timeout=10) as http:
            for token in malformed_tokens(org.admin_key).values():
                response = await http.get(
                    "/v1/me", headers={"Authorization": f"Bearer {token}".strip().encode()}
                )
                assert response.status_code == 401
            wellformed = await http.get("/v1/me", headers=bearer(generate_api_key("live")))
            assert wellformed.status_code == 503
            assert wellformed.headers["Retry-After"]
            assert wellformed.json()["error"]["type"] == "api_error"
    finally:
        process.stop()


async def test_unknown_but_wellformed_key_gets_401(client):
    await assert_401(await client.get("/v1/me", headers=bearer(generate_api_key("live"))))


async def test_every_response_carries_a_request_id(client, org):
    for response in (
        await client.get("/healthz"),
        await client.get("/v1/me", headers=bearer(org.admin_key)),
        await client.get("/v1/nowhere"),
        await client.put("/v1/me", headers=bearer(org.admin_key)),
    ):
        assert response.headers["Request-Id"].startswith("req_")


async def test_unknown_routes_and_methods_use_the_error_envelope(client, org):
    missing = await client.get("/v1/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    wrong_method = await client.put("/v1/me", headers=bearer(org.admin_key))
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"


async def test_health_and_readiness_need_no_credential(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_openapi_declares_the_bearer_scheme(client):
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.1")
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (vtx_live_…, vtx_test_…) or a dashboard session token (vtxs_…)",
    }
    operations = {
        op["operationId"]: op
        for path in schema["paths"].values()
        for op in path.values()
        if isinstance(op, dict) and "operationId" in op
    }
    assert {
        "createApiKey",
        "listApiKeys",
        "getApiKey",
        "updateApiKey",
        "revokeApiKey",
        "rotateApiKey",
        "revokeLeakedApiKey",
        "getMe",
    } <= set(operations)
    # An empty requirement: the leaked-key report needs no credential.
    assert operations["revokeLeakedApiKey"]["security"] == [{}]
    assert "security" not in operations["getMe"]  # the document-wide bearer requirement
