"""The API keys screen, driven by keyboard against the real server: create, reveal, copy,
edit scopes, revoke, rotate, filter, read-only."""

from datetime import UTC, datetime, timedelta

from textual.screen import ModalScreen
from textual.widgets import Button, Input, SelectionList, Static

from conftest import secrets_found_in_logs
from ventryx_tui.screens.api_keys import ApiKeysScreen
from ventryx_tui.screens.key_dialogs import (
    CreateKeyDialog,
    EditKeyDialog,
    RevealDialog,
    RevokeKeyDialog,
    RotateKeyDialog,
)
from ventryx_tui.widgets.table import ResourceTable

from .conftest import settle, wait_until


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def open_keys(pilot) -> ApiKeysScreen:
    await settle(pilot)
    await pilot.press("2")
    await settle(pilot)
    assert isinstance(pilot.app.screen, ApiKeysScreen)
    return pilot.app.screen


async def select_row(pilot, row_key: str) -> None:
    table = pilot.app.screen.query_one(ResourceTable)
    table.move_cursor(row=table.get_row_index(row_key))
    await pilot.pause()


def secret_shown(app) -> str:
    return str(app.screen.query_one("#secret", Static).content)


async def test_saved_dev_credentials_connect_without_typing(
    org, credential_store, dashboard, server
):
    credential_store.save(server.url, org.admin_key)
    app = dashboard(None)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_keys(pilot)
        assert org.admin_key_id in [key.id for key in screen.keys]
        assert "bootstrap" in app.export_screenshot() or screen.keys


async def test_create_shows_the_secret_once_copies_it_and_never_draws_it_again(
    org, dashboard, client, ledger, tmp_path, credential_store, server_log_dir
):
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_keys(pilot)
        await pilot.press("n")
        assert isinstance(app.screen, CreateKeyDialog)
        await pilot.press(*"ci-pipeline", "enter")  # name, then on to the scopes
        await pilot.press("space", "down", "down", "down", "space")  # workflows:read, events:write
        await pilot.press("tab", "tab", "enter")  # past the expiry choice to Create
        await settle(pilot)
        assert isinstance(app.screen, RevealDialog)
        secret = ledger.add(secret_shown(app))
        assert secret.startswith("vtx_live_")

        await pilot.press("c")
        assert app.clipboard == secret  # what App.copy_to_clipboard sent through OSC 52

        response = await client.get("/v1/me", headers=bearer(secret))
        assert response.status_code == 200
        assert response.json()["data"]["scopes"] == ["workflows:read", "events:write"]

        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ApiKeysScreen)
        assert "ci-pipeline" in [key.name for key in app.screen.keys]
        assert secret not in app.export_screenshot()
        assert app.clipboard == ""
        await pilot.press("2", "1", "2")
        await settle(pilot)
        assert secret not in app.export_screenshot()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
    assert secrets_found_in_logs(server_log_dir, {secret}) == []


async def test_create_offers_only_scopes_the_caller_may_grant(org, make_key, dashboard):
    _key_id, key = await make_key(org, ["api-keys:read", "api-keys:write", "events:read"])
    app = dashboard(key)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_keys(pilot)
        await pilot.press("n")
        offered = app.screen.query_one(SelectionList)
        values = [offered.get_option_at_index(i).value for i in range(offered.option_count)]
        assert values == ["events:read", "api-keys:read", "api-keys:write"]


async def test_edit_changes_name_and_scopes(org, make_key, dashboard, client):
    key_id, _key = await make_key(org, ["workflows:read"], name="reporting")
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_keys(pilot)
        await select_row(pilot, key_id)
        await pilot.press("e")
        assert isinstance(app.screen, EditKeyDialog)
        name = app.screen.query_one("#name", Input)
        name.value = "reporting-v2"
        await pilot.press("tab")  # to the scope list, on workflows:read
        await pilot.press("down", "down", "space")  # add events:read
        app.screen.query_one("#save", Button).press()
        await settle(pilot)
        assert isinstance(app.screen, ApiKeysScreen)
    response = await client.get(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
    assert response.json()["data"]["name"] == "reporting-v2"
    assert response.json()["data"]["scopes"] == ["workflows:read", "events:read"]


async def test_revoke_needs_the_name_typed_and_is_instant(org, make_key, dashboard, client):
    key_id, key = await make_key(org, ["events:read"], name="old-worker")
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_keys(pilot)
        await select_row(pilot, key_id)
        await pilot.press("x")
        assert isinstance(app.screen, RevokeKeyDialog)
        await pilot.press(*"old-work", "enter")
        await settle(pilot)
        assert isinstance(app.screen, RevokeKeyDialog)  # a wrong name revokes nothing
        assert app.screen.query_one("#revoke", Button).disabled
        assert (await client.get("/v1/me", headers=bearer(key))).status_code == 200
        await pilot.press("e", "r", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ApiKeysScreen)
        row = app.screen.query_one(ResourceTable).get_row(key_id)
        assert "revoked" in row
    assert (await client.get("/v1/me", headers=bearer(key))).status_code == 401


async def test_rotate_with_a_grace_period_shows_when_the_old_key_dies(
    org, make_key, dashboard, client, ledger
):
    key_id, old_key = await make_key(org, ["events:write"], name="ingest")
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_keys(pilot)
        await select_row(pilot, key_id)
        await pilot.press("o")
        assert isinstance(app.screen, RotateKeyDialog)
        await pilot.press("down", "enter")  # 1 hour
        assert "1 hour from now" in str(app.screen.query_one("#dies-at", Static).content)
        app.screen.query_one("#rotate", Button).press()
        await settle(pilot)
        assert isinstance(app.screen, RevealDialog)
        new_key = ledger.add(secret_shown(app))
        screenshot = app.export_screenshot()
        assert "stops working" in screenshot.replace("&#160;", " ")
        await pilot.press("escape")
        await settle(pilot)
        assert new_key not in app.export_screenshot()
    assert (await client.get("/v1/me", headers=bearer(new_key))).status_code == 200
    assert (await client.get("/v1/me", headers=bearer(old_key))).status_code == 200
    old = (await client.get(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))).json()
    expires = datetime.fromisoformat(old["data"]["expires_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=55) < expires - datetime.now(UTC) <= timedelta(hours=1)


async def test_filter_narrows_the_table_and_escape_clears_it(org, make_key, dashboard):
    await make_key(org, ["events:read"], name="alpha-reader")
    await make_key(org, ["events:read"], name="beta-reader")
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_keys(pilot)
        table = screen.query_one(ResourceTable)
        assert table.row_count == 3
        await pilot.press("slash", *"alpha")
        assert table.row_count == 1
        await pilot.press("enter")  # keeps the filter, back to the table
        assert table.has_focus and table.row_count == 1
        await pilot.press("escape")
        assert table.row_count == 3


async def test_read_only_hides_every_change(org, dashboard):
    app = dashboard(org.admin_key, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_keys(pilot)
        screenshot = app.export_screenshot()
        assert "read-only" in screenshot
        assert "Revoke" not in screenshot and "Rotate" not in screenshot
        for key in ("n", "e", "x", "o"):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, ApiKeysScreen), key
        for section, key in (("3", "n"), ("3", "space"), ("5", "n"), ("5", "x")):
            await pilot.press(section)
            await settle(pilot)
            await pilot.press(key)
            await pilot.pause()
            assert not isinstance(app.screen, ModalScreen), (section, key)
        await pilot.press("2")
        await settle(pilot)
        commands = [command.title for command in app.get_system_commands(app.screen)]
        assert not {"New API key", "Edit API key", "Revoke API key", "Rotate API key"} & set(
            commands
        )
        assert "Refresh API keys" in commands


async def test_missing_scope_shows_the_server_message_and_request_id(org, make_key, dashboard):
    _key_id, key = await make_key(org, ["events:read"])
    app = dashboard(key)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_keys(pilot)
        notice = str(app.screen.query_one("#notice", Static).content)
        assert "api-keys:read" in notice
        assert "request id req_" in notice
        assert "Traceback" not in app.export_screenshot()
        await pilot.press("n")  # no api-keys:write: no create dialog either
        assert isinstance(app.screen, ApiKeysScreen)
        assert await wait_until(pilot, lambda: True)
