"""Audit log: who did what, to what, when, with which request id. Read-only by nature."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.widgets import Static

from ventryx_shared.audit_log import AuditEntry

from .. import formatting as fmt
from ..client import ApiError, VentryxClient
from ..widgets.table import ResourceTable
from .base import SectionScreen
from .search import SearchDialog, describe


class AuditLogScreen(SectionScreen):
    SECTION = "Audit log"
    HELP = ("Every change to keys, workflows, members and the organization, and every "
            "login, newest first (needs org:admin). / narrows the rows shown; s searches "
            "the whole log on the server by actor, action (member.* for a family), target "
            "and time; esc returns to the newest entries.")
    BINDINGS = [Binding("s", "search", "Search", id="search-audit-log")]
    COLUMNS = ("Time", "Action", "Target", "Actor", "Env", "Request id")

    def __init__(self):
        super().__init__()
        self.entries: list[AuditEntry] = []
        self.search: dict[str, str] = {}

    def compose_body(self) -> ComposeResult:
        table = ResourceTable(id="audit-table")
        table.add_columns(*self.COLUMNS)
        yield table
        yield Static(id="detail", classes="detail")

    async def fetch(self, client: VentryxClient):
        return await client.list_audit_log(**self.search)

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
        for entry in self.entries:
            if not self.matches(entry.action, entry.actor_id, entry.target_id,
                                entry.target_type, entry.request_id, entry.environment):
                continue
            table.add_row(fmt.timestamp(entry.created_at), entry.action,
                          fmt.identifier(entry.target_id), fmt.identifier(entry.actor_id),
                          entry.environment or "-", fmt.identifier(entry.request_id),
                          key=entry.id)
        self.update_detail()

    def on_data_table_row_highlighted(self) -> None:
        self.update_detail()

    def update_detail(self) -> None:
        entry_id = self.query_one(ResourceTable).selected_key
        entry = next((e for e in self.entries if e.id == entry_id), None)
        detail = self.query_one("#detail", Static)
        searching = f"Search: {describe(self.search)} (esc: newest entries)\n" \
            if self.search else ""
        if entry is None:
            detail.update(Text(searching + ("No audit log entries to show." if not self.entries
                                            else "No entry matches the filter.")))
            return
        details = ", ".join(f"{k}={v}" for k, v in (entry.details or {}).items())
        detail.update(Text(
            searching + f"{entry.action} on {entry.target_type} {fmt.identifier(entry.target_id)} by "
            f"{fmt.identifier(entry.actor_id)} from {entry.client_address or '-'}\n"
            f"at {fmt.precise(entry.created_at)}  request {fmt.identifier(entry.request_id)}"
            + (f"\n{details}" if details else "")))

    def action_search(self) -> None:
        self.app.push_screen(SearchDialog(
            "Search the audit log", [("actor", "Actor"), ("action", "Action"),
                                     ("target", "Target"), ("since", "Since"),
                                     ("until", "Until")],
            self.search, "Actor: a mem_ or key_ id. Action: api_key.revoked, or api_key.*."),
            self._searched)

    def _searched(self, search: dict[str, str] | None) -> None:
        if search is not None:
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
        yield SystemCommand("Search audit log", "By actor, action, target and time (key s)",
                            self.action_search)
