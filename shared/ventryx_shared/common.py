"""The response envelope and error body every endpoint uses."""

from typing import Generic, Literal, TypeVar

import msgspec

T = TypeVar("T")

Environment = Literal["live", "test"]

# Names people give things: no control characters. msgspec applies patterns with
# re.search, where a bare $ also matches before a final newline; (?!\n) closes that gap.
PRINTABLE_PATTERN = r"^[^\x00-\x1f\x7f]+$(?!\n)"

ErrorType = Literal[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "conflict_error",
    "rate_limit_error",
    "api_error",
]


class Data(msgspec.Struct, Generic[T]):
    """A single object: ``{"data": {...}}``."""

    data: T


class Page(msgspec.Struct, Generic[T]):
    """A list, newest first: ``{"data": [...], "has_more": bool}``."""

    data: list[T]
    has_more: bool


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    type: ErrorType
    code: str
    message: str
    request_id: str
    param: str | None = None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class Accepted(msgspec.Struct):
    received: bool = True
