"""One API key's usage: its requests by outcome per hour (24 h) or per day (30 days), and
for a rotated key whether its traffic has moved to the successor, with x to revoke it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from ventryx_shared.api_keys import ApiKey
from ventryx_shared.usage import UsageBucket

from .. import formatting as fmt
from ..charts import legend, outcome_chart
from ..client import ApiError
from ..key_usage import current_hour, in_grace, is_unused, recent_successes, rotation_status
from .key_dialogs import RevokeKeyDialog


@dataclass(frozen=True)
class View:
    granularity: str
    buckets: int
    title: str
    label: Callable[[datetime], str]  # how a bucket's start reads under the x axis


VIEWS = {
    # Through the module at call time, so tests can hold the axis labels still.
    "hour": View(
        "hour", 24, "Requests per hour, last 24 hours (UTC)", lambda start: fmt.hour(start)
    ),
    "day": View("day", 30, "Requests per day, last 30 days (UTC)", lambda start: fmt.day(start)),
}
# Rows a chart may take: what the terminal leaves under the key's lines and above the
# legend, the hint and the footer (at 80x24: 5).
CHART_ROWS = (3, 12)
ROWS_AROUND_CHART = 19


class KeyDetailScreen(ModalScreen[ApiKey | None]):
    """Dismissed with the revoked key when it was revoked from here, else None."""

    BINDINGS = [
        Binding("v", "toggle_view", "Hour/Day", id="toggle-usage-view"),
        Binding("x", "revoke", "Revoke", id="revoke-from-usage"),
        Binding("r", "refresh", "Refresh", show=False, id="refresh-usage"),
        Binding("escape", "close", "Close", id="close-usage"),
    ]

    def __init__(self, key: ApiKey):
        super().__init__()
        self.key = key
        self.view = VIEWS["hour"]
        self.buckets: list[UsageBucket] = []
        self.recent: int | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(f"Usage of {self.key.name}", style="bold"), classes="dialog-title")
            yield Static(self.summary(), id="usage-key")
            yield Static(id="usage-chart")
            yield Static(id="usage-legend")
            yield Static(id="usage-rotation")
            yield Static(
                Text("v per hour / per day · r refresh · esc closes", style="dim"), id="usage-hint"
            )
        yield Footer(compact=True)

    def summary(self) -> Text:
        key = self.key
        text = Text(
            f"{fmt.redacted_key(key.redacted_key)}  {key.environment}, {key.status}, "
            f"last used {fmt.relative(key.last_used_at)}"
        )
        if is_unused(key):
            text.append("\nunused: no successful request for 30 days", style="bold")
        return text

    def on_mount(self) -> None:
        self.query_one("#usage-rotation", Static).display = in_grace(self.key)
        self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "revoke":
            return self.key.status != "revoked" and self.app.may_change("api-keys:write")
        return True

    def action_toggle_view(self) -> None:
        self.view = VIEWS["day" if self.view.granularity == "hour" else "hour"]
        self.load()

    def action_refresh(self) -> None:
        self.load()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_revoke(self) -> None:
        self.app.push_screen(
            RevokeKeyDialog(self.key), lambda revoked: self.dismiss(revoked) if revoked else None
        )

    @work(exclusive=True, group="usage", exit_on_error=False)
    async def load(self) -> None:
        client = self.app.client
        if client is None:
            return
        view = self.view
        step = timedelta(hours=1) if view.granularity == "hour" else timedelta(days=1)
        first = current_hour() if view.granularity == "hour" else current_hour().replace(hour=0)
        chart = self.query_one("#usage-chart", Static)
        chart.loading = True
        try:
            usage = await client.api_key_usage(
                self.key.id, view.granularity, since=first - step * (view.buckets - 1)
            )
            if in_grace(self.key):
                self.recent = await recent_successes(client, self.key.id)
        except ApiError as error:
            chart.update(Text(f"Usage unavailable: {error.describe()}"))
            self.app.report_error(error)
            return
        finally:
            chart.loading = False
        # The server's clock may put one more partial bucket at the end: keep the newest.
        self.buckets = usage.buckets[-view.buckets :]
        self.draw()

    def draw(self) -> None:
        view = self.view
        rows = max(CHART_ROWS[0], min(CHART_ROWS[1], self.app.size.height - ROWS_AROUND_CHART))
        chart = Text()
        chart.append(view.title + "\n", style="bold")
        chart.append_text(outcome_chart(self.buckets, rows, 2, view.label))
        self.query_one("#usage-chart", Static).update(chart)
        self.query_one("#usage-legend", Static).update(legend(self.buckets))
        if in_grace(self.key):
            self.query_one("#usage-rotation", Static).update(
                Text(rotation_status(self.key, self.recent), style="bold")
            )

    def on_resize(self) -> None:
        if self.buckets:
            self.draw()
