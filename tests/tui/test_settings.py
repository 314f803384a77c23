"""Settings → API keys → New key, the path our documentation gives, and renaming the
organization, by keyboard against the real server."""

from textual.widgets import Footer, Input, SelectionList

from ventryx_tui.screens.api_keys import ApiKeysScreen
from ventryx_tui.screens.key_dialogs import CreateKeyDialog, RevealDialog
from ventryx_tui.screens.members import MembersScreen
from ventryx_tui.screens.overview import OverviewScreen
from ventryx_tui.screens.settings import RenameOrgDialog, SettingsScreen

from .conftest import settle


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def footer_text(app) -> str:
    """What the footer of the screen on top says (its keys and their descriptions)."""
    footer = app.screen.query_one(Footer)
    return " ".join(f"{item.key_display} {item.description}" for item in footer.query("FooterKey"))


async def test_settings_api_keys_new_key_with_the_keys_a_reader_would_guess(
    org, dashboard, client, ledger
):
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        assert "s Settings" in footer_text(app)
        titles = {command.title for command in app.get_system_commands(app.screen)}
        assert "Go to Settings" in titles
        await pilot.press("s")
        await settle(pilot)
        assert isinstance(app.screen, SettingsScreen)
        assert org.id in app.export_screenshot()
        assert "a API keys" in footer_text(app) and "m Members" in footer_text(app)
        await pilot.press("down", "enter")  # the menu: down to Members, enter opens it
        await settle(pilot)
        assert isinstance(app.screen, MembersScreen)
        assert "Settings › Members" in str(app.screen.query_one("#top-bar").content)
        await pilot.press("escape")  # back up to Settings, not to the overview
        await settle(pilot)
        assert isinstance(app.screen, SettingsScreen)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, ApiKeysScreen)
        assert "Settings › API keys" in str(app.screen.query_one("#top-bar").content)
        await pilot.press("n")
        assert isinstance(app.screen, CreateKeyDialog)
        # The dialog's footer shows its own keys, with how to submit.
        assert "^s Create" in footer_text(app) and "esc Cancel" in footer_text(app)
        assert "o Rotate" not in footer_text(app)
        await pilot.press(*"from-settings", "enter")  # on to the scopes
        await pilot.press("enter")  # enter on a scope toggles it (workflows:read)
        assert app.screen.query_one(SelectionList).selected == ["workflows:read"]
        await pilot.press("ctrl+s")  # submits from anywhere in the dialog
        await settle(pilot)
        assert isinstance(app.screen, RevealDialog)
        assert "c Copy" in footer_text(app) and "esc Done" in footer_text(app)
        secret = ledger.add(str(app.screen.query_one("#secret").content))
        await pilot.press("escape")
        await settle(pilot)
    me = await client.get("/v1/me", headers=bearer(secret))
    assert me.status_code == 200 and me.json()["data"]["scopes"] == ["workflows:read"]


async def test_an_admin_renames_the_organization_and_the_top_bar_follows(org, dashboard, client):
    app = dashboard(org.admin_key)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        await pilot.press("e")
        assert isinstance(app.screen, RenameOrgDialog)
        field = app.screen.query_one("#org-name", Input)
        field.value = ""
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, RenameOrgDialog)  # an empty name is refused in place
        field.value = "Acme Renamed"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, SettingsScreen)
        assert "Acme Renamed" in app.export_screenshot().replace("&#160;", " ")
        assert app.caller.organization.name == "Acme Renamed"
    org_now = await client.get("/v1/org", headers=bearer(org.admin_key))
    assert org_now.json()["data"]["name"] == "Acme Renamed"


async def test_without_org_admin_settings_shows_the_organization_but_no_rename(
    org, make_key, dashboard, client
):
    _id, key = await make_key(org, ["api-keys:read", "api-keys:write"])
    app = dashboard(key)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert isinstance(app.screen, SettingsScreen)
        assert org.id in app.export_screenshot()
        assert "Rename" not in footer_text(app)
        assert "Rename organization" not in {
            command.title for command in app.get_system_commands(app.screen)
        }
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, SettingsScreen)  # nothing opened
    org_now = await client.get("/v1/org", headers=bearer(org.admin_key))
    assert org_now.json()["data"]["name"] == org.name
