"""Members: list, add (with the one-time password reveal), change role, remove."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual import on
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, Input, Label, Select, Static

from ventryx_shared.members import ROLE_SCOPES, ROLES, Member, MemberCreated, MemberRemoved

from .. import formatting as fmt
from ..client import ApiError, VentryxClient
from ..widgets.table import ResourceTable
from .base import Dialog, SectionScreen
from .key_dialogs import RevealDialog

ROLE_HELP = {
    "owner": "everything, and makes or unmakes owners",
    "admin": "everything (org:admin)",
    "developer": "every scope but org:admin",
    "viewer": "the :read scopes",
}


def _role_options() -> list[tuple[str, str]]:
    return [(f"{role:<10} {ROLE_HELP[role]}", role) for role in ROLES]


class AddMemberDialog(Dialog[MemberCreated]):
    TITLE_TEXT = "Add member"

    def compose_form(self) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label("Email", classes="form-label")
            yield Input(id="member-email", compact=True, placeholder="dana@example.com")
        with Horizontal(classes="form-row"):
            yield Label("Name", classes="form-label")
            yield Input(id="member-name", compact=True, placeholder="Dana Scully")
        with Horizontal(classes="form-row"):
            yield Label("Role", classes="form-label")
            yield Select(
                _role_options(),
                value="developer",
                allow_blank=False,
                id="member-role",
                compact=True,
            )
        yield Static(
            Text(
                "They get a one-time password, shown once next, which they must "
                "change at first sign-in."
            ),
            classes="form-note",
        )

    def compose_buttons(self) -> ComposeResult:
        yield Button("Add", id="add", variant="primary", compact=True)
        yield from super().compose_buttons()

    @on(Input.Submitted)
    @on(Button.Pressed, "#add")
    def add(self) -> None:
        email = self.query_one("#member-email", Input).value.strip()
        name = self.query_one("#member-name", Input).value.strip()
        role = str(self.query_one("#member-role", Select).value)
        if not email or not name:
            self.show_error("Enter the member's email and name.")
            return
        self.submit("Adding the member", lambda client: client.add_member(email, name, role))


class ChangeRoleDialog(Dialog[Member]):
    TITLE_TEXT = "Change role"

    def __init__(self, member: Member):
        super().__init__()
        self.member = member

    def compose_form(self) -> ComposeResult:
        yield Static(Text(f"{self.member.name} <{self.member.email}>, now {self.member.role}"))
        with Horizontal(classes="form-row"):
            yield Label("Role", classes="form-label")
            yield Select(
                _role_options(),
                value=self.member.role,
                allow_blank=False,
                id="member-role",
                compact=True,
            )

    def compose_buttons(self) -> ComposeResult:
        yield Button("Save", id="save", variant="primary", compact=True)
        yield from super().compose_buttons()

    @on(Button.Pressed, "#save")
    def save(self) -> None:
        role = str(self.query_one("#member-role", Select).value)
        if role == self.member.role:
            self.dismiss(None)
            return
        self.submit(
            "Changing the role", lambda client: client.update_member(self.member.id, role=role)
        )


class RemoveMemberDialog(Dialog[MemberRemoved]):
    TITLE_TEXT = "Remove member"

    def __init__(self, member: Member):
        super().__init__()
        self.member = member

    def compose_form(self) -> ComposeResult:
        yield Static(
            Text(
                f"Remove {self.member.name} <{self.member.email}>? Their sessions end at once. "
                "API keys they created keep working until you revoke them."
            )
        )
        yield Label(Text(f"Type their email to confirm: {self.member.email}"))
        yield Input(id="confirm-email", compact=True)

    def compose_buttons(self) -> ComposeResult:
        yield Button("Remove", id="remove", variant="error", compact=True, disabled=True)
        yield from super().compose_buttons()

    @on(Input.Changed, "#confirm-email")
    def _typed(self, event: Input.Changed) -> None:
        self.query_one("#remove", Button).disabled = event.value.strip() != self.member.email

    @on(Input.Submitted, "#confirm-email")
    @on(Button.Pressed, "#remove")
    def remove_member(self) -> None:
        if self.query_one("#confirm-email", Input).value.strip() != self.member.email:
            self.show_error("The email does not match; nobody was removed.")
            return
        self.submit("Removing the member", lambda client: client.remove_member(self.member.id))


class MembersScreen(SectionScreen):
    SECTION = "Members"
    PARENT = ("settings", "Settings")
    HELP = (
        "The organization's members and their roles (owner and admin hold org:admin, "
        "developer every other scope, viewer the :read scopes). Changing members needs "
        "org:admin; the last owner can be neither demoted nor removed."
    )
    MUTATING = {"add_member": "org:admin", "change_role": "org:admin", "remove_member": "org:admin"}
    BINDINGS = [
        Binding("n", "add_member", "Add", id="add-member"),
        Binding("e", "change_role", "Role", id="change-role"),
        Binding("x", "remove_member", "Remove", id="remove-member"),
    ]
    COLUMNS = ("Name", "Email", "Role", "Password", "Added")

    def __init__(self):
        super().__init__()
        self.members: list[Member] = []

    def compose_body(self) -> ComposeResult:
        table = ResourceTable(id="members-table")
        table.add_column("Name", width=18)
        table.add_column("Email", width=26)
        table.add_columns(*self.COLUMNS[2:])
        yield table
        yield Static(id="detail", classes="detail")

    async def fetch(self, client: VentryxClient):
        return await client.list_members()

    def show(self, result) -> None:
        self.members, _more = result
        self.app.people.learn(members=self.members)
        self.render_rows()

    def show_failure(self, error: ApiError) -> None:
        self.members = []
        self.render_rows()

    def filter_changed(self) -> None:
        self.render_rows()

    def render_rows(self) -> None:
        table = self.query_one(ResourceTable)
        table.clear()
        for member in self.members:
            if not self.matches(member.name, member.email, member.role, member.id):
                continue
            table.add_row(
                Text(member.name, overflow="ellipsis", no_wrap=True),
                Text(member.email, overflow="ellipsis", no_wrap=True),
                member.role,
                "must change" if member.must_change_password else "set",
                fmt.date(member.created_at),
                key=member.id,
            )
        self.update_detail()

    def selected(self) -> Member | None:
        member_id = self.query_one(ResourceTable).selected_key
        return next((m for m in self.members if m.id == member_id), None)

    def on_data_table_row_highlighted(self) -> None:
        self.update_detail()

    def update_detail(self) -> None:
        member = self.selected()
        detail = self.query_one("#detail", Static)
        if member is None:
            detail.update(
                Text(
                    self.empty_text()
                    if not self.members
                    else "No member matches the filter; esc clears it."
                )
            )
            return
        detail.update(
            Text(
                f"{member.name} <{member.email}>  {fmt.identifier(member.id)}\n"
                f"{member.role}: {', '.join(ROLE_SCOPES.get(member.role, member.scopes))}\n"
                f"added {fmt.precise(member.created_at)}"
            )
        )

    def empty_text(self) -> str:
        if self.check_action("add_member", ()):
            return "No members to show. Press n to add one."
        return "No members to show."

    def action_add_member(self) -> None:
        self.app.push_screen(AddMemberDialog(), self._added)

    def _added(self, created: MemberCreated | None) -> None:
        if created is None:
            return
        lines = [
            f"{created.name} <{created.email}>, {created.role}",
            "Give them this one-time password; they must change it at first sign-in.",
        ]
        self.app.push_screen(
            RevealDialog("One-time password", created.one_time_password, lines),
            lambda _done: self.load(),
        )

    def action_change_role(self) -> None:
        member = self.selected()
        if member is not None:
            self.app.push_screen(ChangeRoleDialog(member), self._changed)

    def action_remove_member(self) -> None:
        member = self.selected()
        if member is not None:
            self.app.push_screen(RemoveMemberDialog(member), self._changed)

    def _changed(self, result: Member | None) -> None:
        if result is None:
            return
        if isinstance(result, MemberRemoved):
            self.notify(removal_words(result, self.app.people.key_names), timeout=12)
        else:
            self.notify(f"{result.name} is now {result.role}.")
        self.load()

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield from super().palette_commands()
        for action, title, text in (
            ("add_member", "Add member", "Invite someone with a one-time password (key n)"),
            ("change_role", "Change member role", "Owner, admin, developer, viewer (key e)"),
            ("remove_member", "Remove member", "End their sessions and access (key x)"),
        ):
            if self.check_action(action, ()):
                yield SystemCommand(title, text, getattr(self, f"action_{action}"))


def removal_words(removed: MemberRemoved, key_names: dict[str, str]) -> str:
    """What removing a member did, in words: sessions ended, keys that still work."""
    text = f"Removed {removed.name}; their sessions ended."
    keys = removed.api_keys_still_active
    if keys:
        names = ", ".join(key_names.get(key_id, key_id) for key_id in keys)
        text += (
            f" {len(keys)} API key{'s' if len(keys) != 1 else ''} they created "
            f"keep{'s' if len(keys) == 1 else ''} working until you revoke "
            f"{'it' if len(keys) == 1 else 'them'}: {names}."
        )
    return text
