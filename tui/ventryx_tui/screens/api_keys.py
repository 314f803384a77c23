"""API keys: the table, and create / reveal / edit / revoke / rotate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.widgets import Static

from ventryx_shared.api_keys import ApiKey, ApiKeyCreated, ApiKeyRotated
from ventryx_shared.scopes import SCOPE_DESCRIPTIONS

from .. import formatting as fmt
from ..charts import sparkline
from ..client import ApiError, VentryxClient
from ..key_usage import in_grace, is_unused, last_day, recent_successes, rotation_status
from ..widgets.table import ResourceTable
from .base import SectionScreen
from .key_detail import KeyDetailScreen
from .key_dialogs import (
    CreateKeyDialog,
    EditKeyDialog,
    RevealDialog,
    RevokeKeyDialog,
    RotateKeyDialog,
)

# Keys with traffic get their last day's counts one call each, a few at a time; past this
# many the cell shows the 24-hour total instead, so a refresh stays a bounded number of calls.
MAX_SPARKLINES = 100
CONCURRENT_USAGE_CALLS = 6

_RESOURCE_SHORT = {"workflows": "wf", "events": "ev", "api-keys": "keys"}
_ACTION_SHORT = {"read": "r", "write": "w"}


def short_scopes(scopes: list[str]) -> str:
    """``wf:rw ev:w``: scopes grouped per resource, so a row fits 80 columns. The detail
    line under the table spells them out."""
    if "org:admin" in scopes:
        return "org:admin"
    grouped: dict[str, str] = {}
    for scope in scopes:
        resource, _, action = scope.partition(":")
        name = _RESOURCE_SHORT.get(resource, resource)
        grouped[name] = grouped.get(name, "") + _ACTION_SHORT.get(action, action)
    return " ".join(f"{name}:{actions}" for name, actions in grouped.items())


class ApiKeysScreen(SectionScreen):
    SECTION = "API keys"
    PARENT = ("settings", "Settings")
    HELP = (
        "Scopes are shortened in the table (wf = workflows, ev = events, keys = api-keys; "
        "r = read, w = write); the line under the table spells out the selected key. "
        "Last 24h draws each key's requests (every outcome) over the last day, oldest "
        'left, · for none; "unused" marks an active key without a successful request '
        "for 30 days. enter opens a key's usage chart by outcome. "
        "A new key's secret is shown once, in its reveal dialog, and never again."
    )
    MUTATING = {
        "new_key": "api-keys:write",
        "edit_key": "api-keys:write",
        "revoke_key": "api-keys:write",
        "rotate_key": "api-keys:write",
    }
    BINDINGS = [
        Binding("n", "new_key", "New", id="new-key"),
        Binding("e", "edit_key", "Edit", id="edit-key"),
        Binding("x", "revoke_key", "Revoke", id="revoke-key"),
        Binding("o", "rotate_key", "Rotate", id="rotate-key"),
        Binding("enter", "key_detail", "Usage", show=False, id="key-detail"),
    ]

    # (title, width). Whether a key works, whether it is used and when it dies matter most,
    # so below WIDE_TERMINAL columns Key, Env and Created go (the detail lines under the
    # table keep them) and scopes narrow, before Status, Last 24h, Last used or Expires
    # would scroll out of sight. Last 24h is one character per two hours, per hour from
    # HOURLY_TERMINAL columns.
    COLUMNS = (
        ("Name", 0),
        ("Status", 7),
        ("Key", 14),
        ("Scopes", 11),
        ("Env", 4),
        ("Created", 10),
        ("Last 24h", 12),
        ("Last used", 9),
        ("Expires", 9),
    )
    NARROW_DROPS = {"Key", "Env", "Created"}
    WIDE_TERMINAL = 110
    HOURLY_TERMINAL = 132

    def __init__(self):
        super().__init__()
        self.keys: list[ApiKey] = []
        self.truncated = False
        # Requests per hour over the last day, and successes in the last 15 minutes of
        # rotated keys in their grace period, per key id (loaded after the table).
        self.last_day: dict[str, list[int]] = {}
        self.activity_loaded = False
        self.recent: dict[str, int] = {}
        self._layout: tuple[int, bool] | None = None

    def compose_body(self) -> ComposeResult:
        yield ResourceTable(id="keys-table")
        yield Static(id="detail", classes="detail")

    def on_mount(self) -> None:
        self._fit_columns(self.app.size.width)

    def on_resize(self, event) -> None:
        self._fit_columns(event.size.width)

    def shown_columns(self) -> list[tuple[str, int]]:
        wide = self._layout is not None and self._layout[1]
        hourly = self._layout is not None and self._layout[0] >= self.HOURLY_TERMINAL
        return [
            (title, 24 if title == "Last 24h" and hourly else width)
            for title, width in self.COLUMNS
            if wide or title not in self.NARROW_DROPS
        ]

    def _fit_columns(self, width: int) -> None:
        """Names get what the other columns leave (two cells of padding each, and room
        for a scroll bar), between 12 and 40 cells."""
        wide = width >= self.WIDE_TERMINAL
        self._layout = (width, wide)
        others = [w for title, w in self.shown_columns() if title != "Name"]
        name_width = max(12, min(40, width - sum(others) - 2 * (len(others) + 1) - 2))
        table = self.query_one(ResourceTable)
        table.clear(columns=True)
        for title, column_width in self.shown_columns():
            table.add_column(title, width=column_width or name_width, key=title)
        self.render_rows()

    async def fetch(self, client: VentryxClient):
        environment = self.app.environment if self.app.can_switch_environment else None
        return await client.list_api_keys(environment=environment)

    def show(self, result) -> None:
        self.keys, self.truncated = result
        self.activity_loaded = False
        self.render_rows()
        self.load_activity(list(self.keys))

    @work(exclusive=True, group="activity", exit_on_error=False)
    async def load_activity(self, keys: list[ApiKey]) -> None:
        """The last day of each key with traffic (a key without any draws flat with no
        call), and the recent traffic of rotated keys, then the rows again."""
        client = self.client
        if client is None:
            return
        gate = asyncio.Semaphore(CONCURRENT_USAGE_CALLS)
        busy = [key for key in keys if key.requests_last_24h][:MAX_SPARKLINES]
        rotated = [key for key in keys if in_grace(key)]

        async def gated(call, key_id):
            async with gate:
                return await call(client, key_id)

        try:
            days, recents = await asyncio.gather(
                asyncio.gather(*(gated(last_day, key.id) for key in busy)),
                asyncio.gather(*(gated(recent_successes, key.id) for key in rotated)),
            )
        except ApiError as error:
            self.notice.show_error(error, "Loading key usage")
            self.app.report_error(error)
            return
        self.last_day = {key.id: day for key, day in zip(busy, days, strict=True)}
        self.recent = {key.id: count for key, count in zip(rotated, recents, strict=True)}
        self.activity_loaded = True
        self.render_rows()

    def show_failure(self, error: ApiError) -> None:
        self.keys = []
        self.render_rows()

    def filter_changed(self) -> None:
        self.render_rows()

    def visible_keys(self) -> list[ApiKey]:
        return [
            key
            for key in self.keys
            if self.matches(
                key.name,
                key.redacted_key,
                key.id,
                key.status,
                key.environment,
                " ".join(key.scopes),
                "unused" if is_unused(key) else "",
            )
        ]

    def activity(self, key: ApiKey, width: int) -> str:
        if not key.requests_last_24h:
            return sparkline([0] * 24, width)
        hours = self.last_day.get(key.id)
        if hours is None:  # still loading, or past MAX_SPARKLINES
            return f"{key.requests_last_24h:,} req" if self.activity_loaded else ""
        return sparkline(hours, width)

    def cells(self, key: ApiKey, successors: set[str], activity_width: int) -> dict[str, object]:
        name = key.name
        if key.rotated_to:
            name += " (old)"
        elif key.id in successors:
            name += " (new)"
        # A revoked key's expiry is moot: it already stopped working.
        expires = "-" if key.status == "revoked" else fmt.relative(key.expires_at, empty="never")
        return {
            "Name": Text(name, overflow="ellipsis", no_wrap=True),
            "Status": key.status,
            "Key": fmt.redacted_key(key.redacted_key),
            "Scopes": Text(short_scopes(key.scopes), overflow="ellipsis", no_wrap=True),
            "Env": key.environment,
            "Created": fmt.date(key.created_at),
            "Last 24h": self.activity(key, activity_width),
            "Last used": Text("unused", style="bold")
            if is_unused(key)
            else fmt.relative(key.last_used_at),
            "Expires": expires,
        }

    def render_rows(self) -> None:
        table = self.query_one(ResourceTable)
        selected = table.selected_key
        table.clear()
        # Rotation keeps the name: "(old)" and "(new)" tell the pair apart.
        successors = {key.rotated_to for key in self.keys if key.rotated_to}
        columns = dict(self.shown_columns())
        for key in self.visible_keys():
            cells = self.cells(key, successors, columns["Last 24h"])
            table.add_row(*(cells[title] for title in columns), key=key.id)
        if selected is not None:
            for index, key in enumerate(self.visible_keys()):
                if key.id == selected:
                    table.move_cursor(row=index)
        self.update_detail()

    def selected(self) -> ApiKey | None:
        key_id = self.query_one(ResourceTable).selected_key
        return next((key for key in self.keys if key.id == key_id), None)

    def on_data_table_row_highlighted(self) -> None:
        self.update_detail()

    def update_detail(self) -> None:
        detail = self.query_one("#detail", Static)
        key = self.selected()
        if key is None:
            shown, total = len(self.visible_keys()), len(self.keys)
            if total == 0:
                text = "No API keys in this environment." + (
                    ""
                    if self.app.read_only or not self.app.may("api-keys:write")
                    else " Press n to create one."
                )
            else:
                text = f"No key matches the filter ({shown} of {total})."
            detail.update(Text(text))
            return
        lines = Text()
        lines.append(f"{key.name}", style="bold")
        lines.append(f"  {fmt.redacted_key(key.redacted_key)}  {fmt.identifier(key.id)}")
        if key.rotated_to:
            lines.append(f"  rotated: its successor is {fmt.identifier(key.rotated_to)}")
        predecessor = next((k for k in self.keys if k.rotated_to == key.id), None)
        if predecessor is not None:
            lines.append(f"  successor of {fmt.identifier(predecessor.id)}")
        lines.append("\nscopes: " + ", ".join(key.scopes))
        lines.append(
            f"\n{key.environment}, {key.status}, "
            f"{fmt.plural(key.requests_last_24h, 'request')} in 24 h, "
            f"last used {fmt.relative(key.last_used_at)}"
        )
        if key.revoked_at:
            lines.append(f", revoked {fmt.precise(key.revoked_at)}")
        elif key.expires_at:
            verb = "expired" if key.status == "expired" else "expires"
            lines.append(f", {verb} {fmt.precise(key.expires_at)}")
        else:
            lines.append(", never expires")
        lines.append(
            f"\ncreated {fmt.date(key.created_at)} by {self.app.people.label(key.created_by)}"
        )
        if is_unused(key):
            lines.append("\nunused: no successful request for 30 days", style="bold")
        if in_grace(key):
            lines.append("\n" + rotation_status(key, self.recent.get(key.id)), style="bold")
        if self.truncated:
            lines.append("\nShowing the newest 500 keys; filter to find older ones.")
        detail.update(lines)

    # Actions

    def grantable_scopes(self) -> list[str]:
        caller = self.app.caller
        held = caller.scopes if caller else []
        if "org:admin" in held:
            return list(SCOPE_DESCRIPTIONS)
        return [scope for scope in SCOPE_DESCRIPTIONS if scope in held]

    def action_new_key(self) -> None:
        self.app.push_screen(
            CreateKeyDialog(self.grantable_scopes(), self.app.environment), self._created
        )

    def _created(self, created: ApiKeyCreated | None) -> None:
        if created is None:
            return
        self.app.push_screen(RevealDialog.for_key(created), lambda _done: self.load())

    def action_edit_key(self) -> None:
        key = self.selected()
        if key is None:
            return
        if key.status == "revoked":
            self.notify("A revoked key cannot be changed.", severity="warning")
            return
        self.app.push_screen(EditKeyDialog(key, self.grantable_scopes()), self._changed)

    def action_key_detail(self) -> None:
        key = self.selected()
        if key is not None:
            self.app.push_screen(KeyDetailScreen(key), self._changed)

    @on(ResourceTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_key_detail()

    def action_revoke_key(self) -> None:
        key = self.selected()
        if key is None:
            return
        if key.status == "revoked":
            self.notify("This key is already revoked.", severity="warning")
            return
        self.app.push_screen(RevokeKeyDialog(key), self._changed)

    def _changed(self, key: ApiKey | None) -> None:
        if key is not None:
            self.notify(f"{key.name}: {key.status}, scopes {', '.join(key.scopes)}.")
            self.load()

    def action_rotate_key(self) -> None:
        key = self.selected()
        if key is None:
            return
        if key.status == "revoked" or key.rotated_to:
            self.notify(
                "Only an active key that was not rotated yet can be rotated.", severity="warning"
            )
            return
        self.app.push_screen(RotateKeyDialog(key), self._rotated)

    def _rotated(self, rotated: ApiKeyRotated | None) -> None:
        if rotated is None:
            return
        old = rotated.previous_key
        dies = (
            f"The old key {old.redacted_key} stops working "
            f"{fmt.precise(old.expires_at or old.revoked_at, empty='now')}."
        )
        self.app.push_screen(RevealDialog.for_key(rotated, note=dies), lambda _done: self.load())

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield from super().palette_commands()
        for action, title, text in (
            ("new_key", "New API key", "Create a key and see its secret once (key n)"),
            ("edit_key", "Edit API key", "Rename the selected key or change its scopes (key e)"),
            ("revoke_key", "Revoke API key", "Revoke the selected key at once (key x)"),
            ("rotate_key", "Rotate API key", "A successor now, the old key dies later (key o)"),
            ("key_detail", "API key usage", "The selected key's requests by outcome (enter)"),
        ):
            if self.check_action(action, ()):
                yield SystemCommand(title, text, getattr(self, f"action_{action}"))
