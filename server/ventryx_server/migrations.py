"""Applies ``sql/migrations`` exactly as a DBA would with psql.

Each ``NNNN_name.up.sql`` ends by recording itself in ``schema_migrations`` with the
sha256 of everything above that line, so a database migrated by psql and one migrated
here are the same. An applied migration whose file has since changed is refused: add a
new migration instead of editing one.
"""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.up\.sql$")
_RECORD = re.compile(
    r"^INSERT INTO schema_migrations \(version, name, checksum\) "
    r"VALUES \((\d+), '([a-z0-9_]+)', '(sha256:[0-9a-f]*)'\);\s*\Z",
    re.MULTILINE,
)
# Any constant works; it only has to be the same in every server process.
_ADVISORY_LOCK = 0x5674_7278_6D69


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up_path: Path
    down_path: Path
    declared_checksum: str
    actual_checksum: str

    @property
    def filename(self) -> str:
        return self.up_path.name

    def up_sql(self) -> str:
        return self.up_path.read_text()

    def down_sql(self) -> str:
        return self.down_path.read_text()


def body_checksum(text: str) -> str:
    body = _RECORD.split(text, maxsplit=1)[0]
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


def load(sql_dir: Path) -> list[Migration]:
    migrations = []
    for path in sorted((sql_dir / "migrations").glob("*.up.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.up.sql")
        version, name = int(match[1]), match[2]
        text = path.read_text()
        record = _RECORD.search(text)
        if not record or int(record[1]) != version or record[2] != name:
            raise MigrationError(
                f"{path.name} must end with: INSERT INTO schema_migrations (version, name, "
                f"checksum) VALUES ({version}, '{name}', '<checksum>');"
            )
        down = path.with_name(path.name.replace(".up.sql", ".down.sql"))
        if not down.exists():
            raise MigrationError(f"{path.name} has no {down.name}")
        migrations.append(Migration(version, name, path, down, record[3], body_checksum(text)))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {versions}")
    for migration in migrations:
        if migration.declared_checksum != migration.actual_checksum:
            raise MigrationError(
                f"{migration.filename} records checksum {migration.declared_checksum} but its "
                f"text hashes to {migration.actual_checksum}. If it was never applied anywhere, "
                f"run `ventryx-server migrate --stamp`; if it was, restore it and add a new one."
            )
    return migrations


def stamp(sql_dir: Path) -> list[str]:
    """Writes each up file's own checksum into its record line; returns the files changed."""
    changed = []
    for path in sorted((sql_dir / "migrations").glob("*.up.sql")):
        text = path.read_text()
        record = _RECORD.search(text)
        if not record:
            continue
        fresh = text[: record.start(3)] + body_checksum(text) + text[record.end(3) :]
        if fresh != text:
            path.write_text(fresh)
            changed.append(path.name)
    return changed


async def applied_checksums(conn: asyncpg.Connection) -> dict[int, str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {row["version"]: row["checksum"] for row in rows}


def _pending(migrations: list[Migration], applied: dict[int, str]) -> list[Migration]:
    known = {m.version: m for m in migrations}
    for version, checksum in sorted(applied.items()):
        migration = known.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {version}, which this server does not know: "
                "it is older than the schema"
            )
        if migration.actual_checksum != checksum:
            raise MigrationError(
                f"{migration.filename} was applied with checksum {checksum} but the file now "
                f"hashes to {migration.actual_checksum}: applied migrations must not be edited"
            )
    return [m for m in migrations if m.version not in applied]


async def pending(conn: asyncpg.Connection, sql_dir: Path) -> list[Migration]:
    return _pending(load(sql_dir), await applied_checksums(conn))


async def migrate(conn: asyncpg.Connection, sql_dir: Path) -> list[Migration]:
    """Applies every pending migration, each in its own transaction; safe to run concurrently."""
    migrations = load(sql_dir)
    done: list[Migration] = []
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADVISORY_LOCK)
            todo = _pending(migrations, await applied_checksums(conn))
            if not todo:
                return done
            await conn.execute(todo[0].up_sql())
            done.append(todo[0])


async def migrate_down(conn: asyncpg.Connection, sql_dir: Path, to_version: int = 0) -> None:
    """Reverts applied migrations newer than ``to_version``, newest first."""
    migrations = load(sql_dir)
    applied = await applied_checksums(conn)
    for migration in reversed(migrations):
        if migration.version in applied and migration.version > to_version:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADVISORY_LOCK)
                await conn.execute(migration.down_sql())
