"""API keys: the table, and create / reveal / edit / revoke / rotate."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.widgets import Static

from ventryx_shared.api_keys import ApiKey, ApiKeyCreated, ApiKeyRotated
from ventryx_shared.scopes import SCOPE_DESCRIPTIONS

from .. import formatting as fmt
from ..client import ApiError, VentryxClient
from ..widgets.table import ResourceTable
from .base import SectionScreen
from .key_dialogs import (
    CreateKeyDialog,
    EditKeyDialog,
    RevealDialog,
    RevokeKeyDialog,
    RotateKeyDialog,
)

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
    HELP = ("Scopes are shortened in the table (wf = workflows, ev = events, keys = api-keys; "
            "r = read, w = write); the line under the table spells out the selected key. "
            "A new key's secret is shown once, in its reveal dialog, and never again.")
    MUTATING = {"new_key": "api-keys:write", "edit_key": "api-keys:write",
                "revoke_key": "api-keys:write", "rotate_key": "api-keys:write"}
    BINDINGS = [
        Binding("n", "new_key", "New", id="new-key"),
        Binding("e", "edit_key", "Edit", id="edit-key"),
        Binding("x", "revoke_key", "Revoke", id="revoke-key"),
        Binding("o", "rotate_key", "Rotate", id="rotate-key"),
    ]

    # (title, width). Whether a key works and when it was last used or dies matter most, so
    # below WIDE_TERMINAL columns Env and Created go (the detail lines under the table keep
    # them) and scopes narrow, before Status, Last used or Expires would scroll out of sight.
    COLUMNS = (("Name", 0), ("Status", 7), ("Key", 14), ("Scopes", 11), ("Env", 4),
               ("Created", 10), ("Last used", 9), ("Expires", 9))
    NARROW_DROPS = {"Env", "Created"}
    WIDE_TERMINAL = 110

    def __init__(self):
        super().__init__()
        self.keys: list[ApiKey] = []
        self.truncated = False
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
        return [(title, width) for title, width in self.COLUMNS
                if wide or title not in self.NARROW_DROPS]

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
        self.render_rows()

    def show_failure(self, error: ApiError) -> None:
        self.keys = []
        self.render_rows()

    def filter_changed(self) -> None:
        self.render_rows()

    def visible_keys(self) -> list[ApiKey]:
        return [key for key in self.keys
                if self.matches(key.name, key.redacted_key, key.id, key.status,
                                key.environment, " ".join(key.scopes))]

    def cells(self, key: ApiKey, successors: set[str]) -> dict[str, object]:
        name = key.name
        if key.rotated_to:
            name += " (old)"
        elif key.id in successors:
            name += " (new)"
        # A revoked key's expiry is moot: it already stopped working.
        expires = "-" if key.status == "revoked" else fmt.relative(key.expires_at, empty="never")
        return {"Name": Text(name, overflow="ellipsis", no_wrap=True), "Status": key.status,
                "Key": fmt.redacted_key(key.redacted_key),
                "Scopes": Text(short_scopes(key.scopes), overflow="ellipsis", no_wrap=True),
                "Env": key.environment, "Created": fmt.date(key.created_at),
                "Last used": fmt.relative(key.last_used_at), "Expires": expires}

    def render_rows(self) -> None:
        table = self.query_one(ResourceTable)
        selected = table.selected_key
        table.clear()
        # Rotation keeps the name: "(old)" and "(new)" tell the pair apart.
        successors = {key.rotated_to for key in self.keys if key.rotated_to}
        titles = [title for title, _width in self.shown_columns()]
        for key in self.visible_keys():
            cells = self.cells(key, successors)
            table.add_row(*(cells[title] for title in titles), key=key.id)
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
                    "" if self.app.read_only or not self.app.may("api-keys:write")
                    else " Press n to create one.")
            else:
                text = f"No key matches the filter ({shown} of {total})."
            detail.update(Text(text))
            return
        lines = Text()
        lines.append(f"{key.name}", style="bold")
        lines.append(f"  {fmt.identifier(key.id)}")
        if key.rotated_to:
            lines.append(f"  rotated: its successor is {fmt.identifier(key.rotated_to)}")
        predecessor = next((k for k in self.keys if k.rotated_to == key.id), None)
        if predecessor is not None:
            lines.append(f"  successor of {fmt.identifier(predecessor.id)}")
        lines.append("\nscopes: " + ", ".join(key.scopes))
        lines.append(f"\n{key.environment}, {key.status}, last used {fmt.relative(key.last_used_at)}")
        if key.revoked_at:
            lines.append(f", revoked {fmt.precise(key.revoked_at)}")
        elif key.expires_at:
            verb = "expired" if key.status == "expired" else "expires"
            lines.append(f", {verb} {fmt.precise(key.expires_at)}")
        else:
            lines.append(", never expires")
        lines.append(f"\ncreated {fmt.date(key.created_at)} by "
                     f"{self.app.people.label(key.created_by)}")
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
        self.app.push_screen(CreateKeyDialog(self.grantable_scopes(), self.app.environment),
                             self._created)

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
            self.notify("Only an active key that was not rotated yet can be rotated.",
                        severity="warning")
            return
        self.app.push_screen(RotateKeyDialog(key), self._rotated)

    def _rotated(self, rotated: ApiKeyRotated | None) -> None:
        if rotated is None:
            return
        old = rotated.previous_key
        dies = (f"The old key {old.redacted_key} stops working "
                f"{fmt.precise(old.expires_at or old.revoked_at, empty='now')}.")
        self.app.push_screen(RevealDialog.for_key(rotated, note=dies), lambda _done: self.load())

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield from super().palette_commands()
        for action, title, text in (
            ("new_key", "New API key", "Create a key and see its secret once (key n)"),
            ("edit_key", "Edit API key", "Rename the selected key or change its scopes (key e)"),
            ("revoke_key", "Revoke API key", "Revoke the selected key at once (key x)"),
            ("rotate_key", "Rotate API key", "A successor now, the old key dies later (key o)"),
        ):
            if self.check_action(action, ()):
                yield SystemCommand(title, text, getattr(self, f"action_{action}"))
