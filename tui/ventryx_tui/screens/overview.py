"""Overview: who you are, the organization, counts per resource, events per minute of the
last hour, and recent activity.

Each part is loaded on its own, so a part the caller may not see (or an endpoint the server
does not have) says why in its own line while the rest still shows.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from .. import formatting as fmt
from ..charts import sparkline
from ..client import ApiError, ServerUnreachable, VentryxClient
from .base import SectionScreen


@dataclass
class OverviewData:
    caller: Any
    org: Any
    keys: Any
    workflows: Any
    events: Any
    members: Any
    activity: Any
    event_rate: Any


def _count(result: Any, noun: str, active: int | None = None) -> str:
    if isinstance(result, ApiError):
        return f"unavailable: {result.describe()}"
    items, more = result
    text = fmt.plural(len(items), noun) + ("+" if more else "")
    if active is not None:
        text += f" ({active} active)"
    return text


def _event_rate(result: Any) -> Text:
    """The last hour as a line of 60 minutes, and what it adds up to."""
    if isinstance(result, ApiError):
        return Text(f"unavailable: {result.describe()}")
    counts = [bucket.events for bucket in result.buckets]
    text = Text(sparkline(counts, len(counts)) + "\n")
    text.append(
        f"last hour, oldest left: {fmt.plural(sum(counts), 'event')}, "
        f"peak {max(counts, default=0):,}/min",
        style="dim",
    )
    return text


class OverviewScreen(SectionScreen):
    SECTION = "Overview"
    HELP = (
        "The organization, your credential and its scopes, how many of each resource "
        "you can see in this environment, events received per minute over the last hour "
        "(oldest left, · for a minute without any), and the latest audit log entries."
    )

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="overview"):
            yield Static(id="overview-identity")
            yield Static(id="overview-counts")
            yield Static(id="overview-activity")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "filter":
            return False  # nothing to narrow here
        return super().check_action(action, parameters)

    def loading_target(self):
        return self.query_one("#overview")

    def focus_main(self) -> None:
        self.query_one("#overview").focus()

    async def fetch(self, client: VentryxClient) -> OverviewData:
        environment = self.app.environment if self.app.can_switch_environment else None

        async def in_environment(noun: str, call):
            # A key's own environment is fixed: counting its data under the other
            # environment's banner would mislead.
            self.require_environment(client, noun)
            return await call()

        results = await asyncio.gather(
            client.me(),
            client.get_org(),
            client.list_api_keys(environment=environment),
            in_environment("workflows", client.list_workflows),
            in_environment("events", lambda: client.list_events(limit=100)),
            client.list_members(),
            client.list_audit_log(),
            in_environment("events", client.event_rate),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, ServerUnreachable):
                raise result
            if isinstance(result, BaseException) and not isinstance(result, ApiError):
                raise result
        if isinstance(results[0], ApiError):
            raise results[0]
        return OverviewData(*results)

    def show(self, data: OverviewData) -> None:
        caller = data.caller
        self.app.caller = caller
        people = self.app.people
        people.learn(
            members=None if isinstance(data.members, ApiError) else data.members[0],
            keys=None if isinstance(data.keys, ApiError) else data.keys[0],
        )
        identity = Table.grid(padding=(0, 2))
        identity.add_column(style="bold", no_wrap=True)
        identity.add_column()
        org_name = caller.organization.name
        if not isinstance(data.org, ApiError):
            org_name = data.org.name
        identity.add_row(
            "Organization", Text(f"{org_name}  {fmt.identifier(caller.organization.id)}")
        )
        identity.add_row(
            "Environment",
            Text(
                f"{self.app.environment.upper()}"
                + ("" if self.app.can_switch_environment else "  (a test key sees only test data)")
            ),
        )
        credential = "API key" if caller.credential_type == "api_key" else "member session"
        who = (
            people.label(caller.member_id)
            if caller.credential_type == "session"
            else people.label(caller.credential_id)
        )
        identity.add_row("Signed in with", Text(f"{credential}: {who}, {caller.environment}"))
        identity.add_row("Scopes", Text(", ".join(caller.scopes)))
        identity.add_row("Server", Text(fmt.address(self.client.server) if self.client else "-"))
        self.query_one("#overview-identity", Static).update(identity)

        counts = Table.grid(padding=(0, 2))
        counts.add_column(style="bold", no_wrap=True)
        counts.add_column()
        active = None
        if not isinstance(data.keys, ApiError):
            active = sum(1 for key in data.keys[0] if key.status == "active")
        counts.add_row("API keys", Text(_count(data.keys, "key", active)))
        counts.add_row("Workflows", Text(_count(data.workflows, "workflow")))
        if isinstance(data.events, ApiError):
            counts.add_row("Events", Text(f"unavailable: {data.events.describe()}"))
        else:
            counts.add_row(
                "Events",
                Text(
                    fmt.plural(len(data.events), "recent event")
                    + ("+" if len(data.events) >= 100 else "")
                ),
            )
        counts.add_row("Events/min", _event_rate(data.event_rate))
        counts.add_row("Members", Text(_count(data.members, "member")))
        self.query_one("#overview-counts", Static).update(counts)

        activity = Table.grid(padding=(0, 1), expand=True)
        activity.title = "Recent activity"
        activity.title_style = "bold"
        activity.title_justify = "left"
        activity.add_column(no_wrap=True, width=16)
        activity.add_column(no_wrap=True)
        activity.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
        activity.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
        if isinstance(data.activity, ApiError):
            activity.add_row(Text(f"unavailable: {data.activity.describe()}", overflow="fold"))
        elif not data.activity[0]:
            activity.add_row("nothing yet: changes appear here (6 opens the audit log)")
        else:
            for entry in data.activity[0][:6]:
                activity.add_row(
                    fmt.timestamp(entry.created_at),
                    entry.action,
                    people.short(entry.target_id),
                    "by " + people.short(entry.actor_id),
                )
        self.query_one("#overview-activity", Static).update(activity)
