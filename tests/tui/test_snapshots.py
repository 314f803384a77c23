"""Snapshots of every screen at 80x24 and 120x40, against the real server.

The data is made the same way each run (one organization named Acme with the same keys,
workflow, event and member, in the same order); what still differs between runs (ids,
times, key tails, the server's port) is held still: relative times and the address through
``ventryx_tui.formatting``, the rest masked in the SVG with same-length text so the layout
is exactly what was drawn. Update with ``pytest tests/tui --snapshot-update``.
"""

import asyncio
import re
from datetime import UTC, datetime

import pytest
from pytest_textual_snapshot import SVGImageExtension
from textual.widgets import Input

from conftest import wait_for
from ventryx_tui import formatting
from ventryx_tui.screens.events import EventsScreen

from .conftest import settle, wait_until

SIZES = [(80, 24), (120, 40)]


class SVGSnapshot(SVGImageExtension):
    """Stored as .svg (syrupy 7 reads ``file_extension``), so a browser opens them."""

    file_extension = "svg"


_MASKS = [
    (
        re.compile(r"\b(key|wf|evt|org|mem|aud|req|ses)_[0-9A-HJKMNP-TV-Z]{26}\b"),
        lambda m: f"{m.group(1)}_{'0' * 26}",
    ),
    (re.compile(r"(vtx_(live|test)_…)[0-9A-Za-z]{4}"), lambda m: m.group(1) + "wxyz"),
    (re.compile(r"owner-[0-9a-f]{8}@"), lambda m: "owner-00000000@"),
    (re.compile(r"terminal-\d+"), lambda m: "terminal-0"),
    # The overview's hour of minutes: which minute the fixture's event fell in depends on
    # the second the test ran (tests/tui/test_key_usage.py checks what it draws).
    # (A text area's border is a run of ▁ too, but never holds a ·.)
    (re.compile(r"[·▁▂▃▄▅▆▇█]{60}"), lambda m: "·" * 59 + "█" if "·" in m.group(0) else m.group(0)),
]


def masked(svg: str) -> str:
    for pattern, replacement in _MASKS:
        svg = pattern.sub(replacement, svg)
    return svg


async def still_screen(pilot) -> str:
    """No toast, no blinking cursor: what stays on screen, masked."""
    app = pilot.app
    app.clear_notifications()
    for field in app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause()
    return masked(app.export_screenshot())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ULID = re.compile(r"(?<=_)[0-9A-HJKMNP-TV-Z]{26}\b")


def _still(text: str):
    return lambda value, empty="-": empty if value is None else text


@pytest.fixture
def still_formatting(monkeypatch):
    monkeypatch.setattr(
        formatting, "relative", lambda value, empty="never": empty if value is None else "5m ago"
    )
    monkeypatch.setattr(formatting, "timestamp", _still("2026-04-02 10:00"))
    monkeypatch.setattr(formatting, "date", _still("2026-04-02"))
    monkeypatch.setattr(formatting, "time_of_day", _still("10:00:00"))
    monkeypatch.setattr(formatting, "precise", _still("2026-04-02 10:00:00Z"))
    monkeypatch.setattr(formatting, "hour", _still("10:00"))
    monkeypatch.setattr(formatting, "day", _still("04-02"))
    monkeypatch.setattr(
        formatting, "identifier", lambda value: ULID.sub("0" * 26, value) if value else "-"
    )
    monkeypatch.setattr(formatting, "address", lambda url: "http://127.0.0.1:8000")


@pytest.fixture
async def acme(make_org, make_key, client, ledger):
    """The same small organization every time."""
    await clear_of_the_hour()
    org = await make_org("Acme")
    admin = bearer(org.admin_key)
    ci_id, ci_key = await make_key(org, ["workflows:read", "events:write"], name="ci-pipeline")
    # Its usage chart: two successes and one refusal for a scope it lacks.
    for path in ("/v1/workflows", "/v1/workflows", "/v1/events"):
        await client.get(path, headers=bearer(ci_key))
    await make_key(org, ["events:read"], environment="test", name="sandbox-reader")
    await client.post(
        "/v1/workflows",
        headers=admin,
        json={
            "name": "order-notify",
            "trigger": "order.*",
            "description": "Tell the shop",
            "steps": [
                {
                    "name": "notify",
                    "action": "http.request",
                    "config": {"url": "https://shop.example/hook"},
                }
            ],
        },
    )
    await client.post(
        "/v1/events",
        headers=admin,
        json={"type": "order.created", "payload": {"order": 1042, "total": 42}},
    )
    member = await client.post(
        "/v1/members",
        headers=admin,
        json={"email": "dana@acme.test", "name": "Dana", "role": "developer"},
    )
    if member.status_code == 201 and member.json()["data"].get("one_time_password"):
        ledger.add(member.json()["data"]["one_time_password"])

    async def ci_usage_flushed():
        response = await client.get(f"/v1/api-keys/{ci_id}", headers=admin)
        return response.json()["data"]["requests_last_24h"] == 3

    assert await wait_for(ci_usage_flushed, 10)
    return org


async def clear_of_the_hour(margin: float = 30.0) -> None:
    """Usage is drawn per hour, the current one last: wait out an hour about to turn, so
    the data made here and the screen drawn from it fall in the same hour."""
    now = datetime.now(UTC)
    left = 3600 - (now.minute * 60 + now.second + now.microsecond / 1e6)
    if left < margin:
        await asyncio.sleep(left + 0.5)


SCREENS = {
    "overview": ("1",),
    "api-keys": ("2",),
    "api-keys-create": ("2", "n"),
    "api-keys-help": ("2", "question_mark"),
    "api-keys-rotate": ("2", "o"),
    "api-keys-revoke": ("2", "x"),
    "api-keys-usage": ("2", "enter"),
    "api-keys-usage-day": ("2", "enter", "v"),
    "workflows": ("3",),
    "workflows-editor": ("3", "e"),
    "events": ("4",),
    "events-detail": ("4", "enter"),
    "events-search": ("4", "f"),
    "members": ("5",),
    "members-add": ("5", "n"),
    "audit-log": ("6",),
    "settings": ("s",),
    "settings-rename": ("s", "e"),
    "settings-api-keys": ("s", "a"),
    "workflows-editor-discard": ("3", "e", "x", "escape"),
}


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("screen", list(SCREENS))
async def test_screen_snapshot(screen, size, acme, dashboard, still_formatting, snapshot):
    app = dashboard(acme.admin_key)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        for key in SCREENS[screen]:
            await pilot.press(key)
            await settle(pilot)
        if isinstance(app.screen, EventsScreen):
            assert await wait_until(pilot, lambda: app.screen.tail_state == "streaming")
        svg = await still_screen(pilot)
    assert svg == snapshot(extension_class=SVGSnapshot)


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
async def test_sign_in_snapshot(size, dashboard, snapshot):
    app = dashboard(None, server_url="http://127.0.0.1:8000")
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        svg = await still_screen(pilot)
    assert svg == snapshot(extension_class=SVGSnapshot)


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
async def test_workflow_conflict_snapshot(
    size, acme, dashboard, client, still_formatting, snapshot
):
    """After someone else saved: the message, Reload latest, Save and Cancel in sight."""
    app = dashboard(acme.admin_key)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("e")
        workflow = app.screen.workflow
        changed = await client.patch(
            f"/v1/workflows/{workflow['id']}",
            headers=bearer(acme.admin_key),
            json={"version": workflow["version"], "description": "changed elsewhere"},
        )
        assert changed.status_code == 200
        app.screen.query_one("#wf-description", Input).value = "mine"
        await pilot.press("ctrl+s")
        await settle(pilot)
        svg = await still_screen(pilot)
    assert svg == snapshot(extension_class=SVGSnapshot)


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
async def test_sign_out_question_snapshot(
    size, acme, server, dashboard, credential_store, still_formatting, monkeypatch, snapshot
):
    """Where the saved key is, in the redacted form only."""
    monkeypatch.setattr(
        type(credential_store),
        "location",
        property(lambda _store: "~/.config/ventryx/credentials.json"),
    )
    credential_store.save(server.url, acme.admin_key)
    app = dashboard(None)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        app.action_sign_out()
        await settle(pilot)
        svg = await still_screen(pilot)
    assert acme.admin_key not in svg
    assert svg == snapshot(extension_class=SVGSnapshot)
