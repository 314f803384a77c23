"""Completes the OpenAPI document Litestar derives from the handlers, so that it is the
truth clients are generated from: every status an operation can answer with, in our
error envelope; the headers we send and take; request bodies as closed as the server
reads them; list cursors with the id format the server checks.

All of it is derived here, in one place, from what each operation is (authenticated or
public, with a body, with path parameters, a write, a creation), so no handler lists its
own errors and a new handler is documented like the others.
"""

from collections.abc import Iterator
from typing import Any

import msgspec
from litestar import Litestar
from litestar.datastructures import CacheControlHeader
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from ventryx_shared.common import TIME_RANGE_PATTERN, ErrorBody
from ventryx_shared.events import BatchErrorBody
from ventryx_shared.ids import id_pattern

# Responses that carry a secret (a key, a session token, a one-time password) are never
# stored by a cache: ``cache_control=NO_STORE`` on their handlers.
NO_STORE = CacheControlHeader(no_store=True)

_REF = "#/components/{kind}/{name}"
# The id prefix each list's starting_after must carry (controllers/pagination.cursor).
_CURSOR_PREFIXES = {
    "listApiKeys": "key",
    "listMembers": "mem",
    "listWorkflows": "wf",
    "listEvents": "evt",
    "listAuditLog": "aud",
}
_WITHOUT_DATABASE = {"health"}  # the one operation that never touches the database
_PROBES = {"health", "ready"}  # for load balancers: never rate limited

_ERROR_DESCRIPTIONS = {
    400: "invalid_request_error: a parameter, header or body that cannot be read",
    401: "authentication_error: no credential, or one that is not (or no longer) valid",
    403: "permission_error: the credential lacks the scope or role this needs",
    404: "not_found_error: no such object for this credential (or no such endpoint)",
    408: "invalid_request_error: the body did not arrive in time (`body_timeout`)",
    409: "conflict_error: the change conflicts with the current state, or an "
    "Idempotency-Key was used with another request",
    413: "invalid_request_error: the body is too large",
    415: "invalid_request_error: the body is not application/json",
    422: "invalid_request_error: the body is JSON but not a valid request; `param` names the field",
    429: "rate_limit_error: too many requests; retry after Retry-After seconds",
    503: "api_error: briefly unavailable (database unreachable or overloaded); retry "
    "after Retry-After seconds",
}

_HEADERS: dict[str, dict[str, Any]] = {
    "Request-Id": {
        "description": "This request's id, also in error bodies and the audit log",
        "required": True,
        "schema": {"type": "string", "pattern": id_pattern("req")},
    },
    "Idempotent-Replayed": {
        "description": "true when this response replays the first "
        "response to the same Idempotency-Key",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "WWW-Authenticate": {
        "description": 'Bearer realm="ventryx" with an RFC 6750 error '
        "(invalid_request, invalid_token)",
        "required": True,
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": "The caller's remaining quota (IETF RateLimit header)",
        "schema": {"type": "string"},
    },
    "RateLimit-Policy": {
        "description": "The quota policy that applies (IETF RateLimit-Policy header)",
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": "no-store: this response carries a secret",
        "required": True,
        "schema": {"type": "string", "pattern": "no-store"},
    },
}

_REQUEST_HEADERS = {
    "Idempotency-Key": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "A retry with the same key and body replays the first response; "
        "the same key with another body is 409",
        # Printable ASCII without spaces at either end, which HTTP would strip.
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "pattern": "^[!-~]([ -~]*[!-~])?$",
        },
    },
    "Ventryx-Environment": {
        "name": "Ventryx-Environment",
        "in": "header",
        "required": False,
        "description": "For dashboard sessions: the environment of this request "
        "(default live). API keys carry their own.",
        "schema": {"type": "string", "enum": ["live", "test"]},
    },
}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": _REF.format(kind=kind, name=name)}


def _headers(*names: str) -> dict[str, Any]:
    return {name: _ref("headers", name) for name in names}


def _error_schemas() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [ErrorBody, BatchErrorBody], ref_template=_REF.format(kind="schemas", name="{name}")
    )
    return components


def _operations(app: Litestar) -> Iterator[tuple[str, str, HTTPRouteHandler]]:
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.resolve_include_in_schema():
                for method in handler.http_methods:
                    yield route.path_format, method.lower(), handler


def _error_statuses(operation: dict[str, Any], method: str) -> list[int]:
    public = operation.get("security") == [{}]
    has_parameters = bool(operation.get("parameters"))
    has_body = "requestBody" in operation
    statuses = set()
    if has_parameters or has_body or not public:
        statuses.add(400)
    if not public:
        statuses |= {401, 403}
        if method in ("post", "put", "patch", "delete"):
            statuses.add(409)
    if any(parameter["in"] == "path" for parameter in operation.get("parameters", [])):
        statuses.add(404)
    if has_body:
        statuses |= {408, 413, 415, 422}
    if operation["operationId"] not in _PROBES:
        statuses.add(429)
    if operation["operationId"] not in _WITHOUT_DATABASE:
        statuses.add(503)
    if operation["operationId"] == "createSession":
        statuses.add(401)  # a wrong email or password
    return sorted(statuses)


def _error_response(status: int, operation: dict[str, Any]) -> dict[str, Any]:
    headers = ["Request-Id"]
    if status == 401:
        headers.append("WWW-Authenticate")
    if status in (429, 503):
        headers.append("Retry-After")
    if status == 429:
        headers += ["RateLimit", "RateLimit-Policy"]
    batch = status == 422 and operation["operationId"] == "createEventBatch"
    schema = _ref("schemas", "BatchErrorBody" if batch else "ErrorBody")
    return {
        "description": _ERROR_DESCRIPTIONS[status],
        "headers": _headers(*headers),
        "content": {"application/json": {"schema": schema}},
    }


def _document_operation(operation: dict[str, Any], method: str, handler: HTTPRouteHandler) -> None:
    public = operation.get("security") == [{}]
    creates = method == "post" and not public and "201" in operation["responses"]
    parameters = operation.setdefault("parameters", [])
    if not public:
        parameters.append(_REQUEST_HEADERS["Ventryx-Environment"])
    if creates:
        parameters.append(_REQUEST_HEADERS["Idempotency-Key"])
    for parameter in parameters:
        parameter["schema"] = _never_null(parameter["schema"])
        if parameter["name"] == "starting_after":
            prefix = _CURSOR_PREFIXES[operation["operationId"]]
            parameter["schema"] = {"type": "string", "pattern": id_pattern(prefix)}
        if _is_time(parameter["schema"]):
            parameter["schema"]["pattern"] = TIME_RANGE_PATTERN
        elif parameter["schema"].get("type") == "string" and not (
            {"pattern", "enum"} & set(parameter["schema"])
        ):
            parameter["schema"]["pattern"] = _WITHOUT_NUL  # json_body.check_input refuses NUL
    if not parameters:
        del operation["parameters"]
    _make_body_optional_when_it_is(operation)
    success_headers = ["Request-Id"]
    if not public:
        success_headers += ["RateLimit", "RateLimit-Policy"]
    if creates:
        success_headers.append("Idempotent-Replayed")
    if handler.cache_control == NO_STORE:
        success_headers.append("Cache-Control")
    declared = set()  # errors a handler lists itself (a cursor's 404), in our shape below
    for status, response in list(operation["responses"].items()):
        if status.startswith("2"):
            response["headers"] = {**response.get("headers", {}), **_headers(*success_headers)}
        else:
            declared.add(int(status))
            del operation["responses"][status]  # Litestar's {status_code, detail} shape
    for status in sorted({*_error_statuses(operation, method), *declared}):
        operation["responses"][str(status)] = _error_response(status, operation)


def _never_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter left out is None in the handler; sent, it is never null (Litestar
    documents ``X | None`` as "X or null", and a client would send the text "null")."""
    options = schema.get("oneOf", [])
    if {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        outer = {key: value for key, value in schema.items() if key != "oneOf"}
        return {**rest[0], **outer} if len(rest) == 1 else {**outer, "oneOf": rest}
    if isinstance(schema.get("type"), list) and "null" in schema["type"]:
        types = [kind for kind in schema["type"] if kind != "null"]
        schema = {**schema, "type": types[0] if len(types) == 1 else types}
        if "enum" in schema:
            schema["enum"] = [value for value in schema["enum"] if value is not None]
    return schema


def _make_body_optional_when_it_is(operation: dict[str, Any]) -> None:
    """``data: X | None = None`` is an optional body (rotate), not a required ``null``."""
    body = operation.get("requestBody")
    if body is None:
        return
    schema = body["content"]["application/json"]["schema"]
    choices = schema.get("oneOf", [])
    if {"type": "null"} in choices and len(choices) == 2:
        body["required"] = False
        body["content"]["application/json"]["schema"] = next(
            choice for choice in choices if choice != {"type": "null"}
        )


def _request_structs(annotation: Any) -> dict[str, msgspec.inspect.StructType]:
    """The Structs a request body type is made of, by name."""
    found: dict[str, msgspec.inspect.StructType] = {}

    def visit(info: msgspec.inspect.Type) -> None:
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls.__name__ in found:
                return
            found[info.cls.__name__] = info
            for field in info.fields:
                visit(field.type)
        for child in ("type", "item_type", "value_type"):  # "type": inside Annotated
            if child_info := getattr(info, child, None):
                visit(child_info)
        for child_info in getattr(info, "types", ()):
            visit(child_info)

    visit(msgspec.inspect.type_info(annotation))
    return found


def _field_extras(info: msgspec.inspect.Type) -> dict[str, Any]:
    """``Meta(extra_json_schema=...)`` of a field, which Litestar leaves out."""
    for option in getattr(info, "types", (info,)):
        if isinstance(option, msgspec.inspect.Metadata) and option.extra_json_schema:
            return option.extra_json_schema
    return {}


# Free JSON (an event's payload, a step's config) is stored as jsonb, which cannot hold a
# NUL character (422 naming the field): any JSON without one.
_WITHOUT_NUL = "^[^\\x00]*$"
_JSON_WITHOUT_NUL = {
    "anyOf": [
        {"type": "string", "pattern": _WITHOUT_NUL},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": _ref("schemas", "JsonWithoutNul")},
        {
            "type": "object",
            "propertyNames": {"pattern": _WITHOUT_NUL},
            "additionalProperties": _ref("schemas", "JsonWithoutNul"),
        },
    ]
}
_FREE_JSON_OBJECT = {"additionalProperties": {}, "type": "object"}


def _is_time(schema: dict[str, Any]) -> bool:
    return schema.get("format") == "date-time" or any(
        option.get("format") == "date-time" for option in schema.get("oneOf", ())
    )


def _complete_request_schema(schema: dict[str, Any], info: msgspec.inspect.StructType) -> None:
    if info.forbid_unknown_fields:  # all of ours: unknown fields are refused (422)
        schema["additionalProperties"] = False
    schema.update(getattr(info.cls, "json_schema_extra", {}))
    for field in info.fields:
        field_schema = schema["properties"][field.encode_name]
        field_schema.update(_field_extras(field.type))
        if _is_time(field_schema):
            field_schema["pattern"] = TIME_RANGE_PATTERN
        if field_schema == _FREE_JSON_OBJECT:
            field_schema.update(_JSON_WITHOUT_NUL["anyOf"][3])


def _stream_as_event_stream(operation: dict[str, Any]) -> None:
    """In OpenAPI 3.1 the schema of text/event-stream describes one event (its fields)."""
    json_data = {"type": "string", "contentMediaType": "application/json"}
    operation["responses"]["200"]["content"] = {
        "text/event-stream": {
            "schema": {
                "description": "A new event (`id: evt_…`, `data: <Event>`), or `event: error` with an "
                "error body, after which the stream is closed",
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["id", "data"],
                        "properties": {
                            "id": {"type": "string", "pattern": id_pattern("evt")},
                            "event": {"const": "message"},
                            "data": {**json_data, "contentSchema": _ref("schemas", "Event")},
                        },
                    },
                    {
                        "type": "object",
                        "required": ["event", "data"],
                        "properties": {
                            "event": {"const": "error"},
                            "data": {**json_data, "contentSchema": _ref("schemas", "ErrorBody")},
                        },
                    },
                ],
            }
        }
    }


def complete_document(app: Litestar) -> None:
    """Builds the app's OpenAPI document now and completes it (it is served as built)."""
    document: dict[str, Any] = app.plugins.get("OpenAPIPlugin").provide_openapi_schema()
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(_error_schemas())
    schemas["JsonWithoutNul"] = _JSON_WITHOUT_NUL
    components["headers"] = _HEADERS
    request_structs: dict[str, msgspec.inspect.StructType] = {}
    for path, method, handler in _operations(app):
        operation = document["paths"][path][method]
        _document_operation(operation, method, handler)
        if operation["operationId"] == "streamEvents":
            _stream_as_event_stream(operation)
        if body := handler.parsed_fn_signature.parameters.get("data"):
            request_structs |= _request_structs(body.annotation)
    for name, info in request_structs.items():
        _complete_request_schema(schemas[name], info)
    # The batch body is documented inline by its handler (controllers/events.py).
    batch = document["paths"]["/v1/events/batch"]["post"]["requestBody"]
    batch["content"]["application/json"]["schema"]["additionalProperties"] = False
