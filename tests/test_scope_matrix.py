"""Every authenticated endpoint × every scope: 2xx when the seed's table grants it, else 403.

SAMPLES holds one valid request per operation_id. A new endpoint without a sample fails
test_every_authenticated_endpoint_has_a_sample, so none can skip the matrix.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from litestar import Controller, Litestar, get

from conftest import TEST_PEPPER, Org, bearer
from ventryx_server.app import create_app
from ventryx_server.auth import require_credential
from ventryx_server.settings import Settings
from ventryx_shared.ids import new_id
from ventryx_shared.scopes import SCOPES, grants


@dataclass
class Context:
    """What a sample may use: the org, its admin key, and the scope under test."""

    org: Org
    scope: str
    client: Any

    @property
    def admin(self) -> dict[str, str]:
        return bearer(self.org.admin_key)

    async def create(self, path: str, body: dict) -> dict:
        response = await self.client.post(path, headers=self.admin, json=body)
        assert response.status_code == 201, response.text
        return response.json()["data"]


@dataclass
class Request:
    method: str
    path: str
    json: Any = None
    params: dict | None = None


Sample = Callable[[Context], Awaitable[Request]]


async def _a_key(ctx: Context) -> str:
    # A target the caller could manage if it had api-keys:write: no scopes beyond its own.
    data = await ctx.create("/v1/api-keys", {"name": "matrix target", "scopes": [ctx.scope]})
    return data["id"]


async def create_api_key(ctx):
    return Request("POST", "/v1/api-keys", {"name": "matrix", "scopes": [ctx.scope]})


async def list_api_keys(ctx):
    return Request("GET", "/v1/api-keys")


async def get_api_key(ctx):
    return Request("GET", f"/v1/api-keys/{await _a_key(ctx)}")


async def get_api_key_usage(ctx):
    return Request("GET", f"/v1/api-keys/{await _a_key(ctx)}/usage")


async def update_api_key(ctx):
    return Request("PATCH", f"/v1/api-keys/{await _a_key(ctx)}", {"name": "renamed"})


async def revoke_api_key(ctx):
    return Request("DELETE", f"/v1/api-keys/{await _a_key(ctx)}")


async def rotate_api_key(ctx):
    return Request("POST", f"/v1/api-keys/{await _a_key(ctx)}/rotate", {"grace_period_seconds": 60})


async def get_me(ctx):
    return Request("GET", "/v1/me")


async def _a_workflow(ctx: Context) -> str:
    data = await ctx.create(
        "/v1/workflows", {"name": f"matrix {new_id('wf')}", "trigger": "order.*"}
    )
    return data["id"]


async def create_workflow(ctx):
    return Request(
        "POST", "/v1/workflows", {"name": f"matrix {new_id('wf')}", "trigger": "order.created"}
    )


async def list_workflows(ctx):
    return Request("GET", "/v1/workflows")


async def get_workflow(ctx):
    return Request("GET", f"/v1/workflows/{await _a_workflow(ctx)}")


async def update_workflow(ctx):
    return Request(
        "PATCH", f"/v1/workflows/{await _a_workflow(ctx)}", {"version": 1, "enabled": False}
    )


async def delete_workflow(ctx):
    return Request("DELETE", f"/v1/workflows/{await _a_workflow(ctx)}")


async def create_event(ctx):
    return Request("POST", "/v1/events", {"type": "order.created", "payload": {"n": 1}})


async def create_event_batch(ctx):
    return Request("POST", "/v1/events/batch", {"events": [{"type": "order.created"}]})


async def list_events(ctx):
    return Request("GET", "/v1/events")


async def get_event(ctx):
    data = await ctx.create("/v1/events", {"type": "order.created"})
    return Request("GET", f"/v1/events/{data['id']}")


async def feed_events(ctx):
    return Request("GET", "/v1/events/feed")


async def get_event_rate(ctx):
    return Request("GET", "/v1/events/rate")


async def stream_events(ctx):
    # follow=false: replay and end, so the matrix can read the whole response.
    return Request("GET", "/v1/events/stream", params={"follow": "false"})


async def get_organization(ctx):
    return Request("GET", "/v1/org")


async def update_organization(ctx):
    return Request("PATCH", "/v1/org", {"name": "Matrix"})


async def _a_member(ctx: Context) -> str:
    data = await ctx.create(
        "/v1/members",
        {"email": f"{new_id('mem')}@example.com", "name": "matrix target", "role": "viewer"},
    )
    return data["id"]


async def list_members(ctx):
    return Request("GET", "/v1/members")


async def get_member(ctx):
    return Request("GET", f"/v1/members/{ctx.org.owner_id}")


async def create_member(ctx):
    return Request(
        "POST",
        "/v1/members",
        {"email": f"{new_id('mem')}@example.com", "name": "matrix", "role": "developer"},
    )


async def update_member(ctx):
    return Request("PATCH", f"/v1/members/{await _a_member(ctx)}", {"name": "renamed"})


async def remove_member(ctx):
    return Request("DELETE", f"/v1/members/{await _a_member(ctx)}")


async def change_own_password(ctx):
    return Request(
        "POST",
        "/v1/members/me/password",
        {"current_password": "not a key's", "new_password": "n" * 16},
    )


async def delete_current_session(ctx):
    return Request("DELETE", "/v1/sessions/current")


async def list_audit_log(ctx):
    return Request("GET", "/v1/audit-log")


# A member's own password and logout: no key is a member, so every key gets 403
# (tests/test_passwords.py and tests/test_sessions.py cover them with sessions).
SESSION_ONLY = {"changeOwnPassword", "deleteCurrentSession"}


SAMPLES: dict[str, Sample] = {
    "createApiKey": create_api_key,
    "listApiKeys": list_api_keys,
    "getApiKey": get_api_key,
    "getApiKeyUsage": get_api_key_usage,
    "updateApiKey": update_api_key,
    "revokeApiKey": revoke_api_key,
    "rotateApiKey": rotate_api_key,
    "getMe": get_me,
    "createWorkflow": create_workflow,
    "listWorkflows": list_workflows,
    "getWorkflow": get_workflow,
    "updateWorkflow": update_workflow,
    "deleteWorkflow": delete_workflow,
    "createEvent": create_event,
    "createEventBatch": create_event_batch,
    "listEvents": list_events,
    "getEvent": get_event,
    "feedEvents": feed_events,
    "streamEvents": stream_events,
    "getEventRate": get_event_rate,
    "getOrganization": get_organization,
    "updateOrganization": update_organization,
    "listMembers": list_members,
    "getMember": get_member,
    "createMember": create_member,
    "updateMember": update_member,
    "removeMember": remove_member,
    "changeOwnPassword": change_own_password,
    "deleteCurrentSession": delete_current_session,
    "listAuditLog": list_audit_log,
}


def authenticated_routes() -> dict[str, str | None]:
    """operation_id → the scope its handler requires, for every guarded handler."""
    app = create_app(Settings(database_url="postgresql://unused", pepper=TEST_PEPPER))
    found = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if handler.operation_id and handler.resolve_before_request() is require_credential:
                found[handler.operation_id] = handler.opt.get("scope")
    return found


ROUTES = authenticated_routes()


def guarding_problems(app: Litestar) -> list[str]:
    """Routes neither guarded by require_credential nor declared public (security=[{}]),
    and routes that are both. A route-level before_request replaces its controller's, so
    this is what catches a handler that would silently drop the credential check."""
    problems = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if route.path.startswith("/schema") or handler.http_methods == {"OPTIONS"}:
                continue  # the OpenAPI document and Litestar's OPTIONS answers: public
            guarded = handler.resolve_before_request() is require_credential
            public = handler.resolve_security() == [{}]
            if guarded == public:
                problems.append(
                    f"{route.path} {handler.operation_id}: "
                    f"{'guarded and public' if guarded else 'unguarded'}"
                )
    return problems


def test_every_route_is_guarded_or_declared_public():
    app = create_app(Settings(database_url="postgresql://unused", pepper=TEST_PEPPER))
    assert guarding_problems(app) == []
    public = {
        h.operation_id
        for r in app.routes
        for h in getattr(r, "route_handlers", [])
        if h.resolve_security() == [{}]
    }
    assert public == {"health", "ready", "createSession", "revokeLeakedApiKey"}


def test_a_handler_that_replaces_the_credential_hook_is_caught():
    async def log_request(request) -> None:
        return None

    class Guarded(Controller):
        path = "/v1/things"
        before_request = require_credential

        @get("/", operation_id="listThings")
        async def list_things(self) -> None:
            return None

        @get("/mine", operation_id="listMyThings", before_request=log_request)
        async def list_my_things(self) -> None:
            return None

        @get("/open", operation_id="openThing", security=[{}])
        async def open_thing(self) -> None:
            return None

    assert guarding_problems(Litestar([Guarded])) == [
        "/v1/things/mine listMyThings: unguarded",
        "/v1/things/open openThing: guarded and public",
    ]


def test_every_authenticated_endpoint_has_a_sample():
    assert sorted(set(ROUTES) - set(SAMPLES)) == []


def test_every_required_scope_is_one_of_the_seven():
    assert {scope for scope in ROUTES.values() if scope is not None} <= set(SCOPES)


@pytest.fixture(scope="module")
async def matrix_org(client, db, queries, ledger):
    from ventryx_server.bootstrap import bootstrap

    async with db.acquire() as conn:
        made = await bootstrap(
            conn, queries, TEST_PEPPER, org_name="Matrix", owner_email="matrix-owner@example.com"
        )
    ledger.add(made.key)
    org = Org(
        made.org_id,
        "Matrix",
        made.owner_id,
        made.owner_email,
        made.owner_password,
        made.key_id,
        made.key,
    )
    keys = {}
    for scope in SCOPES:
        response = await client.post(
            "/v1/api-keys",
            headers=bearer(org.admin_key),
            json={"name": f"only {scope}", "scopes": [scope]},
        )
        keys[scope] = ledger.add(response.json()["data"]["key"])
    return org, keys


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("operation_id", sorted(ROUTES))
async def test_scope_grants_exactly_what_the_seed_table_says(
    client, matrix_org, operation_id, scope
):
    org, keys = matrix_org
    request = await SAMPLES[operation_id](Context(org, scope, client))
    response = await client.request(
        request.method,
        request.path,
        json=request.json,
        params=request.params,
        headers=bearer(keys[scope]),
    )
    needed = ROUTES[operation_id]
    if operation_id in SESSION_ONLY:
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "session_required"
    elif needed is None or grants([scope], needed):
        assert response.status_code < 300, response.text
    else:
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert error["type"] == "permission_error"
        assert needed in error["message"]
