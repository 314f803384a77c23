"""Gives every request a ``req_…`` id: in ``scope['state']``, the Request-Id header, error
bodies and the audit log, so one id ties a user's report to our records. It also times
the request for the metrics (metrics.py) and the JSON access log (logs.py): one clock
read at each end, no second middleware frame on every resumption of the request."""

import asyncio
from time import perf_counter
from typing import Any

from litestar.types import ASGIApp, HTTPScope, Message, Receive, ReceiveMessage, Scope, Send

from ventryx_shared.ids import new_id

from . import logs
from .errors import ApiError
from .request_type import HTTP_SCOPE

HEADER = b"request-id"
METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
CREDENTIAL_ID_STATE = "credential_id"  # auth.py leaves the authorized credential's id here


class BodyTimeout(ApiError):
    status = 408
    code = "body_timeout"


def within_body_timeout(receive: Receive, seconds: float) -> Receive:
    """Each chunk of a request body must arrive within ``seconds`` of asking for it:
    granian bounds the wait for headers, not for a body a client trickles or abandons."""

    async def receive_in_time() -> ReceiveMessage:
        try:
            async with asyncio.timeout(seconds):
                return await receive()
        except TimeoutError:
            raise BodyTimeout(
                f"The request body did not arrive within {seconds:g} s.", code="body_timeout"
            ) from None

    return receive_in_time


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != HTTP_SCOPE:
            await app(scope, receive, send)
            return
        started = perf_counter()
        if scope["method"] in METHODS_WITH_BODY:
            receive = within_body_timeout(
                receive, scope["litestar_app"].state.settings.body_read_timeout_seconds
            )
        request_id = new_id("req")
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500  # an exception that escapes everything is answered 500 by the server

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(name.lower() == HEADER for name, _ in headers):
                    headers.append((HEADER, request_id.encode()))
                # Rate-limit headers the before-request hook decided (auth.py).
                headers.extend(state.get("response_headers") or ())
                message["headers"] = headers
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            _record(scope, state, request_id, status, perf_counter() - started)

    return middleware


def _record(
    scope: HTTPScope, state: dict[str, Any], request_id: str, status: int, seconds: float
) -> None:
    # The template, never the path a client typed. A path no route matches is answered
    # by the router before any middleware, so it is neither counted nor logged.
    route = scope["path_template"]
    method = scope["method"]
    metrics = scope["litestar_app"].state.metrics
    metrics.observe(method, route, status, seconds)
    credential = state.get("credential")
    if credential is not None:
        metrics.authenticated(credential.kind, status)
    elif status == 401:
        metrics.authenticated("unreadable", status)
    if logs.access_lines:
        logs.log_request(request_id, method, route, status, seconds, state.get(CREDENTIAL_ID_STATE))
