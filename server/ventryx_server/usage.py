"""Key usage: requests per credential per minute, by outcome, counted in memory.

Every authenticated request is counted once against its credential (auth.py decides the
outcome: success in authorized()/lock_caller(), denied_scope or revoked_or_expired in
deny(), rate_limited where the rate limiter refuses). The counts ride on UsageRecorder's
flush, the one that already writes last_used_at: at most once per interval per process,
all credentials in one statement (record-credential-usage in sql/queries/usage.sql),
which adds them to the minute and hour rows every process shares. That flush rather than
the rate limiter's: the limiter syncs every second for correctness, usage needs no more
than last_used_at's interval, and one flush keeps last_used_at and the counts in step.
A process killed between flushes loses at most one interval of counts.
"""

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, NoReturn

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ventryx_shared.usage import MAX_BUCKETS

from .auth import Credential
from .auth import _in_background as in_background
from .errors import InvalidRequest, is_outage
from .settings import Settings

log = logging.getLogger("ventryx.usage")

OUTCOMES = ("success", "denied_scope", "rate_limited", "revoked_or_expired")
_OUTCOME_INDEX = {outcome: index for index, outcome in enumerate(OUTCOMES)}
PRUNE_BATCH = 1000


class UsageCounts:
    """This process's counts since the last flush, per credential hash and Unix minute."""

    def __init__(
        self,
        *,
        capacity: int = 100_000,
        clock: Callable[[], float] = time.time,
        enabled: bool = True,
    ) -> None:
        # Bounds memory between flushes; only refusals of invented credentials (which the
        # per-address limit on failed authentication also stops) could come near it.
        self._capacity = capacity
        self._clock = clock
        self._counts: dict[tuple[bytes, int], list[int]] = {}
        self._credentials: dict[bytes, Credential] = {}
        if not enabled:
            self.count = _not_counting  # type: ignore[method-assign]

    def count(self, credential: Credential, outcome: str) -> None:
        key = (credential.secret_hash, int(self._clock()) // 60)
        counts = self._counts.get(key)
        if counts is None:
            if len(self._counts) >= self._capacity:
                return
            counts = self._counts[key] = [0, 0, 0, 0]
            self._credentials[credential.secret_hash] = credential
        counts[_OUTCOME_INDEX[outcome]] += 1

    def take(self) -> "UsageCounts":
        """The counts so far, leaving this one empty."""
        taken = UsageCounts(capacity=self._capacity, clock=self._clock)
        taken._counts, self._counts = self._counts, {}
        taken._credentials, self._credentials = self._credentials, {}
        return taken

    def add(self, other: "UsageCounts") -> None:
        """Puts back counts a failed flush could not write."""
        for key, counts in other._counts.items():
            mine = self._counts.setdefault(key, [0, 0, 0, 0])
            for outcome, value in enumerate(counts):
                mine[outcome] += value
        self._credentials.update(other._credentials)

    def __bool__(self) -> bool:
        return bool(self._counts)

    async def write(self, db: asyncpg.Connection | PoolConnectionProxy, queries: Any) -> None:
        rows = [
            (self._credentials[secret_hash], minute, counts)
            for (secret_hash, minute), counts in self._counts.items()
        ]
        columns = {
            name: [counts[outcome] for _, _, counts in rows]
            for outcome, name in enumerate(OUTCOMES)
        }
        await queries.record_credential_usage(
            db,
            kinds=[c.kind for c, _, _ in rows],
            lookup_ids=[c.lookup_id for c, _, _ in rows],
            secret_hashes=[c.secret_hash for c, _, _ in rows],
            minutes=[minute for _, minute, _ in rows],
            **columns,
        )


def _not_counting(credential: Credential, outcome: str) -> None:
    pass


SESSION_ID_PREFIX = "ses_"


class UsageRecorder:
    """Keeps keys' ``last_used_at`` and sessions' idle expiry fresh, and their request
    counts (usage.py), without a write per request: what was used since the last flush is
    written once, every interval."""

    def __init__(
        self, pool: asyncpg.Pool, queries: Any, interval: float, *, counting: bool = True
    ) -> None:
        self._pool = pool
        self._queries = queries
        self._interval = interval
        self._pending: set[tuple[str, str]] = set()
        self.counts = UsageCounts(enabled=counting)
        self.flushed_at = time.monotonic()  # the flush lag metric (metrics.py)

    def touch(self, org_id: str, credential_id: str) -> None:
        self._pending.add((org_id, credential_id))

    async def flush(self) -> None:
        if not self._pending and not self.counts:
            self.flushed_at = time.monotonic()
            return
        batch, self._pending = self._pending, set()
        counts = self.counts.take()
        try:
            await self._write(batch, counts)
        except BaseException:
            self._pending |= batch  # the next flush tries again
            self.counts.add(counts)
            raise
        self.flushed_at = time.monotonic()

    async def _write(self, batch: set[tuple[str, str]], counts: UsageCounts) -> None:
        keys = [(org, key) for org, key in batch if not key.startswith(SESSION_ID_PREFIX)]
        sessions = [(org, ses) for org, ses in batch if ses.startswith(SESSION_ID_PREFIX)]
        # A saturated pool must not pile flushes up: wait at most an interval (a second at
        # least), the next flush comes then anyway.
        async with asyncio.timeout(max(self._interval, 1.0)):
            db = await self._pool.acquire()
        try:
            if keys:
                org_ids, key_ids = zip(*keys, strict=True)
                await self._queries.record_key_usage(
                    db, org_ids=list(org_ids), key_ids=list(key_ids)
                )
            if sessions:
                # A session in use stays alive: its idle expiry moves forward here.
                org_ids, session_ids = zip(*sessions, strict=True)
                await self._queries.record_session_activity(
                    db, org_ids=list(org_ids), session_ids=list(session_ids)
                )
            if counts:
                await counts.write(db, self._queries)
        finally:
            await self._pool.release(db)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._flush_logging_failures()

    async def _flush_logging_failures(self) -> None:
        """A failed flush is logged and tried again next time; it never ends the task."""
        try:
            await self.flush()
        except Exception as exc:
            if is_outage(exc):
                log.warning("could not record key usage: %s", type(exc).__name__)
            else:
                log.error("could not record key usage", exc_info=exc)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["UsageRecorder"]:
        try:
            async with in_background(self.run()):
                yield self
        finally:
            await self._flush_logging_failures()


async def prune(
    pool: asyncpg.Pool, queries: Any, *, minutes_keep_seconds: float, hours_keep_seconds: float
) -> int:
    """Removes usage rows past their retention, a batch per statement (each its own short
    transaction), until a batch comes back short. Returns how many rows went."""
    removed = 0
    for statement, keep in (
        (queries.delete_old_usage_minutes, minutes_keep_seconds),
        (queries.delete_old_usage_hours, hours_keep_seconds),
    ):
        while True:
            async with pool.acquire() as db:
                row = await statement(db, keep_seconds=keep, batch=PRUNE_BATCH)
            removed += row["deleted"]
            if row["deleted"] < PRUNE_BATCH:
                break
    return removed


async def prune_forever(
    pool: asyncpg.Pool, queries: Any, settings: Settings, every: float = 300.0
) -> NoReturn:
    """Prunes every few minutes while the server runs; every process does, and SKIP
    LOCKED lets them share the work."""
    while True:
        try:
            await prune(
                pool,
                queries,
                minutes_keep_seconds=settings.usage_minutes_keep_seconds,
                hours_keep_seconds=settings.usage_hours_keep_seconds,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("could not prune key usage: %s", type(exc).__name__)
        await asyncio.sleep(every)


_DURATION = re.compile(r"([1-9][0-9]{0,5})([mhd])")
_DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400}
STEP_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
DEFAULT_SPAN = {"minute": 3600, "hour": 86400, "day": 30 * 86400}


def parse_duration(text: str, param: str) -> float:
    """``30d``, ``12h``, ``90m`` in seconds (at most ten years), or 400 naming ``param``."""
    match = _DURATION.fullmatch(text)
    seconds = int(match[1]) * _DURATION_UNITS[match[2]] if match else 0
    if not 0 < seconds <= 3650 * 86400:
        raise InvalidRequest(
            f"{param} must be a whole number of minutes, hours or days "
            "up to 3650d, like 30d, 12h or 90m.",
            param=param,
        )
    return float(seconds)


def bucket_range(
    granularity: str, since: datetime | None, until: datetime | None, now: datetime
) -> tuple[int, int, int]:
    """The first bucket (Unix seconds, aligned to the granularity in UTC), the step and the
    number of buckets that cover [since, until), or 400 for a range out of bounds. The
    input checks (json_body.py) have already refused a time without a time zone or
    outside 1970-9000."""
    step = STEP_SECONDS[granularity]
    end = (until or now).timestamp()
    start = since.timestamp() if since is not None else end - DEFAULT_SPAN[granularity]
    if start >= end:
        raise InvalidRequest("since must be before until.", param="since")
    first = int(start // step) * step
    buckets = math.ceil((end - first) / step)
    if buckets > MAX_BUCKETS:
        raise InvalidRequest(
            f"That range holds {buckets} {granularity} buckets; at most {MAX_BUCKETS} per "
            "call: narrow since/until or use a coarser granularity.",
            code="too_many_buckets",
            param="since",
        )
    return first, step, buckets
