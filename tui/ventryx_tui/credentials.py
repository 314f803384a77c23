"""Where the dashboard remembers a credential per server.

The OS keyring when the optional ``keyring`` package is installed and has a working
backend; otherwise the 0600 file of ``ventryx_shared.credentials_file`` (which is also where
``ventryx-server dev`` leaves its first key, so the dashboard starts with no typing). Both
hold one entry per server URL, so signing in to one server never drops another's key.
"""

from __future__ import annotations

import json
from pathlib import Path

from ventryx_shared import credentials_file
from ventryx_shared.credentials_file import CorruptCredentials, SavedCredentials

KEYRING_SERVICE = "ventryx"
KEYRING_ACCOUNT = "dashboard"

__all__ = ["CorruptCredentials", "CredentialStore", "SavedCredentials"]


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
    """Read, save and forget per-server credentials; ``use_keyring=False`` forces the file.

    ``read`` raises ``CorruptCredentials`` (one line, naming the file) for a file it cannot
    read, and ``save`` refuses to overwrite such a file, so nothing is lost silently.
    """

    def __init__(self, path: Path | None = None, use_keyring: bool = True):
        self.path = path
        self._keyring = _usable_keyring() if use_keyring else None

    @property
    def location(self) -> str:
        if self._keyring is not None:
            return "the system keyring"
        return str(self.path or credentials_file.default_path())

    def _keyring_read(self) -> SavedCredentials | None:
        try:
            text = self._keyring.get_password(KEYRING_SERVICE, KEYRING_ACCOUNT)
        except Exception:  # noqa: BLE001 - a locked or broken keyring falls back to the file
            return None
        return credentials_file.parse(text) if text else SavedCredentials()

    def read(self) -> SavedCredentials:
        if self._keyring is not None:
            saved = self._keyring_read()
            if saved is not None:
                return saved
        return credentials_file.read(self.path)

    def save(self, server: str, credential: str) -> None:
        if self._keyring is not None:
            saved = self._keyring_read()
            if saved is not None:
                saved.servers[server.rstrip("/")] = credential
                saved.default = server.rstrip("/")
                try:
                    self._keyring.set_password(
                        KEYRING_SERVICE,
                        KEYRING_ACCOUNT,
                        json.dumps({"default": saved.default, "servers": saved.servers}),
                    )
                    return
                except Exception:  # noqa: BLE001, S110 - the file is the fallback
                    pass
        credentials_file.save(server, credential, self.path)

    def forget(self, server: str) -> None:
        """Drop the entry of ``server`` only; other servers' credentials stay."""
        if self._keyring is not None:
            saved = self._keyring_read()
            found = saved.find(server) if saved is not None else None
            if found is not None:
                del saved.servers[found[0]]
                if saved.default == found[0]:
                    saved.default = next(iter(saved.servers), None)
                try:
                    self._keyring.set_password(
                        KEYRING_SERVICE,
                        KEYRING_ACCOUNT,
                        json.dumps({"default": saved.default, "servers": saved.servers}),
                    )
                except Exception:  # noqa: BLE001, S110 - the file is the fallback
                    pass
        credentials_file.forget(server, self.path)
