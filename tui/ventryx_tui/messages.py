"""Messages the app sends to the screen on top, instead of looking hooks up by name."""

from __future__ import annotations

from textual.message import Message


class EnvironmentChanged(Message):
    """The user switched live/test: what the screen shows belongs to the other one now."""

    def __init__(self, environment: str) -> None:
        super().__init__()
        self.environment = environment


class Reconnected(Message):
    """The server answers again after an outage: reload, and reopen any stream."""


class ServerLost(Message):
    """The server stopped answering: close open streams (a server shutting down waits for
    them) and show what is known until ``Reconnected``."""
