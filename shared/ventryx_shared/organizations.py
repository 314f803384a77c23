"""The organization itself on the wire: ``GET``/``PATCH /v1/org``."""

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from .common import PRINTABLE_PATTERN
from .rate_limits import RateLimit

OrganizationName = Annotated[
    str, Meta(min_length=1, max_length=100, pattern=PRINTABLE_PATTERN),
]


class OrganizationUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """At least one of the fields."""

    name: OrganizationName | None = None
    # The rate limit of every key without its own, and of every dashboard session.
    default_rate_limit: RateLimit | None = None


class Quotas(msgspec.Struct, kw_only=True):
    """What the organization may hold at once; set by the operator of the server."""

    active_api_keys: int
    workflows: int


class OrganizationDetails(msgspec.Struct, kw_only=True):
    id: str
    name: str
    default_rate_limit: RateLimit
    quotas: Quotas
    created_at: datetime
    updated_at: datetime
