"""The line at the top of every screen: where you are, which environment, whether connected."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class TopBar(Static):
    """``Ventryx  Acme  API keys  ...  [LIVE]  read-only  connected``.

    The environment is a word in brackets, not a colour alone, so it survives NO_COLOR.
    """

    def __init__(self, section: str):
        super().__init__(id="top-bar")
        self.section = section

    def on_mount(self) -> None:
        for name in ("environment", "connection", "caller"):
            self.watch(self.app, name, self._redraw, init=False)
        self._redraw()

    def _redraw(self, _value: object = None) -> None:
        app = self.app
        caller = getattr(app, "caller", None)
        left = Text()
        left.append(" Ventryx ", style="bold reverse")
        if caller is not None:
            left.append(f" {caller.organization.name} ", style="bold")
        left.append(f" {self.section}")
        right = Text()
        environment = getattr(app, "environment", "live")
        right.append(
            f"[{environment.upper()}]",
            style="bold reverse" if environment == "live" else "bold underline",
        )
        if getattr(app, "read_only", False):
            right.append(" read-only", style="bold")
        connection = getattr(app, "connection", "connecting")
        right.append(
            f" {connection} ", style="bold blink" if connection == "reconnecting" else "dim"
        )
        width = max(self.size.width, 1)
        gap = max(1, width - left.cell_len - right.cell_len)
        self.update(Text.assemble(left, " " * gap, right))

    def on_resize(self) -> None:
        self._redraw()
