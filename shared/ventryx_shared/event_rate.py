"""How many events arrive per minute, on the wire: what the dashboard's overview draws."""

from datetime import datetime

import msgspec

MAX_MINUTES = 60


class EventRateBucket(msgspec.Struct, kw_only=True):
    """Events received (``created_at``) in the minute that starts at ``start``."""

    start: datetime
    events: int


class EventRate(msgspec.Struct, kw_only=True):
    since: datetime  # the first minute's start
    until: datetime  # the end of the last (current, partial) minute
    buckets: list[EventRateBucket]  # oldest first, zero-filled
