"""A search form for server-side filters (events by type and time, the audit log by actor,
action, target and time). Times accept ``15m``/``2h``/``3d`` ago or RFC 3339."""

from __future__ import annotations

from datetime import timedelta

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Input, Label, Static

from .. import formatting as fmt
from .base import Dialog

TIME_FIELDS = {"since", "until"}


def parse_when(text: str) -> str | None:
    """``15m``, ``2h``, ``3d`` (that long ago) or an RFC 3339 time; None when empty."""
    text = text.strip()
    if not text:
        return None
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    if text[:-1].isdigit() and text[-1] in units:
        moment = fmt.now() - timedelta(**{units[text[-1]]: int(text[:-1])})
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return text


def describe(filters: dict[str, str]) -> str:
    return ", ".join(f"{name} {value}" for name, value in filters.items()) or "everything"


class SearchDialog(Dialog[dict]):
    """Closes with the non-empty filters (times resolved), ``{}`` for "everything"."""

    def __init__(
        self, title: str, fields: list[tuple[str, str]], current: dict[str, str], hint: str
    ):
        super().__init__()
        self.TITLE_TEXT = title
        self.fields = fields
        self.current = current
        self.hint = hint

    def compose_form(self) -> ComposeResult:
        yield Static(
            Text(
                self.hint + " Times: 15m, 2h, 3d ago, or 2026-04-02T10:00:00Z. "
                "Empty fields match everything."
            )
        )
        for name, label in self.fields:
            with Horizontal(classes="form-row"):
                yield Label(label, classes="form-label")
                yield Input(self.current.get(name, ""), id=f"search-{name}", compact=True)

    def compose_buttons(self) -> ComposeResult:
        yield Button("Search", id="search", variant="primary", compact=True)
        yield from super().compose_buttons()

    @on(Input.Submitted)
    @on(Button.Pressed, "#search")
    def search(self) -> None:
        filters = {}
        for name, _label in self.fields:
            value = self.query_one(f"#search-{name}", Input).value.strip()
            if value:
                filters[name] = parse_when(value) if name in TIME_FIELDS else value
        self.dismiss(filters)
