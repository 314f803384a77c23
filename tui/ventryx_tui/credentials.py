"""Where the dashboard remembers its server and credential.

The OS keyring when the optional ``keyring`` package is installed and has a working
backend; otherwise the 0600 file of ``ventryx_shared.credentials_file`` (which is also where
``ventryx-server dev`` leaves its first key, so the dashboard starts with no typing).
"""

from __future__ import annotations

import json
from pathlib import Path

from ventryx_shared import credentials_file

KEYRING_SERVICE = "ventryx"
KEYRING_ACCOUNT = "dashboard"


def _usable_keyring():
    """The keyring module if it is installed and backed by a real store, else None."""
    try:
        import keyring
        from keyring.backends import fail
    except Exception:  # noqa: BLE001 - any import failure means "no keyring here"
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # noqa: BLE001, S110 - the file is the fallback
        return None
    if isinstance(backend, fail.Keyring):
        return None
    return keyring


class CredentialStore:
    """Load and save ``(server, credential)``; ``use_keyring=False`` forces the file."""

    def __init__(self, path: Path | None = None, use_keyring: bool = True):
        self.path = path
        self._keyring = _usable_keyring() if use_keyring else None

    @property
    def location(self) -> str:
        if self._keyring is not None:
            return "the system keyring"
        return str(self.path or credentials_file.default_path())

    def load(self) -> tuple[str, str] | None:
        if self._keyring is not None:
            try:
                saved = self._keyring.get_password(KEYRING_SERVICE, KEYRING_ACCOUNT)
                if saved:
                    value = json.loads(saved)
                    return value["server"], value["credential"]
            except Exception:  # noqa: BLE001, S110 - a locked or broken keyring falls back to the file
                pass
        return credentials_file.load(self.path)

    def save(self, server: str, credential: str) -> None:
        if self._keyring is not None:
            try:
                self._keyring.set_password(KEYRING_SERVICE, KEYRING_ACCOUNT, json.dumps(
                    {"server": server, "credential": credential}))
                return
            except Exception:  # noqa: BLE001, S110 - the file is the fallback
                pass
        credentials_file.save(server, credential, self.path)

    def forget(self) -> None:
        if self._keyring is not None:
            try:
                self._keyring.delete_password(KEYRING_SERVICE, KEYRING_ACCOUNT)
            except Exception:  # noqa: BLE001, S110 - the file is the fallback
                pass
        path = self.path or credentials_file.default_path()
        path.unlink(missing_ok=True)
