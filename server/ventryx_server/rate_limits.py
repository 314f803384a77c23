"""Per-credential rate limits, decided in memory and shared across server processes.

Every request with a well-formed credential is admitted or refused (429) by
``RateLimiter.admit`` in the before-request hook, before its handler does any work and
without a database write: each process counts its requests per credential in memory,
and every ``interval`` one statement (sync-rate-limits in sql/queries/rate_limits.sql)
adds those counts to the credential's counter for the current window and returns, for
every credential the process knows, its limit and the total of every process. A process
then decides with that total plus what it admitted since.

How close to exact: a process's total is at most one interval (plus one statement) old,
so with N processes a window can admit at most the limit plus what the other N - 1
processes admitted in the last interval before each one learned the limit was reached:
"at most one flush interval of overshoot per other process". With one process it is
exact. Windows are fixed, aligned to multiples of their length (so the processes agree
on them as far as their clocks agree); like every fixed window, two windows' worth of
requests can arrive around a boundary.

A credential a process has not seen yet costs one read (credential-rate-limit), made
once however many requests arrive with it at the same time, that also tells whether the
credential exists at all: one that does not is never counted against a real key (the
hash must match) and is left to the database to refuse and to the per-address limit on
failed authentication.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import asyncpg

from .auth import Credential
from .auth import _in_background as in_background
from .errors import RateLimited, is_outage

log = logging.getLogger("ventryx.rate_limits")

POLICY_NAME = "default"
RATE_LIMIT_HEADER = b"ratelimit"
POLICY_HEADER = b"ratelimit-policy"
_RATE_LIMIT_VALUE = f'"{POLICY_NAME}";r=%d;t=%d'.encode()


class CredentialWindow:
    """One credential's count in its current window, as this process knows it."""

    __slots__ = (
        "credential",
        "limit",
        "window",
        "start",
        "synced",
        "in_flight",
        "pending",
        "policy",
        "last_used",
    )

    def __init__(self, credential: Credential, row: asyncpg.Record | None, now: float) -> None:
        self.credential = credential
        self.limit: int | None = None  # None: no such credential
        self.window = 1
        self.start = 0
        # The total of every process at the last sync, what this process sent in the
        # sync now under way, and what it admitted since.
        self.synced = self.in_flight = self.pending = 0
        self.policy = b""
        self.last_used = now
        if row is not None:
            self.learn(row)

    def learn(self, row: asyncpg.Record | Mapping[str, Any]) -> None:
        """Takes a sync's (or the first read's) limit and total for the current window."""
        if (row["requests"], row["window_seconds"]) != (self.limit, self.window):
            self.limit, self.window = row["requests"], row["window_seconds"]
            self.policy = f'"{POLICY_NAME}";q={self.limit};w={self.window}'.encode()
        if row["window_start"] > self.start:
            self.start, self.in_flight, self.pending = row["window_start"], 0, 0
        if row["window_start"] == self.start:
            self.synced = row["used"]

    def admit(self, now: float) -> list[tuple[bytes, bytes]] | None:
        """The RateLimit headers for one more request, or 429 if the window is full."""
        self.last_used = now
        if self.limit is None:
            return None
        second = int(now)
        start = second - second % self.window
        if start != self.start:
            self.start, self.synced, self.in_flight, self.pending = start, 0, 0, 0
        remaining = self.limit - self.synced - self.in_flight - self.pending
        reset = start + self.window - second
        if remaining <= 0:
            raise RateLimited(
                f"Rate limit exceeded: {self.limit} requests per {self.window} seconds for "
                f"this credential. Retry after {reset} seconds.",
                code="rate_limit_exceeded",
                headers={
                    "Retry-After": str(reset),
                    "RateLimit-Policy": self.policy.decode(),
                    "RateLimit": f'"{POLICY_NAME}";r=0;t={reset}',
                },
            )
        self.pending += 1
        return [
            (POLICY_HEADER, self.policy),
            (RATE_LIMIT_HEADER, _RATE_LIMIT_VALUE % (remaining - 1, reset)),
        ]


class RateLimiter:
    """The process's windows, keyed by credential hash, and the loop that syncs them."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        queries: Any,
        interval: float,
        *,
        idle_seconds: float = 60.0,
        capacity: int = 100_000,
        clock: Callable[[], float] = time.time,
        acquire_timeout: float = 5.0,
    ) -> None:
        self._pool = pool
        # A first request waits this long at most for the connection that reads its
        # credential's limit (Settings.pool_timeout_seconds): then 503, as in provide_db.
        self._acquire_timeout = acquire_timeout
        self._queries = queries
        self.interval = interval
        self._idle_seconds = max(idle_seconds, 2 * interval)
        self._capacity = capacity
        self.clock = clock
        self._windows: dict[bytes, CredentialWindow] = {}
        self._learning: dict[bytes, asyncio.Future[CredentialWindow]] = {}
        self.flushed_at = time.monotonic()  # the flush lag metric (metrics.py)

    def known(self, credential: Credential) -> CredentialWindow | None:
        return self._windows.get(credential.secret_hash)

    async def learn(self, credential: Credential) -> CredentialWindow:
        """The first read of a credential; concurrent first requests share it."""
        key = credential.secret_hash
        future = self._learning.get(key)
        if future is None:
            future = asyncio.ensure_future(self._read(credential))
            self._learning[key] = future
            future.add_done_callback(lambda _: self._learning.pop(key, None))
        return await asyncio.shield(future)

    async def _read(self, credential: Credential) -> CredentialWindow:
        now = self.clock()
        async with self._pool.acquire(timeout=self._acquire_timeout) as db:
            row = await self._queries.credential_rate_limit(
                db,
                kind=credential.kind,
                lookup_id=credential.lookup_id,
                secret_hash=credential.secret_hash,
                now=now,
            )
        if len(self._windows) >= self._capacity:
            # A flood of invented credentials: forget those, never a real one's count.
            self._windows = {
                key: window for key, window in self._windows.items() if window.limit is not None
            }
        return self._windows.setdefault(
            credential.secret_hash, CredentialWindow(credential, row, now)
        )

    def _forget_idle(self, now: float) -> None:
        idle = [
            key
            for key, window in self._windows.items()
            if now - window.last_used > self._idle_seconds and not window.in_flight
        ]
        for key in idle:
            del self._windows[key]

    async def sync(self) -> None:
        """Adds this process's counts to the shared ones and learns every total."""
        now = self.clock()
        self._forget_idle(now)
        sent = [
            (window, window.start, window.pending)
            for window in self._windows.values()
            if window.limit is not None
        ]
        if not sent:
            self.flushed_at = time.monotonic()
            return
        for window, _, count in sent:
            window.in_flight += count
            window.pending -= count
        try:
            async with self._pool.acquire() as db:
                rows = await self._queries.sync_rate_limits(
                    db,
                    kinds=[w.credential.kind for w, _, _ in sent],
                    lookup_ids=[w.credential.lookup_id for w, _, _ in sent],
                    secret_hashes=[w.credential.secret_hash for w, _, _ in sent],
                    window_starts=[start for _, start, _ in sent],
                    counts=[count for _, _, count in sent],
                    now=now,
                )
        except BaseException:
            for window, start, count in sent:  # counted again at the next sync
                if window.start == start:
                    window.in_flight -= count
                    window.pending += count
            raise
        upserted = {row["credential_id"]: row["used"] for row in rows if row["secret_hash"] is None}
        limits = {
            row["secret_hash"]: {**row, "used": upserted.get(row["credential_id"], row["used"])}
            for row in rows
            if row["secret_hash"] is not None
        }
        for window, start, count in sent:
            if window.start == start:
                window.in_flight -= count
            if (row := limits.get(window.credential.secret_hash)) is not None:
                window.learn(row)
        self.flushed_at = time.monotonic()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._sync_logging_failures()

    async def _sync_logging_failures(self) -> None:
        """A failed sync is logged and tried again next time; it never ends the task (a
        connection dying mid-statement raises asyncpg's InternalClientError, among others)."""
        try:
            await self.sync()
        except Exception as exc:
            if is_outage(exc):
                log.warning("could not sync rate limits: %s", type(exc).__name__)
            else:
                log.error("could not sync rate limits", exc_info=exc)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["RateLimiter"]:
        try:
            async with in_background(self.run()):
                yield self
        finally:
            await self._sync_logging_failures()

    def __len__(self) -> int:
        return len(self._windows)
