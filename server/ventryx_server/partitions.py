"""Keeping the events table's partitions: created ahead, expired ones removed.

Each server process calls maintain_events (sql/migrations/0018_event_partitions.up.sql)
when it starts and then every hour; a DBA may call the same function from cron or
pg_cron instead or as well (sql/README.md). Concurrent calls are harmless: one works,
the others return at once. Each call deletes a bounded batch, in its own transaction,
so row locks are held briefly; the process calls again while batches come back full.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator

import asyncpg
from litestar import Litestar

from .auth import _in_background as in_background
from .db import Queries

log = logging.getLogger("ventryx.partitions")

EVERY_SECONDS = 3600.0
BATCH_ROWS = 5000
# At most this many batches a round (250,000 rows): the rest waits for the next round,
# so that one backlog cannot keep a connection of the pool for long.
MAX_BATCHES = 50


async def maintain(pool: asyncpg.Pool, queries: Queries) -> int:
    """One round: partitions ahead, expired ones dropped, expired rows deleted in batches.
    Returns how many rows were deleted."""
    deleted = 0
    for _ in range(MAX_BATCHES):
        async with pool.acquire() as connection:
            batch = await queries.maintain_events(connection, max_deleted=BATCH_ROWS)
        deleted += batch
        if batch < BATCH_ROWS:
            break
    return deleted


async def _maintain_forever(app: Litestar) -> None:
    while True:
        try:
            if deleted := await maintain(app.state.pool, app.state.queries):
                log.info("deleted %d expired events", deleted)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("could not maintain the events partitions: %s", type(exc).__name__)
        await asyncio.sleep(EVERY_SECONDS)


@contextlib.asynccontextmanager
async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
    async with in_background(_maintain_forever(app)):
        yield
