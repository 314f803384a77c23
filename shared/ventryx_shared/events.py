"""Events on the wire: emitted one at a time or in batches, listed, streamed."""

import re
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from .common import Environment

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_BATCH = 500

# (?!\n) because msgspec applies patterns with re.search, where $ also matches before a
# final newline.
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+(?!\n)$"
# The list filter: an exact type, or a prefix ending in .* (order.*).
TYPE_FILTER_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?$"
# What parse_type_filter accepts, for the OpenAPI document: a whole type or a prefix.
TYPE_FILTER_EXACT_PATTERN = (
    r"^([a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+"
    r"|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.\*)$(?!\n)"
)
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)
_TYPE_FILTER = re.compile(TYPE_FILTER_PATTERN.replace("$", r"\Z"))

EventType = Annotated[
    str,
    Meta(
        min_length=3,
        max_length=128,
        pattern=EVENT_TYPE_PATTERN,
        description="A dotted lowercase name: order.created",
    ),
]


def is_event_type(value: str) -> bool:
    return _EVENT_TYPE.match(value) is not None


def parse_type_filter(value: str) -> tuple[str | None, str | None]:
    """``order.created`` → (exact, None); ``order.*`` → (None, "order."); else ValueError."""
    if len(value) > 128 or not _TYPE_FILTER.match(value):
        raise ValueError("type must be an event type (order.created) or a prefix (order.*)")
    if value.endswith(".*"):
        return None, value[:-1]
    if not is_event_type(value):
        raise ValueError("type must be an event type (order.created) or a prefix (order.*)")
    return value, None


# Times outside these bounds are refused: near the ends of Python's datetime range a time
# zone shift overflows, and no event of a workflow system predates 1970.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9000, 1, 1, tzinfo=UTC)


def check_time(value: datetime, field: str) -> None:
    """ValueError unless ``value`` has a time zone and lies in [1970, 9000)."""
    if value.tzinfo is None:
        raise ValueError(f"{field} needs a time zone, as in 2026-04-02T10:00:00Z")
    if not EARLIEST_TIME <= value < LATEST_TIME:
        raise ValueError(f"{field} must lie between 1970-01-01 and 9000-01-01")


OccurredAt = Annotated[
    datetime,
    Meta(
        tz=True,
        description="When it happened, with a time "
        "zone: 2026-04-02T10:00:00Z. Default: when received",
    ),
]


class EventCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Validated by msgspec alone (no __post_init__): a batch of 500 decodes in one C pass.
    type: EventType
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    occurred_at: OccurredAt | None = None


class EventBatchCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    events: Annotated[list[EventCreate], Meta(min_length=1, max_length=MAX_BATCH)]


class Event(msgspec.Struct, kw_only=True):
    id: str
    type: str
    payload: dict[str, Any]
    occurred_at: datetime
    created_at: datetime
    environment: Environment
    matched_workflows: list[str]
    emitted_by: str


class EventBatchCreated(msgspec.Struct, kw_only=True):
    data: list[Event]


class BatchItemError(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Why one event of a batch was refused (nothing of the batch was written)."""

    index: int
    code: str
    message: str
    param: str | None = None


class BatchErrorDetail(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    code: str
    message: str
    request_id: str
    param: str | None = None
    errors: list[BatchItemError] = msgspec.field(default_factory=list)


class BatchErrorBody(msgspec.Struct):
    error: BatchErrorDetail


# A NUL character: PostgreSQL's jsonb cannot store it. An odd number of backslashes
# before u0000 is an escape; an even number is an escaped backslash and the text u0000.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def encode_bounded_json(value: Any, max_bytes: int, field: str) -> bytes:
    """JSON for a jsonb column, or ValueError saying why it cannot be stored."""
    encoded = msgspec.json.encode(value)
    if len(encoded) > max_bytes:
        raise ValueError(f"{field} is {len(encoded)} bytes of JSON; the limit is {max_bytes}")
    if b"\\u0000" in encoded and _JSON_NUL.search(encoded):
        raise ValueError(f"{field} must not contain NUL (\\u0000) characters")
    return encoded
