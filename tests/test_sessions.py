"""Dashboard sessions: login, throttling, expiry, logout and password changes."""

import secrets

from conftest import bearer
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
