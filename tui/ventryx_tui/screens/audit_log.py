"""Audit log: who did what, to what, when, with which request id. Read-only by nature."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.widgets import Static

from ventryx_shared.audit_log import AuditEntry

from .. import formatting as fmt
from ..client import ApiError, ServerUnreachable, VentryxClient
from ..widgets.table import ResourceTable
from .base import SectionScreen
from .search import SearchDialog, describe


class AuditLogScreen(SectionScreen):
    SECTION = "Audit log"
    HELP = (
        "Every change to keys, workflows, members and the organization, and every "
        "login, newest first (needs org:admin). Actors and targets show as emails and "
        "key names where known. / narrows the rows shown; f finds entries on the "
        "server by actor (an email or id), action (member.* for a family), target and "
        "time; esc returns to the newest entries."
    )
    BINDINGS = [Binding("f", "search", "Find", id="search-audit-log")]
    # (title, width); 0: Actor and Target share what the others leave, so 80 columns show
    # who did what to what, and wider terminals show whole emails and ids.
    COLUMNS = (
        ("Time", 16),
        ("Action", 20),
        ("Actor", 0),
        ("Target", 0),
        ("Env", 4),
        ("Request id", 30),
    )
    AT_80_COLUMNS = (20, 14)

    def __init__(self):
        super().__init__()
        self.entries: list[AuditEntry] = []
        self.search: dict[str, str] = {}

    def compose_body(self) -> ComposeResult:
        yield ResourceTable(id="audit-table")
        yield Static(id="detail", classes="detail")

    def on_mount(self) -> None:
        self._fit_columns(self.app.size.width)

    def on_resize(self, event) -> None:
        self._fit_columns(event.size.width)

    def _fit_columns(self, width: int) -> None:
        """Beyond 80 columns Actor and Target grow alike, up to a whole email or id."""
        spare = max(0, width - 80) // 2
        actor = min(self.AT_80_COLUMNS[0] + spare, 32)
        target = min(self.AT_80_COLUMNS[1] + spare, 31)
        table = self.query_one(ResourceTable)
        table.clear(columns=True)
        for title, column_width in self.COLUMNS:
            table.add_column(title, width=column_width or {"Actor": actor, "Target": target}[title])
        self.render_rows()

    async def fetch(self, client: VentryxClient):
        # Members and keys name the actors; the log needs org:admin, which reads both.
        log, members, keys = await asyncio.gather(
            client.list_audit_log(**self.search),
            client.list_members(),
            client.list_api_keys(),
            return_exceptions=True,
        )
        if isinstance(log, BaseException):
            raise log
        for known in (members, keys):
            if isinstance(known, ServerUnreachable) or (
                isinstance(known, BaseException) and not isinstance(known, ApiError)
            ):
                raise known
        self.app.people.learn(
            members=members[0] if isinstance(members, tuple) else None,
            keys=keys[0] if isinstance(keys, tuple) else None,
        )
        return log

    def show(self, result) -> None:
        self.entries, _more = result
        self.render_rows()

    def show_failure(self, error: ApiError) -> None:
        self.entries = []
        self.render_rows()

    def filter_changed(self) -> None:
        self.render_rows()

    def render_rows(self) -> None:
        table = self.query_one(ResourceTable)
        table.clear()
        people = self.app.people
        for entry in self.entries:
            actor, target = people.short(entry.actor_id), people.short(entry.target_id)
            if not self.matches(
                entry.action,
                entry.actor_id,
                entry.target_id,
                actor,
                target,
                entry.target_type,
                entry.request_id,
                entry.environment,
            ):
                continue
            table.add_row(
                fmt.timestamp(entry.created_at),
                entry.action,
                Text(actor, overflow="ellipsis", no_wrap=True),
                Text(target, overflow="ellipsis", no_wrap=True),
                entry.environment or "-",
                fmt.identifier(entry.request_id),
                key=entry.id,
            )
        self.update_detail()

    def on_data_table_row_highlighted(self) -> None:
        self.update_detail()

    def update_detail(self) -> None:
        entry_id = self.query_one(ResourceTable).selected_key
        entry = next((e for e in self.entries if e.id == entry_id), None)
        detail = self.query_one("#detail", Static)
        searching = (
            f"Search: {describe(self.search)} (esc: newest entries)\n" if self.search else ""
        )
        if entry is None:
            empty = (
                "Nothing matches this search; f changes it."
                if self.search
                else "No audit log entries yet: changes to keys, workflows and members appear here."
            )
            detail.update(
                Text(
                    searching
                    + (empty if not self.entries else "No entry matches the filter; esc clears it.")
                )
            )
            return
        people = self.app.people
        details = ", ".join(f"{k}={v}" for k, v in (entry.details or {}).items())
        detail.update(
            Text(
                searching + f"{entry.action} on {entry.target_type} "
                f"{people.label(entry.target_id)} by "
                f"{people.label(entry.actor_id)} from {entry.client_address or '-'}\n"
                f"at {fmt.precise(entry.created_at)}  request {fmt.identifier(entry.request_id)}"
                + (f"\n{details}" if details else "")
            )
        )

    def action_search(self) -> None:
        self.app.push_screen(
            SearchDialog(
                "Search the audit log",
                [
                    ("actor", "Actor"),
                    ("action", "Action"),
                    ("target", "Target"),
                    ("since", "Since"),
                    ("until", "Until"),
                ],
                self.search,
                "Actor: a member's email, or a mem_ or key_ id. Action: "
                "api_key.revoked, or api_key.*.",
            ),
            self._searched,
        )

    def _searched(self, search: dict[str, str] | None) -> None:
        if search is None:
            return
        actor = search.get("actor", "")
        if "@" in actor:
            member_id = self.app.people.member_id(actor)
            if member_id is None:
                self.notify(f"No member has the email {actor}.", severity="error")
                return
            search = {**search, "actor": member_id}
        self.search = search
        self.load()

    def action_back(self) -> None:
        if self.search and not self.filter_text:
            self.search = {}
            self.load()
            return
        super().action_back()

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield from super().palette_commands()
        yield SystemCommand(
            "Find in audit log", "By actor, action, target and time (key f)", self.action_search
        )
