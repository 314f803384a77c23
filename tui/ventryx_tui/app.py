"""The Ventryx terminal dashboard: the app, its connection and sign-in, and the sections
it switches between (``cli.py`` starts it)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from ventryx_shared.me import Caller
from ventryx_shared.scopes import grants

from . import formatting as fmt
from .client import ApiError, ServerUnreachable, VentryxClient
from .connection import HEARTBEAT_SECONDS, PROBE_TIMEOUT_SECONDS, reconnect_delay
from .credentials import CorruptCredentials, CredentialStore, SavedCredentials
from .messages import EnvironmentChanged, Reconnected, ServerLost
from .people import Directory
from .screens.api_keys import ApiKeysScreen
from .screens.audit_log import AuditLogScreen
from .screens.base import ConfirmDialog, SectionScreen
from .screens.events import EventsScreen
from .screens.help import HelpScreen
from .screens.members import MembersScreen
from .screens.overview import OverviewScreen
from .screens.settings import SettingsScreen
from .screens.sign_in import ChangePasswordScreen, SignInScreen, StartScreen
from .screens.workflows import WorkflowsScreen
from .theme import ANSI_THEME

DEFAULT_SERVER = "http://127.0.0.1:8000"

# (mode, key, title, screen). The number keys follow this order, as tabs in k9s do;
# Settings (organization, API keys, members) is `s`, the path our documentation describes.
SECTIONS: tuple[tuple[str, str, str, type[Screen]], ...] = (
    ("overview", "1", "Overview", OverviewScreen),
    ("api-keys", "2", "API keys", ApiKeysScreen),
    ("workflows", "3", "Workflows", WorkflowsScreen),
    ("events", "4", "Events", EventsScreen),
    ("members", "5", "Members", MembersScreen),
    ("audit-log", "6", "Audit log", AuditLogScreen),
    ("settings", "s", "Settings", SettingsScreen),
)


class VentryxApp(App):
    """Holds the connection, the caller and the live/test choice; screens do the rest."""

    CSS_PATH = "ventryx.tcss"
    TITLE = "Ventryx"
    ENABLE_COMMAND_PALETTE = True
    MODES = {mode: screen for mode, _key, _title, screen in SECTIONS}
    BINDINGS = [
        Binding("q", "quit", "Quit", show=False, id="quit"),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("t", "toggle_environment", "Live/Test", id="toggle-environment"),
        *(
            Binding(key, f"go('{mode}')", title, show=mode == "settings", id=f"go-{mode}")
            for mode, key, title, _screen in SECTIONS
        ),
    ]

    environment: reactive[str] = reactive("live")
    connection: reactive[str] = reactive("connecting")
    caller: reactive[Caller | None] = reactive(None)

    def __init__(
        self,
        server: str | None = None,
        *,
        read_only: bool = False,
        store: CredentialStore | None = None,
        credential: str | None = None,
        timeout: float = 10.0,
    ):
        # Native ANSI colours: the terminal's own 16-colour palette, and under NO_COLOR
        # Textual's filter that drops colour but keeps bold, underline and reverse.
        super().__init__(ansi_color=True)
        self.requested_server = server
        self.read_only = read_only
        self.store = store or CredentialStore()
        self.initial_credential = credential
        self.timeout = timeout
        self.client: VentryxClient | None = None
        self.people = Directory()
        # (server, session token) to save once a one-time password has been changed.
        self._pending_remember: tuple[str, str] | None = None

    # Start-up and sign-in

    def get_default_screen(self) -> Screen:
        return StartScreen()

    def on_mount(self) -> None:
        self.register_theme(ANSI_THEME)
        self.theme = "ventryx-16"
        self.set_interval(HEARTBEAT_SECONDS, self.check_server)
        problem = None
        try:
            saved = self.store.read()
        except CorruptCredentials as error:
            saved, problem = SavedCredentials(), error
        server = self.requested_server or saved.default or DEFAULT_SERVER
        credential = self.initial_credential
        found = saved.find(server)
        if credential is None and found is not None:
            credential = found[1]
            if found[0] != server.rstrip("/"):
                self.notify(f"Using the credential saved for {found[0]}.")
        if credential:
            self.connect(server, credential, remember=False, wait_for_server=True)
        else:
            self.push_screen(
                SignInScreen(
                    server,
                    error=problem
                    and ApiError(
                        f"The saved credentials were not read: {problem}. Sign in here; the file "
                        "is left as it is."
                    ),
                )
            )

    @work(exclusive=True, group="connect", exit_on_error=False)
    async def connect(
        self,
        server: str,
        credential: str,
        remember: bool = True,
        password: str | None = None,
        wait_for_server: bool = False,
    ) -> None:
        """Check the credential with ``GET /v1/me``; on success, open the overview.

        A saved credential waits for its server (it may still be starting) instead of
        falling back to the sign-in form; a typed one reports the failure on the form.
        """
        client = VentryxClient(server, credential, timeout=self.timeout)
        try:
            caller = await self._who_am_i(client, wait_for_server)
        except ApiError as error:
            await client.aclose()
            if isinstance(self.screen, SignInScreen):
                self.screen.show_error(error)
            else:
                self.push_screen(SignInScreen(server, error=error))
            return
        if caller.credential_type == "session" and not caller.scopes:
            # A one-time password: nothing but changing it works until it is changed.
            self.client = client
            self.caller = caller
            if isinstance(self.screen, SignInScreen):
                self.pop_screen()
            self.push_screen(ChangePasswordScreen(password))
            self._pending_remember = (server, credential) if remember else None
            return
        if self.client is not None:
            await self.client.aclose()
        client.environment = caller.environment
        self.client = client
        self.people = Directory()  # names learnt for another credential may not apply
        self.environment = caller.environment
        self.caller = caller
        self.connection = "connected"
        if remember:
            self.remember(server, credential)
        if isinstance(self.screen, SignInScreen):
            self.pop_screen()
        self.switch_mode("overview")

    async def _who_am_i(self, client: VentryxClient, wait_for_server: bool) -> Caller:
        attempt = 0
        while True:
            try:
                return await client.me()
            except ServerUnreachable as error:
                if not (wait_for_server and isinstance(self.screen, StartScreen)):
                    raise
                delay = reconnect_delay(attempt)
                self.screen.show_waiting(error, delay)
                await asyncio.sleep(delay)
                attempt += 1

    def remember(self, server: str, credential: str) -> None:
        try:
            self.store.save(server, credential)
        except CorruptCredentials as error:
            self.notify(f"Signed in, but not remembered: {error}.", severity="warning", timeout=10)

    @work(exclusive=True, group="connect", exit_on_error=False)
    async def sign_in_with_password(
        self, server: str, email: str, password: str, organization: str | None = None
    ) -> None:
        client = VentryxClient(server, "", timeout=self.timeout)
        try:
            token = await client.sign_in(email, password, organization)
        except ApiError as error:
            if isinstance(self.screen, SignInScreen):
                self.screen.show_error(error)
            return
        finally:
            await client.aclose()
        self.connect(server, token, password=password)

    @work(exclusive=True, group="connect", exit_on_error=False)
    async def change_one_time_password(self, current: str, new: str) -> None:
        client = self.client
        if client is None:
            return
        try:
            await client.change_password(current, new)
        except ApiError as error:
            if isinstance(self.screen, ChangePasswordScreen):
                self.screen.show_error(error)
            return
        pending = self._pending_remember
        self.client = None
        await client.aclose()
        if isinstance(self.screen, ChangePasswordScreen):
            self.pop_screen()
        self.notify("Password changed.")
        self.connect(client.server, client.credential, remember=pending is not None)

    @work(exclusive=True, group="caller", exit_on_error=False)
    async def refresh_caller(self) -> None:
        """Read ``/v1/me`` again (the organization was renamed: the top bar shows it)."""
        if self.client is None:
            return
        try:
            self.caller = await self.client.me()
        except ApiError as error:
            self.report_error(error)

    # What the caller may do

    def may(self, scope: str) -> bool:
        return self.caller is not None and grants(self.caller.scopes, scope)

    def may_change(self, scope: str) -> bool:
        """Mutating actions need the scope and a dashboard that was not started --read-only."""
        return not self.read_only and self.may(scope)

    @property
    def can_switch_environment(self) -> bool:
        """A live key sees both environments' keys, a session may pick either; a test key
        sees test only."""
        return self.caller is not None and (
            self.caller.credential_type == "session" or self.caller.environment == "live"
        )

    # Actions

    def action_go(self, mode: str) -> None:
        if self.client is None:
            return
        self.switch_mode(mode)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_toggle_environment(self) -> None:
        if not self.can_switch_environment:
            self.notify(
                "This test key sees only test data. Sign in with a live key or as a "
                "member to switch.",
                severity="warning",
            )
            return
        self.environment = "test" if self.environment == "live" else "live"

    def watch_environment(self, environment: str) -> None:
        if self.client is not None:
            self.client.environment = environment
            self.screen.post_message(EnvironmentChanged(environment))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Navigation waits behind dialogs and the sign-in screen, so a keypress there
        # never yanks the user away from a half-typed form.
        if action in {"go", "toggle_environment"}:
            return self.client is not None and not isinstance(
                self.screen, ModalScreen | SignInScreen | ChangePasswordScreen
            )
        return True

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        # Textual's own "Screenshot" writes the screen to a file: taken over a reveal
        # dialog it would put a secret on disk, so the dashboard leaves it out.
        yield from (
            command
            for command in super().get_system_commands(screen)
            if command.title != "Screenshot"
        )
        if self.client is None:
            return
        for mode, key, title, _screen in SECTIONS:
            yield SystemCommand(
                f"Go to {title}",
                f"Open the {title} screen (key {key})",
                lambda mode=mode: self.action_go(mode),
            )
        yield SystemCommand(
            "Switch live/test", "Show the other environment (key t)", self.action_toggle_environment
        )
        yield SystemCommand("Help", "Every key on this screen (key ?)", self.action_help)
        yield SystemCommand(
            "Sign out", "Forget the saved credential and sign in again", self.action_sign_out
        )
        if isinstance(screen, SectionScreen):
            yield from screen.palette_commands()

    def action_sign_out(self) -> None:
        """Ask first when the saved copy of an API key is about to go: for a key made by
        ``ventryx-server dev`` it is the only one there is."""
        if self.client is None:
            return
        try:
            found = self.store.read().find(self.client.server)
        except CorruptCredentials:
            found = None
        if found is None or self.client.is_session or found[1] != self.client.credential:
            self.sign_out()
            return
        key = self.client.credential
        self.push_screen(
            ConfirmDialog(
                "Sign out",
                f"Signing out deletes the API key {key[:9]}…{key[-4:]} saved for "
                f"{fmt.address(found[0])} in {self.store.location}. It is the only copy the "
                "dashboard has: unless you stored it elsewhere you will need a new key to sign "
                "in again.",
                "Sign out and delete it",
            ),
            lambda sure: self.sign_out() if sure else None,
        )

    @work(exclusive=True, group="connect", exit_on_error=False)
    async def sign_out(self) -> None:
        server = self.client.server if self.client else (self.requested_server or DEFAULT_SERVER)
        if self.client is not None:
            try:
                await self.client.sign_out()
            except ApiError:
                pass  # the session may already be gone; forgetting it locally is what matters
            await self.client.aclose()
        try:
            self.store.forget(server)
            self.notify(
                f"Signed out; the credential for {server} is gone from {self.store.location}."
            )
        except CorruptCredentials as error:
            self.notify(f"Signed out; nothing was deleted: {error}.", severity="warning")
        self.client = None
        self.caller = None
        self.connection = "connecting"
        # The sign-in form covers whatever section was open; with no client, no section can
        # load or be navigated to until someone signs in again.
        self.push_screen(SignInScreen(server))

    # Errors and reconnecting

    def report_error(self, error: ApiError) -> None:
        """The one place a failed call is shown to the user: message and request id."""
        if isinstance(error, ServerUnreachable):
            self.server_lost()
            return
        if error.status == 401 and self.client is not None:
            # The credential was revoked or the session expired: nothing will work until
            # someone signs in again, so ask now rather than fail on every screen.
            if not isinstance(self.screen, SignInScreen):
                self.push_screen(SignInScreen(self.client.server, error=error))
            return
        self.notify(error.describe(), severity="error", timeout=8)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.report_worker_failure(event)

    def report_worker_failure(self, event: Worker.StateChanged) -> None:
        """A worker that failed outside the API's errors (a bug, not the server's answer):
        say what happened in a line, keep the dashboard running, never print a traceback."""
        if event.state != WorkerState.ERROR or event.worker.error is None:
            return
        error = event.worker.error
        self.notify(
            f"Unexpected error ({type(error).__name__}): {error}", severity="error", timeout=10
        )

    @work(exclusive=True, group="probe", exit_on_error=False)
    async def check_server(self) -> None:
        """The idle heartbeat: a server that went away is noticed without a key press."""
        if self.client is None or self.connection != "connected":
            return
        if not await self.client.healthy(PROBE_TIMEOUT_SECONDS):
            self.server_lost()

    def server_lost(self) -> None:
        if self.connection == "reconnecting" or self.client is None:
            return
        self.connection = "reconnecting"
        self.screen.post_message(ServerLost())
        self.reconnect()

    @work(exclusive=True, group="reconnect", exit_on_error=False)
    async def reconnect(self) -> None:
        attempt = 0
        while self.client is not None:
            await asyncio.sleep(reconnect_delay(attempt))
            attempt += 1
            if self.client is not None and await self.client.healthy(PROBE_TIMEOUT_SECONDS):
                break
        else:
            return
        self.connection = "connected"
        self.notify("Reconnected to the server.")
        self.screen.post_message(Reconnected())

    async def on_unmount(self) -> None:
        if self.client is not None:
            await self.client.aclose()
