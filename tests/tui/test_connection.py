"""Connection truth: a server that goes away is noticed while the user is idle, and a live
tail open while the server stops neither hangs the server nor claims to be streaming."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from ventryx_tui.screens.events import EventsScreen
from ventryx_tui.screens.overview import OverviewScreen

from .conftest import settle, wait_until
from .test_app import _ready


@pytest.fixture
def own_server(database_url, server_log_dir):
    """``start()`` a real server process on a port of its own, in a process group of its
    own so that ``gone()`` can take it away whole (granian serves from a child process)."""
    from conftest import ROOT, TEST_PEPPER, free_port, wait_for

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    processes = []

    def launch(log_name: str) -> subprocess.Popen:
        env = {**os.environ, "DATABASE_URL": database_url, "VENTRYX_PEPPER": TEST_PEPPER.hex()}
        with open(server_log_dir / log_name, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "ventryx_server", "serve", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )

    async def start(log_name: str) -> subprocess.Popen:
        process = launch(log_name)
        processes.append(process)
        assert await wait_for(lambda: _ready(url), timeout=30)
        return process

    start.url = url
    yield start
    for process in processes:
        # The whole group, even when its first process is gone: a granian worker left
        # behind would keep serving the port.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@pytest.mark.timeout(90)
async def test_an_idle_dashboard_notices_the_server_is_gone_within_5_seconds(
    org, dashboard, own_server
):
    process = await own_server("tui-idle-1.log")
    app = dashboard(org.admin_key, server_url=own_server.url, timeout=5)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen) and app.connection == "connected"
        os.killpg(process.pid, signal.SIGKILL)  # no goodbye at all, and no key pressed
        process.wait(10)
        gone = time.monotonic()
        assert await wait_until(pilot, lambda: app.connection == "reconnecting", timeout=5)
        assert time.monotonic() - gone < 5
        assert "reconnecting" in app.export_screenshot()
        await own_server("tui-idle-2.log")
        assert await wait_until(pilot, lambda: app.connection == "connected", timeout=20)
        assert "reconnecting" not in app.export_screenshot()


@pytest.mark.timeout(120)
async def test_stopping_the_server_with_the_tail_open_does_not_hang_and_the_tail_resumes(
    org, dashboard, own_server
):
    process = await own_server("tui-shutdown-1.log")
    headers = {"Authorization": f"Bearer {org.admin_key}"}
    app = dashboard(org.admin_key, server_url=own_server.url, timeout=5)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, EventsScreen)
        assert await wait_until(pilot, lambda: screen.tail_state == "streaming")
        process.send_signal(signal.SIGTERM)
        # The server ends: the dashboard closed its stream (on the server's goodbye, or
        # when /healthz stopped answering), so a graceful shutdown has nothing to wait for.
        assert await wait_until(pilot, lambda: process.poll() is not None, timeout=20)
        assert await wait_until(pilot, lambda: screen.tail_state == "reconnecting", timeout=5)
        status = str(screen.query_one("#tail-status").content)
        assert "reconnecting" in status and "streaming" not in status
        assert app.connection == "reconnecting"

        await own_server("tui-shutdown-2.log")
        assert await wait_until(pilot, lambda: screen.tail_state == "streaming", timeout=30)
        async with httpx.AsyncClient(base_url=own_server.url, timeout=10) as http:
            emitted = await http.post(
                "/v1/events", headers=headers, json={"type": "order.after_restart", "payload": {}}
            )
        assert emitted.status_code == 201, emitted.text
        event_id = emitted.json()["data"]["id"]
        assert await wait_until(pilot, lambda: any(e.id == event_id for e in screen.buffer))


async def test_a_key_revoked_while_streaming_ends_the_tail_and_asks_to_sign_in(
    org, make_key, dashboard, client
):
    from ventryx_tui.screens.sign_in import SignInScreen

    key_id, key = await make_key(org, ["events:read"])
    app = dashboard(key)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        screen = app.screen
        assert await wait_until(pilot, lambda: screen.tail_state == "streaming")
        revoked = await client.delete(
            f"/v1/api-keys/{key_id}", headers={"Authorization": f"Bearer {org.admin_key}"}
        )
        assert revoked.status_code == 200
        # The server's `event: error` (invalid_api_key) reads as the 401 it stands for.
        assert await wait_until(pilot, lambda: isinstance(app.screen, SignInScreen))
        await settle(pilot)
        assert screen.tail_state == "stopped"
        assert "request id req_" in str(app.screen.query_one("#sign-in-error").content)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("key_revoked", 401),
        ("key_expired", 401),
        ("session_ended", 401),
        ("member_removed", 401),
        ("invalid_api_key", 401),
        ("missing_scope", 403),
    ],
)
def test_a_stream_closed_for_lost_access_reads_as_the_status_a_request_would_get(code, status):
    from ventryx_tui.client import StreamEnded, _stream_error

    error = _stream_error(
        {"type": "authentication_error", "code": code, "message": "closed", "request_id": "req_1"}
    )
    assert error.status == status and not isinstance(error, StreamEnded)
    assert error.request_id == "req_1"


@pytest.mark.parametrize("code", ["server_shutting_down", "stream_lagging", "stream_interrupted"])
def test_a_stream_closed_for_any_other_reason_is_one_to_reconnect(code):
    from ventryx_tui.client import StreamEnded, _stream_error

    error = _stream_error({"type": "api_error", "code": code, "message": "closed"})
    assert isinstance(error, StreamEnded) and error.code == code
