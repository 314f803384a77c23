"""What every section screen shares: the top bar, a notice line, a filter, loading and errors.

Every network call runs in an exclusive worker (a newer refresh cancels the older one), the
table shows a loading state meanwhile, and a failure shows the server's message and request
id in the notice line instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Input, Static
from textual.worker import Worker

from ..client import ApiError, ServerUnreachable, VentryxClient
from ..messages import EnvironmentChanged, Reconnected
from ..widgets.notice import Notice
from ..widgets.table import ResourceTable
from ..widgets.top_bar import TopBar

T = TypeVar("T")


class SectionScreen(Screen):
    SECTION = ""
    # The mode esc returns to, and the first part of the top bar's "Settings › API keys".
    PARENT: tuple[str, str] | None = None
    HELP = ""
    # Actions that change something: hidden in --read-only mode and without the scope.
    MUTATING: dict[str, str] = {}
    BINDINGS = [
        Binding("r", "refresh", "Refresh", show=False, id="refresh"),
        # Left out of the footer, which at 80 columns has room for the screen's own keys
        # and Settings; ? and the palette list it.
        Binding("slash", "filter", "Filter", show=False, id="filter"),
        Binding("escape", "back", "Back", show=False, id="back"),
    ]

    filter_text: reactive[str] = reactive("", init=False)

    def compose(self) -> ComposeResult:
        yield TopBar(f"{self.PARENT[1]} › {self.SECTION}" if self.PARENT else self.SECTION)
        yield Notice(id="notice")
        yield from self.compose_body()
        yield Input(
            placeholder="filter: type to narrow, enter to keep, esc to clear",
            id="filter",
            compact=True,
        )
        yield Footer(compact=True)

    def compose_body(self) -> ComposeResult:
        yield from ()

    @property
    def notice(self) -> Notice:
        return self.query_one("#notice", Notice)

    @property
    def client(self) -> VentryxClient | None:
        return self.app.client

    # Loading

    def on_screen_resume(self) -> None:
        self.load()

    def on_environment_changed(self, _message: EnvironmentChanged) -> None:
        self.load()

    def on_reconnected(self, _message: Reconnected) -> None:
        self.load()

    def action_refresh(self) -> None:
        self.load()

    def loading_target(self):
        return self.query_one(ResourceTable)

    @work(exclusive=True, group="load", exit_on_error=False)
    async def load(self) -> None:
        if self.client is None:
            return
        target = self.loading_target()
        target.loading = True
        try:
            result = await self.fetch(self.client)
        except ServerUnreachable as error:
            # Keep what was shown: stale rows are more use than an empty table while the
            # dashboard reconnects (the top bar says "reconnecting").
            self.notice.show_error(error)
            self.app.report_error(error)
        except ApiError as error:
            self.notice.show_error(error)
            self.app.report_error(error)
            self.show_failure(error)
        else:
            self.notice.clear()
            self.show(result)
        finally:
            target.loading = False

    def require_environment(self, client: VentryxClient, noun: str) -> None:
        """An API key's environment is fixed: a live key switched to [TEST] can list test
        keys, but not test workflows or events. Say so rather than show live data."""
        key_environment = self.app.caller.environment if self.app.caller else None
        if not client.is_session and key_environment != self.app.environment:
            raise ApiError(
                f"This {key_environment} API key sees only {key_environment} {noun}. "
                "Press t to switch back, or sign in as a member to see both."
            )

    async def fetch(self, client: VentryxClient) -> Any:
        return None

    def show(self, result: Any) -> None:
        pass

    def show_failure(self, error: ApiError) -> None:
        pass

    # Changes

    def change(
        self, what: str, call: Callable[[VentryxClient], Awaitable[T]], done: Callable[[T], None]
    ) -> None:
        """Run a mutating call in the screen's exclusive ``change`` worker."""
        self._change(what, call, done)

    @work(exclusive=True, group="change", exit_on_error=False)
    async def _change(self, what, call, done) -> None:
        if self.client is None:
            return
        self.notice.show_text(f"{what}...")
        try:
            result = await call(self.client)
        except ApiError as error:
            self.notice.show_error(error, what)
            self.app.report_error(error)
            return
        self.notice.clear()
        done(result)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.report_worker_failure(event)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        scope = self.MUTATING.get(action)
        if scope is not None and not self.app.may_change(scope):
            return False
        return True

    # Filter and back

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.add_class("-shown")
        field.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip().lower()

    @on(Input.Submitted, "#filter")
    def _filter_kept(self) -> None:
        self.focus_main()

    def watch_filter_text(self) -> None:
        self.filter_changed()

    def filter_changed(self) -> None:
        pass

    def matches(self, *values: object) -> bool:
        if not self.filter_text:
            return True
        return any(self.filter_text in str(value).lower() for value in values if value)

    def focus_main(self) -> None:
        self.query_one(ResourceTable).focus()

    def action_back(self) -> None:
        field = self.query_one("#filter", Input)
        if field.has_focus or field.value:
            field.value = ""
            field.remove_class("-shown")
            self.focus_main()
            return
        back_to = self.PARENT[0] if self.PARENT else "overview"
        if self.app.current_mode != back_to:
            self.app.switch_mode(back_to)

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand(f"Refresh {self.SECTION}", "Load it again (key r)", self.action_refresh)
        if self.check_action("filter", ()):
            yield SystemCommand(
                f"Filter {self.SECTION}", "Narrow the rows (key /)", self.action_filter
            )


class Dialog(ModalScreen[T]):
    """A modal form that makes its own call, shows a failure in place and keeps what was
    typed, and closes with the call's result."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel")]
    TITLE_TEXT = ""
    DIALOG_CLASSES = ""

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes=self.DIALOG_CLASSES):
            yield Static(Text(self.TITLE_TEXT, style="bold"), classes="dialog-title")
            yield from self.compose_form()
            yield Static(id="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield from self.compose_buttons()
        # The dialog's own keys, not those of the screen behind it.
        yield Footer(compact=True)

    def compose_form(self) -> ComposeResult:
        yield from ()

    def compose_buttons(self) -> ComposeResult:
        yield Button("Cancel", id="cancel", compact=True)

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()  # through the action, so a dialog that asks first can override it

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.report_worker_failure(event)

    def show_error(self, text: str) -> None:
        error = self.query_one("#dialog-error", Static)
        error.update(Text(text))
        error.display = bool(text)

    def on_mount(self) -> None:
        self.query_one("#dialog-error", Static).display = False

    def submit(self, what: str, call: Callable[[VentryxClient], Awaitable[Any]]) -> None:
        self._submit(what, call)

    @work(exclusive=True, group="submit", exit_on_error=False)
    async def _submit(self, what, call) -> None:
        self.show_error("")
        dialog = self.query_one("#dialog")
        dialog.loading = True
        try:
            result = await call(self.app.client)
        except ApiError as error:
            self.failed(error, what)
            return
        finally:
            dialog.loading = False
        self.dismiss(result)

    def failed(self, error: ApiError, what: str) -> None:
        self.show_error(f"{what} failed: {error.describe()}")
        if self.focused is None:  # the loading state took it: keep the keyboard working
            self.focus_next()
        self.app.report_error(error)


class ConfirmDialog(Dialog[bool]):
    """A question before something that cannot be undone; Cancel (and esc) is the default."""

    AUTO_FOCUS = "#cancel"

    def __init__(self, title: str, text: str, confirm: str):
        super().__init__()
        self.TITLE_TEXT = title
        self.text = text
        self.confirm = confirm

    def compose_form(self) -> ComposeResult:
        yield Static(Text(self.text), id="confirm-text")

    def compose_buttons(self) -> ComposeResult:
        yield Button(self.confirm, id="confirm", variant="error", compact=True)
        yield from super().compose_buttons()

    @on(Button.Pressed, "#confirm")
    def _confirmed(self) -> None:
        self.dismiss(True)
