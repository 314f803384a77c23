"""Workflows, events, members and the audit log, driven by keyboard against the real server."""

from datetime import UTC, datetime

from textual.widgets import Button, Input, Static, TextArea

from ventryx_shared.events import Event
from ventryx_tui.screens.audit_log import AuditLogScreen
from ventryx_tui.screens.events import EventDetail, EventsScreen
from ventryx_tui.screens.key_dialogs import RevealDialog
from ventryx_tui.screens.members import AddMemberDialog, MembersScreen
from ventryx_tui.screens.workflows import WorkflowEditor, WorkflowsScreen
from ventryx_tui.widgets.table import ResourceTable

from .conftest import settle, wait_until


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def open_section(pilot, key: str, screen_type):
    await settle(pilot)
    await pilot.press(key)
    await settle(pilot)
    assert isinstance(pilot.app.screen, screen_type)
    return pilot.app.screen


async def create_workflow(client, org, name="order-notify", trigger="order.*") -> dict:
    response = await client.post(
        "/v1/workflows",
        headers=bearer(org.admin_key),
        json={
            "name": name,
            "trigger": trigger,
            "steps": [
                {"name": "notify", "action": "http.request", "config": {"url": "https://x.test"}}
            ],
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def test_workflow_created_in_the_editor_exists_on_the_server(org, dashboard, client):
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_section(pilot, "3", WorkflowsScreen)
        await pilot.press("n")
        assert isinstance(app.screen, WorkflowEditor)
        await pilot.press(*"ship-it", "tab", *"order.created", "tab", *"Ships orders")
        steps = app.screen.query_one("#wf-steps", TextArea)
        steps.text = '[{"name": "ship", "action": "warehouse.ship"'  # not JSON yet
        await pilot.pause()
        error = app.screen.query_one("#steps-error", Static)
        assert error.display and "not valid JSON" in str(error.content)
        steps.text = '[{"name": "ship", "action": "Warehouse Ship"}]'
        await pilot.pause()
        assert "action" in str(error.content)  # the shared schema's rule, shown in place
        steps.text = '[{"name": "ship", "action": "warehouse.ship", "config": {}}]'
        await pilot.pause()
        assert not error.display
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, WorkflowsScreen)
        assert [w.name for w in app.screen.workflows] == ["ship-it"]
    listed = (await client.get("/v1/workflows", headers=bearer(org.admin_key))).json()["data"]
    assert listed[0]["trigger"] == "order.created"
    assert listed[0]["steps"] == [{"name": "ship", "action": "warehouse.ship", "config": {}}]


async def test_stale_workflow_edit_shows_the_409_and_reload_brings_the_latest(
    org, dashboard, client
):
    workflow = await create_workflow(client, org)
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_section(pilot, "3", WorkflowsScreen)
        await pilot.press("e")
        editor = app.screen
        assert isinstance(editor, WorkflowEditor)
        # Someone else saves first.
        response = await client.patch(
            f"/v1/workflows/{workflow['id']}",
            headers=bearer(org.admin_key),
            json={"version": workflow["version"], "description": "changed elsewhere"},
        )
        assert response.status_code == 200
        editor.query_one("#wf-description", Input).value = "my change"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is editor  # nothing lost: the form stays open
        error = str(editor.query_one("#dialog-error", Static).content)
        assert "request id req_" in error and "Reload" in error
        reload = editor.query_one("#reload", Button)
        assert reload.display
        reload.press()
        await settle(pilot)
        assert editor.query_one("#wf-description", Input).value == "changed elsewhere"
        editor.query_one("#wf-description", Input).value = "my change, on top of theirs"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, WorkflowsScreen)
    current = (
        await client.get(f"/v1/workflows/{workflow['id']}", headers=bearer(org.admin_key))
    ).json()["data"]
    assert current["description"] == "my change, on top of theirs"
    assert current["version"] == workflow["version"] + 2


async def test_workflow_toggle_and_delete(org, dashboard, client):
    workflow = await create_workflow(client, org, name="to-delete")
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_section(pilot, "3", WorkflowsScreen)
        await pilot.press("space")
        await settle(pilot)
        assert screen.workflows[0].enabled is False
        await pilot.press("x")
        await pilot.press("enter")  # Cancel has the focus: nothing deleted
        await settle(pilot)
        assert len(screen.workflows) == 1
        await pilot.press("x")
        app.screen.query_one("#delete", Button).press()
        await settle(pilot)
        assert screen.workflows == []
    response = await client.get(f"/v1/workflows/{workflow['id']}", headers=bearer(org.admin_key))
    assert response.status_code == 404


async def test_live_tail_shows_an_event_emitted_through_the_api_and_pauses(org, dashboard, client):
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_section(pilot, "4", EventsScreen)
        assert await wait_until(pilot, lambda: screen.tail_state == "streaming")
        response = await client.post(
            "/v1/events",
            headers=bearer(org.admin_key),
            json={"type": "order.created", "payload": {"total": 42}},
        )
        assert response.status_code == 201
        first = response.json()["data"]["id"]
        table = screen.query_one(ResourceTable)
        assert await wait_until(pilot, lambda: first in [r.value for r in table.rows])

        await pilot.press("p")
        response = await client.post(
            "/v1/events", headers=bearer(org.admin_key), json={"type": "order.paid", "payload": {}}
        )
        second = response.json()["data"]["id"]
        assert await wait_until(pilot, lambda: screen.held == 1)
        assert second not in [r.value for r in table.rows]
        assert "PAUSED, 1 new held" in str(screen.query_one("#tail-status", Static).content)
        await pilot.press("p")
        assert second in [r.value for r in table.rows]

        table.move_cursor(row=table.get_row_index(first))
        table.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, EventDetail)
        assert '"total": 42' in str(app.screen.query_one("#payload", Static).content)
        await pilot.press("escape")


async def test_live_tail_buffer_is_bounded(org, dashboard):
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_section(pilot, "4", EventsScreen)
        now = datetime.now(UTC)
        for number in range(screen.buffer.maxlen + 5):
            screen.receive(
                Event(
                    id=f"evt_local{number:05d}",
                    type="load.test",
                    payload={},
                    occurred_at=now,
                    created_at=now,
                    environment="live",
                    matched_workflows=[],
                    emitted_by="key_local",
                )
            )
        assert len(screen.buffer) == screen.buffer.maxlen
        assert screen.query_one(ResourceTable).row_count == screen.buffer.maxlen
        assert screen.buffer[0].id == "evt_local00005"


async def test_member_add_reveals_the_one_time_password_once(org, dashboard, client, ledger):
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_section(pilot, "5", MembersScreen)
        await pilot.press("n")
        assert isinstance(app.screen, AddMemberDialog)
        await pilot.press(*"dana@example.com", "tab", *"Dana", "enter")
        await settle(pilot)
        assert isinstance(app.screen, RevealDialog)
        password = ledger.add(str(app.screen.query_one("#secret", Static).content))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, MembersScreen)
        assert "dana@example.com" in [m.email for m in app.screen.members]
        assert password not in app.export_screenshot()
    login = await client.post(
        "/v1/sessions",
        json={"email": "dana@example.com", "password": password, "organization": org.id},
    )
    assert login.status_code in (200, 201), login.text
    ledger.add(login.json()["data"]["token"])


async def test_audit_log_lists_what_the_dashboard_did_and_filters(org, make_key, dashboard):
    await make_key(org, ["events:read"], name="audited")
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_section(pilot, "6", AuditLogScreen)
        actions = [entry.action for entry in screen.entries]
        assert "api_key.created" in actions
        table = screen.query_one(ResourceTable)
        await pilot.press("slash", *"api_key.created")
        assert 0 < table.row_count < len(actions) + 1
        assert all("api_key.created" in str(table.get_row_at(i)[1]) for i in range(table.row_count))


async def test_a_screen_the_caller_may_not_see_explains_why(org, make_key, dashboard):
    _id, key = await make_key(org, ["events:read"])
    app = dashboard(key)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_section(pilot, "6", AuditLogScreen)
        notice = str(screen.query_one("#notice", Static).content)
        assert "request id req_" in notice
        assert "org:admin" in notice


async def test_event_search_by_type_and_time_then_back_to_the_tail(org, dashboard, client):
    for event_type in ("order.created", "user.signed_up", "order.paid"):
        response = await client.post(
            "/v1/events", headers=bearer(org.admin_key), json={"type": event_type, "payload": {}}
        )
        assert response.status_code == 201
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_section(pilot, "4", EventsScreen)
        assert len(screen.buffer) == 3
        await pilot.press("f")
        await pilot.press(*"order.*", "tab", *"1h", "enter")
        await settle(pilot)
        assert sorted(e.type for e in screen.buffer) == ["order.created", "order.paid"]
        assert "SEARCH: type order.*, since" in str(
            screen.query_one("#tail-status", Static).content
        )
        await pilot.press("escape")
        await settle(pilot)
        assert len(screen.buffer) == 3
        assert await wait_until(pilot, lambda: screen.tail_state == "streaming")


async def test_member_role_change_and_removal_with_email_typed(org, dashboard, client, ledger):
    added = await client.post(
        "/v1/members",
        headers=bearer(org.admin_key),
        json={"email": "lee@example.com", "name": "Lee", "role": "viewer"},
    )
    assert added.status_code == 201
    ledger.add(added.json()["data"]["one_time_password"])
    member_id = added.json()["data"]["id"]
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_section(pilot, "5", MembersScreen)
        table = screen.query_one(ResourceTable)
        table.move_cursor(row=table.get_row_index(member_id))
        await pilot.press("e")
        await pilot.pause()
        app.screen.query_one("#member-role").value = "developer"
        app.screen.query_one("#save", Button).press()
        await settle(pilot)
        assert next(m for m in screen.members if m.id == member_id).role == "developer"
        await pilot.press("x")
        await pilot.press(*"lee@example.co", "enter")
        await pilot.pause()
        assert "does not match" in str(app.screen.query_one("#dialog-error", Static).content)
        await pilot.press("m", "enter")
        await settle(pilot)
        assert isinstance(app.screen, MembersScreen)
        assert member_id not in [m.id for m in screen.members]
        toasts = [n.message for n in app._notifications]
        assert any(t.startswith("Removed Lee; their sessions ended.") for t in toasts), toasts
        assert not any("api_keys_still_active" in t for t in toasts)
    response = await client.get(f"/v1/members/{member_id}", headers=bearer(org.admin_key))
    assert response.status_code == 404


async def test_audit_log_search_asks_the_server(org, make_key, dashboard, client):
    key_id, _key = await make_key(org, ["events:read"], name="to-revoke")
    await client.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_section(pilot, "6", AuditLogScreen)
        await pilot.press("f")
        await pilot.press("tab", *"api_key.revoked", "enter")
        await settle(pilot)
        assert [(e.action, e.target_id) for e in screen.entries] == [("api_key.revoked", key_id)]
        assert "Search: action api_key.revoked" in str(screen.query_one("#detail").content)
        await pilot.press("escape")
        await settle(pilot)
        assert len(screen.entries) > 1
