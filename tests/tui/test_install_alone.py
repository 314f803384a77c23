"""The dashboard installs on a bastion host without the server: shared + tui alone."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("litestar", "asyncpg", "granian", "argon2", "ventryx_server")

STARTS_HEADLESS = textwrap.dedent("""
    import asyncio, importlib.util, sys
    from ventryx_tui.app import VentryxApp
    from ventryx_tui.credentials import CredentialStore
    from ventryx_tui.screens.sign_in import SignInScreen

    present = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is not None]
    assert not present, f"server dependencies installed: {present}"

    async def main():
        store = CredentialStore(path=__import__("pathlib").Path(sys.prefix) / "none.json",
                                use_keyring=False)
        app = VentryxApp("http://127.0.0.1:9", store=store)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert isinstance(app.screen, SignInScreen), app.screen
    asyncio.run(main())
    print("dashboard started alone")
""")


@pytest.mark.timeout(180)
def test_tui_installs_and_starts_without_the_server_dependencies(tmp_path):
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [
        uv,
        "pip",
        "install",
        "-q",
        "--python",
        str(python),
        str(ROOT / "shared"),
        str(ROOT / "tui"),
    ]
    # Offline first: the packages are in uv's cache after `uv sync`; fall back to the index.
    if subprocess.run([*install, "--offline"], capture_output=True).returncode != 0:
        subprocess.run(install, check=True)
    script = tmp_path / "starts.py"
    script.write_text(STARTS_HEADLESS)
    result = subprocess.run(
        [str(python), str(script), *SERVER_ONLY],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dashboard started alone" in result.stdout
    assert (venv / "bin" / "ventryx").exists()
