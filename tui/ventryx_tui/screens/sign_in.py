"""Before there is a connection: a waiting screen, and the sign-in form."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static

from ..client import ApiError


class StartScreen(Screen):
    """Shown while the saved credential is being checked."""

    BINDINGS = [
        Binding("q", "app.quit", "Quit", id="start-quit"),
        Binding("s", "sign_in", "Sign in differently", id="start-sign-in"),
    ]

    def compose(self) -> ComposeResult:
        yield Static(Text("Ventryx\n\nConnecting...", justify="center"), id="start")
        yield Footer(compact=True)

    def show_waiting(self, error: ApiError, seconds: float) -> None:
        self.query_one("#start", Static).update(
            Text(
                f"Ventryx\n\n{error.describe()}\nReconnecting: trying again in {seconds:g} s.\n"
                "s signs in with another server or credential, q quits.",
                justify="center",
            )
        )

    def action_sign_in(self) -> None:
        self.app.workers.cancel_group(self.app, "connect")
        server = self.app.requested_server or "http://127.0.0.1:8000"
        self.app.push_screen(SignInScreen(server))


class SignInScreen(Screen):
    """An API key, or a member's email and password, for a server URL."""

    BINDINGS = [Binding("escape", "app.quit", "Quit", id="sign-in-quit")]
    AUTO_FOCUS = "#api-key"

    def __init__(self, server: str, error: ApiError | None = None):
        super().__init__()
        self.server = server
        self.initial_error = error

    def compose(self) -> ComposeResult:
        with Vertical(id="sign-in"):
            yield Static(Text("Sign in to Ventryx", style="bold"), classes="dialog-title")
            yield Label("Server")
            yield Input(self.server, id="server", compact=True)
            yield Label("API key (vtx_live_... or vtx_test_...)")
            yield Input(
                id="api-key", password=True, compact=True, placeholder="paste a key, then enter"
            )
            yield Label("or a member login: email and password")
            yield Input(id="email", placeholder="you@example.com", compact=True)
            yield Input(id="password", password=True, placeholder="password", compact=True)
            yield Input(
                id="organization",
                compact=True,
                placeholder="organization id (org_...), for an email in several",
            )
            yield Static(id="sign-in-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Sign in", id="sign-in-button", variant="primary", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        error = self.query_one("#sign-in-error", Static)
        error.display = False
        self.query_one("#organization").display = False
        if self.initial_error is not None:
            self.show_error(self.initial_error)

    def show_error(self, error: ApiError) -> None:
        field = self.query_one("#sign-in-error", Static)
        field.update(Text(f"Sign-in failed: {error.describe()}"))
        field.display = True
        if error.param == "organization":
            # The email belongs to several organizations; the message lists them.
            organization = self.query_one("#organization", Input)
            organization.display = True
            organization.focus()

    @on(Input.Submitted, "#server")
    def _server_entered(self) -> None:
        self.query_one("#api-key", Input).focus()

    @on(Input.Submitted, "#email")
    def _email_entered(self) -> None:
        self.query_one("#password", Input).focus()

    @on(Input.Submitted, "#api-key, #password, #organization")
    @on(Button.Pressed, "#sign-in-button")
    def sign_in(self) -> None:
        server = self.query_one("#server", Input).value.strip()
        key = self.query_one("#api-key", Input).value.strip()
        email = self.query_one("#email", Input).value.strip()
        password = self.query_one("#password", Input).value
        if not server:
            self.show_error(ApiError("Enter the server's URL."))
        elif key:
            self.app.connect(server, key)
        elif email and password:
            organization = self.query_one("#organization", Input).value.strip() or None
            self.app.sign_in_with_password(server, email, password, organization)
        else:
            self.show_error(ApiError("Enter an API key, or an email and password."))


class ChangePasswordScreen(Screen):
    """A member signed in with a one-time password must choose their own before anything
    else works (the server gives such a session no scopes)."""

    BINDINGS = [Binding("escape", "app.quit", "Quit", id="change-password-quit")]
    AUTO_FOCUS = "#new-password"

    def __init__(self, current_password: str | None):
        super().__init__()
        self._current = current_password

    def compose(self) -> ComposeResult:
        with Vertical(id="sign-in"):
            yield Static(Text("Choose your own password", style="bold"), classes="dialog-title")
            yield Static(
                Text(
                    "You signed in with a one-time password. Choose a new one "
                    "(at least 12 characters) to continue."
                )
            )
            if not self._current:
                yield Label("One-time password")
                yield Input(id="current-password", password=True, compact=True)
            yield Label("New password")
            yield Input(id="new-password", password=True, compact=True)
            yield Label("New password again")
            yield Input(id="repeat-password", password=True, compact=True)
            yield Static(id="sign-in-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(
                    "Change password", id="change-password", variant="primary", compact=True
                )
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#sign-in-error", Static).display = False

    def show_error(self, error: ApiError) -> None:
        field = self.query_one("#sign-in-error", Static)
        field.update(Text(f"Not changed: {error.describe()}"))
        field.display = True

    @on(Input.Submitted)
    @on(Button.Pressed, "#change-password")
    def change(self) -> None:
        current = self._current or self.query_one("#current-password", Input).value
        new = self.query_one("#new-password", Input).value
        repeat = self.query_one("#repeat-password", Input).value
        if len(new) < 12:
            self.show_error(ApiError("The new password needs at least 12 characters."))
        elif new != repeat:
            self.show_error(ApiError("The two new passwords differ."))
        else:
            self.app.change_one_time_password(current, new)
            self._current = None
