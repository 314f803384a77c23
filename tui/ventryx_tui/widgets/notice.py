"""A one-line notice under the top bar for the screen's own state: an error, a hint."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ..client import ApiError


class Notice(Static):
    """Hidden when empty. Errors read as the server's message and request id."""

    def on_mount(self) -> None:
        self.display = False

    def show_error(self, error: ApiError, action: str = "") -> None:
        prefix = f"{action} failed: " if action else "Error: "
        self.set_class(True, "-error")
        self.update(Text(prefix + error.describe()))
        self.display = True

    def show_text(self, text: str) -> None:
        self.set_class(False, "-error")
        self.update(Text(text))
        self.display = True

    def clear(self) -> None:
        self.update("")
        self.display = False
