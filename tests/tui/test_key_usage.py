"""Key usage on screen, against real servers: the API keys table's last day per key and its
unused flag, a key's chart by outcome (hour and day views), a rotated key's traffic, the
revoke confirmation's count, and the overview's events per minute. Shapes, not colours:
some of it runs under NO_COLOR."""

import httpx
import pytest

from conftest import ServerProcess, bearer, wait_for
from ventryx_tui.charts import NOTHING
from ventryx_tui.screens.api_keys import ApiKeysScreen
from ventryx_tui.screens.key_detail import KeyDetailScreen
from ventryx_tui.screens.key_dialogs import RevokeKeyDialog
from ventryx_tui.screens.overview import OverviewScreen
from ventryx_tui.widgets.table import ResourceTable

from .conftest import screen_text, settle, wait_until
from .test_api_keys_screen import open_keys, select_row

QUIET_SECONDS = 2


@pytest.fixture(scope="module")
def quiet_server(database_url, server_log_dir):
    """A server that calls a rotated key's traffic migrated after 2 quiet seconds."""
    process = ServerProcess(
        database_url,
        server_log_dir / "tui-quiet.log",
        {"VENTRYX_TRAFFIC_QUIET_SECONDS": str(QUIET_SECONDS)},
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


async def use(client, key: str, path: str, times: int, status: int) -> None:
    for _ in range(times):
        assert (await client.get(path, headers=bearer(key))).status_code == status


async def counted(client, org, key_id: str, total: int) -> bool:
    """Whether the server's flush has brought the key's 24-hour count to ``total``."""

    async def flushed():
        response = await client.get(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
        return response.json()["data"]["requests_last_24h"] == total

    return await wait_for(flushed, 10)


def cell(screen, key_id: str, column: str) -> str:
    table = screen.query_one(ResourceTable)
    return str(table.get_cell(key_id, column))


async def test_table_draws_each_keys_last_day_and_flags_unused_keys(
    org, make_key, client, db, dashboard
):
    busy_id, busy = await make_key(org, ["workflows:read"], name="busy")
    idle_id, _ = await make_key(org, ["workflows:read"], name="idle")
    old_but_used_id, old_but_used = await make_key(org, ["workflows:read"], name="old-used")
    revoked_id, _ = await make_key(org, ["workflows:read"], name="gone")
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE api_keys SET created_at = now() - interval '40 days' WHERE id = ANY($1)",
            [idle_id, old_but_used_id, revoked_id],
        )
    assert (
        await client.delete(f"/v1/api-keys/{revoked_id}", headers=bearer(org.admin_key))
    ).status_code == 200
    await use(client, busy, "/v1/workflows", 3, 200)
    await use(client, old_but_used, "/v1/workflows", 1, 200)
    assert await counted(client, org, busy_id, 3)
    assert await counted(client, org, old_but_used_id, 1)

    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_keys(pilot)
        assert await wait_until(pilot, lambda: busy_id in screen.last_day)
        await settle(pilot)
        # 24 hours in 12 characters, oldest left: this hour's requests are the last one.
        busy_line = cell(screen, busy_id, "Last 24h")
        assert len(busy_line) == 12
        assert busy_line[:-1] == NOTHING * 11 and busy_line[-1] == "█"
        assert sum(screen.last_day[busy_id]) == 3
        assert cell(screen, idle_id, "Last 24h") == NOTHING * 12  # no call was needed
        assert idle_id not in screen.last_day

        assert cell(screen, idle_id, "Last used") == "unused"
        assert cell(screen, old_but_used_id, "Last used") != "unused"
        assert cell(screen, busy_id, "Last used") != "unused"  # new and used
        assert cell(screen, revoked_id, "Last used") != "unused"  # revoked: nothing to flag
        await select_row(pilot, idle_id)
        assert "unused: no successful request for 30 days" in str(
            screen.query_one("#detail").content
        )

        await pilot.press("slash", *"unused", "enter")
        await settle(pilot)
        assert [key.id for key in screen.visible_keys()] == [idle_id]


async def test_key_usage_chart_by_outcome_with_hour_and_day_views(
    org, make_key, client, dashboard, monkeypatch
):
    monkeypatch.setenv("NO_COLOR", "1")
    key_id, key = await make_key(org, ["workflows:read"], name="charted")
    await use(client, key, "/v1/workflows", 4, 200)
    await use(client, key, "/v1/events", 2, 403)
    assert await counted(client, org, key_id, 6)

    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_keys(pilot)
        await select_row(pilot, key_id)
        await pilot.press("enter")
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, KeyDetailScreen)
        assert len(detail.buckets) == 24
        assert (
            sum(b.success for b in detail.buckets),
            sum(b.denied_scope for b in detail.buckets),
        ) == (4, 2)
        chart = str(detail.query_one("#usage-chart").content)
        assert "per hour" in chart
        # Shapes tell the outcomes apart without colour: blocks for successes, shade for 403.
        assert "█" in chart and "▒" in chart
        legend = str(detail.query_one("#usage-legend").content)
        assert "█ success 4" in legend and "▒ 403 no scope 2" in legend
        assert "x 401 revoked/expired 0" in legend
        screenshot = app.export_screenshot()
        assert "▒▒" in screenshot

        await pilot.press("v")
        await settle(pilot)
        assert len(detail.buckets) == 30
        assert "per day" in str(detail.query_one("#usage-chart").content)
        assert sum(b.success for b in detail.buckets) == 4
        await pilot.press("v")
        await settle(pilot)
        assert len(detail.buckets) == 24

        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ApiKeysScreen)


async def test_another_organizations_key_is_never_charted(
    org, make_org, make_key, client, dashboard
):
    other = await make_org()
    theirs_id, theirs = await make_key(other, ["workflows:read"], name="theirs")
    await use(client, theirs, "/v1/workflows", 2, 200)
    assert await counted(client, other, theirs_id, 2)
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_keys(pilot)
        assert theirs_id not in [key.id for key in screen.keys]
        with pytest.raises(Exception) as refused:
            await app.client.api_key_usage(theirs_id, "hour")
        assert getattr(refused.value, "status", None) == 404


async def rotate(client, org, key_id: str, ledger) -> None:
    rotated = await client.post(
        f"/v1/api-keys/{key_id}/rotate",
        headers=bearer(org.admin_key),
        json={"grace_period_seconds": 3600},
    )
    assert rotated.status_code == 201
    ledger.add(rotated.json()["data"]["key"])


async def test_rotated_key_still_serving_says_how_much_and_x_revokes_it(
    org, make_key, client, dashboard, ledger
):
    still_id, still = await make_key(org, ["workflows:read"], name="still-used")
    await rotate(client, org, still_id, ledger)
    await use(client, still, "/v1/workflows", 30, 200)
    assert await counted(client, org, still_id, 30)

    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_keys(pilot)
        assert await wait_until(pilot, lambda: still_id in screen.recent)
        await select_row(pilot, still_id)
        assert "Still serving 2 requests/min (30 in the last 15 minutes). x revokes it." in str(
            screen.query_one("#detail").content
        )

        # One key to revoke, from the table or from the key's usage view; the
        # confirmation says how much it still served, and revoking stays allowed.
        await pilot.press("enter")
        await settle(pilot)
        assert "Still serving 2 requests/min" in str(
            app.screen.query_one("#usage-rotation").content
        )
        await pilot.press("x")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, RevokeKeyDialog)
        assert str(dialog.query_one("#recent-traffic").content).startswith(
            "It served 30 requests in the last 15 minutes"
        )
        await pilot.press(*"still-used", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ApiKeysScreen)
    gone = await client.get(f"/v1/api-keys/{still_id}", headers=bearer(org.admin_key))
    assert gone.json()["data"]["status"] == "revoked"
    assert (await client.get("/v1/workflows", headers=bearer(still))).status_code == 401


async def test_rotated_key_whose_traffic_moved_says_so(
    org, make_key, quiet_server, dashboard, ledger
):
    async with httpx.AsyncClient(base_url=quiet_server.url, timeout=30) as client:
        moved_id, moved = await make_key(org, ["workflows:read"], name="moved")
        plain_id, _ = await make_key(org, ["workflows:read"], name="never-rotated")
        await rotate(client, org, moved_id, ledger)
        await use(client, moved, "/v1/workflows", 1, 200)
        assert await counted(client, org, moved_id, 1)  # used after its rotation, then quiet

        async def migrated():
            response = await client.get(f"/v1/api-keys/{moved_id}", headers=bearer(org.admin_key))
            return response.json()["data"]["traffic_migrated"] is True

        assert await wait_for(migrated, 15)
        app = dashboard(org.admin_key, server_url=quiet_server.url)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_keys(pilot)
            await select_row(pilot, moved_id)
            assert "Traffic migrated: no successful request for the server's quiet period" in str(
                screen.query_one("#detail").content
            )
            await select_row(pilot, plain_id)
            detail = str(screen.query_one("#detail").content)
            assert "Traffic migrated" not in detail and "Still serving" not in detail


async def test_revoke_confirmation_of_a_quiet_key_says_it_served_nothing(org, make_key, dashboard):
    quiet_id, _ = await make_key(org, ["workflows:read"], name="quiet")
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_keys(pilot)
        await select_row(pilot, quiet_id)
        await pilot.press("x")
        await settle(pilot)
        assert str(app.screen.query_one("#recent-traffic").content) == (
            "It served no request in the last 15 minutes."
        )


async def test_read_only_usage_view_offers_no_revoke(org, make_key, dashboard):
    key_id, _ = await make_key(org, ["workflows:read"], name="look-only")
    app = dashboard(org.admin_key, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_keys(pilot)
        await select_row(pilot, key_id)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, KeyDetailScreen)
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, KeyDetailScreen)


async def test_overview_draws_events_per_minute_of_this_environment(
    org, make_key, client, dashboard, monkeypatch
):
    monkeypatch.setenv("NO_COLOR", "1")
    _test_id, test_key = await make_key(org, ["events:write", "events:read"], "test")
    for number in range(5):
        assert (
            await client.post(
                "/v1/events",
                headers=bearer(org.admin_key),
                json={"type": "order.created", "payload": {"n": number}},
            )
        ).status_code == 201
    assert (
        await client.post(
            "/v1/events", headers=bearer(test_key), json={"type": "order.created", "payload": {}}
        )
    ).status_code == 201
    _reader_id, no_events = await make_key(org, ["api-keys:read"], name="no-events")

    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        shown = screen_text(app)
        assert "last hour, oldest left: 5 events" in shown
        rate_line = next(line for line in shown.splitlines() if "Events/min" in line)
        assert NOTHING * 50 in rate_line  # an hour of minutes, nearly all without events
    app = dashboard(test_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "last hour, oldest left: 1 event," in screen_text(app)
    app = dashboard(no_events)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        rate_line = next(line for line in screen_text(app).splitlines() if "Events/min" in line)
        assert "unavailable" in rate_line
