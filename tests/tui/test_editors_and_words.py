"""What a new user tripped on: editors at 80x24, dialogs' own keys, and words and columns
that speak to people. Against the real server, by keyboard."""

from datetime import UTC, datetime, timedelta

from textual.widgets import Footer, Input, TextArea

from ventryx_tui.screens.api_keys import ApiKeysScreen
from ventryx_tui.screens.audit_log import AuditLogScreen
from ventryx_tui.screens.base import ConfirmDialog
from ventryx_tui.screens.events import EventsScreen
from ventryx_tui.screens.help import HelpScreen
from ventryx_tui.screens.overview import OverviewScreen
from ventryx_tui.screens.workflows import WorkflowEditor, WorkflowsScreen
from ventryx_tui.widgets.table import ResourceTable

from .conftest import settle, wait_until
from .test_resource_screens import bearer, create_workflow, open_section


def footer_keys(app) -> str:
    footer = app.screen.query_one(Footer)
    return " ".join(f"{item.key_display} {item.description}" for item in footer.query("FooterKey"))


def fully_visible(app, widget) -> bool:
    """Drawn whole inside the dialog box (inside its border) on the terminal."""
    box = app.screen.query_one("#dialog").region
    region = widget.region
    return (
        region.height > 0
        and region.y > box.y
        and region.bottom < box.bottom
        and region.bottom <= app.size.height
    )


async def test_after_a_conflict_at_80x24_text_reload_save_and_cancel_are_in_sight(
    org, dashboard, client
):
    workflow = await create_workflow(client, org)
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_section(pilot, "3", WorkflowsScreen)
        await pilot.press("e")
        editor = app.screen
        await client.patch(
            f"/v1/workflows/{workflow['id']}",
            headers=bearer(org.admin_key),
            json={"version": workflow["version"], "description": "theirs"},
        )
        editor.query_one("#wf-description", Input).value = "mine"
        await pilot.press("ctrl+s")
        await settle(pilot)
        for selector in ("#dialog-error", "#reload", "#save", "#cancel"):
            assert fully_visible(app, editor.query_one(selector)), selector
        reached = set()
        for _ in range(12):  # the keyboard alone reaches every button
            await pilot.press("tab")
            reached.add(app.focused.id if app.focused else None)
        assert {"reload", "save", "cancel"} <= reached


async def test_tab_leaves_the_steps_editor_and_its_keys_are_shown(org, dashboard, client):
    await create_workflow(client, org)
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_section(pilot, "3", WorkflowsScreen)
        await pilot.press("e")
        steps = app.screen.query_one("#wf-steps", TextArea)
        steps.focus()
        await pilot.pause()
        before = steps.text
        assert "tab Next field" in footer_keys(app) and "f7 Select all steps" in footer_keys(app)
        await pilot.press("f7")
        assert steps.selected_text == before
        await pilot.press("tab")
        assert not steps.has_focus and steps.text == before  # no spaces typed


async def test_escape_with_unsaved_edits_asks_and_without_edits_just_closes(org, dashboard, client):
    workflow = await create_workflow(client, org)
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_section(pilot, "3", WorkflowsScreen)
        await pilot.press("e", "escape")  # nothing changed: no question
        await settle(pilot)
        assert isinstance(app.screen, WorkflowsScreen)
        await pilot.press("e", "end", *"-v2")
        await pilot.press("escape")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("escape")  # keep editing: the edit is still there
        assert isinstance(app.screen, WorkflowEditor)
        assert app.screen.query_one("#wf-name", Input).value == "order-notify-v2"
        await pilot.press("escape")
        app.screen.query_one("#confirm").press()
        await settle(pilot)
        assert isinstance(app.screen, WorkflowsScreen)
    current = await client.get(f"/v1/workflows/{workflow['id']}", headers=bearer(org.admin_key))
    assert current.json()["data"]["name"] == "order-notify"


async def test_key_table_at_80_columns_keeps_status_last_used_and_expires(
    org, make_key, dashboard, client
):
    soon = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    created = await client.post(
        "/v1/api-keys",
        headers=bearer(org.admin_key),
        json={"name": "short-lived", "scopes": ["events:read"], "expires_at": soon},
    )
    revoked_id = created.json()["data"]["id"]
    await client.delete(f"/v1/api-keys/{revoked_id}", headers=bearer(org.admin_key))
    rotated_id, _key = await make_key(org, ["events:write"], name="ingest")
    rotation = await client.post(
        f"/v1/api-keys/{rotated_id}/rotate",
        headers=bearer(org.admin_key),
        json={"grace_period_seconds": 3600},
    )
    successor_id = rotation.json()["data"]["id"]
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_section(pilot, "2", ApiKeysScreen)
        table = app.screen.query_one(ResourceTable)
        titles = [str(column.label) for column in table.columns.values()]
        assert titles[-2:] == ["Last used", "Expires"] and "Status" in titles
        assert table.virtual_size.width <= 80 - 1  # nothing scrolls out of sight
        cells = dict(zip(titles, table.get_row(revoked_id), strict=True))
        assert cells["Status"] == "revoked" and cells["Expires"] == "-"
        assert (
            str(dict(zip(titles, table.get_row(rotated_id), strict=True))["Name"]) == "ingest (old)"
        )
        assert (
            str(dict(zip(titles, table.get_row(successor_id), strict=True))["Name"])
            == "ingest (new)"
        )
    async with dashboard(org.admin_key).run_test(size=(120, 40)) as pilot:
        await open_section(pilot, "2", ApiKeysScreen)
        table = pilot.app.screen.query_one(ResourceTable)
        assert {"Env", "Created"} <= {str(c.label) for c in table.columns.values()}


async def test_help_scrolls_at_80x24(org, dashboard):
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_section(pilot, "2", ApiKeysScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        scroller = app.screen.query_one("#help")
        assert scroller.max_scroll_y > 0
        await pilot.press(*["j"] * 30)
        assert scroller.scroll_y == scroller.max_scroll_y
        assert "esc Close" in footer_keys(app)


async def test_filter_is_offered_only_where_there_are_rows(org, dashboard):
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert not any(title.startswith("Filter") for title in titles)
        await open_section(pilot, "2", ApiKeysScreen)
        assert "Filter API keys" in {c.title for c in app.get_system_commands(app.screen)}


async def test_a_batch_appears_in_the_tail_in_id_order(org, dashboard, client):
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_section(pilot, "4", EventsScreen)
        assert await wait_until(pilot, lambda: screen.tail_state == "streaming")
        batch = await client.post(
            "/v1/events/batch",
            headers=bearer(org.admin_key),
            json={"events": [{"type": f"batch.item{n}", "payload": {"n": n}} for n in range(30)]},
        )
        assert batch.status_code == 201, batch.text
        assert await wait_until(pilot, lambda: len(screen.buffer) == 30)
        ids = [event.id for event in screen.buffer]
        assert ids == sorted(ids)
        table = screen.query_one(ResourceTable)
        assert [
            table.coordinate_to_cell_key((row, 0)).row_key.value for row in range(table.row_count)
        ] == ids


async def test_audit_log_and_overview_name_people_and_actor_search_takes_an_email(
    org, dashboard, client, ledger
):
    added = await client.post(
        "/v1/members",
        headers=bearer(org.admin_key),
        json={"email": "kim@example.com", "name": "Kim", "role": "viewer"},
    )
    ledger.add(added.json()["data"]["one_time_password"])
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        overview = app.screen.query_one("#overview-activity").render()
        assert "kim@example.com" in str(
            overview.renderable if hasattr(overview, "renderable") else app.export_screenshot()
        )
        screen = await open_section(pilot, "6", AuditLogScreen)
        table = screen.query_one(ResourceTable)
        row = [str(cell) for cell in table.get_row_at(0)]
        assert "kim@example.com" in row  # the target, by email
        await pilot.press("f")
        await pilot.press(*"nobody@example.com", "enter")
        await settle(pilot)
        assert screen.search == {}  # an unknown email searches nothing
        await pilot.press("f")
        await pilot.press(*org.owner_email, "enter")
        await settle(pilot)
        assert screen.entries and {e.actor_id for e in screen.entries} == {org.owner_id}


async def test_server_messages_that_name_endpoints_reach_people_in_words(
    org, server, client, ledger
):
    from ventryx_tui.client import ApiError, VentryxClient

    login = await client.post(
        "/v1/sessions", json={"email": org.owner_email, "password": org.owner_password}
    )
    token = ledger.add(login.json()["data"]["token"])  # a one-time password's session
    dashboard_client = VentryxClient(server.url, token)
    try:
        await dashboard_client.list_api_keys()
    except ApiError as error:
        assert error.code == "password_change_required"
        assert "/v1/" not in error.describe() and "one-time password" in error.describe()
    else:
        raise AssertionError("a one-time password's session listed keys")
    finally:
        await dashboard_client.aclose()
