"""OPTIONS names every method its path takes.

Litestar answers OPTIONS with a handler it makes when the first handlers of a path are
registered, and that handler keeps the method list of that moment: OPTIONS /v1/api-keys
said ``OPTIONS, POST`` although GET is there too. The app's final route map is complete,
so ``Allow`` is taken from it, found by the matched route's template (the handler's own
paths lack the prefix of the Router that mounts it under /v1).
"""

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from .request_type import HTTP_SCOPE


def options_allow_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != HTTP_SCOPE or scope["method"] != "OPTIONS":
            await app(scope, receive, send)
            return
        template = scope["path_template"]
        methods = next(
            (
                route.methods
                for route in scope["litestar_app"].routes
                if route.path_format == template
            ),
            (),
        )
        allow = ", ".join(sorted(methods)).encode()

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"allow"
                ]
                message["headers"] = [*headers, (b"allow", allow)]
            await send(message)

        await app(scope, receive, send_with_allow)

    return middleware
