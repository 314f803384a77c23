"""Key usage on the wire: requests per time bucket, by outcome."""

from datetime import datetime
from typing import Literal

import msgspec

Granularity = Literal["minute", "hour", "day"]
MAX_BUCKETS = 1440


class UsageBucket(msgspec.Struct, kw_only=True):
    """Requests counted against the key from ``start`` for one bucket."""

    start: datetime
    success: int
    denied_scope: int  # 403: the key lacked the scope
    rate_limited: int  # 429
    revoked_or_expired: int  # 401: the key was revoked or had expired


class KeyUsage(msgspec.Struct, kw_only=True):
    key_id: str
    granularity: Granularity
    since: datetime  # the first bucket's start
    until: datetime  # the end of the last bucket
    buckets: list[UsageBucket]  # oldest first, zero-filled
