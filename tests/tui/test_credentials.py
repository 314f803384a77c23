"""Where the dashboard keeps its credential when there is no keyring."""

import importlib.util
import stat

from ventryx_shared import credentials_file
from ventryx_tui.credentials import CredentialStore


def test_without_a_keyring_the_credential_goes_to_a_0600_file(isolated_config):
    store = CredentialStore()  # asks for the keyring; none is installed or usable here
    if importlib.util.find_spec("keyring") is None:
        assert store.location == str(credentials_file.default_path())
    store = CredentialStore(use_keyring=False)
    store.save("http://127.0.0.1:8000", "vtx_test_example")
    path = credentials_file.default_path()
    assert str(path).startswith(str(isolated_config))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.load() == ("http://127.0.0.1:8000", "vtx_test_example")
    store.forget()
    assert store.load() is None


def test_the_dev_servers_saved_file_is_what_the_dashboard_reads(isolated_config):
    credentials_file.save("http://127.0.0.1:8000", "vtx_live_saved_by_dev")
    assert CredentialStore(use_keyring=False).load() == (
        "http://127.0.0.1:8000", "vtx_live_saved_by_dev")
