"""The events table partitioned by day (sql/migrations/0018_event_partitions.up.sql):
converting a table with rows and back, retention per organization and environment, and
plans that touch only the partitions a read needs.

The database tests work in scratch databases of their own: they move the clock of
partitions around (past days, dropped partitions) in ways the shared test database must
not see.
"""

import json
import secrets
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from test_events import make_workflow

from conftest import SQL_DIR, TEST_PEPPER, bearer, create_scratch_database, drop_database
from ventryx_server import migrations, partitions
from ventryx_server.auth import hash_secret
from ventryx_server.bootstrap import bootstrap
from ventryx_shared.tokens import parse_token

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
EVENT_COLUMNS = (
    "org_id, id, environment, type, payload, occurred_at, created_at, "
    "matched_workflows, emitted_by, xact_id"
)


def event_id_at(moment: datetime, serial: int) -> str:
    """An event id minted at ``moment`` (a ULID's first 10 characters are its millisecond)."""
    millisecond = int(moment.timestamp() * 1000)
    time_part = "".join(CROCKFORD[(millisecond >> (5 * (9 - i))) & 31] for i in range(10))
    return f"evt_{time_part}{serial:016X}"


def today() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture
async def scratch(admin_url):
    url = await create_scratch_database(admin_url, prefix="vtx_partitions")
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await migrations.migrate(conn, SQL_DIR)
    yield pool
    await pool.close()
    await drop_database(admin_url, url)


async def new_org(pool, queries) -> tuple[str, str]:
    async with pool.acquire() as conn:
        made = await bootstrap(
            conn,
            queries,
            TEST_PEPPER,
            org_name="Acme",
            owner_email=f"owner-{secrets.token_hex(4)}@example.com",
        )
    return made.org_id, made.key


async def insert_events(conn, org_id: str, environment: str, created_at: list[datetime]):
    rows = [
        (org_id, event_id_at(moment, serial), environment, moment)
        for serial, moment in enumerate(created_at)
    ]
    await conn.executemany(
        "INSERT INTO events (org_id, id, environment, type, payload, occurred_at, created_at, "
        "emitted_by) VALUES ($1, $2, $3, 'order.created', '{\"n\": 1}', $4, $4, 'test')",
        rows,
    )
    return [row[1] for row in rows]


async def partition_names(conn) -> set[str]:
    return {
        row["relname"]
        for row in await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass"
        )
    }


async def all_events(conn) -> list[tuple]:
    return [
        tuple(row)
        for row in await conn.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events ORDER BY org_id, environment, xact_id, id"
        )
    ]


async def test_the_migration_converts_a_table_with_rows_and_the_down_file_restores_it(
    scratch, queries
):
    org_id, _ = await new_org(scratch, queries)
    async with scratch.acquire() as conn:
        await migrations.migrate_down(conn, SQL_DIR, to_version=17)
        assert (
            await conn.fetchval("SELECT relkind::text FROM pg_class WHERE relname = 'events'")
            == "r"
        )
        # Rows of past days, of today, and one emitted in its own transaction (its xact_id
        # differs): the feed order is (xact_id, id), and must survive the copy.
        await insert_events(
            conn, org_id, "live", [today() - timedelta(days=d, hours=3) for d in range(40)]
        )
        await insert_events(conn, org_id, "test", [datetime.now(UTC)])
        before = await all_events(conn)
        assert len({row[-1] for row in before}) == 2

        await migrations.migrate(conn, SQL_DIR)
        assert (
            await conn.fetchval("SELECT relkind::text FROM pg_class WHERE relname = 'events'")
            == "p"
        )
        assert await all_events(conn) == before
        names = await partition_names(conn)
        assert f"events_before_{today():%Y%m%d}" in names and "events_default" in names
        assert {f"events_{today() + timedelta(days=d):%Y%m%d}" for d in range(8)} <= names
        # Today's row sits in today's partition, the older ones in the one before it.
        assert await conn.fetchval(f"SELECT count(*) FROM events_{today():%Y%m%d}") == 1

        await migrations.migrate_down(conn, SQL_DIR, to_version=17)
        assert (
            await conn.fetchval("SELECT relkind::text FROM pg_class WHERE relname = 'events'")
            == "r"
        )
        assert await all_events(conn) == before
        assert not await conn.fetchval("SELECT to_regclass('events_default') IS NOT NULL")


async def test_event_id_time_reads_the_millisecond_an_id_was_minted(scratch):
    moment = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    async with scratch.acquire() as conn:
        assert await conn.fetchval("SELECT event_id_time($1)", event_id_at(moment, 7)) == moment


async def past_partition(conn, day: datetime) -> str:
    """A partition of a day before the migration, as a database in use for weeks has."""
    name = f"events_{day:%Y%m%d}"
    await conn.execute(
        f"CREATE TABLE {name} PARTITION OF events FOR VALUES "
        f"FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')"
    )
    return name


async def test_retention_drops_whole_partitions_and_deletes_shorter_ones_in_batches(
    scratch, queries
):
    short_org, _ = await new_org(scratch, queries)
    long_org, _ = await new_org(scratch, queries)
    async with scratch.acquire() as conn:
        # The partition the migration made for older rows, replaced by daily ones.
        await conn.execute(f"DROP TABLE events_before_{today():%Y%m%d}")
        old_day, recent_day = today() - timedelta(days=12), today() - timedelta(days=3)
        old_partition = await past_partition(conn, old_day)
        await past_partition(conn, recent_day)
        await conn.execute(
            "UPDATE organizations SET event_retention_days_live = 10, "
            "event_retention_days_test = 2 WHERE org_id = $1",
            long_org,
        )
        await conn.execute(
            "UPDATE organizations SET event_retention_days_live = 2, "
            "event_retention_days_test = 2 WHERE org_id = $1",
            short_org,
        )
        noon = timedelta(hours=12)
        for org_id in (short_org, long_org):
            await insert_events(
                conn, org_id, "live", [old_day + noon] * 2 + [recent_day + noon] * 3
            )
            await insert_events(conn, org_id, "test", [recent_day + noon] * 2)
        kept = await insert_events(conn, short_org, "live", [datetime.now(UTC)])

        # Bounded batches: 2 rows a call, until a call finds fewer.
        deleted = [await conn.fetchval("SELECT maintain_events(2)") for _ in range(5)]
        assert deleted == [2, 2, 2, 1, 0]
        assert old_partition not in await partition_names(conn)
        remaining = await conn.fetch(
            "SELECT org_id, environment, count(*) FROM events GROUP BY 1, 2 ORDER BY 1, 2"
        )
        assert {(r["org_id"], r["environment"]): r["count"] for r in remaining} == {
            (long_org, "live"): 3,
            (short_org, "live"): 1,
        }
        assert await conn.fetchval("SELECT id FROM events WHERE org_id = $1", short_org) == kept[0]


async def test_a_day_without_its_partition_is_kept_in_the_default_one_then_moved(scratch, queries):
    org_id, _ = await new_org(scratch, queries)
    last_day = today() + timedelta(days=7)
    async with scratch.acquire() as conn:
        await conn.execute(f"DROP TABLE events_{last_day:%Y%m%d}")
        ids = await insert_events(conn, org_id, "live", [last_day + timedelta(hours=1)])
        assert await conn.fetchval("SELECT count(*) FROM events_default") == 1
    # What each server process runs at start and every hour.
    assert await partitions.maintain(scratch, queries) == 0
    async with scratch.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events_default") == 0
        assert await conn.fetchval(f"SELECT id FROM events_{last_day:%Y%m%d}") == ids[0]


async def test_concurrent_maintenance_calls_do_not_collide(scratch):
    async with scratch.acquire() as first, scratch.acquire() as second:
        async with first.transaction():
            await first.fetchval("SELECT maintain_events()")
            # The second call finds the first at work and returns at once.
            assert await second.fetchval("SELECT maintain_events()") == 0


class ExplainingConnection:
    """Hands a named query's own SQL and parameters to EXPLAIN ANALYZE instead of running it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def explain(self, sql: str, *args) -> dict:
        return json.loads(await self.conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args))

    fetch = fetchrow = explain


def scanned_partitions(plan: dict) -> set[str]:
    found = set()

    def walk(node: dict) -> None:
        if node.get("Relation Name", "").startswith("events_"):
            found.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


MILLION = 1_000_000
DAYS = 8


# Generating and indexing a million rows takes 20-40 s alone, minutes on a shared machine.
@pytest.mark.timeout(600)
async def test_list_and_get_plans_touch_only_the_partitions_they_need(scratch, queries):
    org_id, key = await new_org(scratch, queries)
    token = parse_token(key)
    caller = {
        "credential_kind": token.kind,
        "lookup_id": token.lookup_id,
        "secret_hash": hash_secret(TEST_PEPPER, token.token),
        "environment": "live",
        "scope": "events:read",
    }
    days = [today() + timedelta(days=d) for d in range(DAYS)]
    # One id prefix (minting millisecond) per day, at noon; created_at spreads over the
    # following seconds. One statement generates the million rows.
    prefixes = [event_id_at(day + timedelta(hours=12), 0)[:14] for day in days]
    async with scratch.acquire() as conn:
        await conn.execute(
            "INSERT INTO events (org_id, id, environment, type, payload, occurred_at, "
            "created_at, emitted_by) "
            "SELECT $1, ($2::text[])[g % $4 + 1] || lpad(upper(to_hex(g)), 16, '0'), 'live', "
            "'order.created', '{}', now(), "
            "($3::timestamptz[])[g % $4 + 1] + interval '12 hours' + g * interval '1 microsecond', "
            "'bench' FROM generate_series(1, $5) AS g",
            org_id,
            prefixes,
            days,
            DAYS,
            MILLION,
        )
        await conn.execute("ANALYZE events")
        # As planned for the first executions of a prepared statement, and for the later
        # ones (a generic plan prunes when it starts, from the parameters' values).
        for plan_cache_mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {plan_cache_mode}")
            await assert_plans_prune(ExplainingConnection(conn), queries, caller, days, prefixes)
        await conn.execute("RESET plan_cache_mode")


async def assert_plans_prune(
    explaining, queries, caller: dict, days: list[datetime], prefixes: list[str]
) -> None:
    day = 3
    event_id = prefixes[day] + f"{day + DAYS * 10:016X}"
    assert (
        await explaining.conn.fetchval("SELECT created_at FROM events WHERE id = $1", event_id)
        >= days[day]
    )
    get_plan = await queries.get_event(explaining, **caller, id=event_id)
    assert scanned_partitions(get_plan) == {f"events_{days[day]:%Y%m%d}"}

    list_params = {
        **caller,
        "type": None,
        "type_prefix": None,
        "type_prefix_end": None,
        "limit": 21,
    }
    one_day = await queries.list_events(
        explaining, **list_params, since=days[5], until=days[6], starting_after=None
    )
    assert scanned_partitions(one_day) == {f"events_{days[5]:%Y%m%d}"}

    # A cursor minted on day 2 excludes every later day.
    older = await queries.list_events(
        explaining, **list_params, since=None, until=None, starting_after=prefixes[2] + "0" * 16
    )
    assert scanned_partitions(older) == {f"events_{d:%Y%m%d}" for d in days[:3]} | {
        f"events_before_{today():%Y%m%d}"
    }


async def _retention(db, org_id: str) -> tuple:
    return tuple(
        await db.fetchrow(
            "SELECT event_retention_days_live, event_retention_days_test FROM organizations "
            "WHERE org_id = $1",
            org_id,
        )
    )


async def test_an_org_admin_sets_each_environments_retention_and_it_is_audited(client, db, org):
    response = await client.get("/v1/org", headers=bearer(org.admin_key))
    assert response.json()["data"]["event_retention_days"] == {"live": 30, "test": 30}
    response = await client.patch(
        "/v1/org", headers=bearer(org.admin_key), json={"event_retention_days": {"test": 7}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["event_retention_days"] == {"live": 30, "test": 7}
    assert await _retention(db, org.id) == (30, 7)
    details = await db.fetchval(
        "SELECT details FROM audit_log WHERE org_id = $1 AND action = 'organization.updated'",
        org.id,
    )
    assert json.loads(details) == {"event_retention_days.test": {"from": 30, "to": 7}}


@pytest.mark.parametrize(
    "retention",
    [
        {},
        {"live": 0},
        {"live": 3651},
        {"live": "7"},
        {"test": True},
        {"live": 1.5},
        {"production": 7},
        {"live": None},
        [7],
        7,
    ],
)
async def test_a_bad_retention_is_refused_and_changes_nothing(client, db, org, retention):
    response = await client.patch(
        "/v1/org", headers=bearer(org.admin_key), json={"event_retention_days": retention}
    )
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["request_id"]
    assert await _retention(db, org.id) == (30, 30)


async def test_retention_needs_org_admin_and_stays_within_the_callers_organization(
    client, db, org, make_org, make_key
):
    other = await make_org("Other")
    _, events_key = await make_key(org, ["events:write", "events:read"])
    response = await client.patch(
        "/v1/org", headers=bearer(events_key), json={"event_retention_days": {"live": 1}}
    )
    assert response.status_code == 403
    response = await client.patch(
        "/v1/org", headers=bearer(org.admin_key), json={"event_retention_days": {"live": 1}}
    )
    assert response.status_code == 200
    assert await _retention(db, org.id) == (1, 30)
    assert await _retention(db, other.id) == (30, 30)


async def test_a_batch_answers_each_event_exactly_as_a_get_reads_it_back(client, org):
    # The batch statement returns one row for the whole batch; the answer is assembled
    # from it and must match what was stored, event by event.
    await make_workflow(client, org.admin_key, "orders", "order.*")
    body = {
        "events": [
            {
                "type": "order.created",
                "payload": {"n": 1},
                "occurred_at": "2026-04-02T10:00:00+05:30",
            },
            {"type": "invoice.paid"},
            {
                "type": "order.shipped",
                "payload": {"nested": {"a": [1, 2]}},
                "occurred_at": "1999-12-31T23:59:59.123456Z",
            },
        ]
    }
    response = await client.post("/v1/events/batch", headers=bearer(org.admin_key), json=body)
    assert response.status_code == 201, response.text
    answered = response.json()["data"]
    assert [event["matched_workflows"] != [] for event in answered] == [True, False, True]
    assert answered[0]["occurred_at"] == "2026-04-02T04:30:00Z"
    for event in answered:
        stored = await client.get(f"/v1/events/{event['id']}", headers=bearer(org.admin_key))
        assert stored.json()["data"] == event
