"""The organization itself on the wire: ``GET``/``PATCH /v1/org``."""

from datetime import datetime
from typing import Annotated, ClassVar

import msgspec
from msgspec import Meta

from .common import PRINTABLE_PATTERN
from .rate_limits import RateLimit

OrganizationName = Annotated[
    str,
    Meta(min_length=1, max_length=100, pattern=PRINTABLE_PATTERN),
]


MAX_EVENT_RETENTION_DAYS = 3650
RetentionDays = Annotated[
    int,
    Meta(
        ge=1,
        le=MAX_EVENT_RETENTION_DAYS,
        description="Whole days an event is kept: it is removed once it was received before "
        "the start of the current UTC day minus this many days",
    ),
]


class EventRetentionUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Either environment or both; the other keeps its retention."""

    live: RetentionDays | None = None
    test: RetentionDays | None = None


class EventRetention(msgspec.Struct, kw_only=True):
    """How long each environment's events are kept (README "Event retention")."""

    live: int
    test: int


class OrganizationUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """At least one of the fields."""

    name: OrganizationName | None = None
    # The rate limit of every key without its own, and of every dashboard session.
    default_rate_limit: RateLimit | None = None
    event_retention_days: EventRetentionUpdate | None = None

    # For the OpenAPI document: an update changes something (else 422 empty_update).
    json_schema_extra: ClassVar[dict[str, object]] = {
        "anyOf": [
            {"required": ["name"], "properties": {"name": {"type": "string"}}},
            {
                "required": ["default_rate_limit"],
                "properties": {"default_rate_limit": {"type": "object"}},
            },
            {
                "required": ["event_retention_days"],
                "properties": {
                    "event_retention_days": {
                        "type": "object",  # a null object changes nothing
                        "anyOf": [
                            {"required": [env], "properties": {env: {"type": "integer"}}}
                            for env in ("live", "test")
                        ],
                    }
                },
            },
        ]
    }


class Quotas(msgspec.Struct, kw_only=True):
    """What the organization may hold at once; set by the operator of the server."""

    active_api_keys: int
    workflows: int


class OrganizationDetails(msgspec.Struct, kw_only=True):
    id: str
    name: str
    default_rate_limit: RateLimit
    quotas: Quotas
    event_retention_days: EventRetention
    created_at: datetime
    updated_at: datetime
