"""Prometheus metrics of one server process, served on their own listener
(``VENTRYX_METRICS_ADDRESS``), never on the API's port.

One listener per worker process: worker processes share nothing, and a listener that
answered for all of them would need prometheus-client's multiprocess mode (files in a
shared folder, gauges merged by hand). With ``--workers N`` each worker takes the first
free port of ``PORT`` to ``PORT + N - 1``; scrape each as its own target (its
``instance`` label tells them apart; ``sum``/``rate`` in PromQL add them up).

The request path pays two ``perf_counter`` reads and two cached-child updates (a few µs);
everything else (pool, streams, flush lag, migrations) is read by a refresher task in the
event loop once a second, so the listener's thread never touches the loop's objects.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any
from wsgiref.simple_server import WSGIServer

from litestar import Litestar
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from . import migrations

log = logging.getLogger("ventryx.metrics")

REFRESH_SECONDS = 1.0
MIGRATIONS_CHECK_SECONDS = 60.0
# Latency buckets (seconds) around what bench/run.py measures: p50 2-10 ms, p99 to 200 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6); ValueError names what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT, such as 127.0.0.1:9464")
    return host.strip("[]"), int(port)


class Metrics:
    """The process's registry and the series the request path updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # One histogram, its _count the request count: a separate counter cost another
        # 1.5 µs of locking per request for numbers the histogram already has.
        self.latency = Histogram(
            "ventryx_http_request_duration_seconds",
            "Requests answered, by route template and status, and how long each took: "
            "arrival to end of response (a stream: its life).",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.authentications = Counter(
            "ventryx_authentications",
            "Requests that presented a credential, by kind and what the answer made of it: "
            "accepted, rejected (401), forbidden (403: a missing scope), limited (429).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.pool_connections = Gauge(
            "ventryx_db_pool_connections",
            "Pooled database connections, by state.",
            ["state"],
            registry=self.registry,
        )
        self.pool_waiting = Gauge(
            "ventryx_db_pool_waiting",
            "Requests waiting for a pooled connection.",
            registry=self.registry,
        )
        self.open_streams = Gauge(
            "ventryx_event_streams_open",
            "Open GET /v1/events/stream connections.",
            registry=self.registry,
        )
        self.flush_lag = Gauge(
            "ventryx_background_flush_lag_seconds",
            "Seconds since a background writer last flushed: usage (last_used_at) and "
            "rate_limits (the shared counts). Healthy: about its interval.",
            ["writer"],
            registry=self.registry,
        )
        self.migrations_pending = Gauge(
            "ventryx_migrations_pending",
            "Migrations in sql/migrations the database lacks.",
            registry=self.registry,
        )
        self._children: dict[tuple[str | int, ...], Any] = {}  # labels() costs µs: each child once

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        child = self._children.get((method, route, status))
        if child is None:
            child = self._children[method, route, status] = self.latency.labels(
                method, route, str(status)
            )
        child.observe(seconds)

    def authenticated(self, kind: str, status: int) -> None:
        child = self._children.get((kind, status))
        if child is None:
            child = self._children[kind, status] = self.authentications.labels(
                kind, AUTHENTICATION_OUTCOMES.get(status, "accepted")
            )
        child.inc()

    def refresh(self, app: Litestar) -> None:
        state = app.state
        pool = getattr(state, "pool", None)
        if pool is not None:
            size, idle = pool.get_size(), pool.get_idle_size()
            self.pool_connections.labels("in_use").set(size - idle)
            self.pool_connections.labels("idle").set(idle)
            self.pool_waiting.set(pool_waiters(pool))
        hub = getattr(state, "event_hub", None)
        if hub is not None:
            # Per Feed, not per credential: a session's stream is filed under two ids.
            self.open_streams.set(sum(len(feed.streams) for feed in hub._feeds.values()))
        now = time.monotonic()
        for writer, name in (("usage", "usage"), ("rate_limits", "rate_limiter")):
            flushed_at = getattr(getattr(state, name, None), "flushed_at", None)
            if flushed_at is not None:
                self.flush_lag.labels(writer).set(now - flushed_at)


AUTHENTICATION_OUTCOMES = {401: "rejected", 403: "forbidden", 429: "limited"}


def pool_waiters(pool: Any) -> int:
    """asyncpg has no public count of waiters; its queue's getters are them. 0 if a newer
    asyncpg moves them (the gauge then under-reports rather than breaking a request)."""
    getters = getattr(getattr(pool, "_queue", None), "_getters", None)
    return sum(1 for waiter in getters if not waiter.done()) if getters else 0


def _listen(metrics: Metrics, address: str, workers: int) -> WSGIServer | None:
    host, port = parse_address(address)
    for candidate in range(port, port + max(1, workers)):
        try:
            server, _ = start_http_server(candidate, host, registry=metrics.registry)
        except OSError:
            continue
        log.info("metrics on http://%s:%d/metrics", host, candidate)
        return server
    log.error("metrics: no free port in %s to %d", address, port + workers - 1)
    return None


@contextlib.asynccontextmanager
async def serving(app: Litestar) -> AsyncGenerator[None, None]:
    """The listener and the refresher, for the app's life (a lifespan)."""
    settings = app.state.settings
    metrics: Metrics = app.state.metrics
    server = (
        _listen(metrics, settings.metrics_address, settings.workers)
        if settings.metrics_address
        else None
    )

    async def refresh_forever() -> None:
        checked_at = float("-inf")
        while True:
            metrics.refresh(app)
            if time.monotonic() - checked_at >= MIGRATIONS_CHECK_SECONDS:
                checked_at = time.monotonic()
                with contextlib.suppress(Exception):  # an outage: keep the last value
                    async with app.state.pool.acquire() as conn:
                        todo = await migrations.pending(conn, settings.sql_dir)
                    metrics.migrations_pending.set(len(todo))
            await asyncio.sleep(REFRESH_SECONDS)

    task = asyncio.create_task(refresh_forever())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if server is not None:
            server.shutdown()
            server.server_close()
