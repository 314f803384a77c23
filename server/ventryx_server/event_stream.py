"""Live event streams (server-sent events) fed by PostgreSQL LISTEN/NOTIFY.

After an emit commits, the process that made it announces the new ids on
``ventryx_events`` ("org_id environment id id ..."), so an event emitted through any
server process reaches the streams of every process. Announcements are gathered for
ANNOUNCE_SECONDS, and those made while a NOTIFY is in flight wait for the next one. (A
NOTIFY inside the emit statement would be transactional, but PostgreSQL serializes the
commits of notifying transactions through the WAL flush, which more than halved emit
throughput. The price: if a process dies between an emit's commit and its announcement,
live streams miss that event until they reconnect with Last-Event-ID.)

Each process keeps ONE dedicated connection that LISTENs, outside the pool: the pool
skips asyncpg's reset query (db.py), so a LISTEN on a pooled connection would outlive
its request. Notifications carry ids only (payloads reach 64 KB, NOTIFY stops at 8000
bytes); one worker fetches the events of each notification once, in arrival order, and
hands the encoded message to every matching stream of that organization and environment.

A stream ends when its key is revoked (``ventryx_key_revoked``, sent by a trigger on
api_keys), when a periodic re-check finds its credential no longer valid, when it falls
too far behind, or when the listening connection is lost; clients then reconnect with
Last-Event-ID and get what they missed from the table.
"""

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
from litestar import Litestar

from ventryx_shared.common import ErrorBody, ErrorDetail
from ventryx_shared.events import Event
from ventryx_shared.ids import new_id

log = logging.getLogger("ventryx.event_stream")

EVENTS_CHANNEL = "ventryx_events"
LISTENER_APPLICATION_NAME = "ventryx event streams"
REVOKED_CHANNEL = "ventryx_key_revoked"
# How often an idle stream sends a comment (keeps proxies from closing it) and re-checks
# that its credential is still valid (expiry, sessions ending).
HEARTBEAT_SECONDS = float(os.environ.get("VENTRYX_STREAM_HEARTBEAT_SECONDS", "15"))
# A stream that falls this far behind (bytes of messages not yet sent) is closed; its
# client reconnects and replays from the table.
MAX_QUEUED_BYTES = 16 * 1024 * 1024
REPLAY_PAGE = 500
# Emits announced within this long go out in one NOTIFY: streams get events up to this
# much later, and a busy process sends at most one notifying commit per interval.
ANNOUNCE_SECONDS = 0.02
# NOTIFY payloads stop at 8000 bytes; an id is 30 characters and a space.
_NOTIFY_BYTES = 7900
CONNECTED = b": connected\n\n"
HEARTBEAT = b": keep-alive\n\n"

TypeFilter = tuple[str | None, str | None]  # (exact type, prefix) as parse_type_filter gives


def _matches(type_filter: TypeFilter | None, event_type: str) -> bool:
    if type_filter is None:
        return True
    exact, prefix = type_filter
    return event_type == exact if exact is not None else event_type.startswith(prefix or "")


_decode_payload = msgspec.json.Decoder(dict[str, Any]).decode


def event_from_row(row: Any) -> Event:
    return Event(
        id=row["id"], type=row["type"], payload=_decode_payload(row["payload"]),
        occurred_at=row["occurred_at"], created_at=row["created_at"],
        environment=row["environment"], matched_workflows=list(row["matched_workflows"]),
        emitted_by=row["emitted_by"])


def sse_message(event: Event) -> bytes:
    """One event as a server-sent event; msgspec's JSON has no raw line breaks."""
    return b"id: " + event.id.encode() + b"\ndata: " + msgspec.json.encode(event) + b"\n\n"


def notification_payloads(announced: list[tuple[str, str, list[str]]]) -> list[str]:
    """Announced ids as NOTIFY payloads: one or more per organization and environment."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for org_id, environment, ids in announced:
        grouped.setdefault((org_id, environment), []).extend(ids)
    payloads = []
    for (org_id, environment), ids in grouped.items():
        head = f"{org_id} {environment}"
        per_payload = (_NOTIFY_BYTES - len(head)) // 31
        for start in range(0, len(ids), per_payload):
            payloads.append(" ".join([head, *ids[start:start + per_payload]]))
    return payloads


def _sse_error(code: str, message: str, error_type: str = "authentication_error") -> bytes:
    body = ErrorBody(ErrorDetail(type=error_type, code=code,  # type: ignore[arg-type]
                                 message=message, request_id=new_id("req")))
    return b"event: error\ndata: " + msgspec.json.encode(body) + b"\n\n"


def _revoked() -> bytes:
    return _sse_error("invalid_api_key", "This credential was revoked; the stream is closed.")


def _no_longer_valid() -> bytes:
    return _sse_error("invalid_api_key", "Invalid API key provided.")


def _too_slow() -> bytes:
    return _sse_error("stream_lagging", "This stream fell too far behind and was closed; "
                      "reconnect with Last-Event-ID to resume.", "api_error")


def _interrupted() -> bytes:
    return _sse_error("stream_interrupted", "The stream was interrupted; reconnect with "
                      "Last-Event-ID to resume.", "api_error")


@dataclass(eq=False)
class Subscription:
    hub: "EventHub"
    caller_params: dict[str, Any] = field(repr=False)
    org_id: str
    environment: str
    credential_id: str
    type_filter: TypeFilter | None
    after: str | None
    follow: bool = True
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    queued_bytes: int = 0
    closed: bool = False

    def push(self, event_id: str, event_type: str, message: bytes) -> None:
        if self.closed or not _matches(self.type_filter, event_type):
            return
        if self.queued_bytes + len(message) > MAX_QUEUED_BYTES:
            self.close(_too_slow())
            return
        self.queued_bytes += len(message)
        self.queue.put_nowait((event_id, message))

    def close(self, farewell: bytes | None) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait((None, farewell))

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            yield CONNECTED
            replayed: set[str] = set()
            if self.after is not None:
                async for event_id, message in self.hub.replay(self):
                    replayed.add(event_id)
                    yield message
            loop = asyncio.get_running_loop()
            next_check = loop.time() + HEARTBEAT_SECONDS
            while self.follow:
                # Re-checked on a clock, busy or idle: a session that ends sends no notice.
                if loop.time() >= next_check:
                    if not await self.hub.still_authorized(self):
                        yield _no_longer_valid()
                        return
                    next_check = loop.time() + HEARTBEAT_SECONDS
                try:
                    event_id, message = await asyncio.wait_for(
                        self.queue.get(), max(0.0, next_check - loop.time()))
                except TimeoutError:
                    yield HEARTBEAT
                    continue
                if event_id is None:
                    if message:
                        yield message
                    return
                self.queued_bytes -= len(message)
                if event_id not in replayed:
                    yield message
        finally:
            self.hub.unsubscribe(self)


class EventHub:
    """One per server process: the LISTEN connection and the streams it feeds."""

    def __init__(self, app: Litestar) -> None:
        self._app = app
        self._connection: asyncpg.Connection | None = None
        self._connecting = asyncio.Lock()
        self._streams: dict[tuple[str, str], set[Subscription]] = {}
        self._by_credential: dict[str, set[Subscription]] = {}
        self._notifications: asyncio.Queue[tuple[str, str, list[str]]] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._announced: list[tuple[str, str, list[str]]] = []
        self._announcing: asyncio.Task | None = None

    @property
    def _pool(self) -> asyncpg.Pool:
        return self._app.state.pool

    @property
    def _queries(self) -> Any:
        return self._app.state.queries

    async def _listen(self) -> None:
        async with self._connecting:
            if self._connection is not None and not self._connection.is_closed():
                return
            connection = await asyncpg.connect(
                self._app.state.settings.database_url,
                # So that pg_stat_activity tells a DBA what this long-lived session is.
                server_settings={"application_name": LISTENER_APPLICATION_NAME})
            connection.add_termination_listener(self._connection_lost)
            await connection.add_listener(EVENTS_CHANNEL, self._on_events)
            await connection.add_listener(REVOKED_CHANNEL, self._on_revoked)
            self._connection = connection
            if self._worker is None or self._worker.done():
                self._worker = asyncio.create_task(self._deliver_forever())

    def announce(self, org_id: str, environment: str, ids: list[str]) -> None:
        """Tells every process's streams about committed events (soon, not in the request)."""
        self._announced.append((org_id, environment, ids))
        if self._announcing is None or self._announcing.done():
            self._announcing = asyncio.create_task(self._announce_pending())

    async def _announce_pending(self) -> None:
        await asyncio.sleep(ANNOUNCE_SECONDS)
        while self._announced:
            announced, self._announced = self._announced, []
            try:
                async with self._pool.acquire() as db:
                    await self._queries.notify_events(
                        db, payloads=notification_payloads(announced))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("could not announce %d emits to event streams: %s",
                            len(announced), type(exc).__name__)

    async def subscribe(self, *, caller_params: dict[str, Any], org_id: str, environment: str,
                        credential_id: str, type_filter: TypeFilter | None,
                        after: str | None, follow: bool = True) -> Subscription:
        subscription = Subscription(self, caller_params, org_id, environment, credential_id,
                                    type_filter, after, follow)
        if not follow:
            return subscription  # a replay alone needs no live feed
        await self._listen()
        self._streams.setdefault((org_id, environment), set()).add(subscription)
        self._by_credential.setdefault(credential_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.closed = True
        for index, key in ((self._streams, (subscription.org_id, subscription.environment)),
                           (self._by_credential, subscription.credential_id)):
            streams = index.get(key)
            if streams is not None:
                streams.discard(subscription)
                if not streams:
                    del index[key]

    def _on_events(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        org_id, environment, *ids = payload.split(" ")
        if (org_id, environment) in self._streams:
            self._notifications.put_nowait((org_id, environment, ids))

    def _on_revoked(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        _org_id, _, credential_id = payload.partition(" ")
        for subscription in list(self._by_credential.get(credential_id, ())):
            subscription.close(_revoked())

    async def _check_listener(self) -> None:
        """A quiet listener is probed: a dead peer sends no FIN to notice it by."""
        connection = self._connection
        if connection is None or connection.is_closed():
            return
        try:
            await asyncio.wait_for(connection.execute("SELECT 1"), HEARTBEAT_SECONDS)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            connection.terminate()  # calls _connection_lost

    def _connection_lost(self, connection: Any) -> None:
        # Notifications sent while no one listened are lost; the streams end so that their
        # clients reconnect and replay from the table.
        if self._connection is not None and self._connection is not connection:
            return  # an older connection, already replaced
        log.warning("event stream listener connection lost; closing %d streams",
                    sum(len(s) for s in self._streams.values()))
        self._connection = None
        self._close_all(_interrupted())

    def _close_all(self, farewell: bytes | None) -> None:
        for streams in list(self._streams.values()):
            for subscription in list(streams):
                subscription.close(farewell)

    async def _deliver_forever(self) -> None:
        while True:
            try:
                first = await asyncio.wait_for(self._notifications.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                await self._check_listener()
                continue
            pending = [first]
            while not self._notifications.empty():
                pending.append(self._notifications.get_nowait())
            try:
                await self._deliver(pending)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("could not fetch streamed events: %s", type(exc).__name__)
                self._close_all(_interrupted())

    async def _deliver(self, pending: list[tuple[str, str, list[str]]]) -> None:
        # Consecutive notifications of one organization and environment: one fetch.
        groups: list[tuple[str, str, list[str]]] = []
        for org_id, environment, ids in pending:
            if groups and groups[-1][:2] == (org_id, environment):
                groups[-1][2].extend(ids)
            else:
                groups.append((org_id, environment, list(ids)))
        async with self._pool.acquire() as db:
            for org_id, environment, ids in groups:
                streams = self._streams.get((org_id, environment))
                if not streams:
                    continue
                rows = await self._queries.events_by_ids(
                    db, org_id=org_id, environment=environment, ids=ids)
                for row in rows:
                    event = event_from_row(row)
                    message = sse_message(event)
                    for subscription in list(self._streams.get((org_id, environment), ())):
                        subscription.push(event.id, event.type, message)

    async def replay(self, subscription: Subscription) -> AsyncIterator[tuple[str, bytes]]:
        """What came after ``subscription.after``, oldest first, a page at a time."""
        after = subscription.after
        while True:
            async with self._pool.acquire() as db:
                rows = await self._queries.events_after(
                    db, org_id=subscription.org_id, environment=subscription.environment,
                    after=after, limit=REPLAY_PAGE)
            for row in rows:
                event = event_from_row(row)
                if _matches(subscription.type_filter, event.type):
                    yield event.id, sse_message(event)
            if len(rows) < REPLAY_PAGE:
                return
            after = rows[-1]["id"]

    async def still_authorized(self, subscription: Subscription) -> bool:
        async with self._pool.acquire() as db:
            row = await self._queries.authorize_stream(db, **subscription.caller_params)
        return row is not None and row["caller_credential_id"] == subscription.credential_id

    async def close(self) -> None:
        if self._announcing is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._announcing
        self._close_all(None)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.remove_termination_listener(self._connection_lost)
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await connection.close()


@contextlib.asynccontextmanager
async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
    """Makes the process's hub; it connects on the first stream, and ends them all at exit."""
    app.state.event_hub = EventHub(app)
    try:
        yield
    finally:
        await app.state.event_hub.close()


async def subscribe(app: Litestar, **kwargs: Any) -> Subscription:
    return await app.state.event_hub.subscribe(**kwargs)


def announce(app: Litestar, org_id: str, environment: str, ids: list[str]) -> None:
    app.state.event_hub.announce(org_id, environment, ids)
