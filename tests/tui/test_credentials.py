"""Where the dashboard keeps its credentials when there is no keyring: one entry per server."""

import importlib.util
import json
import stat

import pytest

from ventryx_shared import credentials_file
from ventryx_shared.credentials_file import CorruptCredentials
from ventryx_tui.credentials import CredentialStore

from .conftest import settle


def test_without_a_keyring_the_credential_goes_to_a_0600_file(isolated_config):
    store = CredentialStore()  # asks for the keyring; none is installed or usable here
    if importlib.util.find_spec("keyring") is None:
        assert store.location == str(credentials_file.default_path())
    store = CredentialStore(use_keyring=False)
    store.save("http://127.0.0.1:8000", "vtx_test_example")
    path = credentials_file.default_path()
    assert str(path).startswith(str(isolated_config))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.read().find("http://127.0.0.1:8000") == (
        "http://127.0.0.1:8000",
        "vtx_test_example",
    )
    store.forget("http://127.0.0.1:8000")
    assert not path.exists()
    assert store.read().servers == {}


def test_saving_for_one_server_keeps_every_other_servers_key(isolated_config):
    """What `ventryx-server dev` does on a first start: add its own entry, replace none."""
    credentials_file.save("https://api.example.com", "vtx_live_production")
    credentials_file.save("http://127.0.0.1:8000", "vtx_live_first_dev")
    credentials_file.save("http://127.0.0.1:8000", "vtx_live_second_dev")
    saved = credentials_file.read()
    assert saved.servers == {
        "https://api.example.com": "vtx_live_production",
        "http://127.0.0.1:8000": "vtx_live_second_dev",
    }
    assert saved.default == "http://127.0.0.1:8000"
    credentials_file.forget("http://127.0.0.1:8000")
    assert credentials_file.read().servers == {"https://api.example.com": "vtx_live_production"}


def test_the_first_one_entry_file_still_reads(isolated_config):
    path = credentials_file.default_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"server": "http://127.0.0.1:8000", "credential": "vtx_live_a"}))
    assert CredentialStore(use_keyring=False).read().find("http://127.0.0.1:8000/") == (
        "http://127.0.0.1:8000",
        "vtx_live_a",
    )


def test_localhost_finds_the_key_saved_for_127_0_0_1_on_the_same_port_only(isolated_config):
    credentials_file.save("http://127.0.0.1:8000", "vtx_live_loopback")
    saved = credentials_file.read()
    assert saved.find("http://localhost:8000") == ("http://127.0.0.1:8000", "vtx_live_loopback")
    assert saved.find("http://localhost:8001") is None
    assert saved.find("https://localhost:8000") is None
    assert saved.find("http://example.com:8000") is None


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"servers": {"a": 1}}', "{}"])
def test_a_corrupt_file_is_reported_in_one_line_and_never_overwritten(isolated_config, content):
    path = credentials_file.default_path()
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(CorruptCredentials) as problem:
        credentials_file.save("http://127.0.0.1:8000", "vtx_live_new")
    assert str(path) in str(problem.value) and "\n" not in str(problem.value)
    assert path.read_text() == content


async def test_the_dashboard_says_a_corrupt_file_was_not_read_and_leaves_it(
    dashboard, credential_store
):
    path = credential_store.path
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    app = dashboard(None)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        text = str(app.screen.query_one("#sign-in-error").content)
        assert "were not read" in text and str(path) in text and "\n" not in text
    assert path.read_text() == "{not json"


async def test_localhost_on_the_command_line_uses_the_key_saved_for_127_0_0_1(
    org, server, dashboard, credential_store
):
    from ventryx_tui.screens.overview import OverviewScreen

    credential_store.save(server.url, org.admin_key)
    assert server.url.startswith("http://127.0.0.1:")
    app = dashboard(None, server_url=server.url.replace("127.0.0.1", "localhost"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        assert app.caller.credential_id == org.admin_key_id
