"""What the dashboard reads from a key's usage counts: its last 24 hours, the traffic it
still serves, and whether it went unused."""

from __future__ import annotations

from datetime import datetime, timedelta

from ventryx_shared.api_keys import ApiKey

from . import formatting as fmt
from .charts import bucket_total
from .client import VentryxClient

# GitHub and AWS flag credentials unused for about this long; the server's
# ?unused_for=30d means the same (a key never used counts from its creation).
UNUSED_AFTER = timedelta(days=30)
# The server's default quiet period before a rotated key shows traffic_migrated.
RECENT_MINUTES = 15


def is_unused(key: ApiKey, now: datetime | None = None) -> bool:
    """An active key without a successful request for 30 days: a candidate to revoke."""
    if key.status != "active":
        return False
    last = key.last_used_at or key.created_at
    return last < (now or fmt.now()) - UNUSED_AFTER


def current_hour() -> datetime:
    return fmt.now().replace(minute=0, second=0, microsecond=0)


async def last_day(client: VentryxClient, key_id: str) -> list[int]:
    """Requests per hour (every outcome), the 24 hours up to the current one."""
    usage = await client.api_key_usage(key_id, "hour", since=current_hour() - timedelta(hours=23))
    return [bucket_total(bucket) for bucket in usage.buckets]


async def recent_successes(client: VentryxClient, key_id: str) -> int:
    """Requests the key served (successes) in the last 15 minutes."""
    usage = await client.api_key_usage(
        key_id, "minute", since=fmt.now() - timedelta(minutes=RECENT_MINUTES)
    )
    return sum(bucket.success for bucket in usage.buckets)


def in_grace(key: ApiKey) -> bool:
    """Rotated, and still working until its grace period ends."""
    return key.rotated_to is not None and key.status == "active"


def rotation_status(key: ApiKey, recent: int | None) -> str:
    """For a rotated key in its grace period: whether its clients have moved to the
    successor yet, from the server's traffic_migrated and the last 15 minutes' count."""
    if key.traffic_migrated:
        return (
            "Traffic migrated: no successful request for the server's quiet period "
            "(15 minutes unless configured). x revokes it."
        )
    if recent is None:
        return "Still serving requests (counting the last 15 minutes...). x revokes it."
    return (
        f"Still serving {fmt.rate(recent, RECENT_MINUTES)} requests/min "
        f"({recent:,} in the last {RECENT_MINUTES} minutes). x revokes it."
    )
