"""Events: a live tail of the stream endpoint (pause/resume, bounded buffer), a search by
type and time, and a detail view with the pretty-printed payload."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

import msgspec
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from ventryx_shared.events import Event

from .. import formatting as fmt
from ..client import SERVER_SHUTTING_DOWN, ApiError, ServerUnreachable, StreamEnded, VentryxClient
from ..connection import reconnect_delay
from ..messages import ServerLost
from ..widgets.table import ResourceTable
from .base import SectionScreen
from .search import SearchDialog, describe

BUFFER_SIZE = 1000
HISTORY = 100


class EventDetail(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close", id="close-event"),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(self, event: Event):
        super().__init__()
        self.event = event

    def compose(self) -> ComposeResult:
        event = self.event
        payload = msgspec.json.format(msgspec.json.encode(event.payload), indent=2)
        header = Text()
        header.append(f"{event.type}\n", style="bold")
        header.append(
            f"id           {fmt.identifier(event.id)}\n"
            f"occurred at  {fmt.precise(event.occurred_at)}\n"
            f"received at  {fmt.precise(event.created_at)}\n"
            f"emitted by   {self.app.people.label(event.emitted_by)}\n"
            f"environment  {event.environment}\n"
            "matched      "
            f"{', '.join(event.matched_workflows or []) or 'no workflow'}\n"
        )
        with VerticalScroll(id="dialog", classes="editor"):
            yield Static(Text("Event", style="bold"), classes="dialog-title")
            yield Static(header)
            yield Static(Text("payload", style="bold"))
            yield Static(Text(payload.decode()), id="payload")
            yield Static(Text("esc closes", style="dim"))
        yield Footer(compact=True)

    def action_close(self) -> None:
        self.dismiss(None)


class EventsScreen(SectionScreen):
    SECTION = "Events"
    HELP = (
        "A live tail of new events in this environment (newest at the bottom, the "
        f"newest {BUFFER_SIZE} kept; times are UTC; Matched counts the workflows whose "
        "trigger matched). p pauses and resumes; while paused, new events are "
        "held and counted. f finds past events by type and time; esc returns to the "
        "tail. Enter opens an event with its payload. When the stream ends (the "
        "server restarts or stops) the tail says reconnecting and picks up where it "
        "left off."
    )
    BINDINGS = [
        Binding("p", "pause", "Pause/resume", id="pause-tail"),
        Binding("f", "search", "Find", id="search-events"),
    ]
    COLUMNS = ("Received", "Type", "Matched", "Id")

    def __init__(self):
        super().__init__()
        self.buffer: deque[Event] = deque(maxlen=BUFFER_SIZE)
        self.held = 0
        self.paused = False
        self.search: dict[str, str] | None = None
        self.last_event_id: str | None = None
        self.tail_state = "starting"

    def compose_body(self) -> ComposeResult:
        yield Static(id="tail-status")
        table = ResourceTable(id="events-table")
        table.add_column("Received", width=8)
        table.add_column("Type", width=24)
        table.add_column("Matched", width=7)
        table.add_column("Id")
        yield table

    def on_server_lost(self, _message: ServerLost) -> None:
        # Close the stream now: a server shutting down gracefully waits for open streams,
        # and the top bar already says the server is gone. Reconnected reopens it.
        self.workers.cancel_group(self, "stream")
        if self.search is None:
            self.set_tail_state("reconnecting")

    def on_screen_suspend(self) -> None:
        # Leave no stream open behind other screens; Last-Event-ID fills the gap on return.
        self.workers.cancel_group(self, "stream")

    async def fetch(self, client: VentryxClient):
        self.require_environment(client, "events")
        events = await client.list_events(**(self.search or {}), limit=HISTORY)
        return list(reversed(events))

    def show(self, events: list[Event]) -> None:
        self.buffer.clear()
        self.buffer.extend(events)
        self.held = 0
        self.last_event_id = events[-1].id if events else None
        self.render_rows()
        if self.search is None:
            self.tail()
        else:
            self.workers.cancel_group(self, "stream")
            self.set_tail_state("search")

    def show_failure(self, error: ApiError) -> None:
        self.buffer.clear()
        self.render_rows()
        self.workers.cancel_group(self, "stream")
        self.set_tail_state("stopped")

    def filter_changed(self) -> None:
        self.render_rows()

    def visible_events(self) -> list[Event]:
        return [e for e in self.buffer if self.matches(e.type, e.id)]

    def render_rows(self) -> None:
        table = self.query_one(ResourceTable)
        at_end = table.row_count == 0 or table.cursor_row >= table.row_count - 1
        table.clear()
        for event in self.visible_events():
            self._add_row(table, event)
        if at_end and table.row_count:
            table.move_cursor(row=table.row_count - 1)
        self.show_status()

    def _add_row(self, table: ResourceTable, event: Event) -> None:
        matched = len(event.matched_workflows)
        table.add_row(
            fmt.time_of_day(event.created_at),
            Text(event.type, overflow="ellipsis", no_wrap=True),
            str(matched) if matched else "-",
            fmt.identifier(event.id),
            key=event.id,
        )

    def receive(self, event: Event) -> None:
        """One event from the stream: kept in the bounded buffer, drawn unless paused."""
        if any(e.id == event.id for e in list(self.buffer)[-50:]):
            return  # replayed after a reconnect, already shown
        full = len(self.buffer) == self.buffer.maxlen
        # Ids grow with time; a batch's events may arrive in any order, the tail shows
        # them in id order.
        out_of_order = bool(self.buffer) and event.id < self.buffer[-1].id
        self.buffer.append(event)
        if out_of_order:
            ordered = sorted(self.buffer, key=lambda e: e.id)
            self.buffer.clear()
            self.buffer.extend(ordered)
        if self.paused:
            self.held += 1
            self.show_status()
            return
        table = self.query_one(ResourceTable)
        if full or out_of_order:
            self.render_rows()
            return
        at_end = table.row_count == 0 or table.cursor_row >= table.row_count - 1
        if self.matches(event.type, event.id):
            self._add_row(table, event)
            if at_end:
                table.move_cursor(row=table.row_count - 1)
        self.show_status()

    def set_tail_state(self, state: str) -> None:
        self.tail_state = state
        self.show_status()

    def show_status(self) -> None:
        if self.tail_state == "search":
            state = f"SEARCH: {describe(self.search or {})} (esc: live tail)"
        elif self.paused:
            state = f"PAUSED, {self.held} new held (p resumes)"
        else:
            state = {
                "streaming": "LIVE TAIL: streaming",
                "starting": "LIVE TAIL: connecting",
                "reconnecting": "LIVE TAIL: reconnecting...",
                "stopped": "LIVE TAIL: stopped (r retries)",
            }.get(self.tail_state, self.tail_state)
        hint = "enter: details" if self.buffer else "new events appear here; f finds older"
        self.query_one("#tail-status", Static).update(
            Text(f"{state}   buffer {len(self.buffer)}/{BUFFER_SIZE}   {hint}", style="bold")
        )

    @work(exclusive=True, group="stream", exit_on_error=False)
    async def tail(self) -> None:
        """Follow the stream; when it ends, say "reconnecting" and open it again after the
        app's reconnect delay with Last-Event-ID, so nothing is missed. A server that went
        away (or says it is shutting down) is the app's to watch: its Reconnected message
        reloads this screen and restarts the tail."""
        attempt = 0
        while self.client is not None:
            client = self.client
            self.set_tail_state("starting" if attempt == 0 else "reconnecting")
            try:
                async for message in client.stream_events(self.last_event_id):
                    if message.event == "open":
                        self.set_tail_state("streaming")
                        attempt = 0
                        continue
                    if message.id:
                        self.last_event_id = message.id
                    if message.decoded is not None:
                        self.receive(message.decoded)
            except (ServerUnreachable, StreamEnded) as error:
                if isinstance(error, ServerUnreachable) or error.code == SERVER_SHUTTING_DOWN:
                    self.set_tail_state("reconnecting")
                    self.app.server_lost()
                    return
            except ApiError as error:
                self.notice.show_error(error, "The live tail")
                self.app.report_error(error)
                self.set_tail_state("stopped")
                return
            # The stream ended (cut, lagging, or closed by the server): open it again.
            self.set_tail_state("reconnecting")
            await asyncio.sleep(reconnect_delay(attempt))
            attempt += 1

    # Actions

    def action_pause(self) -> None:
        if self.search is not None:
            return
        self.paused = not self.paused
        if not self.paused:
            self.held = 0
            self.render_rows()
        self.show_status()

    def action_search(self) -> None:
        self.app.push_screen(
            SearchDialog(
                "Search events",
                [("type", "Type"), ("since", "Since"), ("until", "Until")],
                self.search or {},
                "Type: order.created, or order.* for a family.",
            ),
            self._searched,
        )

    def _searched(self, search: dict[str, str] | None) -> None:
        if search is None:
            return
        self.search = search or None
        self.paused = False
        self.load()

    def action_back(self) -> None:
        if self.search is not None and not self.filter_text:
            self.search = None
            self.load()
            return
        super().action_back()

    def action_open_event(self) -> None:
        event_id = self.query_one(ResourceTable).selected_key
        event = next((e for e in self.buffer if e.id == event_id), None)
        if event is not None:
            self.app.push_screen(EventDetail(event))

    @on(ResourceTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_open_event()

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield from super().palette_commands()
        yield SystemCommand(
            "Pause/resume live tail", "Hold new events, or show them (key p)", self.action_pause
        )
        yield SystemCommand(
            "Find events", "Past events by type and time (key f)", self.action_search
        )
        yield SystemCommand(
            "Open event", "The selected event with its payload (enter)", self.action_open_event
        )
