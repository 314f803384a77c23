"""Settings: the organization (name, id, rename, its defaults), and the way to API keys
and members, so "Settings → API Keys → New Key" in our documentation is a path to follow."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from ventryx_shared.organizations import OrganizationDetails

from .. import formatting as fmt
from ..client import VentryxClient
from .base import Dialog, SectionScreen

# Fields of GET /v1/org drawn in the first lines; any other field is a default that other
# versions of the server add (rate limits, retention), listed after them as it comes.
_KNOWN_FIELDS = {"object", "id", "name", "created_at", "updated_at"}


class RenameOrgDialog(Dialog[OrganizationDetails]):
    TITLE_TEXT = "Rename the organization"
    BINDINGS = [Binding("ctrl+s", "rename", "Rename", id="rename-org-save")]

    def __init__(self, name: str):
        super().__init__()
        self.current_name = name

    def compose_form(self) -> ComposeResult:
        yield Label("Name (members see it at the top of every screen)")
        yield Input(self.current_name, id="org-name", max_length=100, compact=True)

    def compose_buttons(self) -> ComposeResult:
        yield Button("Rename", id="rename", variant="primary", compact=True)
        yield from super().compose_buttons()

    @on(Input.Submitted, "#org-name")
    @on(Button.Pressed, "#rename")
    def action_rename(self) -> None:
        name = self.query_one("#org-name", Input).value.strip()
        if not name:
            self.show_error("The organization needs a name.")
            return
        if name == self.current_name:
            self.dismiss(None)
            return
        self.submit("Renaming", lambda client: client.rename_org(name))


class SettingsScreen(SectionScreen):
    SECTION = "Settings"
    HELP = (
        "The organization and who may use it. e renames the organization (needs "
        "org:admin); a opens API keys (n there makes a new key), m opens members. "
        "Esc in either comes back here."
    )
    MUTATING = {"rename_org": "org:admin"}
    AUTO_FOCUS = "#settings-menu"
    BINDINGS = [
        Binding("a", "open('api-keys')", "API keys", id="settings-api-keys"),
        Binding("m", "open('members')", "Members", id="settings-members"),
        Binding("e", "rename_org", "Rename org", id="rename-org"),
    ]

    def __init__(self):
        super().__init__()
        self.org: dict[str, Any] | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(id="settings"):
            yield Static(Text("Organization", style="bold"))
            yield Static(id="settings-org")
            yield OptionList(
                Option("API keys   create, edit, rotate and revoke keys        (a)", id="api-keys"),
                Option("Members    add people, change roles, remove them       (m)", id="members"),
                id="settings-menu",
                compact=True,
            )

    def on_mount(self) -> None:
        self.query_one("#settings-menu", OptionList).highlighted = 0

    def loading_target(self):
        return self.query_one("#settings-org")

    def focus_main(self) -> None:
        self.query_one("#settings-menu").focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "filter":
            return False  # nothing to narrow here
        return super().check_action(action, parameters)

    async def fetch(self, client: VentryxClient) -> dict[str, Any]:
        return await client.get_org_settings()

    def show(self, org: dict[str, Any]) -> None:
        self.org = org
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        grid.add_row("Name", Text(org.get("name", "-")))
        grid.add_row("Id", Text(fmt.identifier(org.get("id"))))
        grid.add_row("Created", Text(fmt.date(org.get("created_at"))))
        for field, value in org.items():
            if field not in _KNOWN_FIELDS:
                grid.add_row(field.replace("_", " ").capitalize(), Text(_plain(value)))
        if self.check_action("rename_org", ()):
            grid.add_row("", Text("e renames it", style="dim"))
        self.query_one("#settings-org", Static).update(grid)

    def action_open(self, mode: str) -> None:
        self.app.switch_mode(mode)

    @on(OptionList.OptionSelected, "#settings-menu")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.action_open(event.option.id)

    def action_rename_org(self) -> None:
        if self.org is not None:
            self.app.push_screen(RenameOrgDialog(self.org.get("name", "")), self._renamed)

    def _renamed(self, org: OrganizationDetails | None) -> None:
        if org is None:
            return
        self.notify(f"The organization is now called {org.name}.")
        self.load()
        self.app.refresh_caller()

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield from super().palette_commands()
        if self.check_action("rename_org", ()):
            yield SystemCommand(
                "Rename organization", "Change its name (key e)", self.action_rename_org
            )


def _plain(value: Any) -> str:
    """A default as a sentence fragment: ``requests 100, window seconds 60``."""
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')} {_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value) or "none"
    return "-" if value is None else str(value)
