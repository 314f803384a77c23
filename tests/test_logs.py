"""Secrets never reach the server's log, whatever path a request takes."""

from conftest import bearer, secrets_found_in_logs


async def test_secrets_never_reach_the_server_log(client, org, make_key, server_log_dir, ledger):
    key_id, key = await make_key(org, ["events:read"])
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    ledger.add(tampered)
    await client.get("/v1/me", headers=bearer(tampered))
    await client.get("/v1/me", params={"api_key": key}, headers=bearer(key))
    await client.get(f"/v1/nowhere/{key}")
    await client.post("/v1/api-keys", headers=bearer(key), content=key.encode(),
                      )
    await client.post("/v1/api-keys", headers={**bearer(org.admin_key),
                                               "Content-Type": "application/json"},
                      content=b'{"name": "' + key.encode() + b'", "scopes": 7}')
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
