"""Dashboard sessions: login, throttling, expiry, logout and password changes."""

import asyncio
import secrets
import statistics
import time

import httpx
import pytest

from conftest import TEST_PEPPER, bearer, wait_for
from ventryx_server.auth import hash_secret
from ventryx_shared.tokens import parse_token

NEW_PASSWORD_LENGTH = 24


def session_headers(token: str, environment: str | None = None) -> dict[str, str]:
    headers = bearer(token)
    if environment is not None:
        headers["Ventryx-Environment"] = environment
    return headers


async def login(client, email: str, password: str, organization: str | None = None):
    body = {"email": email, "password": password}
    if organization is not None:
        body["organization"] = organization
    return await client.post("/v1/sessions", json=body)


async def first_login(client, ledger, email: str, one_time_password: str) -> tuple[str, str]:
    """Logs in with a one-time password and replaces it; returns (token, new password)."""
    response = await login(client, email, one_time_password)
    assert response.status_code == 201, response.text
    token = ledger.add(response.json()["data"]["token"])
    new_password = ledger.add(secrets.token_urlsafe(NEW_PASSWORD_LENGTH))
    changed = await client.post("/v1/members/me/password", headers=bearer(token), json={
        "current_password": one_time_password, "new_password": new_password})
    assert changed.status_code == 200, changed.text
    return token, new_password


async def owner_session(client, ledger, org) -> str:
    """A session of the organization's (bootstrapped) owner, password already changed."""
    token, org.owner_password = await first_login(client, ledger, org.owner_email,
                                                  org.owner_password)
    return token


async def add_member(client, ledger, org, role: str, by: str | None = None) -> dict:
    """Adds a member through the API (by the admin key unless ``by`` is given)."""
    email = f"{role}-{secrets.token_hex(4)}@example.com"
    response = await client.post("/v1/members", headers=bearer(by or org.admin_key), json={
        "email": email, "name": f"A {role}", "role": role})
    assert response.status_code == 201, response.text
    member = response.json()["data"]
    ledger.add(member["one_time_password"])
    return member


async def member_session(client, ledger, org, role: str, by: str | None = None):
    """A new member of ``role`` with a ready session: (member, token, password)."""
    member = await add_member(client, ledger, org, role, by=by)
    token, password = await first_login(client, ledger, member["email"],
                                        member["one_time_password"])
    return member, token, password


async def test_login_with_the_right_password_gives_a_session_token(client, ledger, org):
    response = await login(client, org.owner_email, org.owner_password)
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    token = ledger.add(data["token"])
    parsed = parse_token(token)
    assert parsed is not None and parsed.kind == "session"
    assert data["session"]["id"].startswith("ses_")
    assert data["member"]["id"] == org.owner_id
    assert data["member"]["must_change_password"] is True
    assert data["organization"] == {"id": org.id, "name": org.name}
    me = await client.get("/v1/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["data"]["credential_type"] == "session"
    assert me.json()["data"]["member_id"] == org.owner_id


async def _at_least(count, expected: int) -> bool:
    return await count() >= expected


@pytest.fixture(autouse=True)
async def forget_local_login_failures(db):
    """Throttle counts are per client address, and every test (and the fuzzer) logs in
    from 127.0.0.1: each test starts and ends with that address's count cleared.
    Modules that log in import this fixture, which makes it autouse there too."""

    async def forget() -> None:
        async with db.acquire() as conn:
            await conn.execute("DELETE FROM login_attempts WHERE throttle_key LIKE 'address:%'")

    await forget()
    yield
    await forget()


async def test_wrong_password_and_unknown_email_get_the_same_answer(client, db, org):
    wrong = await login(client, org.owner_email, "not the password at all")
    unknown = await login(client, f"nobody-{secrets.token_hex(4)}@example.com",
                          "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    wrong_error, unknown_error = wrong.json()["error"], unknown.json()["error"]
    assert wrong_error.pop("request_id") != unknown_error.pop("request_id")
    assert wrong_error == unknown_error == {
        "type": "authentication_error", "code": "invalid_login",
        "message": "Incorrect email or password."}
    async with db.acquire() as conn:
        sessions = await conn.fetchval("SELECT count(*) FROM sessions WHERE org_id = $1", org.id)
    assert sessions == 0


async def test_failed_login_is_audited_for_the_organization_whose_member_it_named(
        client, db, org):
    response = await login(client, org.owner_email.upper(), "not the password at all")
    assert response.status_code == 401
    # Written just after the response is sent, so that it costs no time a caller sees.
    async def entries():
        async with db.acquire() as conn:
            return await conn.fetch(
                "SELECT actor_id, action, target_type, target_id, request_id, client_address "
                "FROM audit_log WHERE org_id = $1 AND action LIKE 'session.%'", org.id)

    assert [dict(e) for e in await wait_for(entries)] == [{
        "actor_id": org.owner_id, "action": "session.login_failed", "target_type": "member",
        "target_id": org.owner_id, "request_id": response.headers["request-id"],
        "client_address": "127.0.0.1"}]


async def test_successful_login_is_audited_with_its_session(client, db, ledger, org):
    response = await login(client, org.owner_email, org.owner_password)
    assert response.status_code == 201
    ledger.add(response.json()["data"]["token"])
    async with db.acquire() as conn:
        entry = await conn.fetchrow(
            "SELECT * FROM audit_log WHERE org_id = $1 AND action = 'session.created'", org.id)
    assert entry["actor_id"] == org.owner_id
    assert entry["target_id"] == response.json()["data"]["session"]["id"]


async def test_repeated_failures_for_one_email_are_throttled_even_with_the_right_password(
        client, db, org):
    from ventryx_server.services.logins import (
        LOGIN_WINDOW_SECONDS,
        MAX_FAILURES_PER_EMAIL_AT_ADDRESS,
    )

    for _ in range(MAX_FAILURES_PER_EMAIL_AT_ADDRESS):
        assert (await login(client, org.owner_email, "a wrong guess")).status_code == 401
    throttled = await login(client, org.owner_email, org.owner_password)
    assert throttled.status_code == 429
    assert throttled.json()["error"]["type"] == "rate_limit_error"
    assert 0 < int(throttled.headers["retry-after"]) <= LOGIN_WINDOW_SECONDS
    # The same email in another case is the same account.
    assert (await login(client, org.owner_email.upper(), org.owner_password)).status_code == 429
    # Other people, from the same address, are not locked out.
    other = await login(client, f"someone-{secrets.token_hex(4)}@example.com", "a wrong guess")
    assert other.status_code == 401
    # Throttled attempts are neither audited nor counted again.
    async def failures() -> int:
        async with db.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM audit_log WHERE org_id = $1 "
                                       "AND action = 'session.login_failed'", org.id)

    await wait_for(lambda: _at_least(failures, MAX_FAILURES_PER_EMAIL_AT_ADDRESS))
    await asyncio.sleep(0.2)
    assert await failures() == MAX_FAILURES_PER_EMAIL_AT_ADDRESS


async def test_many_failures_from_one_address_are_throttled_across_emails(
        client, db, org):
    from ventryx_server.services.logins import MAX_FAILURES_PER_ADDRESS

    # All but the last failure are put in the table directly: the count, not argon2, is
    # what this test is about.
    async with db.acquire() as conn:
        await conn.execute(
            "INSERT INTO login_attempts (throttle_key) "
            "SELECT 'address:127.0.0.1' FROM generate_series(1, $1)",
            MAX_FAILURES_PER_ADDRESS - 1)
    last = await login(client, f"guess-{secrets.token_hex(4)}@example.com", "a wrong guess")
    assert last.status_code == 401
    blocked = await login(client, org.owner_email, org.owner_password)
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0


async def test_a_right_password_clears_the_emails_failures(client, ledger, org):
    from ventryx_server.services.logins import MAX_FAILURES_PER_EMAIL_AT_ADDRESS

    for _ in range(MAX_FAILURES_PER_EMAIL_AT_ADDRESS - 1):
        assert (await login(client, org.owner_email, "a wrong guess")).status_code == 401
    right = await login(client, org.owner_email, org.owner_password)
    assert right.status_code == 201
    ledger.add(right.json()["data"]["token"])
    for _ in range(MAX_FAILURES_PER_EMAIL_AT_ADDRESS - 1):
        assert (await login(client, org.owner_email, "a wrong guess")).status_code == 401


async def test_unknown_email_takes_as_long_as_a_wrong_password(client, org):
    # Loose on purpose (medians within a factor of two): the exact figure is a
    # benchmark's business, not a unit test's.
    async def timed(email: str) -> float:
        started = time.perf_counter()
        response = await login(client, email, "a wrong guess")
        assert response.status_code == 401
        return time.perf_counter() - started

    wrong, unknown = [], []
    for _ in range(7):
        wrong.append(await timed(org.owner_email))
        unknown.append(await timed(f"nobody-{secrets.token_hex(4)}@example.com"))
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.5 < ratio < 2, (wrong, unknown)


async def test_an_idle_session_expires(client, db, ledger, org):
    token = await owner_session(client, ledger, org)
    assert (await client.get("/v1/org", headers=bearer(token))).status_code == 200
    await asyncio.sleep(0.5)  # let the server's activity flush (every 0.2 s in tests) pass
    async with db.acquire() as conn:
        await conn.execute("UPDATE sessions SET idle_expires_at = now() - interval '1 second' "
                           "WHERE org_id = $1", org.id)
    response = await client.get("/v1/org", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_session"


async def test_a_session_past_its_absolute_lifetime_expires(client, db, ledger, org):
    token = await owner_session(client, ledger, org)
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE sessions SET absolute_expires_at = now() - interval '1 second' "
            "WHERE org_id = $1", org.id)
    assert (await client.get("/v1/me", headers=bearer(token))).status_code == 401


async def test_using_a_session_pushes_its_idle_expiry_forward(client, db, ledger, org):
    from ventryx_server.controllers.sessions import SESSION_IDLE_SECONDS

    token = await owner_session(client, ledger, org)
    session_id = (await client.get("/v1/me", headers=bearer(token))).json()["data"][
        "credential_id"]
    async with db.acquire() as conn:
        await conn.execute("UPDATE sessions SET idle_expires_at = now() + interval '1 minute' "
                           "WHERE org_id = $1 AND id = $2", org.id, session_id)

    async def pushed() -> bool:
        assert (await client.get("/v1/me", headers=bearer(token))).status_code == 200
        async with db.acquire() as conn:
            left = await conn.fetchval(
                "SELECT extract(epoch FROM idle_expires_at - now()) FROM sessions "
                "WHERE org_id = $1 AND id = $2", org.id, session_id)
        return left > SESSION_IDLE_SECONDS - 60

    assert await wait_for(pushed)


async def test_logout_ends_the_session_at_once(client, db, ledger, org):
    token = await owner_session(client, ledger, org)
    response = await client.delete("/v1/sessions/current", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["ended_at"] is not None
    after = await client.get("/v1/me", headers=bearer(token))
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "invalid_session"
    assert (await client.delete("/v1/sessions/current", headers=bearer(token))).status_code == 401
    async with db.acquire() as conn:
        ended = await conn.fetchval("SELECT count(*) FROM audit_log WHERE org_id = $1 AND "
                                    "action = 'session.ended'", org.id)
    assert ended == 1


async def test_an_api_key_cannot_log_out(client, db, org):
    response = await client.delete("/v1/sessions/current", headers=bearer(org.admin_key))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "session_required"
    assert (await client.get("/v1/me", headers=bearer(org.admin_key))).status_code == 200


async def test_a_one_time_password_session_can_only_change_its_password(client, ledger, org):
    response = await login(client, org.owner_email, org.owner_password)
    token = ledger.add(response.json()["data"]["token"])
    me = await client.get("/v1/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["data"]["scopes"] == []
    for method, path in [("GET", "/v1/api-keys"), ("GET", "/v1/members"),
                         ("GET", "/v1/audit-log"), ("PATCH", "/v1/org")]:
        refused = await client.request(method, path, headers=bearer(token),
                                       json={"name": "x"} if method == "PATCH" else None)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"]["code"] == "password_change_required"
    new_password = ledger.add(secrets.token_urlsafe(NEW_PASSWORD_LENGTH))
    changed = await client.post("/v1/members/me/password", headers=bearer(token), json={
        "current_password": org.owner_password, "new_password": new_password})
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["member"]["must_change_password"] is False
    # The same session now has the role's scopes, from its very next request.
    assert (await client.get("/v1/members", headers=bearer(token))).status_code == 200
    assert (await client.get("/v1/me", headers=bearer(token))).json()["data"]["scopes"] == [
        "org:admin"]


async def test_changing_the_password_ends_every_other_session(client, ledger, org):
    token = await owner_session(client, ledger, org)
    other = await login(client, org.owner_email, org.owner_password)
    other_token = ledger.add(other.json()["data"]["token"])
    old_password = org.owner_password
    new_password = ledger.add(secrets.token_urlsafe(NEW_PASSWORD_LENGTH))
    changed = await client.post("/v1/members/me/password", headers=bearer(token), json={
        "current_password": old_password, "new_password": new_password})
    assert changed.status_code == 200
    assert changed.json()["data"]["other_sessions_ended"] == 1
    assert (await client.get("/v1/me", headers=bearer(other_token))).status_code == 401
    assert (await client.get("/v1/me", headers=bearer(token))).status_code == 200
    assert (await login(client, org.owner_email, old_password)).status_code == 401
    again = await login(client, org.owner_email, new_password)
    assert again.status_code == 201
    ledger.add(again.json()["data"]["token"])


async def test_password_change_needs_the_current_password_and_writes_nothing_otherwise(
        client, db, ledger, org):
    token = await owner_session(client, ledger, org)
    async with db.acquire() as conn:
        before = await conn.fetchrow("SELECT password_hash, updated_at FROM members "
                                     "WHERE org_id = $1 AND id = $2", org.id, org.owner_id)
        audit_before = await conn.fetchval("SELECT count(*) FROM audit_log WHERE org_id = $1",
                                            org.id)
    bad_requests = [
        ({"current_password": "not it at all", "new_password": "x" * 20}, 422,
         "incorrect_password"),
        ({"current_password": org.owner_password, "new_password": "short"}, 422, None),
        ({"current_password": org.owner_password, "new_password": org.owner_password}, 422,
         "password_unchanged"),
        ({"current_password": org.owner_password, "new_password": "x" * 257}, 422, None),
        ({"current_password": org.owner_password}, 422, None),
        ({"current_password": org.owner_password, "new_password": "x" * 20, "extra": 1}, 422,
         "unknown_field"),
    ]
    for body, status, code in bad_requests:
        response = await client.post("/v1/members/me/password", headers=bearer(token),
                                     json=body)
        assert response.status_code == status, (body, response.text)
        if code:
            assert response.json()["error"]["code"] == code
    keyed = await client.post("/v1/members/me/password", headers=bearer(org.admin_key), json={
        "current_password": org.owner_password, "new_password": "x" * 20})
    assert keyed.status_code == 403
    assert keyed.json()["error"]["code"] == "session_required"
    async with db.acquire() as conn:
        after = await conn.fetchrow("SELECT password_hash, updated_at FROM members "
                                    "WHERE org_id = $1 AND id = $2", org.id, org.owner_id)
        audit_after = await conn.fetchval("SELECT count(*) FROM audit_log WHERE org_id = $1",
                                          org.id)
    assert after == before
    assert audit_after == audit_before


async def test_login_rehashes_a_password_stored_with_older_parameters(client, db, ledger, org):
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    password = ledger.add(secrets.token_urlsafe(NEW_PASSWORD_LENGTH))
    async with db.acquire() as conn:
        await conn.execute("UPDATE members SET password_hash = $3, must_change_password = false "
                           "WHERE org_id = $1 AND id = $2", org.id, org.owner_id,
                           weak.hash(password))
    response = await login(client, org.owner_email, password)
    assert response.status_code == 201
    ledger.add(response.json()["data"]["token"])
    async with db.acquire() as conn:
        stored = await conn.fetchval("SELECT password_hash FROM members "
                                     "WHERE org_id = $1 AND id = $2", org.id, org.owner_id)
    assert "m=19456,t=2,p=1" in stored
    assert (await login(client, org.owner_email, password)).status_code == 201


async def test_bad_login_requests_are_refused_and_write_nothing(client, db):
    async with db.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM login_attempts")
        sessions_before = await conn.fetchval("SELECT count(*) FROM sessions")
    for body in [{}, {"email": "a@example.com"}, {"password": "x"},
                 {"email": "a@example.com", "password": "x", "role": "owner"},
                 {"email": "a@example.com", "password": "x", "organization": "acme"},
                 {"email": "a@example.com", "password": ""},
                 {"email": 5, "password": "x"},
                 {"email": "a@example.com", "password": "x" * 1000}]:
        response = await client.post("/v1/sessions", json=body)
        assert 400 <= response.status_code < 500 and response.status_code != 401, (body,
                                                                                   response.text)
        assert response.json()["error"]["type"] == "invalid_request_error"
    not_json = await client.post("/v1/sessions", content=b"email=a&password=b",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert not_json.status_code == 415
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM login_attempts") == before
        assert await conn.fetchval("SELECT count(*) FROM sessions") == sessions_before


async def test_a_malformed_or_made_up_session_token_gets_401(client, org):
    made_up = "vtxs_" + "A" * 50
    for token in [made_up, "vtxs_short"]:
        response = await client.get("/v1/me", headers=bearer(token))
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_session"


async def test_a_session_chooses_its_environment_per_request(client, ledger, org):
    token = await owner_session(client, ledger, org)
    default = await client.get("/v1/me", headers=bearer(token))
    assert default.json()["data"]["environment"] == "live"
    test = await client.get("/v1/me", headers=session_headers(token, "test"))
    assert test.json()["data"]["environment"] == "test"
    bad = await client.get("/v1/me", headers=session_headers(token, "staging"))
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "Ventryx-Environment"


async def test_a_live_session_creates_keys_of_either_environment(client, ledger, org):
    token = await owner_session(client, ledger, org)
    for environment in ("live", "test"):
        response = await client.post("/v1/api-keys", headers=bearer(token), json={
            "name": f"from the dashboard ({environment})", "scopes": ["events:write"],
            "environment": environment})
        assert response.status_code == 201, response.text
        data = response.json()["data"]
        ledger.add(data["key"])
        assert data["environment"] == environment
        assert data["created_by"] == org.owner_id
        works = await client.get("/v1/me", headers=bearer(data["key"]))
        assert works.json()["data"]["environment"] == environment


async def test_a_test_environment_session_cannot_create_live_keys(client, ledger, org):
    token = await owner_session(client, ledger, org)
    response = await client.post("/v1/api-keys", headers=session_headers(token, "test"), json={
        "name": "escalation", "scopes": ["events:write"], "environment": "live"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "environment_escalation"
    test_key = await client.post("/v1/api-keys", headers=session_headers(token, "test"), json={
        "name": "sandbox", "scopes": ["events:write"]})
    assert test_key.status_code == 201
    assert ledger.add(test_key.json()["data"]["key"]).startswith("vtx_test_")
    # A test session sees only test keys: the bootstrap (live) key is 404 to it.
    hidden = await client.get(f"/v1/api-keys/{org.admin_key_id}",
                              headers=session_headers(token, "test"))
    assert hidden.status_code == 404


async def test_a_session_creates_keys_only_within_its_roles_scopes(client, ledger, org):
    developer, token, _ = await member_session(client, ledger, org, "developer")
    allowed = await client.post("/v1/api-keys", headers=bearer(token), json={
        "name": "ci", "scopes": ["workflows:read", "events:write"]})
    assert allowed.status_code == 201, allowed.text
    ledger.add(allowed.json()["data"]["key"])
    assert allowed.json()["data"]["created_by"] == developer["id"]
    escalation = await client.post("/v1/api-keys", headers=bearer(token), json={
        "name": "admin", "scopes": ["org:admin"]})
    assert escalation.status_code == 403
    assert escalation.json()["error"]["code"] == "scope_escalation"
    _, viewer_token, _ = await member_session(client, ledger, org, "viewer")
    refused = await client.post("/v1/api-keys", headers=bearer(viewer_token), json={
        "name": "ci", "scopes": ["workflows:read"]})
    assert refused.status_code == 403
    assert "api-keys:write" in refused.json()["error"]["message"]


async def test_an_email_in_several_organizations_logs_in_to_the_one_it_names(
        client, ledger, make_org):
    first, second = await make_org("First"), await make_org("Second")
    email = f"shared-{secrets.token_hex(4)}@example.com"
    passwords = {}
    for org in (first, second):
        created = await client.post("/v1/members", headers=bearer(org.admin_key), json={
            "email": email, "name": "Shared", "role": "viewer"})
        assert created.status_code == 201
        passwords[org.id] = ledger.add(created.json()["data"]["one_time_password"])
    # Different passwords: the one that matches chooses the organization.
    only_second = await login(client, email, passwords[second.id])
    assert only_second.status_code == 201
    ledger.add(only_second.json()["data"]["token"])
    assert only_second.json()["data"]["organization"]["id"] == second.id
    # Named explicitly, the other organization's password does not open this one.
    crossed = await login(client, email, passwords[second.id], organization=first.id)
    assert crossed.status_code == 401
    named = await login(client, email, passwords[first.id], organization=first.id)
    assert named.status_code == 201
    ledger.add(named.json()["data"]["token"])
    # The same password in both: the organization must be named.
    same = ledger.add(secrets.token_urlsafe(NEW_PASSWORD_LENGTH))
    for org, session in ((first, named), (second, only_second)):
        changed = await client.post(
            "/v1/members/me/password", headers=bearer(session.json()["data"]["token"]),
            json={"current_password": passwords[org.id], "new_password": same})
        assert changed.status_code == 200, changed.text
    ambiguous = await login(client, email, same)
    assert ambiguous.status_code == 422
    error = ambiguous.json()["error"]
    assert error["code"] == "organization_required"
    assert first.id in error["message"] and second.id in error["message"]
    chosen = await login(client, email, same, organization=first.id)
    assert chosen.status_code == 201
    ledger.add(chosen.json()["data"]["token"])


async def test_a_removed_members_session_ends_but_keys_they_made_keep_working(
        client, ledger, org):
    developer, token, _ = await member_session(client, ledger, org, "developer")
    created = await client.post("/v1/api-keys", headers=bearer(token), json={
        "name": "made by the developer", "scopes": ["events:write"]})
    key = ledger.add(created.json()["data"]["key"])
    removed = await client.delete(f"/v1/members/{developer['id']}",
                                  headers=bearer(org.admin_key))
    assert removed.status_code == 200, removed.text
    data = removed.json()["data"]
    assert data["sessions_ended"] == 1
    assert data["api_keys_still_active"] == [created.json()["data"]["id"]]
    assert "keep working" in data["note"]
    assert (await client.get("/v1/me", headers=bearer(token))).status_code == 401
    assert (await client.get("/v1/me", headers=bearer(key))).status_code == 200


async def test_logout_through_one_process_is_seen_by_another(client, second_server, ledger,
                                                             org):
    token = await owner_session(client, ledger, org)
    async with httpx.AsyncClient(base_url=second_server.url) as other:
        assert (await other.get("/v1/members", headers=bearer(token))).status_code == 200
        assert (await client.delete("/v1/sessions/current",
                                    headers=bearer(token))).status_code == 200
        assert (await other.get("/v1/members", headers=bearer(token))).status_code == 401


async def test_a_write_in_flight_when_a_session_ends_gets_401_and_writes_nothing(
        client, db, ledger, org):
    """Hold a logout open exactly as DELETE /v1/sessions/current does it (the session row
    locked FOR UPDATE, ended_at set), start a write with the session, then commit."""
    token = await owner_session(client, ledger, org)
    session_id = (await client.get("/v1/me", headers=bearer(token))).json()["data"][
        "credential_id"]
    before = await db.fetchval("SELECT count(*) FROM api_keys WHERE org_id = $1", org.id)
    async with db.acquire() as conn:
        logout = conn.transaction()
        await logout.start()
        await conn.execute("SELECT 1 FROM sessions WHERE org_id = $1 AND id = $2 FOR UPDATE",
                           org.id, session_id)
        await conn.execute("UPDATE sessions SET ended_at = now() WHERE org_id = $1 AND id = $2",
                           org.id, session_id)
        write = asyncio.create_task(client.post(
            "/v1/api-keys", headers=bearer(token),
            json={"name": "in flight", "scopes": ["events:read"]}))
        done, _ = await asyncio.wait({write}, timeout=0.5)
        assert not done, "the write did not wait for the logout's lock"
        await logout.commit()
    response = await write
    assert response.status_code == 401, response.text
    assert await db.fetchval("SELECT count(*) FROM api_keys WHERE org_id = $1", org.id) == before


async def test_removing_a_member_waits_for_a_write_already_holding_their_session(
        client, db, ledger, org):
    member, token, _ = await member_session(client, ledger, org, "developer")
    async with db.acquire() as conn:
        write = conn.transaction()
        await write.start()
        locked = await conn.fetchrow(
            "SELECT * FROM locked_session_caller($1, $2, 'live', 'events:write')",
            token[len("vtxs_"):][:12], hash_secret(TEST_PEPPER, token))
        assert locked["member_id"] == member["id"]
        removal = asyncio.create_task(
            client.delete(f"/v1/members/{member['id']}", headers=bearer(org.admin_key)))
        done, _ = await asyncio.wait({removal}, timeout=0.5)
        assert not done, "the removal did not wait for the write in flight"
        await write.commit()
    assert (await removal).status_code == 200
    assert (await client.get("/v1/me", headers=bearer(token))).status_code == 401


async def test_a_role_change_waits_for_a_write_already_holding_the_members_session(
        client, db, ledger, org):
    member, token, _ = await member_session(client, ledger, org, "developer")
    async with db.acquire() as conn:
        write = conn.transaction()
        await write.start()
        await conn.fetchrow(
            "SELECT * FROM locked_session_caller($1, $2, 'live', 'events:write')",
            token[len("vtxs_"):][:12], hash_secret(TEST_PEPPER, token))
        demotion = asyncio.create_task(client.patch(
            f"/v1/members/{member['id']}", headers=bearer(org.admin_key),
            json={"role": "viewer"}))
        done, _ = await asyncio.wait({demotion}, timeout=0.5)
        assert not done, "the role change did not wait for the write in flight"
        await write.commit()
    assert (await demotion).status_code == 200
    refused = await client.post("/v1/api-keys", headers=bearer(token),
                                json={"name": "after demotion", "scopes": ["events:read"]})
    assert refused.status_code == 403


async def test_guessing_the_current_password_through_a_session_is_throttled(client, ledger,
                                                                           org):
    from ventryx_server.services.logins import MAX_FAILURES_PER_EMAIL_AT_ADDRESS

    token = await owner_session(client, ledger, org)
    guess = {"current_password": "a wrong guess", "new_password": "n" * 20}
    for _ in range(MAX_FAILURES_PER_EMAIL_AT_ADDRESS):
        response = await client.post("/v1/members/me/password", headers=bearer(token),
                                     json=guess)
        assert response.status_code == 422
    throttled = await client.post("/v1/members/me/password", headers=bearer(token), json={
        "current_password": org.owner_password, "new_password": "n" * 20})
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
    # The same email's logins are throttled too: one account, one count.
    assert (await login(client, org.owner_email, org.owner_password)).status_code == 429


async def test_the_openapi_document_says_login_needs_no_credential(client):
    document = (await client.get("/schema/openapi.json")).json()
    assert document["paths"]["/v1/sessions"]["post"]["security"] == [{}]
    assert "security" not in document["paths"]["/v1/sessions/current"]["delete"]


async def test_a_login_racing_the_members_removal_gets_no_session(client, db, ledger, org):
    member, _, password = await member_session(client, ledger, org, "viewer")
    async with db.acquire() as conn:
        removal = conn.transaction()
        await removal.start()
        await conn.execute("SELECT 1 FROM members WHERE org_id = $1 AND id = $2 FOR UPDATE",
                           org.id, member["id"])
        await conn.execute("DELETE FROM members WHERE org_id = $1 AND id = $2",
                           org.id, member["id"])
        attempt = asyncio.create_task(login(client, member["email"], password))
        done, _ = await asyncio.wait({attempt}, timeout=1.0)
        assert not done, "the login did not wait for the removal"
        await removal.commit()
    response = await attempt
    assert response.status_code == 401, response.text
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM sessions WHERE member_id = $1",
                                   member["id"]) == 0


async def test_failures_that_left_the_window_are_cleared_by_later_logins(client, db):
    async with db.acquire() as conn:
        await conn.execute(
            "INSERT INTO login_attempts (throttle_key, attempted_at) SELECT "
            "'email:stale' || n, now() - interval '1 day' FROM generate_series(1, 30) n")
    await login(client, f"someone-{secrets.token_hex(4)}@example.com", "a wrong guess")
    async with db.acquire() as conn:
        assert await conn.fetchval(
            "SELECT count(*) FROM login_attempts WHERE throttle_key LIKE 'email:stale%'") == 0


async def test_a_password_change_ends_a_session_a_racing_login_was_creating(
        client, db, ledger, org):
    from ventryx_server.controllers.sessions import SESSION_IDLE_SECONDS
    from ventryx_shared.ids import new_id
    from ventryx_shared.tokens import generate_session_token

    token = await owner_session(client, ledger, org)
    racing = ledger.add(generate_session_token())
    async with db.acquire() as conn:
        login_in_flight = conn.transaction()
        await login_in_flight.start()
        # What insert-session does for a login that verified the old password.
        await conn.execute(
            "INSERT INTO sessions (org_id, id, member_id, lookup_id, secret_hash, idle_timeout, "
            "idle_expires_at, absolute_expires_at) SELECT m.org_id, $3, m.id, $4, $5, "
            "make_interval(secs => $6), now() + interval '1 hour', now() + interval '1 day' "
            "FROM members m WHERE m.org_id = $1 AND m.id = $2 FOR KEY SHARE",
            org.id, org.owner_id, new_id("ses"), racing[5:17],
            hash_secret(TEST_PEPPER, racing), float(SESSION_IDLE_SECONDS))
        change = asyncio.create_task(client.post(
            "/v1/members/me/password", headers=bearer(token),
            json={"current_password": org.owner_password,
                  "new_password": ledger.add(secrets.token_urlsafe(NEW_PASSWORD_LENGTH))}))
        done, _ = await asyncio.wait({change}, timeout=1.0)
        assert not done, "the password change did not wait for the login in flight"
        await login_in_flight.commit()
    response = await change
    assert response.status_code == 200, response.text
    assert response.json()["data"]["other_sessions_ended"] == 1
    assert (await client.get("/v1/me", headers=bearer(racing))).status_code == 401
    assert (await client.get("/v1/me", headers=bearer(token))).status_code == 200
