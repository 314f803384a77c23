"""The dashboard's only way to the server: an httpx.AsyncClient that speaks the Ventryx envelope.

Successful bodies are decoded into the shared msgspec Structs (or plain dicts for resources
whose Structs are not shared yet); every failure becomes an ``ApiError`` carrying the
server's message and request id, or ``ServerUnreachable`` when no answer came at all.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx
import msgspec
from httpx_sse import EventSource, SSEError

from ventryx_shared.api_keys import ApiKey, ApiKeyCreated, ApiKeyRotated
from ventryx_shared.audit_log import AuditEntry
from ventryx_shared.common import Data, ErrorBody, Page
from ventryx_shared.event_rate import EventRate
from ventryx_shared.events import Event
from ventryx_shared.me import Caller
from ventryx_shared.members import Member, MemberCreated, MemberRemoved
from ventryx_shared.organizations import OrganizationDetails
from ventryx_shared.usage import Granularity, KeyUsage
from ventryx_shared.workflows import Workflow

from . import __version__

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
# The longest list the dashboard gathers page by page; beyond it the user filters on the server.
MAX_LIST_ITEMS = 500


class ApiError(Exception):
    """The server answered with an error envelope (or something we could not read)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        type: str = "api_error",
        code: str = "",
        request_id: str | None = None,
        param: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.request_id = request_id
        self.param = param

    def describe(self) -> str:
        """What a person should read: the message, and the request id to quote to support."""
        if self.request_id:
            return f"{self.message} (request id {self.request_id})"
        return self.message


class ServerUnreachable(ApiError):
    """No answer: connection refused, reset, or the timeout passed."""


class StreamEnded(ApiError):
    """The server closed the event stream with a reason that reconnecting can cure: it is
    shutting down (``server_shutting_down``), or the stream fell behind or was cut."""


# `event: error` codes that mean the credential no longer opens this stream: the dashboard
# treats them as the 401 (or 403) a request would get now.
STREAM_ACCESS_LOST = {
    "key_revoked",
    "key_expired",
    "session_ended",
    "member_removed",
    "invalid_api_key",
}
SERVER_SHUTTING_DOWN = "server_shutting_down"

# Server messages that name endpoints or fields: what a person reads instead.
PLAIN_WORDS = {
    "password_change_required": "Change your one-time password first; until then you can "
    "only change it or sign out.",
}


@dataclass(frozen=True)
class StreamedEvent:
    """One server-sent event from the live tail."""

    id: str | None
    event: str
    data: dict
    decoded: Event | None = None


def _error_from(response: httpx.Response) -> ApiError:
    request_id = response.headers.get("request-id")
    try:
        body = msgspec.json.decode(response.content, type=ErrorBody)
    except msgspec.DecodeError:
        reason = response.reason_phrase or "error"
        return ApiError(
            f"The server answered {response.status_code} {reason}.",
            status=response.status_code,
            request_id=request_id,
        )
    detail = body.error
    return ApiError(
        PLAIN_WORDS.get(detail.code, detail.message),
        status=response.status_code,
        type=detail.type,
        code=detail.code,
        request_id=detail.request_id or request_id,
        param=detail.param,
    )


class VentryxClient:
    """One credential talking to one server. ``environment`` is sent only for member sessions,
    which choose live or test per request; an API key's environment is fixed by its prefix."""

    def __init__(
        self,
        server: str,
        credential: str,
        *,
        environment: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.server = server.rstrip("/")
        self.credential = credential
        self.environment = environment
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.server,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": f"ventryx-dashboard/{__version__}"},
        )

    @property
    def is_session(self) -> bool:
        return self.credential.startswith("vtxs_")

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.credential}"}
        if self.is_session and self.environment:
            headers["Ventryx-Environment"] = self.environment
        return {**headers, **(extra or {})}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotent_post: bool = False,
        authenticated: bool = True,
    ) -> httpx.Response:
        extra = {"Idempotency-Key": str(uuid.uuid4())} if idempotent_post else None
        headers = self._headers(extra) if authenticated else (extra or {})
        if json is not None:
            headers["Content-Type"] = "application/json"
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = await self._http.request(
                method,
                path,
                headers=headers,
                params=params,
                content=None if json is None else msgspec.json.encode(json),
            )
        except httpx.TimeoutException as exc:
            raise ServerUnreachable(
                f"The server at {self.server} did not answer within {self.timeout:g} s."
            ) from exc
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"Cannot reach the server at {self.server}.") from exc
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    async def _call(self, method: str, path: str, type: type[T], **kwargs) -> T:
        response = await self._send(method, path, **kwargs)
        try:
            return msgspec.json.decode(response.content, type=type)
        except msgspec.DecodeError as exc:
            raise ApiError(
                f"The server's answer to {method} {path} was not understood: {exc}",
                status=response.status_code,
                request_id=response.headers.get("request-id"),
            ) from exc

    async def _gather(
        self,
        path: str,
        item: type[T],
        params: dict[str, Any] | None = None,
        limit: int = MAX_LIST_ITEMS,
    ) -> tuple[list[T], bool]:
        """Every page of a list up to ``limit`` items; the flag says whether more were left."""
        items: list[T] = []
        cursor = None
        while True:
            page = await self._call(
                "GET",
                path,
                Page[item],
                params={**(params or {}), "limit": 100, "starting_after": cursor},
            )
            items.extend(page.data)
            if not page.has_more or not page.data:
                return items, False
            if len(items) >= limit:
                return items[:limit], True
            cursor = _id_of(page.data[-1])

    # Identity and health

    async def healthy(self, timeout: float | None = None) -> bool:
        """Whether the server answers ``/healthz`` within ``timeout`` (default: the client's)."""
        try:
            response = await self._http.get("/healthz", timeout=timeout or self.timeout)
        except httpx.HTTPError:
            return False
        return response.status_code < 500

    async def me(self) -> Caller:
        return (await self._call("GET", "/v1/me", Data[Caller])).data

    async def sign_in(self, email: str, password: str, organization: str | None = None) -> str:
        """A member login; returns the session token (the caller keeps it, not this client).
        ``organization`` is needed only when the email belongs to several organizations."""
        body = {"email": email, "password": password}
        if organization:
            body["organization"] = organization
        response = await self._send("POST", "/v1/sessions", authenticated=False, json=body)
        body = msgspec.json.decode(response.content)
        data = body.get("data", {}) if isinstance(body, dict) else {}
        token = data.get("token") or (data.get("session") or {}).get("token")
        if not isinstance(token, str):
            raise ApiError(
                "The server's sign-in answer carried no session token.",
                status=response.status_code,
                request_id=response.headers.get("request-id"),
            )
        return token

    async def change_password(self, current_password: str, new_password: str) -> None:
        await self._send(
            "POST",
            "/v1/members/me/password",
            json={"current_password": current_password, "new_password": new_password},
        )

    async def sign_out(self) -> None:
        if self.is_session:
            await self._send("DELETE", "/v1/sessions/current")

    # API keys

    async def list_api_keys(self, environment: str | None = None) -> tuple[list[ApiKey], bool]:
        return await self._gather("/v1/api-keys", ApiKey, {"environment": environment})

    async def create_api_key(
        self, name: str, scopes: list[str], environment: str | None, expires_at: str | None
    ) -> ApiKeyCreated:
        body: dict[str, Any] = {"name": name, "scopes": scopes}
        if environment:
            body["environment"] = environment
        if expires_at:
            body["expires_at"] = expires_at
        return (
            await self._call(
                "POST", "/v1/api-keys", Data[ApiKeyCreated], json=body, idempotent_post=True
            )
        ).data

    async def update_api_key(
        self, key_id: str, *, name: str | None = None, scopes: list[str] | None = None
    ) -> ApiKey:
        body = {k: v for k, v in {"name": name, "scopes": scopes}.items() if v is not None}
        return (await self._call("PATCH", f"/v1/api-keys/{key_id}", Data[ApiKey], json=body)).data

    async def revoke_api_key(self, key_id: str) -> ApiKey:
        return (await self._call("DELETE", f"/v1/api-keys/{key_id}", Data[ApiKey])).data

    async def rotate_api_key(self, key_id: str, grace_period_seconds: int) -> ApiKeyRotated:
        return (
            await self._call(
                "POST",
                f"/v1/api-keys/{key_id}/rotate",
                Data[ApiKeyRotated],
                json={"grace_period_seconds": grace_period_seconds},
                idempotent_post=True,
            )
        ).data

    async def api_key_usage(
        self, key_id: str, granularity: Granularity, since: datetime | None = None
    ) -> KeyUsage:
        """Requests counted against a key per bucket, by outcome, up to now."""
        return (
            await self._call(
                "GET",
                f"/v1/api-keys/{key_id}/usage",
                Data[KeyUsage],
                params={"granularity": granularity, "since": since and since.isoformat()},
            )
        ).data

    # Workflows

    async def list_workflows(self, **filters) -> tuple[list[Workflow], bool]:
        return await self._gather("/v1/workflows", Workflow, filters)

    async def get_workflow(self, workflow_id: str) -> Workflow:
        return (await self._call("GET", f"/v1/workflows/{workflow_id}", Data[Workflow])).data

    async def create_workflow(self, body: dict) -> Workflow:
        return (
            await self._call(
                "POST", "/v1/workflows", Data[Workflow], json=body, idempotent_post=True
            )
        ).data

    async def update_workflow(self, workflow_id: str, body: dict) -> Workflow:
        return (
            await self._call("PATCH", f"/v1/workflows/{workflow_id}", Data[Workflow], json=body)
        ).data

    async def delete_workflow(self, workflow_id: str, version: int | None = None) -> None:
        await self._send("DELETE", f"/v1/workflows/{workflow_id}", params={"version": version})

    # Events

    async def list_events(
        self,
        *,
        type: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 100,
    ) -> list[Event]:
        page = await self._call(
            "GET",
            "/v1/events",
            Page[Event],
            params={"type": type, "since": since, "until": until, "limit": min(limit, 100)},
        )
        return page.data

    async def get_event(self, event_id: str) -> Event:
        return (await self._call("GET", f"/v1/events/{event_id}", Data[Event])).data

    async def emit_event(self, type: str, payload: dict) -> Event:
        return (
            await self._call(
                "POST",
                "/v1/events",
                Data[Event],
                json={"type": type, "payload": payload},
                idempotent_post=True,
            )
        ).data

    async def event_rate(self, minutes: int = 60) -> EventRate:
        """Events received per minute in this environment, the current minute last."""
        return (
            await self._call("GET", "/v1/events/rate", Data[EventRate], params={"minutes": minutes})
        ).data

    async def stream_events(
        self, last_event_id: str | None = None, type: str | None = None
    ) -> AsyncIterator[StreamedEvent]:
        """Server-sent events until the server closes the stream, after an ``open`` marker
        once connected. No read timeout: a quiet stream is normal (the server's keep-alive
        comments are skipped)."""
        headers = self._headers({"Accept": "text/event-stream"})
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(self.timeout, read=None)
        try:
            async with self._http.stream(
                "GET",
                "/v1/events/stream",
                headers=headers,
                params={"type": type} if type else None,
                timeout=timeout,
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error_from(response)
                yield StreamedEvent(None, "open", {})  # connected: the tail may say so
                async for message in EventSource(response).aiter_sse():
                    if not message.data:
                        continue  # the spec dispatches no event without data
                    data = _json_object(message.data)
                    if message.event == "error":
                        raise _stream_error(data.get("error", {}))
                    if message.event != "message":
                        yield StreamedEvent(message.id or None, message.event, data)
                        continue
                    try:
                        event = msgspec.convert(data, Event, strict=False)
                    except msgspec.ValidationError:
                        continue  # not an event we can show; the next one may be
                    yield StreamedEvent(message.id or None, message.event, data, event)
        except httpx.TimeoutException as exc:
            raise ServerUnreachable(
                f"The server at {self.server} did not answer within {self.timeout:g} s."
            ) from exc
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"Lost the event stream from {self.server}.") from exc
        except SSEError as exc:  # a 200 that is no event stream: a proxy's page, say
            raise ApiError(f"The server's answer was not an event stream: {exc}") from exc

    # Organization, members, audit log

    async def get_org(self) -> OrganizationDetails:
        return (await self._call("GET", "/v1/org", Data[OrganizationDetails])).data

    async def get_org_settings(self) -> dict[str, Any]:
        """The organization as the server sends it, fields this dashboard does not know
        yet (defaults other versions add) included."""
        return (await self._call("GET", "/v1/org", Data[dict[str, Any]])).data

    async def rename_org(self, name: str) -> OrganizationDetails:
        return (
            await self._call("PATCH", "/v1/org", Data[OrganizationDetails], json={"name": name})
        ).data

    async def list_members(self) -> tuple[list[Member], bool]:
        return await self._gather("/v1/members", Member)

    async def add_member(self, email: str, name: str, role: str) -> MemberCreated:
        return (
            await self._call(
                "POST",
                "/v1/members",
                Data[MemberCreated],
                json={"email": email, "name": name, "role": role},
                idempotent_post=True,
            )
        ).data

    async def update_member(self, member_id: str, **changes) -> Member:
        return (
            await self._call("PATCH", f"/v1/members/{member_id}", Data[Member], json=changes)
        ).data

    async def remove_member(self, member_id: str) -> MemberRemoved:
        return (await self._call("DELETE", f"/v1/members/{member_id}", Data[MemberRemoved])).data

    async def list_audit_log(self, **filters) -> tuple[list[AuditEntry], bool]:
        return await self._gather("/v1/audit-log", AuditEntry, filters, limit=200)


def _stream_error(detail: dict) -> ApiError:
    """The error a stream's closing ``event: error`` stands for: access lost reads as the
    401 (a missing scope as the 403) a request would get; anything else may be retried."""
    code = detail.get("code", "")
    fields = {
        "type": detail.get("type", "api_error"),
        "code": code,
        "request_id": detail.get("request_id"),
    }
    message = PLAIN_WORDS.get(code, detail.get("message", "The event stream was closed."))
    if code in STREAM_ACCESS_LOST:
        return ApiError(message, status=401, **fields)
    if code == "missing_scope":
        return ApiError(message, status=403, **fields)
    return StreamEnded(message, status=503, **fields)


def _id_of(item: Any) -> str | None:
    return item.get("id") if isinstance(item, dict) else getattr(item, "id", None)


def _json_object(data: str) -> dict:
    """An event's data as the dict the stream sends, whatever it turns out to be."""
    try:
        value = msgspec.json.decode(data.encode())
    except msgspec.DecodeError:
        return {"raw": data}
    return value if isinstance(value, dict) else {"value": value}
