"""One exception hierarchy, and the handlers that turn every failure into the error envelope."""

import logging
import re
from typing import Any, cast

import asyncpg
import msgspec
from litestar import Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from ventryx_shared.common import ErrorBody, ErrorDetail, ErrorType
from ventryx_shared.ids import new_id

from .request_type import AppRequest

log = logging.getLogger("ventryx.errors")
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]{0,100})")
_MISSING_FIELD = re.compile(r"missing required field `([^`]{0,100})")
_BODY_CUT_SHORT = "client disconnected prematurely"  # Litestar's words, see _http_error


class ApiError(Exception):
    status = 400
    type: ErrorType = "invalid_request_error"
    code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.param = param
        self.headers = headers or {}


class InvalidRequest(ApiError):
    status = 400


class UnprocessableEntity(ApiError):
    status = 422
    code = "invalid_value"


class Unauthenticated(ApiError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ApiError):
    status = 403
    type = "permission_error"
    code = "missing_scope"


class NotFound(ApiError):
    status = 404
    type = "not_found_error"
    code = "resource_missing"


def no_such(what: str, resource_id: str, param: str = "id") -> NotFound:
    """404 for an id of another organization, another environment, or none at all: the
    same words for each, so the answer confirms nothing."""
    return NotFound(f"No such {what}: '{resource_id[:64]}'", param=param)


class Conflict(ApiError):
    status = 409
    type = "conflict_error"
    code = "conflict"


class RateLimited(ApiError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limited"


class ServiceUnavailable(ApiError):
    status = 503
    type = "api_error"
    code = "service_unavailable"


def request_id_of(request: AppRequest) -> str:
    """The request's id; requests that match no route get theirs here."""
    state = request.scope.setdefault("state", {})
    if "request_id" not in state:
        state["request_id"] = new_id("req")
    return cast(str, state["request_id"])


# RFC 6750: a request without a usable Bearer credential is invalid_request; one whose
# credential is not (or no longer) valid is invalid_token.
_MALFORMED_CREDENTIAL_CODES = {
    "missing_credential",
    "invalid_authorization_header",
    "credential_in_query",
}


def _challenge(error: ApiError) -> str:
    kind = "invalid_request" if error.code in _MALFORMED_CREDENTIAL_CODES else "invalid_token"
    return f'Bearer realm="ventryx", error="{kind}"'


def error_response(request: AppRequest, error: ApiError) -> Response[Any]:
    """The error envelope; Any, since a handler may return it in place of its own response."""
    body = ErrorBody(
        ErrorDetail(
            type=error.type,
            code=error.code,
            message=error.message,
            request_id=request_id_of(request),
            param=error.param,
        )
    )
    headers = {"Request-Id": body.error.request_id, **error.headers}
    if error.status == 401:
        headers["WWW-Authenticate"] = _challenge(error)
    return Response(
        content=msgspec.json.encode(body),
        status_code=error.status,
        media_type="application/json",
        headers=headers,
    )


def _api_error(request: AppRequest, exc: ApiError) -> Response[bytes]:
    return error_response(request, exc)


def _validation_error(request: AppRequest, exc: ValidationException) -> Response[bytes]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    first = extra[0] if extra and isinstance(extra[0], dict) else {}
    param = first.get("key") or None
    detail = first.get("message") or exc.detail
    if unknown := _UNKNOWN_FIELD.search(detail):
        return error_response(
            request,
            UnprocessableEntity(
                f"Unknown field: {unknown[1]}", code="unknown_field", param=unknown[1]
            ),
        )
    if missing := _MISSING_FIELD.search(detail):
        return error_response(
            request,
            UnprocessableEntity(
                f"Missing required field: {missing[1]}", code="missing_field", param=missing[1]
            ),
        )
    if first.get("source") in ("query", "path", "header", "cookie"):
        return error_response(
            request,
            InvalidRequest(f"Invalid {param}: {detail}", code="invalid_parameter", param=param),
        )
    return error_response(request, UnprocessableEntity(detail, code="invalid_value", param=param))


_HTTP_ERRORS: dict[int, tuple[type[ApiError], str, str]] = {
    400: (InvalidRequest, "invalid_request", "The request is not valid."),
    401: (Unauthenticated, "missing_credential", "Authentication required."),
    403: (PermissionDenied, "forbidden", "Not allowed."),
    404: (NotFound, "route_not_found", "No such endpoint."),
    405: (InvalidRequest, "method_not_allowed", "This endpoint does not take that method."),
    413: (InvalidRequest, "body_too_large", "The request body is too large."),
    415: (InvalidRequest, "unsupported_media_type", "Send the body as application/json."),
}


def _http_error(request: AppRequest, exc: HTTPException) -> Response[bytes]:
    if exc.detail == _BODY_CUT_SHORT:
        # The ASGI server ends the body early when its framing is broken (a chunk size
        # that is not hexadecimal, a body shorter than Content-Length): the client's fault.
        return error_response(
            request,
            InvalidRequest(
                "The request body could not be read: its framing (Content-Length or chunked "
                "encoding) is malformed.",
                code="malformed_body",
            ),
        )
    if exc.status_code == 400 and "json" in str(exc.detail).lower():
        return error_response(
            request, InvalidRequest("The body is not valid JSON.", code="invalid_json")
        )
    kind, code, message = _HTTP_ERRORS.get(exc.status_code, (InvalidRequest, "invalid_request", ""))
    if exc.status_code == 400 and exc.detail and exc.detail != "Bad Request":
        message = f"The body could not be read: {exc.detail}"
    error = kind(message or exc.detail, code=code)
    error.status = exc.status_code
    allow = {name.lower(): value for name, value in (exc.headers or {}).items()}.get("allow")
    if allow is not None:
        error.headers = {"Allow": allow}
    return error_response(request, error)


# SQLSTATE classes that mean the database is unreachable or overloaded, not that the
# request was wrong: connection exceptions, insufficient resources, operator
# intervention (shutdown, restart) and a database that no longer exists.
# Class 57 holds query_canceled (57014), which statement_timeout raises. And two codes
# of other classes that mean a bounded wait ran out, not a wrong request: a lock wait
# past lock_timeout (55P03) and a transaction closed for idling too long (25P03).
_OUTAGE_SQLSTATE_CLASSES = ("08", "53", "57", "3D", "55P03", "25P03")
# TimeoutError: no pooled connection in time (db.provide_db). InternalClientError:
# asyncpg's protocol state when the connection dies mid-query ("cannot switch to state
# 12", seen with PostgreSQL stopped under load).
_OUTAGE_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


# SQLSTATE class 22 (data exception): (message, code) per condition.
_UNSTORABLE = {
    "22008": (
        "A date or time in the request is out of the range that can be stored.",
        "invalid_time",
    ),
    "22003": ("A number in the request is out of the range that can be stored.", "invalid_number"),
    "22021": (
        "The request contains a NUL character or bytes that are not UTF-8.",
        "invalid_characters",
    ),
    "22P05": (
        "The request contains a NUL character, which cannot be stored.",
        "invalid_characters",
    ),
    "22001": ("A value in the request is longer than can be stored.", "invalid_value"),
}


def is_outage(exc: BaseException) -> bool:
    """The database is unreachable, overloaded or out of time: 503, not the request's fault."""
    if isinstance(exc, _OUTAGE_ERRORS):
        return True
    return str(getattr(exc, "sqlstate", "") or "").startswith(_OUTAGE_SQLSTATE_CLASSES)


def _unexpected(request: AppRequest, exc: Exception) -> Response[bytes]:
    if is_outage(exc):
        log.warning(
            "database unavailable request_id=%s: %s", request_id_of(request), type(exc).__name__
        )
        return error_response(
            request,
            ServiceUnavailable(
                "Ventryx is briefly unavailable; retry shortly.", headers={"Retry-After": "1"}
            ),
        )
    if (sqlstate := str(getattr(exc, "sqlstate", "") or "")).startswith("22"):
        # A value PostgreSQL cannot store that validation let by: say which kind.
        message, code = _UNSTORABLE.get(
            sqlstate, ("The request contains a value that cannot be stored.", "invalid_value")
        )
        return error_response(request, InvalidRequest(message, code=code))
    if isinstance(exc, (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)):
        return error_response(
            request,
            Conflict(
                "A concurrent change touched the same objects; retry the request.",
                code="concurrent_change",
            ),
        )
    log.error(
        "unhandled %s request_id=%s", type(exc).__name__, request_id_of(request), exc_info=exc
    )
    error = ApiError("Something went wrong on our side.", code="internal_error")
    error.status, error.type = HTTP_500_INTERNAL_SERVER_ERROR, "api_error"
    return error_response(request, error)


def _nested_too_deeply(request: AppRequest, _: RecursionError) -> Response[bytes]:
    """JSON nested deeper than the decoder recurses is bad input, not a server error."""
    return error_response(
        request, InvalidRequest("The body is nested too deeply to be read.", code="invalid_json")
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ApiError: _api_error,
    RecursionError: _nested_too_deeply,
    ValidationException: _validation_error,
    NotAuthorizedException: _http_error,
    PermissionDeniedException: _http_error,
    NotFoundException: _http_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
