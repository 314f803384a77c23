"""The response envelope and error body every endpoint uses."""

import re
from typing import Generic, Literal, TypeVar

import msgspec

T = TypeVar("T")

Environment = Literal["live", "test"]

# Bidirectional control characters reorder how text is displayed ("Trojan Source"): a name
# holding U+202E can show a reviewer something other than what it is.
BIDI_CONTROLS = r"\u202a-\u202e\u2066-\u2069"  # escapes: the document stays ASCII

# Appended to a pattern ending in $: Python's re (msgspec, Schemathesis) lets $ match
# before a final newline, which the server's own checks refuse.
NO_FINAL_NEWLINE = r"(?!\n)"

# Times the server accepts lie in [1970, 9000) (events.check_time); for the OpenAPI
# document, the years of an RFC 3339 time in that range.
TIME_RANGE_PATTERN = r"^(19[7-9][0-9]|[2-8][0-9]{3})-"

# Names people give things: something visible, no control characters (C0, DEL,
# bidirectional). msgspec applies patterns with re.search, where a bare $ also matches
# before a final newline; (?!\n) closes that gap. The same text is the OpenAPI pattern.
_NAME_CHARACTER = rf"[^\x00-\x1f\x7f{BIDI_CONTROLS}]"
PRINTABLE_PATTERN = (
    rf"^{_NAME_CHARACTER}*[^\s\x00-\x1f\x7f{BIDI_CONTROLS}]{_NAME_CHARACTER}*"
    rf"$(?!\n)"
)
# Free text (descriptions): line breaks and tabs allowed, other control characters not.
FREE_TEXT_PATTERN = rf"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f{BIDI_CONTROLS}]*$"

_PATTERN_RULES = {
    PRINTABLE_PATTERN: "must be visible text without control characters or bidirectional "
    "control characters (U+202A-U+202E, U+2066-U+2069)",
    FREE_TEXT_PATTERN: "must not contain control characters other than line breaks and tabs, "
    "nor bidirectional control characters (U+202A-U+202E, U+2066-U+2069)",
}
_MSGSPEC_PATH = re.compile(r" - at `\$(.*)`$")
_NAMED_IN_MESSAGE = re.compile(r"([a-z_]+)(?::| must | needs )")


def describe_validation_error(error: msgspec.ValidationError) -> tuple[str, str, str | None]:
    """(code, message, param) for a msgspec ValidationError, in words a caller can act on:
    ``name must be visible text…`` rather than the regular expression it failed."""
    text = str(error)
    path = _MSGSPEC_PATH.search(text)
    message = text[: path.start()] if path else text
    param = path[1].removeprefix(".") if path and path[1] else None
    if message.startswith("Object contains unknown field `"):
        field = message.split("`")[1]
        param = f"{param}.{field}" if param else field
        return "unknown_field", f"Unknown field: {param}.", param
    if message.startswith("Object missing required field `"):
        field = message.split("`")[1]
        param = f"{param}.{field}" if param else field
        return "missing_field", f"Missing required field: {param}.", param
    if param is None and (named := _NAMED_IN_MESSAGE.match(message)):
        param = named[1]  # a check of the whole object (__post_init__) names its field
    for pattern, rule in _PATTERN_RULES.items():
        if repr(pattern) in message:
            return "invalid_value", f"{param or 'The value'} {rule}.", param
    if message.startswith("Expected `datetime"):
        return (
            "invalid_value",
            (
                f"{param or 'The value'} must be an RFC 3339 time with a time "
                "zone, as in 2026-04-02T10:00:00Z."
            ),
            param,
        )
    where = f"{param}: " if param else ""
    return "invalid_value", f"{where}{message}.", param


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
