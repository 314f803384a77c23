"""The checks every request passes before its handler: input is read as strictly as the
OpenAPI document describes it.

Litestar converts bodies and query values leniently (msgspec ``strict=False``), so on its
own it would take ``0`` for a timestamp and ``"10"`` for a number, which the document
forbids. Here a body is decoded strictly into the handler's ``data`` type and timestamps in
the query must be RFC 3339; Litestar's own (lenient) conversion then only ever sees input
that passed, for which both give the same values. Decoding a small body once more costs a
few microseconds; batches, the large bodies, read theirs themselves and are not decoded here.
"""

from datetime import datetime
from functools import cache
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import msgspec
from litestar.handlers import HTTPRouteHandler

from ventryx_shared.common import describe_validation_error
from ventryx_shared.events import check_time

from .errors import ApiError, InvalidRequest, UnprocessableEntity
from .request_type import AppRequest

_BODY_METHODS = {"POST", "PUT", "PATCH"}
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not NoneType]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


@cache
def _body_decoder(handler: HTTPRouteHandler) -> tuple[msgspec.json.Decoder[Any], bool] | None:
    """The strict decoder of the handler's body and whether the body may be left out."""
    field = handler.parsed_fn_signature.parameters.get("data")
    if field is None:
        return None
    return msgspec.json.Decoder(field.annotation, strict=True), field.has_default


@cache
def _timestamp_parameters(handler: HTTPRouteHandler) -> tuple[str, ...]:
    return tuple(
        name
        for name, field in handler.parsed_fn_signature.parameters.items()
        if _without_none(field.annotation) is datetime
    )


@cache
def _never_null_parameters(handler: HTTPRouteHandler) -> tuple[str, ...]:
    """Optional parameters that Litestar would read as None from the text "null" (an enum,
    a boolean); a text filter takes "null" as the text it is."""
    return tuple(
        name
        for name, field in handler.parsed_fn_signature.parameters.items()
        if name != "data"
        and field.is_optional
        and _without_none(field.annotation) not in (str, datetime)
    )


def _check_timestamps(value: Any) -> None:
    """Timestamps in a body need a time zone and lie between 1970 and 9000, where every
    column and time zone shift can hold them (later ones overflow in PostgreSQL)."""
    if not isinstance(value, msgspec.Struct):
        return
    for name in value.__struct_fields__:
        field_value = getattr(value, name)
        if isinstance(field_value, datetime):
            try:
                check_time(field_value, name)
            except ValueError as exc:
                raise UnprocessableEntity(f"{exc}.", param=name) from None


async def _check_body(request: AppRequest) -> None:
    has_body = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers
    )
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if has_body and media_type != "application/json":
        error = ApiError(
            "Send the body as JSON with Content-Type: application/json.",
            code="unsupported_media_type",
            param="Content-Type",
        )
        error.status = 415
        raise error
    decoder = _body_decoder(request.route_handler)
    if decoder is None:
        return
    decode, optional = decoder
    body = await request.body()
    if not body.strip():
        if optional:
            return
        raise InvalidRequest("This request needs a JSON body.", code="missing_body")
    try:
        try:
            value = decode.decode(body)
        except msgspec.ValidationError as exc:
            if "got `float`" not in str(exc):
                raise
            # JSON Schema counts 10.0 as an integer, msgspec's strict mode does not.
            value = msgspec.convert(
                _integral_floats_as_ints(msgspec.json.decode(body)), decode.type, strict=True
            )
    except msgspec.ValidationError as exc:
        code, message, param = describe_validation_error(exc)
        raise UnprocessableEntity(message, code=code, param=param) from None
    except (msgspec.DecodeError, RecursionError):
        raise InvalidRequest("The body is not valid JSON.", code="invalid_json") from None
    _check_timestamps(value)


def _integral_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(item) for item in value]
    return value


def _check_query(request: AppRequest) -> None:
    if not request.scope.get("query_string"):
        return
    for name, value in request.query_params.multi_items():
        if "\x00" in value:
            raise InvalidRequest(
                f"{name[:100]} must not contain NUL characters.",
                code="invalid_parameter",
                param=name[:100],
            )
    for name in _never_null_parameters(request.route_handler):
        if request.query_params.get(name) == "null":
            raise InvalidRequest(
                f"{name} cannot be null; leave it out instead.",
                code="invalid_parameter",
                param=name,
            )
    for name in _timestamp_parameters(request.route_handler):
        raw = request.query_params.get(name)
        if raw is None:
            continue
        try:
            check_time(msgspec.convert(raw, Timestamp, strict=True), name)
        except (msgspec.ValidationError, ValueError) as exc:
            reason = (
                str(exc)
                if not isinstance(exc, msgspec.ValidationError)
                else (
                    f"{name} must be an RFC 3339 time with a time zone, as in 2026-04-02T10:00:00Z"
                )
            )
            raise InvalidRequest(f"{reason}.", code="invalid_parameter", param=name) from None


async def check_input(request: AppRequest) -> None:
    """Refuses, before the handler runs, input the OpenAPI document does not allow."""
    _check_query(request)
    if request.method in _BODY_METHODS:
        await _check_body(request)
