"""One event stream (Subscription) and the per-process feed that fills it (Feed).

A Subscription is the body of one GET /v1/events/stream response: what the Feed of its
organization and environment pushes into its queue, after the replay of what came after
its Last-Event-ID (event_stream.EventHub.replay), in the feed's order, each event once.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .stream_messages import CONNECTED, HEARTBEAT, too_slow

if TYPE_CHECKING:
    from .event_stream import EventHub

# A stream that falls this far behind (bytes of messages not yet sent) is closed; its
# client reconnects and replays from the table.
MAX_QUEUED_BYTES = 16 * 1024 * 1024
TypeFilter = tuple[str | None, str | None]  # (exact type, prefix) as parse_type_filter gives
Position = tuple[int, str]  # (xact_id, id): where an event sits in the feed's order
START: Position = (0, "")


def _matches(type_filter: TypeFilter | None, event_type: str) -> bool:
    if type_filter is None:
        return True
    exact, prefix = type_filter
    return event_type == exact if exact is not None else event_type.startswith(prefix or "")


def type_filter_params(type_filter: TypeFilter | None) -> dict[str, str | None]:
    """A type filter as the statements take it; "order." .. "order/" bounds a prefix's
    index range ("/" is the character after "." in byte order)."""
    exact, prefix = type_filter or (None, None)
    return {
        "type": exact,
        "type_prefix": prefix,
        "type_prefix_end": prefix[:-1] + "/" if prefix else None,
    }


def unix_time(moment: Any) -> float | None:
    return None if moment is None else moment.timestamp()


@dataclass(eq=False)
class Subscription:
    hub: "EventHub"
    caller_params: dict[str, Any] = field(repr=False)
    org_id: str
    environment: str
    credential_id: str
    member_id: str | None
    type_filter: TypeFilter | None
    access_until: float | None  # when the credential stops being valid (Unix time)
    replay_after: str | None  # the Last-Event-ID to replay from, if any
    position: Position  # of the last event sent (or skipped): live messages up to it are dropped
    follow: bool = True
    feed: "Feed | None" = None
    # (position, message); (None, farewell) ends the stream, b"": without a word.
    queue: asyncio.Queue[tuple[Position | None, bytes]] = field(default_factory=asyncio.Queue)
    queued_bytes: int = 0
    closed: bool = False
    losing_access: bool = False  # its credential failed a check: no more events, a farewell soon

    def push(self, position: Position, event_type: str, message: bytes) -> None:
        if self.closed or self.losing_access or not _matches(self.type_filter, event_type):
            return
        if self.queued_bytes + len(message) > MAX_QUEUED_BYTES:
            self.close(too_slow())
            return
        self.queued_bytes += len(message)
        self.queue.put_nowait((position, message))

    def close(self, farewell: bytes | None) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait((None, farewell or b""))

    def set_access_until(self, until: float | None) -> None:
        """A new deadline for the credential; an earlier one wakes the stream's wait."""
        earlier = until is not None and (self.access_until is None or until < self.access_until)
        self.access_until = until
        if earlier and not self.closed:
            self.queue.put_nowait((START, b""))  # at the start of the feed: never sent

    def _deadline_passed(self) -> bool:
        return self.access_until is not None and time.time() >= self.access_until

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            yield CONNECTED
            if self.replay_after is not None:
                async for position, message in self.hub.replay(self):
                    if position is None:
                        yield message
                        return
                    if self.closed:
                        # Ended mid-replay (the process stopping, say): what is queued comes
                        # after a gap, so only the farewell goes out and the client resumes
                        # from the last event it got.
                        while (queued := self.queue.get_nowait())[0] is not None:
                            pass
                        if queued[1]:
                            yield queued[1]
                        return
                    self.position = position
                    yield message
            loop = asyncio.get_running_loop()
            heartbeat = self.hub.heartbeat_seconds
            next_check = loop.time() + heartbeat
            while self.follow:
                if loop.time() >= next_check or self._deadline_passed():
                    if ended := await self.hub.check_access(self):
                        yield ended
                        return
                    next_check = loop.time() + heartbeat
                wait = next_check - loop.time()
                if self.access_until is not None:
                    wait = min(wait, self.access_until - time.time())
                try:
                    position, message = await asyncio.wait_for(self.queue.get(), max(0, wait))
                except TimeoutError:
                    if loop.time() >= next_check:
                        yield HEARTBEAT
                    continue
                if position is None:
                    if message:
                        yield message
                    return
                self.queued_bytes -= len(message)
                if position <= self.position:
                    continue  # already sent by the replay
                # Never an event on a stream whose credential's deadline has passed.
                if self._deadline_passed() and (ended := await self.hub.check_access(self)):
                    yield ended
                    return
                self.position = position
                yield message
        finally:
            self.hub.unsubscribe(self)


@dataclass(eq=False)
class Feed:
    """One process's live feed of one organization and environment."""

    org_id: str
    environment: str
    ready: asyncio.Future[None]
    position: Position = START
    streams: set[Subscription] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
