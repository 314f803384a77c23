"""``?``: every key that works on the screen underneath, and what the dashboard shows."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static

GENERAL_KEYS = (
    ("s", "settings: the organization, API keys, members"),
    ("1-6", "overview, API keys, workflows, events, members, audit log"),
    ("t", "switch live / test (shown as [LIVE] or [TEST] at the top right)"),
    ("r", "refresh"),
    ("/", "filter the rows; enter keeps it, esc clears it"),
    ("j / k, arrows", "move; g / G first / last row"),
    ("esc", "back (clear the filter, close a dialog, return to the overview)"),
    ("ctrl+p", "command palette: every action by name"),
    ("?", "this help"),
    ("q", "quit"),
)


class HelpScreen(ModalScreen[None]):
    AUTO_FOCUS = "#help"
    BINDINGS = [
        # Longer than 24 rows on most screens: it scrolls like the tables do.
        Binding("j,down", "scroll('down')", "Scroll", id="help-down"),
        Binding("k,up", "scroll('up')", "Scroll", show=False, id="help-up"),
        Binding("escape", "dismiss", "Close", id="close-help"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def __init__(self, underneath: Screen):
        super().__init__()
        self.underneath = underneath

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        screen_keys = [
            (binding.key_display or binding.key, binding.description)
            for binding in getattr(self.underneath, "BINDINGS", [])
            if isinstance(binding, Binding)
            and binding.show
            and binding.key not in {"r", "slash", "escape"}
            and self.underneath.check_action(binding.action, ()) is not False
        ]
        for key, description in screen_keys:
            table.add_row(key, description)
        if screen_keys:
            table.add_row("", "")
        for key, description in GENERAL_KEYS:
            table.add_row(key, description)
        section = getattr(self.underneath, "SECTION", "") or "Ventryx"
        with VerticalScroll(id="help"):
            yield Static(Text(f"Keys: {section}", style="bold"), classes="dialog-title")
            about = getattr(self.underneath, "HELP", "")
            if about:
                yield Static(Text(about), classes="help-about")
            yield Static(table)
            yield Static(Text("j/k or arrows scroll, esc closes this help", style="dim"))
        yield Footer(compact=True)

    def action_scroll(self, direction: str) -> None:
        scroller = self.query_one("#help", VerticalScroll)
        if direction == "down":
            scroller.scroll_down(animate=False)
        else:
            scroller.scroll_up(animate=False)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
