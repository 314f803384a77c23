"""Changing a member's password: one-time passwords, other sessions ended, the throttle."""

import secrets

import pytest
from helpers import NEW_PASSWORD_LENGTH, login, open_transaction, owner_session, queued_on_locks

from conftest import TEST_PEPPER, bearer
from ventryx_server.auth import hash_secret

pytestmark = pytest.mark.usefixtures("forget_local_login_failures")


async def test_a_one_time_password_session_can_only_change_its_password(client, ledger, org):
    response = await login(client, org.owner_email, org.owner_password)
    token = ledger.add(response.json()["data"]["token"])
    me = await client.get("/v1/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["data"]["scopes"] == []
    for method, path in [
        ("GET", "/v1/api-keys"),
        ("GET", "/v1/members"),
        ("GET", "/v1/audit-log"),
        ("PATCH", "/v1/org"),
    ]:
        refused = await client.request(
            method, path, headers=bearer(token), json={"name": "x"} if method == "PATCH" else None
        )
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"]["code"] == "password_change_required"
    new_password = ledger.add(secrets.token_urlsafe(NEW_PASSWORD_LENGTH))
    changed = await client.post(
        "/v1/members/me/password",
        headers=bearer(token),
        json={"current_password": org.owner_password, "new_password": new_password},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["member"]["must_change_password"] is False
    # The same session now has the role's scopes, from its very next request.
    assert (await client.get("/v1/members", headers=bearer(token))).status_code == 200
    assert (await client.get("/v1/me", headers=bearer(token))).json()["data"]["scopes"] == [
        "org:admin"
    ]


async def test_changing_the_password_ends_every_other_session(client, ledger, org):
    token = await owner_session(client, ledger, org)
    other = await login(client, org.owner_email, org.owner_password)
    other_token = ledger.add(other.json()["data"]["token"])
    old_password = org.owner_password
    new_password = ledger.add(secrets.token_urlsafe(NEW_PASSWORD_LENGTH))
    changed = await client.post(
        "/v1/members/me/password",
        headers=bearer(token),
        json={"current_password": old_password, "new_password": new_password},
    )
    assert changed.status_code == 200
    assert changed.json()["data"]["other_sessions_ended"] == 1
    assert (await client.get("/v1/me", headers=bearer(other_token))).status_code == 401
    assert (await client.get("/v1/me", headers=bearer(token))).status_code == 200
    assert (await login(client, org.owner_email, old_password)).status_code == 401
    again = await login(client, org.owner_email, new_password)
    assert again.status_code == 201
    ledger.add(again.json()["data"]["token"])


async def test_password_change_needs_the_current_password_and_writes_nothing_otherwise(
    client, db, ledger, org
):
    token = await owner_session(client, ledger, org)
    async with db.acquire() as conn:
        before = await conn.fetchrow(
            "SELECT password_hash, updated_at FROM members WHERE org_id = $1 AND id = $2",
            org.id,
            org.owner_id,
        )
        audit_before = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE org_id = $1", org.id
        )
    bad_requests = [
        (
            {"current_password": "not it at all", "new_password": "x" * 20},
            422,
            "incorrect_password",
        ),
        ({"current_password": org.owner_password, "new_password": "short"}, 422, None),
        (
            {"current_password": org.owner_password, "new_password": org.owner_password},
            422,
            "password_unchanged",
        ),
        ({"current_password": org.owner_password, "new_password": "x" * 257}, 422, None),
        ({"current_password": org.owner_password}, 422, None),
        (
            {"current_password": org.owner_password, "new_password": "x" * 20, "extra": 1},
            422,
            "unknown_field",
        ),
    ]
    for body, status, code in bad_requests:
        response = await client.post("/v1/members/me/password", headers=bearer(token), json=body)
        assert response.status_code == status, (body, response.text)
        if code:
            assert response.json()["error"]["code"] == code
    keyed = await client.post(
        "/v1/members/me/password",
        headers=bearer(org.admin_key),
        json={"current_password": org.owner_password, "new_password": "x" * 20},
    )
    assert keyed.status_code == 403
    assert keyed.json()["error"]["code"] == "session_required"
    async with db.acquire() as conn:
        after = await conn.fetchrow(
            "SELECT password_hash, updated_at FROM members WHERE org_id = $1 AND id = $2",
            org.id,
            org.owner_id,
        )
        audit_after = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE org_id = $1", org.id
        )
    assert after == before
    assert audit_after == audit_before


async def test_guessing_the_current_password_through_a_session_is_throttled(client, ledger, org):
    from ventryx_server.services.logins import MAX_FAILURES_PER_EMAIL_AT_ADDRESS

    token = await owner_session(client, ledger, org)
    guess = {"current_password": "a wrong guess", "new_password": "n" * 20}
    for _ in range(MAX_FAILURES_PER_EMAIL_AT_ADDRESS):
        response = await client.post("/v1/members/me/password", headers=bearer(token), json=guess)
        assert response.status_code == 422
    throttled = await client.post(
        "/v1/members/me/password",
        headers=bearer(token),
        json={"current_password": org.owner_password, "new_password": "n" * 20},
    )
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
    # The same email's logins are throttled too: one account, one count.
    assert (await login(client, org.owner_email, org.owner_password)).status_code == 429


async def test_a_password_change_ends_a_session_a_racing_login_was_creating(
    client, db, ledger, org
):
    from ventryx_server.controllers.sessions import SESSION_IDLE_SECONDS
    from ventryx_shared.ids import new_id
    from ventryx_shared.tokens import generate_session_token

    token = await owner_session(client, ledger, org)
    racing = ledger.add(generate_session_token())
    # What insert-session does for a login that verified the old password.
    async with open_transaction(
        db,
        (
            "INSERT INTO sessions (org_id, id, member_id, lookup_id, secret_hash, idle_timeout, "
            "idle_expires_at, absolute_expires_at) SELECT m.org_id, $3, m.id, $4, $5, "
            "make_interval(secs => $6), now() + interval '1 hour', now() + interval '1 day' "
            "FROM members m WHERE m.org_id = $1 AND m.id = $2 FOR KEY SHARE",
            org.id,
            org.owner_id,
            new_id("ses"),
            racing[5:17],
            hash_secret(TEST_PEPPER, racing),
            float(SESSION_IDLE_SECONDS),
        ),
    ):
        change = await queued_on_locks(
            db,
            client.post(
                "/v1/members/me/password",
                headers=bearer(token),
                json={
                    "current_password": org.owner_password,
                    "new_password": ledger.add(secrets.token_urlsafe(NEW_PASSWORD_LENGTH)),
                },
            ),
            "the password change did not wait for the login in flight",
        )
    response = await change
    assert response.status_code == 200, response.text
    assert response.json()["data"]["other_sessions_ended"] == 1
    assert (await client.get("/v1/me", headers=bearer(racing))).status_code == 401
    assert (await client.get("/v1/me", headers=bearer(token))).status_code == 200
