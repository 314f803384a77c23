"""Secrets never reach the server's log, whatever path a request takes."""

from conftest import bearer, secrets_found_in_logs


async def test_secrets_never_reach_the_server_log(client, org, make_key, server_log_dir, ledger):
    key_id, key = await make_key(org, ["events:read"])
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    ledger.add(tampered)
    await client.get("/v1/me", headers=bearer(tampered))
    await client.get("/v1/me", params={"api_key": key}, headers=bearer(key))
    await client.get(f"/v1/nowhere/{key}")
    await client.post(
        "/v1/api-keys",
        headers=bearer(key),
        content=key.encode(),
    )
    await client.post(
        "/v1/api-keys",
        headers={**bearer(org.admin_key), "Content-Type": "application/json"},
        content=b'{"name": "' + key.encode() + b'", "scopes": 7}',
    )
    await client.post("/v1/api-keys/revoke-leaked", json={"key": key})
    await client.get("/v1/me", headers=bearer(key))
    assert secrets_found_in_logs(server_log_dir, ledger.values) == []


def test_the_log_scan_finds_a_secret_or_its_hash_when_one_is_there(tmp_path):
    from conftest import TEST_PEPPER
    from ventryx_server.auth import hash_secret
    from ventryx_shared.tokens import generate_api_key

    key = generate_api_key("live")
    (tmp_path / "a.log").write_text(f"INFO something {key[9:-6]} happened\n")
    assert secrets_found_in_logs(tmp_path, {key}) == [key[:12] + "…"]
    (tmp_path / "a.log").write_text(f"hash={hash_secret(TEST_PEPPER, key).hex()}\n")
    assert secrets_found_in_logs(tmp_path, {key}) == [key[:12] + "…"]
    (tmp_path / "a.log").write_text("nothing to see\n")
    assert secrets_found_in_logs(tmp_path, {key}) == []


async def test_json_log_has_one_object_per_line_with_request_facts_and_no_secret(
    database_url, server_log_dir, make_org, make_key, ledger
):
    import json

    import httpx

    from conftest import ServerProcess

    log_path = server_log_dir / "server-json.log"
    process = ServerProcess(database_url, log_path, {"VENTRYX_LOG_FORMAT": "json"})
    try:
        process.wait_ready()
        org = await make_org()
        key_id, key = await make_key(org, ["events:read"])
        async with httpx.AsyncClient(base_url=process.url, timeout=10) as http:
            served = await http.get("/v1/me", headers=bearer(key))
            refused = await http.get("/v1/api-keys", headers=bearer(key))
            await http.get(f"/v1/nowhere/{key}")
    finally:
        process.stop()
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    access = {
        entry["request_id"]: entry for entry in lines if entry.get("logger") == "ventryx.access"
    }
    me = access[served.headers["request-id"]]
    assert me["route"] == "/v1/me" and me["status"] == 200 and me["method"] == "GET"
    assert me["credential_id"] == key_id and me["duration_ms"] > 0
    forbidden = access[refused.headers["request-id"]]
    assert forbidden["status"] == 403 and forbidden["credential_id"] is None
    # A path no route matches is answered by the router, before the middleware: no line.
    assert {entry["route"] for entry in access.values()} == {"/readyz", "/v1/me", "/v1/api-keys"}
    assert secrets_found_in_logs(server_log_dir, {key} | ledger.values) == []


async def test_the_default_log_is_for_people_without_a_line_per_request(
    server, client, server_log_dir
):
    response = await client.get("/healthz")
    assert response.status_code == 200
    text = (server_log_dir / "server-a.log").read_text()
    assert response.headers["request-id"] not in text
    assert not any(line.startswith("{") for line in text.splitlines())
