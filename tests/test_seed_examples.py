"""The two curl examples of the public Authentication page, run as written against a live
server process (only the host and the key differ)."""

import asyncio
import json
import shutil

import pytest

from conftest import bearer

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")

SEED_RESPONSE_FIELDS = {"id", "name", "key", "scopes", "created_at"}


async def curl(*args: str) -> tuple[int, dict]:
    process = await asyncio.create_subprocess_exec(
        "curl", "-s", "-w", "\n%{http_code}", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    body, _, status = out.decode().rpartition("\n")
    return int(status), json.loads(body) if body else {}


async def test_seed_create_key_example(server, org, ledger, client):
    status, body = await curl(
        "-X",
        "POST",
        f"{server.url}/v1/api-keys",
        "-H",
        f"Authorization: Bearer {org.admin_key}",
        "-H",
        "Content-Type: application/json",
        "-d",
        '{\n    "name": "ci-pipeline",\n    "scopes": ["workflows:read", "events:write"]\n  }',
    )
    assert status == 201
    data = body["data"]
    ledger.add(data["key"])
    assert SEED_RESPONSE_FIELDS <= set(data)
    assert data["id"].startswith("key_01")
    assert data["name"] == "ci-pipeline"
    assert data["key"].startswith("vtx_live_")
    assert data["scopes"] == ["workflows:read", "events:write"]
    assert data["created_at"].endswith("Z")
    # "The key value is only returned once at creation time."
    shown = await client.get(f"/v1/api-keys/{data['id']}", headers=bearer(org.admin_key))
    assert data["key"] not in shown.text


async def test_seed_revoke_key_example(server, org, make_key, client):
    key_id, key = await make_key(org, ["events:read"])
    status, body = await curl(
        "-X",
        "DELETE",
        f"{server.url}/v1/api-keys/{key_id}",
        "-H",
        f"Authorization: Bearer {org.admin_key}",
    )
    assert status == 200
    assert body["data"]["status"] == "revoked"
    # "Revocation is instantaneous."
    assert (await client.get("/v1/me", headers=bearer(key))).status_code == 401
