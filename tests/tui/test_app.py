"""Starting, signing in, switching environments, help, the palette, NO_COLOR, and riding
out a server that goes away and comes back."""

import os
import stat
import subprocess
import sys

import httpx
import pytest
from textual.filter import NoColor
from textual.widgets import Input

from ventryx_tui.screens.api_keys import ApiKeysScreen
from ventryx_tui.screens.base import ConfirmDialog
from ventryx_tui.screens.help import HelpScreen
from ventryx_tui.screens.overview import OverviewScreen
from ventryx_tui.screens.sign_in import ChangePasswordScreen, SignInScreen
from ventryx_tui.screens.workflows import WorkflowsScreen

from .conftest import settle, wait_until


async def test_without_saved_credentials_it_asks_and_remembers_an_api_key(
    org, dashboard, credential_store, isolated_config
):
    app = dashboard(None)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, SignInScreen)
        app.screen.query_one("#api-key", Input).value = org.admin_key
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        assert org.admin_key not in app.export_screenshot()
    saved = credential_store.path
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert credential_store.read().servers == {app.client.server: org.admin_key}


async def test_a_bad_key_is_refused_with_the_servers_message(dashboard):
    app = dashboard(None)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.screen.query_one("#api-key", Input).value = "vtx_live_not-a-real-key"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SignInScreen)
        text = str(app.screen.query_one("#sign-in-error").content)
        assert "Sign-in failed" in text and "request id req_" in text


async def test_member_login_with_one_time_password_changes_it_first(
    org, dashboard, ledger, credential_store
):
    app = dashboard(None)
    new_password = ledger.add("a-much-better-passphrase-42")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.screen.query_one("#email", Input).value = org.owner_email
        app.screen.query_one("#password", Input).value = org.owner_password
        app.screen.query_one("#password", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ChangePasswordScreen)
        await pilot.press(*new_password, "tab", *new_password, "enter")
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        assert app.caller.credential_type == "session"
        assert "org:admin" in app.caller.scopes
        # A session chooses its environment per request: the switch reaches test data.
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        assert app.environment == "test"
        assert "[TEST]" in app.export_screenshot()
        assert isinstance(app.screen, WorkflowsScreen)
        assert not app.screen.query_one("#notice").display
    # The session token, kept in the store only.
    ledger.add(*credential_store.read().servers.values())


async def test_environment_switch_is_on_every_screen_and_filters_keys(org, make_key, dashboard):
    test_key_id, _ = await make_key(org, ["events:read"], environment="test", name="sandbox")
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for section in "123456":
            await pilot.press(section)
            await settle(pilot)
            assert "[LIVE]" in app.export_screenshot(), section
        await pilot.press("2")
        await settle(pilot)
        assert test_key_id not in [key.id for key in app.screen.keys]
        await pilot.press("t")
        await settle(pilot)
        assert "[TEST]" in app.export_screenshot()
        assert [key.id for key in app.screen.keys] == [test_key_id]
        # A live key cannot list test workflows: the screen says so instead of lying.
        await pilot.press("3")
        await settle(pilot)
        assert "sees only live workflows" in str(app.screen.query_one("#notice").content)


async def test_a_test_key_cannot_switch_to_live(org, make_key, dashboard):
    _id, key = await make_key(org, ["api-keys:read"], environment="test")
    app = dashboard(key)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.environment == "test"
        await pilot.press("t")
        await settle(pilot)
        assert app.environment == "test"


async def test_help_and_palette_list_the_screens_actions(org, dashboard):
    app = dashboard(org.admin_key)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = app.export_screenshot().replace("&#160;", " ")
        assert "Revoke" in text and "Rotate" in text and "ctrl+p" in text
        await pilot.press("escape")
        assert isinstance(app.screen, ApiKeysScreen)
        titles = {command.title for command in app.get_system_commands(app.screen)}
        assert {
            "Go to Workflows",
            "Go to Events",
            "Go to Members",
            "Go to Audit log",
            "Switch live/test",
            "New API key",
            "Revoke API key",
            "Rotate API key",
            "Edit API key",
            "Filter API keys",
            "Refresh API keys",
        } <= titles
        assert "Screenshot" not in titles  # it would write a revealed secret to a file
        await pilot.press("j", "k", "q")
    assert app.return_code == 0 or app.return_code is None


async def test_no_color_turns_colour_off_and_state_still_reads_as_words(
    org, dashboard, monkeypatch
):
    monkeypatch.setenv("NO_COLOR", "1")
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        assert app.no_color
        # Colour dropped, bold/reverse kept (the monochrome filter would grey the ANSI
        # theme into black on black).
        assert any(isinstance(f, NoColor) for f in app._filters)
        screenshot = app.export_screenshot()
        assert "[LIVE]" in screenshot and "active" in screenshot


def _start_server(database_url: str, port: int, log_path) -> subprocess.Popen:
    from conftest import ROOT, TEST_PEPPER  # the suite's own server settings

    env = {**os.environ, "DATABASE_URL": database_url, "VENTRYX_PEPPER": TEST_PEPPER.hex()}
    log = open(log_path, "ab")  # noqa: SIM115 - the process owns it until it ends
    return subprocess.Popen(
        [sys.executable, "-m", "ventryx_server", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


async def _ready(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1) as http:
            return (await http.get(url + "/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.timeout(90)
async def test_lost_server_shows_reconnecting_and_recovers_by_itself(
    org, dashboard, database_url, server_log_dir
):
    from conftest import free_port, wait_for

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start_server(database_url, port, server_log_dir / "tui-restart-1.log")
    try:
        assert await wait_for(lambda: _ready(url), timeout=30)
        app = dashboard(org.admin_key, server_url=url, timeout=5)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("2")
            await settle(pilot)
            assert app.screen.keys
            process.terminate()
            process.wait(10)
            await pilot.press("r")
            assert await wait_until(pilot, lambda: app.connection == "reconnecting")
            assert "reconnecting" in app.export_screenshot()
            assert app.screen.keys  # what was loaded stays in sight meanwhile
            assert "Traceback" not in app.export_screenshot()
            process = _start_server(database_url, port, server_log_dir / "tui-restart-2.log")
            assert await wait_until(pilot, lambda: app.connection == "connected", timeout=40)
            await settle(pilot)
            assert app.screen.keys
            assert "reconnecting" not in app.export_screenshot()
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.timeout(90)
async def test_saved_credentials_wait_for_a_server_that_is_still_starting(
    org, dashboard, credential_store, database_url, server_log_dir
):
    from conftest import free_port
    from ventryx_tui.screens.sign_in import StartScreen

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    credential_store.save(url, org.admin_key)
    app = dashboard(None, server_url=url, timeout=5)
    process = None
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            assert await wait_until(
                pilot,
                lambda: (
                    "Reconnecting" in str(app.screen.query_one("#start").content)
                    if isinstance(app.screen, StartScreen)
                    else False
                ),
            )
            process = _start_server(database_url, port, server_log_dir / "tui-late-start.log")
            assert await wait_until(
                pilot, lambda: isinstance(app.screen, OverviewScreen), timeout=40
            )
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)


async def test_sign_out_asks_before_deleting_the_only_saved_key_and_keeps_other_servers(
    org, dashboard, credential_store, server
):
    other = ("https://api.example.com", "vtx_live_of_another_server")
    credential_store.save(*other)
    credential_store.save(server.url, org.admin_key)
    app = dashboard(None)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        commands["Sign out"].callback()
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        question = str(app.screen.query_one("#confirm-text").content)
        assert credential_store.location in question and server.url in question
        assert org.admin_key not in app.export_screenshot()
        await pilot.press("escape")  # changed their mind: nothing is deleted
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        assert credential_store.read().find(server.url)[1] == org.admin_key

        commands["Sign out"].callback()
        await settle(pilot)
        app.screen.query_one("#confirm").press()
        await settle(pilot)
        assert isinstance(app.screen, SignInScreen)
        await pilot.press("2")  # no navigation without a credential
        assert isinstance(app.screen, SignInScreen)
        assert credential_store.read().servers == {other[0]: other[1]}
        app.screen.query_one("#api-key", Input).value = org.admin_key
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("2")
        await settle(pilot)
        assert app.screen.keys


async def test_a_session_signs_out_without_asking(org, dashboard, client, ledger, credential_store):
    login = await client.post(
        "/v1/sessions", json={"email": org.owner_email, "password": org.owner_password}
    )
    token = ledger.add(login.json()["data"]["token"])
    changed = await client.post(
        "/v1/members/me/password",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "current_password": org.owner_password,
            "new_password": ledger.add("a-long-enough-passphrase"),
        },
    )
    assert changed.status_code in (200, 201), changed.text
    app = dashboard(None)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.screen.query_one("#api-key", Input).value = token
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        app.action_sign_out()
        await settle(pilot)
        assert isinstance(app.screen, SignInScreen)  # a password signs in again: no question
        assert credential_store.read().servers == {}


async def test_a_revoked_credential_brings_back_the_sign_in_form(org, make_key, dashboard, client):
    key_id, key = await make_key(org, ["api-keys:read"])
    app = dashboard(key)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        response = await client.delete(
            f"/v1/api-keys/{key_id}", headers={"Authorization": f"Bearer {org.admin_key}"}
        )
        assert response.status_code == 200
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, SignInScreen)
        text = str(app.screen.query_one("#sign-in-error").content)
        assert "request id req_" in text
        app.screen.query_one("#api-key", Input).value = org.admin_key
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)


async def test_an_email_in_two_organizations_is_asked_which_one(
    make_org, dashboard, client, ledger
):
    first, second = await make_org("First"), await make_org("Second")
    shared_password = ledger.add("the-same-passphrase-in-both")
    added = await client.post(
        "/v1/members",
        headers={"Authorization": f"Bearer {second.admin_key}"},
        json={"email": first.owner_email, "name": "Twice", "role": "admin"},
    )
    assert added.status_code == 201, added.text
    for org_id, password in (
        (first.id, first.owner_password),
        (second.id, ledger.add(added.json()["data"]["one_time_password"])),
    ):
        login = await client.post(
            "/v1/sessions",
            json={"email": first.owner_email, "password": password, "organization": org_id},
        )
        assert login.status_code == 201, login.text
        token = ledger.add(login.json()["data"]["token"])
        changed = await client.post(
            "/v1/members/me/password",
            headers={"Authorization": f"Bearer {token}"},
            json={"current_password": password, "new_password": shared_password},
        )
        assert changed.status_code in (200, 201), changed.text
    app = dashboard(None)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.screen.query_one("#email", Input).value = first.owner_email
        app.screen.query_one("#password", Input).value = shared_password
        app.screen.query_one("#password", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        organization = app.screen.query_one("#organization", Input)
        assert organization.display and organization.has_focus
        assert second.id in str(app.screen.query_one("#sign-in-error").content)
        await pilot.press(*second.id, "enter")
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        assert app.caller.organization.id == second.id
        ledger.add(app.client.credential)
