"""Gives every request a ``req_…`` id: in ``scope['state']``, the Request-Id header, error
bodies and the audit log, so one id ties a user's report to our records."""

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ventryx_shared.ids import new_id

HEADER = b"request-id"


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        request_id = new_id("req")
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == HEADER for name, _ in headers):
                    headers.append((HEADER, request_id.encode()))
                # Rate-limit headers the before-request hook decided (auth.py).
                headers.extend(scope["state"].get("response_headers") or ())
                message["headers"] = headers
            await send(message)

        await app(scope, receive, send_with_id)

    return middleware
