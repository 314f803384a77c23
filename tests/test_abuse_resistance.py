"""Nothing expensive before authentication, and no lockout lever in the login throttle.

Routes that hash a password must authorize their caller before argon2 and before the
body is decoded: checked here on the app itself (the real database behind it), with the
hasher counting its calls, for every route whose handler hashes.
"""

import inspect
import secrets

import pytest
from litestar.testing import AsyncTestClient

from conftest import TEST_PEPPER, ServerProcess, bearer
from ventryx_server import passwords
from ventryx_server.app import create_app
from ventryx_server.settings import Settings
from ventryx_shared.tokens import generate_api_key, generate_session_token

HASHING_CALLS = ("hash_password(", "verify_password(", "_matching_members(")
# Public routes that hash by design, limited per address and by the login throttle.
PUBLIC_HASHING_ROUTES = {"createSession"}


class CountingHasher:
    """The real argon2 hasher, counting how often it works."""

    def __init__(self, real) -> None:
        self.real = real
        self.calls = 0

    def hash(self, password: str) -> str:
        self.calls += 1
        return self.real.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        self.calls += 1
        return self.real.verify(password_hash, password)

    def check_needs_rehash(self, password_hash: str) -> bool:
        return self.real.check_needs_rehash(password_hash)


@pytest.fixture
def hasher(monkeypatch) -> CountingHasher:
    counting = CountingHasher(passwords.HASHER)
    monkeypatch.setattr(passwords, "HASHER", counting)
    return counting


@pytest.fixture
async def app_client(database_url):
    app = create_app(Settings(database_url=database_url, pepper=TEST_PEPPER))
    async with AsyncTestClient(app) as client:
        yield client


def test_every_route_that_hashes_authorizes_before_the_body_or_is_public():
    app = create_app(Settings(database_url="postgresql://unused", pepper=TEST_PEPPER))
    hashing = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            source = inspect.getsource(handler.fn)
            if any(call in source for call in HASHING_CALLS):
                hashing[handler.operation_id] = handler.opt.get("authorize_before_body")
    assert hashing.keys() >= {"createMember", "changeOwnPassword", "createSession"}
    unguarded = {
        op for op, first in hashing.items() if not first and op not in PUBLIC_HASHING_ROUTES
    }
    assert not unguarded, f"routes that hash before authorizing: {unguarded}"


async def test_adding_a_member_hashes_only_for_an_authorized_caller(
    app_client, hasher, client, org, make_key, ledger
):
    revoked_id, revoked = await make_key(org, ["org:admin"])
    await client.delete(f"/v1/api-keys/{revoked_id}", headers=bearer(org.admin_key))
    _, no_admin = await make_key(org, ["api-keys:write", "workflows:write"])
    not_json = b'{"email": "x@example.com", "role": '  # refused only if it were decoded
    hasher.calls = 0  # the organization's bootstrap hashed its owner's password
    for token, status in ((generate_api_key("live"), 401), (revoked, 401), (no_admin, 403)):
        response = await app_client.post(
            "/v1/members",
            content=not_json,
            headers={**bearer(token), "Content-Type": "application/json"},
        )
        assert response.status_code == status, response.text
    assert hasher.calls == 0
    # The negative twin: the admin key gets its member, and argon2 runs.
    added = await app_client.post(
        "/v1/members",
        headers=bearer(org.admin_key),
        json={"email": f"m-{secrets.token_hex(4)}@example.com", "name": "M", "role": "viewer"},
    )
    assert added.status_code == 201, added.text
    ledger.add(added.json()["data"]["one_time_password"])
    assert hasher.calls == 1


async def test_changing_a_password_hashes_only_for_a_members_session(
    app_client, hasher, client, org, ledger
):
    from helpers import owner_session

    hasher.calls = 0  # the organization's bootstrap hashed its owner's password
    for token in (generate_session_token(), generate_api_key("live")):
        response = await app_client.post(
            "/v1/members/me/password",
            content=b"[[[",
            headers={**bearer(token), "Content-Type": "application/json"},
        )
        assert response.status_code == 401, response.text
    # A real key is authorized, so its body is read; it is no member: no hash either.
    not_a_member = await app_client.post(
        "/v1/members/me/password",
        headers=bearer(org.admin_key),
        json={"current_password": "x" * 12, "new_password": "n" * 20},
    )
    assert not_a_member.status_code == 403
    assert hasher.calls == 0
    token = await owner_session(client, ledger, org)
    wrong = await app_client.post(
        "/v1/members/me/password",
        headers=bearer(token),
        json={"current_password": "not it", "new_password": "n" * 20},
    )
    assert wrong.status_code == 422
    assert hasher.calls == 1


@pytest.fixture(scope="module")
def behind_proxy(database_url, server_log_dir):
    process = ServerProcess(
        database_url, server_log_dir / "behind-proxy.log", {"VENTRYX_TRUSTED_PROXIES": "127.0.0.1"}
    )
    process.wait_ready()
    yield process
    process.stop()


async def test_failures_from_elsewhere_do_not_lock_the_owner_out(behind_proxy, db, org, ledger):
    import httpx

    from ventryx_server.services.logins import MAX_FAILURES_PER_EMAIL_AT_ADDRESS

    attacker = {"X-Forwarded-For": "198.51.100.7"}
    owner = {"X-Forwarded-For": "192.0.2.44"}
    guess = {"email": org.owner_email, "password": "a wrong guess"}
    right = {"email": org.owner_email, "password": org.owner_password}
    async with httpx.AsyncClient(base_url=behind_proxy.url, timeout=30) as http:
        for _ in range(MAX_FAILURES_PER_EMAIL_AT_ADDRESS):
            assert (
                await http.post("/v1/sessions", json=guess, headers=attacker)
            ).status_code == 401
        # The attacker's address is throttled for this email, even with the right password...
        throttled = await http.post("/v1/sessions", json=right, headers=attacker)
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) > 0
        # ...and the owner, from their own address, logs in.
        logged_in = await http.post("/v1/sessions", json=right, headers=owner)
        assert logged_in.status_code == 201, logged_in.text
        ledger.add(logged_in.json()["data"]["token"])
    # Sessions and the audit log record the client behind the trusted proxy.
    async with db.acquire() as conn:
        audited = await conn.fetchval(
            "SELECT client_address FROM audit_log WHERE org_id = $1 AND action = 'session.created'",
            org.id,
        )
        recorded = await conn.fetchval(
            "SELECT client_address FROM sessions WHERE id = $1",
            logged_in.json()["data"]["session"]["id"],
        )
    assert audited == recorded == "192.0.2.44"
