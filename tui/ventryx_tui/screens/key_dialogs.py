"""The dialogs of the API keys screen. ``RevealDialog`` is the only widget that ever draws a
secret (a new key, or a new member's one-time password)."""

from __future__ import annotations

from datetime import timedelta

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Footer,
    Input,
    Label,
    RadioSet,
    Select,
    SelectionList,
    Static,
)
from textual.widgets.selection_list import Selection

from ventryx_shared.api_keys import ApiKey, ApiKeyCreated
from ventryx_shared.scopes import SCOPE_DESCRIPTIONS

from .. import formatting as fmt
from ..client import ApiError
from ..key_usage import RECENT_MINUTES, recent_successes
from ..widgets.choices import MarkedRadioButton, MarkedSelectionList
from .base import Dialog

EXPIRY_CHOICES: tuple[tuple[str, int | None], ...] = (
    ("never", None),
    ("in 1 day", 1),
    ("in 7 days", 7),
    ("in 30 days", 30),
    ("in 90 days", 90),
    ("in 1 year", 365),
)
GRACE_CHOICES: tuple[tuple[str, int], ...] = (
    ("now (the old key dies at once)", 0),
    ("1 hour", 3600),
    ("24 hours", 86400),
    ("7 days", 7 * 86400),
)


def _scope_list(grantable: list[str], chosen: list[str]) -> MarkedSelectionList:
    return MarkedSelectionList(
        *(
            Selection(f"{scope:<16} {SCOPE_DESCRIPTIONS[scope]}", scope, scope in chosen)
            for scope in grantable
        ),
        id="scopes",
        compact=True,
    )


class CreateKeyDialog(Dialog[ApiKeyCreated]):
    TITLE_TEXT = "New API key"
    # As in the workflow editor: enter toggles the scope under the cursor, ctrl+s submits.
    BINDINGS = [Binding("ctrl+s", "create", "Create", id="create-key")]

    def __init__(self, grantable: list[str], environment: str):
        super().__init__()
        self.grantable = grantable
        self.environment = environment

    def compose_form(self) -> ComposeResult:
        yield Label("Name (what uses this key)")
        yield Input(id="name", placeholder="ci-pipeline", max_length=100, compact=True)
        yield Label(
            f"Scopes of the {self.environment.upper()} key (enter or space "
            "toggles; only those you may grant)"
        )
        yield _scope_list(self.grantable, [])
        yield Label("Expires")
        yield Select(
            [(label, days if days is not None else 0) for label, days in EXPIRY_CHOICES],
            value=0,
            allow_blank=False,
            id="expiry",
            compact=True,
        )

    def compose_buttons(self) -> ComposeResult:
        yield Button("Create", id="create", variant="primary", compact=True)
        yield from super().compose_buttons()

    @on(Input.Submitted, "#name")
    def _to_scopes(self) -> None:
        self.query_one("#scopes").focus()

    @on(Button.Pressed, "#create")
    def action_create(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        scopes = list(self.query_one("#scopes", SelectionList).selected)
        days = self.query_one("#expiry", Select).value
        if not name:
            self.show_error("Give the key a name.")
            self.query_one("#name").focus()
            return
        if not scopes:
            self.show_error("Choose at least one scope.")
            self.query_one("#scopes").focus()
            return
        expires_at = None
        if days:
            moment = fmt.now() + timedelta(days=int(days))
            expires_at = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        ordered = [scope for scope in SCOPE_DESCRIPTIONS if scope in scopes]
        self.submit(
            "Creating the key",
            lambda client: client.create_api_key(name, ordered, self.environment, expires_at),
        )


class EditKeyDialog(Dialog[ApiKey]):
    TITLE_TEXT = "Edit API key"
    BINDINGS = [Binding("ctrl+s", "save", "Save", id="save-key")]

    def __init__(self, key: ApiKey, grantable: list[str]):
        super().__init__()
        self.key = key
        # A scope the key holds but the editor may not grant is still shown, so saving
        # does not silently drop it; the server refuses if it is beyond the editor.
        self.grantable = [s for s in SCOPE_DESCRIPTIONS if s in grantable or s in key.scopes]

    def compose_form(self) -> ComposeResult:
        yield Label(f"{self.key.redacted_key}  {self.key.environment}")
        yield Label("Name")
        yield Input(self.key.name, id="name", max_length=100, compact=True)
        yield Label("Scopes (enter or space toggles)")
        yield _scope_list(self.grantable, self.key.scopes)

    def compose_buttons(self) -> ComposeResult:
        yield Button("Save", id="save", variant="primary", compact=True)
        yield from super().compose_buttons()

    @on(Input.Submitted, "#name")
    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        chosen = set(self.query_one("#scopes", SelectionList).selected)
        scopes = [scope for scope in SCOPE_DESCRIPTIONS if scope in chosen]
        if not name:
            self.show_error("A key needs a name.")
            return
        if not scopes:
            self.show_error("A key needs at least one scope; revoke it instead.")
            return
        changes = {}
        if name != self.key.name:
            changes["name"] = name
        if scopes != [s for s in SCOPE_DESCRIPTIONS if s in self.key.scopes]:
            changes["scopes"] = scopes
        if not changes:
            self.dismiss(None)
            return
        self.submit("Saving the key", lambda client: client.update_api_key(self.key.id, **changes))


class RevokeKeyDialog(Dialog[ApiKey]):
    TITLE_TEXT = "Revoke API key"

    def __init__(self, key: ApiKey):
        super().__init__()
        self.key = key

    def compose_form(self) -> ComposeResult:
        yield Static(
            Text(
                f"Revoking {self.key.redacted_key} is instantaneous: every request with it gets "
                "401 from the moment this returns. It cannot be undone."
            )
        )
        yield Static(Text("Counting its requests of the last 15 minutes..."), id="recent-traffic")
        yield Label(Text(f"Type the key's name to confirm: {self.key.name}"))
        yield Input(id="confirm-name", compact=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.count_recent_traffic()

    @work(exclusive=True, group="recent-traffic", exit_on_error=False)
    async def count_recent_traffic(self) -> None:
        """Revoking a key still in use is allowed, but not without saying so."""
        line = self.query_one("#recent-traffic", Static)
        try:
            served = await recent_successes(self.app.client, self.key.id)
        except ApiError as error:
            line.update(Text(f"Its recent traffic could not be read: {error.describe()}"))
            return
        if served:
            line.update(
                Text(
                    f"It served {fmt.plural(served, 'request')} in the last "
                    f"{RECENT_MINUTES} minutes: whatever sent them gets 401 from "
                    "now on.",
                    style="bold",
                )
            )
        else:
            line.update(Text(f"It served no request in the last {RECENT_MINUTES} minutes."))

    def compose_buttons(self) -> ComposeResult:
        yield Button("Revoke", id="revoke", variant="error", compact=True, disabled=True)
        yield from super().compose_buttons()

    @on(Input.Changed, "#confirm-name")
    def _confirm_changed(self, event: Input.Changed) -> None:
        self.query_one("#revoke", Button).disabled = event.value != self.key.name

    @on(Input.Submitted, "#confirm-name")
    @on(Button.Pressed, "#revoke")
    def revoke(self) -> None:
        if self.query_one("#confirm-name", Input).value != self.key.name:
            self.show_error("The name does not match; nothing was revoked.")
            return
        self.submit("Revoking the key", lambda client: client.revoke_api_key(self.key.id))


class RotateKeyDialog(Dialog):
    TITLE_TEXT = "Rotate API key"

    def __init__(self, key: ApiKey):
        super().__init__()
        self.key = key
        self.grace_seconds = 0

    def compose_form(self) -> ComposeResult:
        yield Static(
            Text(
                f"A new key with the name {self.key.name!r}, the same scopes and environment "
                "is made now; its secret is shown once. How long may the old key keep working?"
            )
        )
        with RadioSet(id="grace", compact=True):
            for index, (label, _seconds) in enumerate(GRACE_CHOICES):
                yield MarkedRadioButton(label, value=index == 0)
        yield Static(id="dies-at")

    def compose_buttons(self) -> ComposeResult:
        yield Button("Rotate", id="rotate", variant="warning", compact=True)
        yield from super().compose_buttons()

    def on_mount(self) -> None:
        super().on_mount()
        self._show_death()

    @on(RadioSet.Changed, "#grace")
    def _grace_changed(self, event: RadioSet.Changed) -> None:
        self.grace_seconds = GRACE_CHOICES[event.index][1]
        self._show_death()

    def _show_death(self) -> None:
        if self.grace_seconds == 0:
            text = f"The old key {self.key.redacted_key} stops working the moment you rotate."
        else:
            dies = fmt.now() + timedelta(seconds=self.grace_seconds)
            text = (
                f"The old key {self.key.redacted_key} stops working at about "
                f"{fmt.precise(dies)} ({fmt.duration(self.grace_seconds)} from now)."
            )
        self.query_one("#dies-at", Static).update(Text(text))

    @on(Button.Pressed, "#rotate")
    def rotate(self) -> None:
        self.submit(
            "Rotating the key",
            lambda client: client.rotate_api_key(self.key.id, self.grace_seconds),
        )


class RevealDialog(ModalScreen[None]):
    """The one place a secret is drawn. ``c`` copies it through OSC 52; the secret is also
    on a line of its own, so a terminal selection or double click takes it whole."""

    BINDINGS = [
        Binding("c", "copy", "Copy", id="copy-secret"),
        Binding("escape", "done", "Done", id="close-reveal"),
        Binding("enter", "done", "Done", show=False),
    ]
    AUTO_FOCUS = "#done"

    def __init__(self, title: str, secret: str | None, lines: list[str]):
        super().__init__()
        self.title_text = title
        self._secret = secret
        self.lines = lines

    @classmethod
    def for_key(cls, created: ApiKeyCreated, note: str | None = None) -> RevealDialog:
        lines = [f"{created.name}  {created.environment}  scopes: {', '.join(created.scopes)}"]
        if note:
            lines.append(note)
        return cls("Your new API key", created.key, lines)

    def compose(self) -> ComposeResult:
        from textual.containers import Horizontal, Vertical

        with Vertical(id="dialog", classes="reveal"):
            yield Static(Text(self.title_text, style="bold"), classes="dialog-title")
            for line in self.lines:
                yield Static(Text(line))
            if self._secret:
                yield Static(
                    Text("Shown once. Store it in your secrets manager now.", style="bold")
                )
                yield Static(Text(self._secret), id="secret")
                yield Static(
                    Text(
                        "c copies it (OSC 52). If your terminal ignores that, "
                        "select the line above with the mouse (shift+drag over "
                        "SSH/tmux).",
                        style="dim",
                    ),
                    id="copy-hint",
                )
            else:
                yield Static(
                    Text(
                        "The server did not send the secret again (a retried "
                        "request never shows it twice). Rotate the key to get "
                        "a new one."
                    )
                )
            with Horizontal(classes="dialog-buttons"):
                if self._secret:
                    yield Button("Copy", id="copy", compact=True)
                yield Button("Done, I stored it", id="done", variant="primary", compact=True)
        yield Footer(compact=True)

    @on(Button.Pressed, "#copy")
    def action_copy(self) -> None:
        if not self._secret:
            return
        self.app.copy_to_clipboard(self._secret)
        self.query_one("#copy-hint", Static).update(
            Text(
                "Sent to your terminal's clipboard (OSC 52). If pasting gives nothing, select "
                "the line above with the mouse instead."
            )
        )

    @on(Button.Pressed, "#done")
    def action_done(self) -> None:
        self.dismiss(None)

    def on_unmount(self) -> None:
        # The secret lives no longer than its dialog: not in this screen, not in the app's
        # in-process copy of the clipboard (the terminal's clipboard keeps what was copied).
        self._secret = None
        if getattr(self.app, "_clipboard", None):
            self.app._clipboard = ""
