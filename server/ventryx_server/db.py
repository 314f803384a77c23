"""The asyncpg pool, the SQL loaded from ``sql/queries``, and the per-request connection."""

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosql
import asyncpg
from aiosql.adapters.asyncpg import AsyncPGAdapter
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import NamedDependency

from . import migrations
from .settings import Settings


class ConnectionAdapter(AsyncPGAdapter):
    """aiosql's asyncpg adapter without its per-call check for a pool: it runs ``dir()`` on
    the connection for every query (about 20 µs). Ventryx always passes a connection."""

    async def select(self, conn, query_name, sql, parameters, record_class=None):
        for row in await conn.fetch(sql, *self.maybe_order_params(query_name, parameters)):
            yield row

    async def select_one(self, conn, query_name, sql, parameters, record_class=None):
        return await conn.fetchrow(sql, *self.maybe_order_params(query_name, parameters))

    async def select_value(self, conn, query_name, sql, parameters):
        return await conn.fetchval(sql, *self.maybe_order_params(query_name, parameters))

    async def insert_update_delete(self, conn, query_name, sql, parameters):
        return await conn.execute(sql, *self.maybe_order_params(query_name, parameters))


def queries_from_str(text: str) -> aiosql.queries.Queries:
    """Named queries in aiosql's format, run through ConnectionAdapter."""
    return aiosql.from_str(text, ConnectionAdapter, mandatory_parameters=False)


CREDENTIAL_KIND = ":credential_kind"
CREDENTIAL_KINDS = ("api_key", "session")


class Queries:
    """Every statement of ``sql/queries``, by name: ``queries.get_api_key(db, **params)``.

    A statement that authorizes a caller names ``:credential_kind``. It is loaded once per
    kind with the kind written in as a literal, and called with the variant the
    ``credential_kind`` argument names: PostgreSQL then plans an API key's statement
    without the sessions branch of ``authorized_caller`` (no tables opened, locked or
    probed for it), which a bound parameter could not achieve. Measured on a prepared
    authenticated read: 40 -> 28 µs of database CPU.
    """

    def __init__(self, sql_dir: Path) -> None:
        text = "\n\n".join(path.read_text() for path in sorted((sql_dir / "queries").glob("*.sql")))
        plain = queries_from_str(text)
        per_kind = {kind: queries_from_str(text.replace(CREDENTIAL_KIND, f"'{kind}'"))
                    for kind in CREDENTIAL_KINDS}
        for name in plain.available_queries:
            variants = {kind: getattr(queries, name) for kind, queries in per_kind.items()}
            if variants["api_key"].sql == getattr(plain, name).sql:
                setattr(self, name, getattr(plain, name))
            else:
                setattr(self, name, _by_credential_kind(variants))


def _by_credential_kind(variants: dict[str, Any]) -> Any:
    def query(connection: asyncpg.Connection, *, credential_kind: str, **params: Any) -> Any:
        # Returns what the variant returns: a coroutine, or rows to iterate.
        return variants[credential_kind](connection, **params)

    return query


def load_queries(sql_dir: Path) -> Queries:
    return Queries(sql_dir)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Replaces asyncpg's per-release reset query (a second round trip per request).

    Safe because no Ventryx code leaves session state on a pooled connection: no
    session-level SET (only SET LOCAL), advisory locks only as pg_advisory_xact_lock,
    LISTEN only on dedicated connections outside the pool, and transactions always end
    (asyncpg rolls back an open one before this is called).
    """


async def create_pool(settings: Settings) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        settings.database_url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        reset=_keep_session,
    )


class SchemaBehind(SystemExit):
    pass


async def check_schema(pool: asyncpg.Pool, sql_dir: Path) -> None:
    async with pool.acquire() as conn:
        todo = await migrations.pending(conn, sql_dir)
    if todo:
        names = ", ".join(m.filename for m in todo)
        raise SchemaBehind(
            f"The database schema is behind; apply {names} "
            "(`ventryx-server migrate`, or psql as sql/README.md shows) before serving."
        )


@asynccontextmanager
async def pool_lifespan(app: Litestar) -> AsyncGenerator[None, None]:
    settings: Settings = app.state.settings
    pool = await create_pool(settings)
    try:
        await check_schema(pool, settings.sql_dir)
        app.state.pool = pool
        yield
    finally:
        await pool.close()


# What handlers declare to get a pooled connection: ``db: Db``.
Db = NamedDependency[asyncpg.Connection]


async def provide_db(state: State) -> AsyncGenerator[asyncpg.Connection, None]:
    async with state.pool.acquire() as connection:
        yield connection


async def fetch_all(rows: AsyncIterator[asyncpg.Record]) -> list[asyncpg.Record]:
    """aiosql yields the rows of a many-row query; this collects them."""
    return [row async for row in rows]
