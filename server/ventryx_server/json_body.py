"""The check every request with a body passes before its handler: the body is JSON."""

from litestar import Request

from .errors import ApiError

_BODY_METHODS = {"POST", "PUT", "PATCH"}


async def require_json_body(request: Request) -> None:
    """A body must be JSON; refusing others here keeps form posts and text out of handlers."""
    if request.method not in _BODY_METHODS:
        return
    has_body = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if has_body and media_type != "application/json":
        error = ApiError("Send the body as JSON with Content-Type: application/json.",
                         code="unsupported_media_type", param="Content-Type")
        error.status = 415
        raise error
