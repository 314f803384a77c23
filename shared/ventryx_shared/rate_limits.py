"""Rate limits on the wire: a key's own, or its organization's default."""

from typing import Annotated

import msgspec
from msgspec import Meta

MAX_REQUESTS = 1_000_000_000
MAX_WINDOW_SECONDS = 86_400


class RateLimit(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """At most ``requests`` requests in each fixed window of ``window_seconds`` seconds,
    counted over every server process (see the README's "Rate limits")."""

    requests: Annotated[int, Meta(ge=1, le=MAX_REQUESTS, description="Requests allowed per window")]
    window_seconds: Annotated[
        int, Meta(ge=1, le=MAX_WINDOW_SECONDS, description="The window's length in seconds")
    ]


def rate_limit_of(requests: int | None, window_seconds: int | None) -> RateLimit | None:
    """A stored pair of columns as the API shows it (None: not set)."""
    if requests is None or window_seconds is None:
        return None
    return RateLimit(requests=requests, window_seconds=window_seconds)
