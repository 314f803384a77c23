"""API keys on the wire."""

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from .common import PRINTABLE_PATTERN, Environment
from .rate_limits import RateLimit
from .scopes import Scope

KeyName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=100,
        pattern=PRINTABLE_PATTERN,
        description="A label for people: what uses this key",
    ),
]
ScopeList = Annotated[
    list[Scope], Meta(min_length=1, max_length=7, extra_json_schema={"uniqueItems": True})
]
KeyStatus = Literal["active", "expired", "revoked"]
GracePeriod = Annotated[int, Meta(ge=0, le=30 * 24 * 3600)]
ExpiresAt = Annotated[
    datetime,
    Meta(
        tz=True,
        description="A future time with a time zone (before 9000-01-01): "
        "2027-01-01T00:00:00Z. Default: never",
    ),
]


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: KeyName
    scopes: ScopeList
    environment: Environment | None = None
    expires_at: ExpiresAt | None = None
    # null or absent: the organization's default_rate_limit applies.
    rate_limit: RateLimit | None = None


class ApiKeyUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: KeyName | None = None
    scopes: ScopeList | None = None
    # Absent: unchanged; null: back to the organization's default_rate_limit.
    rate_limit: RateLimit | None | msgspec.UnsetType = msgspec.UNSET


class ApiKeyRotate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    grace_period_seconds: GracePeriod = 0


class LeakedKeyReport(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    key: Annotated[str, Meta(max_length=200)]


class ApiKey(msgspec.Struct, kw_only=True):
    """A key as lists and reads show it: never the secret, never its hash."""

    id: str
    name: str
    redacted_key: str
    scopes: list[str]
    environment: Environment
    status: KeyStatus
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_to: str | None = None
    # The key's own limit; null when the organization's default_rate_limit applies.
    rate_limit: RateLimit | None = None
    # Usage (every request counted against the key, success or refused), at most one
    # usage flush interval behind, like last_used_at.
    requests_last_24h: int = 0
    # Set only on a rotated key: its successful requests since the rotation, and whether
    # it has gone without one for the quiet period (15 minutes unless configured).
    requests_since_rotation: int | None = None
    traffic_migrated: bool | None = None


class ApiKeyCreated(ApiKey, kw_only=True):
    """The one response that carries the key itself (``key`` is null on an idempotent replay)."""

    key: str | None


class ApiKeyRotated(ApiKeyCreated, kw_only=True):
    previous_key: ApiKey
