"""What writing events costs PostgreSQL, piece by piece.

    uv run python bench/event_storage_cost.py    # --rounds 7 --batches 20 --emits 1000 --connections 4

bench/run.py measures requests end to end, where the app, the database and the load
generator share the cores. This measures only the database's CPU for the writes, read
from /proc for the backends that run them (Linux), on a throwaway embedded PostgreSQL,
in interleaved rounds, so every figure sits next to its baseline from the same run:

- Batches: the server's COPY of a 500-event batch (event_batches.copy_events, the same
  lines, one transaction per batch) into ``events``, and into copies of it that leave
  out one more piece each time: the partitioning, the CHECK constraints, the two
  secondary indexes, the primary key. What a piece costs is the difference between two
  rows; the last row (a bare heap) is the baseline.
- Single emits: the server's ``emit-event`` statement next to the same insert without a
  caller (bench_events.py's baseline), and the caller function alone, with its shared
  write lock (what a write pays to be ordered against revocation) and without.
"""

import argparse
import asyncio
import atexit
import secrets
import shutil
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec
from bench_events import _QUERIES as BASELINE_QUERIES
from bench_events import PAYLOAD
from harness import process_tree_cpu_seconds
from run import prepare_database

from ventryx_server import embedded
from ventryx_server.auth import CredentialReader
from ventryx_server.controllers.events import read_batch
from ventryx_server.db import Queries
from ventryx_server.event_batches import copy_events
from ventryx_server.settings import find_sql_dir
from ventryx_shared.ids import new_id, new_ids

BATCH_SIZE = 500
EVENT_TYPE = "order.created"
BASELINE = "insert without a caller (baseline)"
EMIT = "emit-event (the server's)"
COMPARED = (BASELINE, EMIT)  # the caller functions alone are parts, not alternatives

_ALL_BUT_PARTITIONS = "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES"
# (what the table has, its schema, how the copy is made from public.events). Each copy is
# a table named events in a schema of its own, so copy_events writes it unchanged (the
# connection's search_path picks it).
TABLES = [
    ("events (partitioned, 3 indexes, CHECKs)", "public", None),
    ("without partitioning", "cost_unpartitioned", _ALL_BUT_PARTITIONS),
    ("  nor CHECK constraints", "cost_unchecked", "INCLUDING DEFAULTS INCLUDING INDEXES"),
    ("  nor secondary indexes", "cost_primary_key", "INCLUDING DEFAULTS"),
    ("  nor primary key: a bare heap (baseline)", "cost_heap", "INCLUDING DEFAULTS"),
]


def backend_cpu(pids: list[int]) -> float:
    return sum(process_tree_cpu_seconds(pid) or 0.0 for pid in pids)


async def cpu_per_unit(
    connections: list[asyncpg.Connection],
    units: int,
    work: Callable[[asyncpg.Connection], Awaitable[None]],
) -> float:
    """Database CPU in µs per unit of work, the connections running ``work`` at once."""
    pids = [connection.get_server_pid() for connection in connections]
    before = backend_cpu(pids)
    await asyncio.gather(*(work(connection) for connection in connections))
    return (backend_cpu(pids) - before) / (units * len(connections)) * 1e6


async def make_tables(db: asyncpg.Connection) -> None:
    primary_key = await db.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'public.events'::regclass AND contype = 'p'"
    )
    for _, schema, like in TABLES[1:]:
        await db.execute(f"CREATE SCHEMA {schema}")
        await db.execute(f"CREATE TABLE {schema}.events (LIKE public.events {like})")
    await db.execute(f"ALTER TABLE cost_primary_key.events ADD {primary_key}")
    await db.execute("SELECT maintain_events()")  # today's partition, as the server makes


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=20, help="per table per round")
    parser.add_argument("--emits", type=int, default=1000, help="per connection per round")
    parser.add_argument("--connections", type=int, default=4, help="for the single emits")
    return parser.parse_args()


async def measure_batches(db: asyncpg.Connection, org_id: str, args: argparse.Namespace) -> None:
    body = msgspec.json.encode({"events": [{"type": EVENT_TYPE, "payload": PAYLOAD}] * BATCH_SIZE})
    items, payloads, _ = read_batch(body)  # as the server reads a batch
    matches = {EVENT_TYPE: ["wfl_fulfil", "wfl_all_orders"]}

    def copy_into(schema: str) -> Callable[[asyncpg.Connection], Awaitable[None]]:
        async def work(connection: asyncpg.Connection) -> None:
            await connection.execute(f"SET search_path = {schema}, public")
            for _ in range(args.batches):
                row = {
                    "org_id": org_id,
                    "environment": "live",
                    "created_at": datetime.now(UTC),
                    "emitted_by": "key_bench",
                }
                async with connection.transaction():
                    await copy_events(
                        connection, row, matches, new_ids("evt", BATCH_SIZE), items, payloads
                    )

        return work

    results: dict[str, list[float]] = {name: [] for name, _, _ in TABLES}
    for _ in range(args.rounds):
        for name, schema, _ in TABLES:
            cost = await cpu_per_unit([db], args.batches * BATCH_SIZE, copy_into(schema))
            results[name].append(cost)
    await db.execute("SET search_path = public")
    medians = [statistics.median(results[name]) for name, _, _ in TABLES]
    print(
        f"\nCOPY of {BATCH_SIZE}-event batches, database CPU per event: {args.batches} batches a "
        f"table a round, median of {args.rounds} rounds"
    )
    print(f"{'table':<46}{'µs/event':>9}{'saved':>8}{'of events':>11}   per round")
    for index, (name, _, _) in enumerate(TABLES):
        piece = medians[index - 1] - medians[index] if index else None
        rounds = " ".join(f"{value:.1f}" for value in results[name])
        print(
            f"{name:<46}{medians[index]:>9.1f}"
            f"{'' if piece is None else f'{piece:.1f}':>8}"
            f"{medians[index] / medians[0]:>11.2f}   {rounds}"
        )
    print("saved: what leaving out this row's piece saves, against the row above.")


async def measure_emits(database_url: str, org, pepper: bytes, args: argparse.Namespace) -> None:
    credential = CredentialReader(pepper).read(
        {"headers": [(b"authorization", f"Bearer {org.key}".encode())], "query_string": b""}
    )
    caller = {**credential.statement_params, "scope": "events:write"}
    caller_args = [caller[name] for name in ("lookup_id", "secret_hash", "environment", "scope")]
    queries = Queries.from_dir(find_sql_dir())
    payload = msgspec.json.encode(PAYLOAD).decode()
    connections = [await asyncpg.connect(database_url) for _ in range(args.connections)]

    def new_event() -> dict[str, object]:
        return {"id": new_id("evt"), "type": EVENT_TYPE, "payload": payload, "occurred_at": None}

    async def baseline(connection: asyncpg.Connection) -> object:
        return await BASELINE_QUERIES.insert_event(
            connection, org_id=org.org_id, environment="live", **new_event()
        )

    async def emit(connection: asyncpg.Connection) -> object:
        return await queries.emit_event(connection, **caller, **new_event())

    async def locked_caller(connection: asyncpg.Connection) -> object:
        return await connection.fetchrow(
            "SELECT * FROM locked_api_key_caller($1, $2, $3, $4)", *caller_args
        )

    async def caller_only(connection: asyncpg.Connection) -> object:
        return await connection.fetchrow(
            "SELECT * FROM api_key_caller($1, $2, $3, $4)", *caller_args
        )

    statements = {
        BASELINE: baseline,
        EMIT: emit,
        "locked_api_key_caller alone": locked_caller,
        "api_key_caller alone (no lock)": caller_only,
    }
    try:
        for name, statement in statements.items():  # a denial would measure nothing
            if await statement(connections[0]) is None:
                raise SystemExit(f"{name}: no row (the bench key was refused)")

        def repeated(statement):
            async def work(connection: asyncpg.Connection) -> None:
                for _ in range(args.emits):
                    await statement(connection)

            return work

        results: dict[str, list[float]] = {name: [] for name in statements}
        for _ in range(args.rounds):
            for name, statement in statements.items():
                results[name].append(
                    await cpu_per_unit(connections, args.emits, repeated(statement))
                )
    finally:
        for connection in connections:
            await connection.close()
    base = statistics.median(results[BASELINE])
    print(
        f"\nSingle emits, database CPU per statement: {args.connections} connections, "
        f"{args.emits} statements each a round, median of {args.rounds} rounds"
    )
    print(f"{'statement':<38}{'µs':>8}{'baseline / this':>17}   per round")
    for name, values in results.items():
        median = statistics.median(values)
        ratio = f"{base / median:.2f}" if name in COMPARED else ""
        rounds = " ".join(f"{value:.0f}" for value in values)
        print(f"{name:<38}{median:>8.0f}{ratio:>17}   {rounds}")


async def main(args: argparse.Namespace) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="ventryx-bench-"))
    atexit.register(shutil.rmtree, run_dir, True)  # before PostgreSQL's own exit handler
    pepper = secrets.token_bytes(32)
    database_url, org = await prepare_database(embedded.start(run_dir), pepper)
    db = await asyncpg.connect(database_url)
    try:
        await make_tables(db)
        await measure_batches(db, org.org_id, args)
    finally:
        await db.close()
    await measure_emits(database_url, org, pepper, args)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
