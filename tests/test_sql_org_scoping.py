"""Every row and every statement belongs to one organization, so the tables can be split by
``org_id`` (Citus, or a database per group of organizations: sql/README.md).

Two rules, each checked on what exists, so a newcomer that breaks them fails here:
- each table's primary key and unique indexes lead with ``org_id`` (the catalog of the
  migrated test database is read, whatever migrations made it);
- each statement in ``sql/queries`` that reads or writes a table filters by ``org_id``
  (a parameter, or the caller's organization), inserts an ``org_id``, or says why it is
  deliberately global with a ``-- global: <why>`` comment.
"""

import re
from pathlib import Path

from conftest import SQL_DIR

# Tables and unique indexes that cannot lead with org_id, and why. Kept here, next to the
# rule, so a new exception is a reviewed change of this list.
GLOBAL_TABLES = {
    "organizations": "the organization itself: org_id is its whole primary key",
    "schema_migrations": "one schema for every organization",
    "login_attempts": "a login is throttled by email and address before any organization is known",
}
GLOBAL_UNIQUE_INDEXES = {
    "api_keys_lookup_id": "a key is found by its lookup id before its organization is known",
    "sessions_lookup_id": "a session token is found by its lookup id, likewise",
}

KEY_COLUMNS = """
SELECT c.relname AS table_name, i.relname AS index_name, ix.indisprimary AS is_primary,
       a.attname AS first_column
FROM pg_index ix
JOIN pg_class c ON c.oid = ix.indrelid
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ix.indkey[0]
WHERE n.nspname = current_schema() AND (ix.indisunique OR ix.indisprimary)
  AND NOT c.relispartition
ORDER BY 1, 2
"""
TABLES_WITHOUT_PRIMARY_KEY = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND NOT EXISTS (SELECT 1 FROM pg_index ix WHERE ix.indrelid = c.oid AND ix.indisprimary)
"""
TABLE_NAMES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""


async def keys_not_led_by_org_id(conn) -> list[str]:
    """Each primary key or unique index whose first column is not org_id, outside the lists."""
    found = [
        f"{row['relname']}: no primary key"
        for row in await conn.fetch(TABLES_WITHOUT_PRIMARY_KEY)
        if row["relname"] not in GLOBAL_TABLES
    ]
    for row in await conn.fetch(KEY_COLUMNS):
        if (
            row["first_column"] == "org_id"
            or row["table_name"] in GLOBAL_TABLES
            or row["index_name"] in GLOBAL_UNIQUE_INDEXES
        ):
            continue
        kind = "primary key" if row["is_primary"] else "unique index"
        found.append(
            f"{row['table_name']}: {kind} {row['index_name']} leads with "
            f"{row['first_column'] or 'an expression'}"
        )
    return found


# The caller functions find a credential by its lookup id: they read api_keys or sessions.
CALLER_FUNCTIONS = r"(?:locked_)?(?:authorized|api_key|session)_caller"
GLOBAL_MARKER = re.compile(r"^--\s*global:\s*\S", re.M)
# An org_id compared with a parameter (:org_id, :org_ids) or with the caller's organization.
ORG_FILTER = re.compile(
    r"\borg_id\s*(?:=|IN\b|=\s*ANY)\s*\(?\s*(?::\w*org_id|c\.org_id)\b"
    r"|(?::\w*org_id\w*|\bc\.org_id)\s*=\s*\w*\.?org_id\b"
    r"|unnest\s*\(\s*:\w*org_ids\b",
    re.I,
)
# An org_id filter that a NULL parameter switches off does not scope the statement.
OPTIONAL_ORG_FILTER = re.compile(r":\w*org_id\w*::text\s+IS\s+NULL\s+OR", re.I)
INSERT_WITH_ORG_ID = re.compile(r"\bINSERT\s+INTO\s+\w+\s*\([^)]*\borg_id\b", re.I)
# A credential found by its lookup id is a lookup across organizations, whatever follows.
LOOKUP_BY_LOOKUP_ID = re.compile(r"\blookup_id\s*=", re.I)


def named_statements(text: str) -> dict[str, str]:
    """aiosql's ``-- name: x`` blocks: name (without operator suffix) -> the block's text."""
    blocks = re.split(r"^-- name:\s*", text, flags=re.M)[1:]
    return {
        block.split("\n", 1)[0].strip().rstrip("^!<>$*#"): block.split("\n", 1)[1]
        for block in blocks
    }


def touches_a_table(sql: str, tables: set[str]) -> bool:
    words = set(re.findall(r"\b\w+\b", sql.lower()))
    return bool(words & tables) or re.search(CALLER_FUNCTIONS, sql) is not None


def is_scoped(block: str, tables: set[str]) -> bool:
    """Scoped to one organization, deliberately global (marked), or touching no table."""
    if GLOBAL_MARKER.search(block):
        return True
    sql = "\n".join(line for line in block.splitlines() if not line.lstrip().startswith("--"))
    if not touches_a_table(sql, tables):
        return True  # pg_notify, advisory locks: no rows to route
    if OPTIONAL_ORG_FILTER.search(sql) or LOOKUP_BY_LOOKUP_ID.search(sql):
        return False
    return bool(ORG_FILTER.search(sql) or INSERT_WITH_ORG_ID.search(sql))


def unscoped_statements(query_dir: Path, tables: set[str]) -> list[str]:
    return [
        f"{path.name}: {name}"
        for path in sorted(query_dir.glob("*.sql"))
        for name, block in named_statements(path.read_text()).items()
        if not is_scoped(block, tables)
    ]


async def table_names(conn) -> set[str]:
    return {row["relname"] for row in await conn.fetch(TABLE_NAMES)}


async def test_every_primary_key_and_unique_index_leads_with_org_id(db):
    async with db.acquire() as conn:
        assert await keys_not_led_by_org_id(conn) == []


async def test_a_new_table_keyed_without_org_id_is_caught(db):
    async with db.acquire() as conn:
        newcomers = conn.transaction()
        await newcomers.start()
        try:
            await conn.execute("CREATE TABLE webhooks (id text PRIMARY KEY, org_id text)")
            await conn.execute(
                "CREATE TABLE webhook_urls (org_id text, url text, PRIMARY KEY (org_id, url))"
            )
            await conn.execute("CREATE UNIQUE INDEX webhook_urls_url ON webhook_urls (url)")
            await conn.execute("CREATE TABLE webhook_log (org_id text, line text)")
            found = await keys_not_led_by_org_id(conn)
        finally:
            await newcomers.rollback()
    assert sorted(found) == [
        "webhook_log: no primary key",
        "webhook_urls: unique index webhook_urls_url leads with url",
        "webhooks: primary key webhooks_pkey leads with id",
    ]


async def test_every_statement_filters_by_org_id_or_says_why_it_is_global(db):
    async with db.acquire() as conn:
        tables = await table_names(conn)
    assert {"api_keys", "events", "members"} <= tables
    assert unscoped_statements(SQL_DIR / "queries", tables) == []


def test_a_new_statement_without_org_id_is_caught(tmp_path):
    tables = {"workflows", "api_keys"}
    (tmp_path / "newcomer.sql").write_text(
        "-- name: all-workflows\n-- Lists workflows.\nSELECT * FROM workflows WHERE name = :name;\n"
        "\n-- name: optional-org^\n"
        "SELECT * FROM workflows WHERE (:org_id::text IS NULL OR org_id = :org_id);\n"
        "\n-- name: by-key-id^\n"
        "SELECT k.* FROM authorized_caller(:k, :l, :s, :e, :p) c JOIN api_keys k ON k.id = :id;\n"
        "\n-- name: leaked-key^\nSELECT org_id FROM api_keys WHERE lookup_id = :lookup_id;\n"
        "\n-- name: org-workflows\nSELECT * FROM workflows WHERE org_id = :org_id;\n"
        "\n-- name: caller-keys\nSELECT k.* FROM authorized_caller(:k, :l, :s, :e, :p) c\n"
        "JOIN api_keys k ON k.org_id = c.org_id;\n"
        "\n-- name: add-workflow!\nINSERT INTO workflows (org_id, id) VALUES (:org_id, :id);\n"
        "\n-- name: every-name\n-- global: an operator's report across organizations.\n"
        "SELECT name FROM workflows;\n"
        "\n-- name: wake-up!\nSELECT pg_notify('x', :payload);\n"
    )
    assert unscoped_statements(tmp_path, tables) == [
        "newcomer.sql: all-workflows",
        "newcomer.sql: optional-org",
        "newcomer.sql: by-key-id",
        "newcomer.sql: leaked-key",
    ]
