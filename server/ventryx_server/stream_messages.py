"""What an event stream sends: events as server-sent events, and the farewells that end it.

A farewell is an ``event: error`` message in the API's error envelope; its ``code`` says
why the stream ended, so a client knows whether reconnecting with Last-Event-ID can help.
"""

from typing import Any

import msgspec

from ventryx_shared.common import ErrorBody, ErrorDetail
from ventryx_shared.events import Event
from ventryx_shared.ids import new_id

CONNECTED = b": connected\n\n"
HEARTBEAT = b": keep-alive\n\n"

_decode_payload = msgspec.json.Decoder(dict[str, Any]).decode


def event_from_row(row: Any) -> Event:
    return Event(
        id=row["id"],
        type=row["type"],
        payload=_decode_payload(row["payload"]),
        occurred_at=row["occurred_at"],
        created_at=row["created_at"],
        environment=row["environment"],
        matched_workflows=list(row["matched_workflows"]),
        emitted_by=row["emitted_by"],
    )


def sse_message(event: Event) -> bytes:
    """One event as a server-sent event; msgspec's JSON has no raw line breaks."""
    return b"id: " + event.id.encode() + b"\ndata: " + msgspec.json.encode(event) + b"\n\n"


def farewell(code: str, message: str, error_type: str) -> bytes:
    body = ErrorBody(
        ErrorDetail(
            type=error_type,  # type: ignore[arg-type]  # callers pass one of its literals
            code=code,
            message=message,
            request_id=new_id("req"),
        )
    )
    return b"event: error\ndata: " + msgspec.json.encode(body) + b"\n\n"


_ACCESS_LOST = {
    "key_revoked": ("authentication_error", "This API key was revoked"),
    "key_expired": ("authentication_error", "This API key expired"),
    "session_ended": ("authentication_error", "This session ended"),
    "session_expired": ("authentication_error", "This session expired"),
    "member_removed": ("authentication_error", "This member was removed from the organization"),
    "password_change_required": (
        "permission_error",
        "This member must change their one-time password first",
    ),
    "missing_scope": ("permission_error", "This credential no longer holds events:read"),
}


def access_lost(reason: str | None) -> bytes:
    """The farewell of a stream whose credential lost access, naming why (stream-access-lost)."""
    error_type, words = _ACCESS_LOST.get(
        reason or "", ("authentication_error", "This credential is no longer valid")
    )
    return farewell(reason or "access_lost", f"{words}; the stream is closed.", error_type)


def too_slow() -> bytes:
    return farewell(
        "stream_lagging",
        "This stream fell too far behind and was closed; reconnect with Last-Event-ID to resume.",
        "api_error",
    )


def interrupted() -> bytes:
    return farewell(
        "stream_interrupted",
        "The stream was interrupted; reconnect with Last-Event-ID to resume.",
        "api_error",
    )


def shutting_down() -> bytes:
    return farewell(
        "server_shutting_down",
        "This server process is stopping; reconnect with Last-Event-ID to resume on another.",
        "api_error",
    )
