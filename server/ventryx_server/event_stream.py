"""Live event streams (server-sent events): gapless, on every server process.

Order. Event ids are minted before commit, so id order is not commit order. Streams
deliver in the feed's order, (xact_id, id), and only events below the horizon of
transactions still open (``events-feed`` and ``stream-feed`` in sql/queries/events.sql):
nothing can later commit before a position already delivered, so a resumed stream that
continues after its Last-Event-ID misses nothing and repeats nothing.

Delivery. After an emit commits, its process announces "org_id environment" on
``ventryx_events``; announcements are gathered for ANNOUNCE_SECONDS (a NOTIFY inside the
emit would serialize every emit's commit through the WAL flush, which more than halved
emit throughput). A notification only wakes the process's Feed of that organization and
environment: it fetches what committed after its position, once, and hands each message
to its streams. Events held back behind an older open transaction are fetched again
shortly, so a lost or late announcement delays an event and never loses it. A new stream
joins at its Feed's position; a resumed one first replays from its cursor through the
same ordered feed and drops the live messages at or before the last one it replayed.

Access. The Feed's fetch judges its streams' credentials in the snapshot that reads the
events, so an event committed after a credential lost access is never delivered on its
stream. Any change that can take access away notifies (``ventryx_key_revoked``,
``ventryx_access_changed``: triggers of 0007 and 0015), and the streams concerned are
re-checked at once; a credential's deadline (expires_at, session expiry) is re-checked
when it passes; and every heartbeat anyway (Settings.stream_heartbeat_seconds). A stream that loses access ends with
an ``event: error`` naming why (stream_messages.access_lost).

Each process keeps ONE dedicated connection that LISTENs, outside the pool: the pool
skips asyncpg's reset query (db.py), so a LISTEN on a pooled connection would outlive
its request.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from typing import Any

import asyncpg
from litestar import Litestar

from .stop_signals import on_stop_signals
from .stream_messages import access_lost, event_from_row, interrupted, shutting_down, sse_message
from .stream_subscription import (
    START,
    Feed,
    Position,
    Subscription,
    TypeFilter,
    type_filter_params,
    unix_time,
)

log = logging.getLogger("ventryx.event_stream")

EVENTS_CHANNEL = "ventryx_events"
LISTENER_APPLICATION_NAME = "ventryx event streams"
REVOKED_CHANNEL = "ventryx_key_revoked"
ACCESS_CHANGED_CHANNEL = "ventryx_access_changed"
READ_SCOPE = "events:read"
FEED_PAGE = 500
# Emits announced within this long go out in one NOTIFY: streams get events up to this
# much later, and a busy process sends at most one notifying commit per interval.
ANNOUNCE_SECONDS = 0.02
# While committed events wait behind an older open transaction, the Feed fetches again
# after this long, doubling up to the maximum while nothing moves.
HELD_BACK_FIRST_SECONDS = 0.01
HELD_BACK_MAX_SECONDS = 0.5


def notification_payloads(announced: set[tuple[str, str]]) -> list[str]:
    return [f"{org_id} {environment}" for org_id, environment in sorted(announced)]


class EventHub:
    """One per server process: the LISTEN connection, the Feeds and their streams."""

    def __init__(self, app: Litestar) -> None:
        self._app = app
        self._connection: asyncpg.Connection | None = None
        self._connecting = asyncio.Lock()
        self._feeds: dict[tuple[str, str], Feed] = {}
        self._by_credential: dict[str, set[Subscription]] = {}  # key, session or member id
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._announced: set[tuple[str, str]] = set()
        self._announcing: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def _pool(self) -> asyncpg.Pool:
        pool: asyncpg.Pool = self._app.state.pool
        return pool

    @property
    def _queries(self) -> Any:
        return self._app.state.queries

    @property
    def heartbeat_seconds(self) -> float:
        """How often an idle stream sends a keep-alive and re-checks its credential."""
        return float(self._app.state.settings.stream_heartbeat_seconds)

    def _in_background(self, work: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        """A task whose failure is logged (never "Task exception was never retrieved")."""

        async def logged() -> None:
            try:
                await work
            except Exception as exc:  # noqa: BLE001 - a background task must not die silently
                log.warning("%s failed: %s: %s", what, type(exc).__name__, exc)

        task = asyncio.create_task(logged())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _listen(self) -> None:
        async with self._connecting:
            if self._connection is not None and not self._connection.is_closed():
                return
            settings = self._app.state.settings
            connection = await asyncpg.connect(
                settings.listener_url,
                # So that pg_stat_activity tells a DBA what this long-lived session is.
                server_settings={"application_name": LISTENER_APPLICATION_NAME},
                # Bounded as a pooled connection's opening is (db.create_pool): a
                # database that never answers is a 503, not a stream request held 60 s.
                timeout=settings.pool_timeout_seconds,
            )
            connection.add_termination_listener(self._connection_lost)
            # The stubs type a notification's payload as object; asyncpg passes a str.
            await connection.add_listener(EVENTS_CHANNEL, self._on_events)  # type: ignore[arg-type]
            await connection.add_listener(REVOKED_CHANNEL, self._on_revoked)  # type: ignore[arg-type]
            await connection.add_listener(ACCESS_CHANGED_CHANNEL, self._on_access_changed)  # type: ignore[arg-type]
            self._connection = connection
            if self._watcher is None or self._watcher.done():
                self._watcher = asyncio.create_task(self._watch_listener())

    def announce(self, org_id: str, environment: str) -> None:
        """Wakes every process's streams of this organization and environment, soon."""
        self._announced.add((org_id, environment))
        if self._announcing is None or self._announcing.done():
            self._announcing = self._in_background(
                self._announce_pending(), "announcing events to streams"
            )

    async def _announce_pending(self) -> None:
        await asyncio.sleep(ANNOUNCE_SECONDS)
        while self._announced:
            announced, self._announced = self._announced, set()
            try:
                async with self._pool.acquire() as db:
                    await self._queries.notify_events(db, payloads=notification_payloads(announced))
            except Exception as exc:  # noqa: BLE001 - streams still poll what is held back
                log.warning("could not announce new events to streams: %s", type(exc).__name__)

    async def subscribe(
        self,
        *,
        caller_params: dict[str, Any],
        org_id: str,
        environment: str,
        credential_id: str,
        member_id: str | None,
        type_filter: TypeFilter | None,
        access_until: float | None,
        after: str | None,
        after_position: Position | None,
        follow: bool = True,
    ) -> Subscription:
        subscription = Subscription(
            self,
            caller_params,
            org_id,
            environment,
            credential_id,
            member_id,
            type_filter,
            access_until,
            after,
            after_position or START,
            follow,
        )
        if self._stopping:
            subscription.close(shutting_down())
            return subscription
        if not follow:
            return subscription  # a replay alone needs no live feed
        await self._listen()
        feed = await self._feed(org_id, environment)
        # No await from here on: the stream joins at exactly the Feed's position.
        subscription.feed = feed
        feed.streams.add(subscription)
        if after_position is None:
            subscription.position = feed.position
        for credential in (credential_id, member_id):
            if credential is not None:
                self._by_credential.setdefault(credential, set()).add(subscription)
        return subscription

    async def _feed(self, org_id: str, environment: str) -> Feed:
        key = (org_id, environment)
        while True:
            feed = self._feeds.get(key)
            if feed is None:
                feed = Feed(org_id, environment, asyncio.get_running_loop().create_future())
                self._feeds[key] = feed
                feed.task = asyncio.create_task(self._follow(feed))
            await asyncio.shield(feed.ready)
            if self._feeds.get(key) is feed:
                return feed

    def _drop_feed(self, feed: Feed) -> None:
        key = (feed.org_id, feed.environment)
        if self._feeds.get(key) is feed:
            del self._feeds[key]

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.closed = True
        feed = subscription.feed
        if feed is not None:
            feed.streams.discard(subscription)
            if not feed.streams and self._feeds.get((feed.org_id, feed.environment)) is feed:
                self._drop_feed(feed)
                if feed.task is not None:
                    feed.task.cancel()
        for credential in (subscription.credential_id, subscription.member_id):
            streams = self._by_credential.get(credential) if credential else None
            if credential and streams is not None:
                streams.discard(subscription)
                if not streams:
                    del self._by_credential[credential]

    async def _follow(self, feed: Feed) -> None:
        try:
            async with self._pool.acquire() as db:
                tail = await self._queries.stream_feed_tail(
                    db, org_id=feed.org_id, environment=feed.environment
                )
        except BaseException as exc:
            self._drop_feed(feed)
            if isinstance(exc, Exception):
                feed.ready.set_exception(exc)  # the subscribing request answers 503
                return
            feed.ready.cancel()
            raise
        feed.position = (tail["xact_id"], tail["id"]) if tail else START
        feed.ready.set_result(None)
        delay: float | None = None  # until the next fetch while events are held back
        while True:
            if delay is None:
                # Also unwoken now and then: an emit whose process died before announcing it.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(feed.wake.wait(), self.heartbeat_seconds)
            elif delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(feed.wake.wait(), delay)
            feed.wake.clear()
            before = feed.position
            try:
                full, held_back = await self._fetch(feed)
            except Exception as exc:  # noqa: BLE001 - the streams end, clients resume
                log.warning("could not fetch streamed events: %s", type(exc).__name__)
                self._drop_feed(feed)
                for subscription in list(feed.streams):
                    subscription.close(interrupted())
                return
            if full:
                delay = 0
            elif held_back:
                moved = feed.position != before
                delay = (
                    HELD_BACK_FIRST_SECONDS
                    if moved or not delay
                    else min(delay * 2, HELD_BACK_MAX_SECONDS)
                )
            else:
                delay = None

    async def _fetch(self, feed: Feed) -> tuple[bool, bool]:
        """Hands the Feed's streams what committed after its position; returns whether
        the page was full and whether committed events wait above the horizon."""
        streams = [s for s in feed.streams if not s.closed]
        credentials: dict[str, tuple[list[str], list[bytes]]] = {
            "api_key": ([], []),
            "session": ([], []),
        }
        for subscription in streams:
            lookup_ids, secret_hashes = credentials[subscription.caller_params["credential_kind"]]
            lookup_ids.append(subscription.caller_params["lookup_id"])
            secret_hashes.append(subscription.caller_params["secret_hash"])
        async with self._pool.acquire() as db:
            rows = await self._queries.stream_feed(
                db,
                org_id=feed.org_id,
                environment=feed.environment,
                scope=READ_SCOPE,
                after_xact_id=feed.position[0],
                after_id=feed.position[1],
                limit=FEED_PAGE,
                key_lookup_ids=credentials["api_key"][0],
                key_secret_hashes=credentials["api_key"][1],
                session_lookup_ids=credentials["session"][0],
                session_secret_hashes=credentials["session"][1],
            )
        allowed = set(rows[0]["allowed_credential_ids"] or ())
        for subscription in streams:
            if subscription.credential_id not in allowed:
                self._end_if_no_access(subscription, known_lost=True)
        events = [row for row in rows if row["id"] is not None]
        for row in events:
            event = event_from_row(row)
            message = sse_message(event)
            position = (row["xact_id"], row["id"])
            for subscription in streams:
                subscription.push(position, event.type, message)
            feed.position = position
        return len(events) == FEED_PAGE, rows[0]["held_back"]

    def _end_if_no_access(self, subscription: Subscription, known_lost: bool = False) -> None:
        """Re-checks a stream's credential at once; it ends, naming why, if access is gone.
        A stream known to have lost access takes no more events meanwhile."""
        if known_lost:
            subscription.losing_access = True

        async def recheck() -> None:
            farewell = await self.check_access(subscription)
            if farewell is None and subscription.losing_access:
                # Access came back (a scope removed and given again), but events were
                # dropped meanwhile: the client resumes with Last-Event-ID and misses none.
                farewell = interrupted()
            if farewell is not None:
                subscription.close(farewell)

        self._in_background(recheck(), "re-checking a stream's credential")

    async def replay(
        self,
        subscription: Subscription,
    ) -> AsyncIterator[tuple[Position | None, bytes]]:
        """What came after ``subscription.replay_after`` in the feed's order, a page at a
        time; (None, farewell) if the credential lost access meanwhile."""
        after = subscription.replay_after
        while True:
            async with self._pool.acquire() as db:
                rows = await self._queries.events_feed(
                    db,
                    **subscription.caller_params,
                    after=after,
                    limit=FEED_PAGE,
                    **type_filter_params(subscription.type_filter),
                )
            if not rows or rows[0]["caller_credential_id"] != subscription.credential_id:
                yield None, await self.check_access(subscription) or access_lost(None)
                return
            events = [row for row in rows if row["id"] is not None]
            for row in events:
                yield (row["xact_id"], row["id"]), sse_message(event_from_row(row))
            if len(events) < FEED_PAGE:
                return
            after = events[-1]["id"]

    async def check_access(self, subscription: Subscription) -> bytes | None:
        """None while the stream's credential may still read events (its deadline is
        brought up to date), else the farewell naming why not."""
        try:
            async with self._pool.acquire() as db:
                row = await self._queries.authorize_stream(
                    db, **subscription.caller_params, after=None
                )
                if row is not None and row["caller_credential_id"] == subscription.credential_id:
                    until = unix_time(row["access_until"])
                    if until is not None and until <= time.time():
                        until = time.time() + 1  # the database's clock is behind: soon again
                    subscription.set_access_until(until)
                    return None
                reason = await self._queries.stream_access_lost(
                    db, org_id=subscription.org_id, credential_id=subscription.credential_id
                )
        except Exception as exc:  # noqa: BLE001 - unverifiable access ends the stream
            log.warning("could not re-check a stream's credential: %s", type(exc).__name__)
            return interrupted()
        return access_lost(reason)

    def _streams_of(self, credential: str) -> list[Subscription]:
        return list(self._by_credential.get(credential, ()))

    def _on_events(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        org_id, _, environment = payload.partition(" ")
        feed = self._feeds.get((org_id, environment.partition(" ")[0]))
        if feed is not None:
            feed.wake.set()

    def _on_revoked(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        _org_id, _, key_id = payload.partition(" ")
        for subscription in self._streams_of(key_id):
            subscription.close(access_lost("key_revoked"))

    def _on_access_changed(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        _org_id, _, changed_id = payload.partition(" ")
        for subscription in self._streams_of(changed_id):
            self._end_if_no_access(subscription)

    async def _watch_listener(self) -> None:
        """A quiet listener is probed: a dead peer sends no FIN to notice it by."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            connection = self._connection
            if connection is None or connection.is_closed():
                continue
            try:
                await asyncio.wait_for(connection.execute("SELECT 1"), self.heartbeat_seconds)
            except Exception:  # noqa: BLE001 - any failure means the listener is gone
                connection.terminate()  # calls _connection_lost

    def _connection_lost(self, connection: Any) -> None:
        # Wake-ups sent while no one listened are lost; the streams end so that their
        # clients reconnect and resume from the table.
        if self._connection is not None and self._connection is not connection:
            return  # an older connection, already replaced
        log.warning(
            "event stream listener connection lost; closing %d streams",
            sum(len(feed.streams) for feed in self._feeds.values()),
        )
        self._connection = None
        self._close_all(interrupted())

    def _close_all(self, farewell: bytes | None) -> None:
        for feed in list(self._feeds.values()):
            for subscription in list(feed.streams):
                subscription.close(farewell)

    def stop_streams(self) -> None:
        """The process is asked to stop: every stream says so and ends, so that the ASGI
        server, which waits for open responses, can exit."""
        self._stopping = True
        self._close_all(shutting_down())

    async def close(self) -> None:
        if self._announcing is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._announcing
        self._close_all(None)
        background = [feed.task for feed in self._feeds.values() if feed.task is not None]
        background += [*self._tasks, *([self._watcher] if self._watcher else [])]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.remove_termination_listener(self._connection_lost)
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await connection.close()


@contextlib.asynccontextmanager
async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
    """Makes the process's hub; it connects on the first stream, and ends them all when
    the process is asked to stop and at exit."""
    hub = app.state.event_hub = EventHub(app)
    restore_signals = on_stop_signals(hub.stop_streams)
    try:
        yield
    finally:
        restore_signals()
        await hub.close()


async def subscribe(app: Litestar, **kwargs: Any) -> Subscription:
    hub: EventHub = app.state.event_hub
    return await hub.subscribe(**kwargs)


def announce(app: Litestar, org_id: str, environment: str) -> None:
    app.state.event_hub.announce(org_id, environment)
