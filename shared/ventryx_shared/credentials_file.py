"""Where the dashboard finds a saved server URL and credential when no keyring holds one.

``$XDG_CONFIG_HOME/ventryx/credentials.json`` (else ``~/.config/ventryx/…``), mode 0600.
"""

import json
import os
from pathlib import Path


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ventryx" / "credentials.json"


def save(server: str, credential: str, path: Path | None = None) -> Path:
    path = path or default_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"server": server, "credential": credential}, out)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return path


def load(path: Path | None = None) -> tuple[str, str] | None:
    path = path or default_path()
    try:
        saved = json.loads(path.read_text())
        return saved["server"], saved["credential"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
