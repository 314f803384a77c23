"""Dashboard fixtures: a VentryxApp pointed at the real test server, with its credential
store in a temporary folder (never the keyring or the user's own config)."""

import asyncio
import io
from pathlib import Path

import pytest
from rich.console import Console

from ventryx_tui.app import VentryxApp
from ventryx_tui.credentials import CredentialStore


@pytest.fixture
def isolated_config(tmp_path, monkeypatch) -> Path:
    """Where the dashboard may write: XDG_CONFIG_HOME and HOME inside tmp_path."""
    config = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return config


@pytest.fixture
def credential_store(isolated_config) -> CredentialStore:
    return CredentialStore(path=isolated_config / "ventryx" / "credentials.json", use_keyring=False)


@pytest.fixture
def dashboard(server, credential_store):
    """``dashboard(credential, read_only=False)``: an app signed in with that credential."""

    def make(
        credential: str | None = None,
        *,
        read_only: bool = False,
        server_url: str | None = None,
        timeout: float = 5.0,
    ) -> VentryxApp:
        return VentryxApp(
            server_url or server.url,
            read_only=read_only,
            store=credential_store,
            credential=credential,
            timeout=timeout,
        )

    return make


async def settle(pilot, rounds: int = 40) -> None:
    """Wait until no worker is running and the screen has caught up (workers can start
    workers: a connect opens the overview, which loads)."""
    app = pilot.app
    for _ in range(rounds):
        await pilot.pause()
        # The live tail's stream worker runs for as long as its screen shows.
        finite = [
            worker for worker in app.workers if worker.group != "stream" and worker.is_running
        ]
        if not finite:
            await pilot.pause()
            if not any(w.is_running and w.group != "stream" for w in app.workers):
                return
            continue
        await asyncio.gather(*(worker.wait() for worker in finite), return_exceptions=True)
        await asyncio.sleep(0.02)


async def wait_until(pilot, predicate, timeout: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await pilot.pause(0.05)
    return predicate()


def screen_text(app) -> str:
    """What the terminal shows, as plain text (what export_screenshot draws, without SVG)."""
    console = Console(
        width=app.size.width,
        height=app.size.height,
        file=io.StringIO(),
        force_terminal=True,
        record=True,
        color_system=None,
    )
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text(styles=False)
