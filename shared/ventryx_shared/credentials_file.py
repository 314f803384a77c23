"""Where the dashboard finds saved server URLs and credentials when no keyring holds them.

``$XDG_CONFIG_HOME/ventryx/credentials.json`` (else ``~/.config/ventryx/…``), mode 0600:
``{"default": URL, "servers": {URL: credential, ...}}``, one entry per server, so
``ventryx-server dev`` adds or updates only its own entry and never replaces the key of
another server. The first, one-entry form ``{"server", "credential"}`` still reads.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

# Every spelling of "this machine": a key saved for 127.0.0.1:8000 also serves localhost:8000.
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


class CorruptCredentials(Exception):
    """The file exists but is not one we wrote; it is reported and never overwritten."""


@dataclass
class SavedCredentials:
    servers: dict[str, str] = field(default_factory=dict)
    default: str | None = None

    def find(self, server: str) -> tuple[str, str] | None:
        """``(saved URL, credential)`` for ``server``: the same URL, else the same port on
        another spelling of the loopback address."""
        wanted = server.rstrip("/")
        if wanted in self.servers:
            return wanted, self.servers[wanted]
        for saved, credential in self.servers.items():
            if _same_place(saved, wanted):
                return saved, credential
        return None


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ventryx" / "credentials.json"


def _same_place(first: str, second: str) -> bool:
    a, b = urlsplit(first), urlsplit(second)
    host_a, host_b = (a.hostname or "").lower(), (b.hostname or "").lower()
    same_host = host_a == host_b or (host_a in _LOOPBACK and host_b in _LOOPBACK)
    return same_host and a.scheme == b.scheme and a.port == b.port


def parse(text: str) -> SavedCredentials:
    """The file's content, or ``CorruptCredentials`` saying in one line what is wrong."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise CorruptCredentials(f"not JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise CorruptCredentials("not a JSON object")
    if "servers" in document:
        servers = document["servers"]
        if not isinstance(servers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in servers.items()
        ):
            raise CorruptCredentials('"servers" is not a map of URL to credential')
        default = document.get("default")
        return SavedCredentials(dict(servers), default if default in servers else None)
    server, credential = document.get("server"), document.get("credential")
    if isinstance(server, str) and isinstance(credential, str):
        return SavedCredentials({server.rstrip("/"): credential}, server.rstrip("/"))
    raise CorruptCredentials('neither "servers" nor "server" and "credential"')


def read(path: Path | None = None) -> SavedCredentials:
    """Everything saved; nothing when there is no file. A file that cannot be read raises
    ``CorruptCredentials`` naming the file."""
    path = path or default_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return SavedCredentials()
    except OSError as exc:
        raise CorruptCredentials(f"{path}: {exc.strerror or exc}") from exc
    try:
        return parse(text)
    except CorruptCredentials as exc:
        raise CorruptCredentials(f"{path} is {exc}") from exc


def write(saved: SavedCredentials, path: Path | None = None) -> Path:
    path = path or default_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"default": saved.default, "servers": saved.servers}, out, indent=2)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return path


def save(server: str, credential: str, path: Path | None = None) -> Path:
    """Add or update the entry of ``server`` (and make it the default), keeping every other
    server's entry. Raises ``CorruptCredentials`` rather than overwrite a file it cannot read."""
    saved = read(path)
    server = server.rstrip("/")
    saved.servers[server] = credential
    saved.default = server
    return write(saved, path)


def forget(server: str, path: Path | None = None) -> None:
    """Remove the entry of ``server`` (or of its loopback twin); the file goes with the last."""
    path = path or default_path()
    saved = read(path)
    found = saved.find(server)
    if found is None:
        return
    del saved.servers[found[0]]
    if not saved.servers:
        path.unlink(missing_ok=True)
        return
    if saved.default == found[0]:
        saved.default = next(iter(saved.servers))
    write(saved, path)
