"""Logging in to the dashboard: sessions, the throttle, the login audit."""

import secrets
import statistics
import time

import pytest
from helpers import (
    NEW_PASSWORD_LENGTH,
    add_member,
    login,
    member_session,
    open_transaction,
    queued_on_locks,
)

from conftest import bearer, wait_for
from ventryx_shared.tokens import parse_token

pytestmark = pytest.mark.usefixtures("forget_local_login_failures")


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


async def test_wrong_password_and_unknown_email_get_the_same_answer(client, db, org):
    wrong = await login(client, org.owner_email, "not the password at all")
    unknown = await login(
        client, f"nobody-{secrets.token_hex(4)}@example.com", "not the password at all"
    )
    assert wrong.status_code == unknown.status_code == 401
    wrong_error, unknown_error = wrong.json()["error"], unknown.json()["error"]
    assert wrong_error.pop("request_id") != unknown_error.pop("request_id")
    assert (
        wrong_error
        == unknown_error
        == {
            "type": "authentication_error",
            "code": "invalid_login",
            "message": "Incorrect email or password.",
        }
    )
    async with db.acquire() as conn:
        sessions = await conn.fetchval("SELECT count(*) FROM sessions WHERE org_id = $1", org.id)
    assert sessions == 0


async def test_failed_login_is_audited_for_the_organization_whose_member_it_named(client, db, org):
    response = await login(client, org.owner_email.upper(), "not the password at all")
    assert response.status_code == 401

    # Written just after the response is sent, so that it costs no time a caller sees.
    async def entries():
        async with db.acquire() as conn:
            return await conn.fetch(
                "SELECT actor_id, action, target_type, target_id, request_id, client_address "
                "FROM audit_log WHERE org_id = $1 AND action LIKE 'session.%'",
                org.id,
            )

    assert [dict(e) for e in await wait_for(entries)] == [
        {
            "actor_id": org.owner_id,
            "action": "session.login_failed",
            "target_type": "member",
            "target_id": org.owner_id,
            "request_id": response.headers["request-id"],
            "client_address": "127.0.0.1",
        }
    ]


async def test_successful_login_is_audited_with_its_session(client, db, ledger, org):
    response = await login(client, org.owner_email, org.owner_password)
    assert response.status_code == 201
    ledger.add(response.json()["data"]["token"])
    async with db.acquire() as conn:
        entry = await conn.fetchrow(
            "SELECT * FROM audit_log WHERE org_id = $1 AND action = 'session.created'", org.id
        )
    assert entry["actor_id"] == org.owner_id
    assert entry["target_id"] == response.json()["data"]["session"]["id"]


async def test_repeated_failures_for_one_email_are_throttled_even_with_the_right_password(
    client, db, ledger, org
):
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
    # Throttled attempts are neither audited nor counted again. A failure entry is written
    # just after its response: once one for another member, made after the throttled
    # attempts, is there, so is any the throttled attempts would have made.
    later = await add_member(client, ledger, org, "viewer")
    assert (await login(client, later["email"], "a wrong guess")).status_code == 401

    def failures_of(member_id: str):
        async def count() -> int:
            async with db.acquire() as conn:
                return await conn.fetchval(
                    "SELECT count(*) FROM audit_log WHERE org_id = $1 "
                    "AND action = 'session.login_failed' AND target_id = $2",
                    org.id,
                    member_id,
                )

        return count

    assert await wait_for(lambda: _at_least(failures_of(later["id"]), 1))
    assert await failures_of(org.owner_id)() == MAX_FAILURES_PER_EMAIL_AT_ADDRESS


async def test_many_failures_from_one_address_are_throttled_across_emails(client, db, org):
    from ventryx_server.services.logins import MAX_FAILURES_PER_ADDRESS

    # All but the last failure are put in the table directly: the count, not argon2, is
    # what this test is about.
    async with db.acquire() as conn:
        await conn.execute(
            "INSERT INTO login_attempts (throttle_key) "
            "SELECT 'address:127.0.0.1' FROM generate_series(1, $1)",
            MAX_FAILURES_PER_ADDRESS - 1,
        )
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


async def test_login_rehashes_a_password_stored_with_older_parameters(client, db, ledger, org):
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    password = ledger.add(secrets.token_urlsafe(NEW_PASSWORD_LENGTH))
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE members SET password_hash = $3, must_change_password = false "
            "WHERE org_id = $1 AND id = $2",
            org.id,
            org.owner_id,
            weak.hash(password),
        )
    response = await login(client, org.owner_email, password)
    assert response.status_code == 201
    ledger.add(response.json()["data"]["token"])
    async with db.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT password_hash FROM members WHERE org_id = $1 AND id = $2", org.id, org.owner_id
        )
    assert "m=19456,t=2,p=1" in stored
    assert (await login(client, org.owner_email, password)).status_code == 201


async def test_bad_login_requests_are_refused_and_write_nothing(client, db):
    async with db.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM login_attempts")
        sessions_before = await conn.fetchval("SELECT count(*) FROM sessions")
    for body in [
        {},
        {"email": "a@example.com"},
        {"password": "x"},
        {"email": "a@example.com", "password": "x", "role": "owner"},
        {"email": "a@example.com", "password": "x", "organization": "acme"},
        {"email": "a@example.com", "password": ""},
        {"email": 5, "password": "x"},
        {"email": "a@example.com", "password": "x" * 1000},
    ]:
        response = await client.post("/v1/sessions", json=body)
        assert 400 <= response.status_code < 500 and response.status_code != 401, (
            body,
            response.text,
        )
        assert response.json()["error"]["type"] == "invalid_request_error"
    not_json = await client.post(
        "/v1/sessions",
        content=b"email=a&password=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert not_json.status_code == 415
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM login_attempts") == before
        assert await conn.fetchval("SELECT count(*) FROM sessions") == sessions_before


async def test_an_email_in_several_organizations_logs_in_to_the_one_it_names(
    client, ledger, make_org
):
    first, second = await make_org("First"), await make_org("Second")
    email = f"shared-{secrets.token_hex(4)}@example.com"
    passwords = {}
    for org in (first, second):
        created = await client.post(
            "/v1/members",
            headers=bearer(org.admin_key),
            json={"email": email, "name": "Shared", "role": "viewer"},
        )
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
            "/v1/members/me/password",
            headers=bearer(session.json()["data"]["token"]),
            json={"current_password": passwords[org.id], "new_password": same},
        )
        assert changed.status_code == 200, changed.text
    ambiguous = await login(client, email, same)
    assert ambiguous.status_code == 422
    error = ambiguous.json()["error"]
    assert error["code"] == "organization_required"
    assert first.id in error["message"] and second.id in error["message"]
    chosen = await login(client, email, same, organization=first.id)
    assert chosen.status_code == 201
    ledger.add(chosen.json()["data"]["token"])


async def test_the_openapi_document_says_login_needs_no_credential(client):
    document = (await client.get("/schema/openapi.json")).json()
    assert document["paths"]["/v1/sessions"]["post"]["security"] == [{}]
    assert "security" not in document["paths"]["/v1/sessions/current"]["delete"]


async def test_a_login_racing_the_members_removal_gets_no_session(client, db, ledger, org):
    member, _, password = await member_session(client, ledger, org, "viewer")
    async with open_transaction(
        db,
        ("SELECT 1 FROM members WHERE org_id = $1 AND id = $2 FOR UPDATE", org.id, member["id"]),
        ("DELETE FROM members WHERE org_id = $1 AND id = $2", org.id, member["id"]),
    ):
        attempt = await queued_on_locks(
            db, login(client, member["email"], password), "the login did not wait for the removal"
        )
    response = await attempt
    assert response.status_code == 401, response.text
    async with db.acquire() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM sessions WHERE member_id = $1", member["id"])
            == 0
        )


async def test_failures_that_left_the_window_are_cleared_by_later_logins(client, db):
    async with db.acquire() as conn:
        await conn.execute(
            "INSERT INTO login_attempts (throttle_key, attempted_at) SELECT "
            "'email:stale' || n, now() - interval '1 day' FROM generate_series(1, 30) n"
        )
    await login(client, f"someone-{secrets.token_hex(4)}@example.com", "a wrong guess")
    async with db.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM login_attempts WHERE throttle_key LIKE 'email:stale%'"
            )
            == 0
        )
