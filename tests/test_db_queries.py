"""db.Queries, the layer every statement of sql/queries runs through, on the test PostgreSQL."""

import asyncio

import pytest

from conftest import TEST_PEPPER
from ventryx_server.auth import hash_secret
from ventryx_server.db import Queries

CALLERS = Queries("""
-- name: who-is-calling^
SELECT c.credential_id, :note::text AS note
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c;

-- name: who-is-writing^
SELECT c.credential_id
FROM locked_authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c;

-- name: who-is-it^
SELECT c.credential_id
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, NULL) c;
""")

PLAIN = Queries("""
-- name: echo-in-order^
-- :b comes first and twice: it is $1 both times, :a is $2.
SELECT :b::text AS b, :a::text AS a, :b::text AS b_again;

-- name: remember!
INSERT INTO remembered (note) VALUES (:note);
""")


@pytest.fixture
async def conn(db):
    """A connection that records each statement as PostgreSQL received it (``conn.sent``)
    and has a scratch table ``remembered``; all rolled back at the end."""
    async with db.acquire() as connection:
        sent: list[str] = []

        def record(logged) -> None:
            sent.append(logged.query)

        transaction = connection.transaction()
        await transaction.start()
        await connection.execute("CREATE TEMP TABLE remembered (note text) ON COMMIT DROP")
        connection.add_query_logger(record)
        try:
            yield connection, sent
        finally:
            connection.remove_query_logger(record)
            await transaction.rollback()


async def statements_sent(sent: list[str]) -> list[str]:
    """asyncpg hands its query loggers each statement on the next turn of the loop."""
    await asyncio.sleep(0)
    return sent


def caller_params(key: str, scope: str = "events:read") -> dict[str, object]:
    return {
        "lookup_id": key[9:21],
        "secret_hash": hash_secret(TEST_PEPPER, key),
        "environment": "live",
        "scope": scope,
    }


async def test_an_authorizing_statement_runs_the_caller_function_of_its_credential_kind(
    conn, org, make_key
):
    connection, sent = conn
    key_id, key = await make_key(org, ["events:read"])

    found = await CALLERS.who_is_calling(
        connection, credential_kind="api_key", note="n", **caller_params(key)
    )
    assert found["credential_id"] == key_id and found["note"] == "n"
    statement = (await statements_sent(sent))[-1]
    assert "api_key_caller(" in statement
    assert "authorized_caller" not in statement and "session_caller" not in statement

    # The same key named as a session's credential finds nobody: session_caller ran.
    assert (
        await CALLERS.who_is_calling(
            connection, credential_kind="session", note="n", **caller_params(key)
        )
        is None
    )
    statement = (await statements_sent(sent))[-1]
    assert "session_caller(" in statement and "api_key_caller" not in statement


async def test_the_locked_caller_is_rewritten_to_the_locked_function_of_the_kind(
    conn, org, make_key
):
    connection, sent = conn
    key_id, key = await make_key(org, ["events:write"])

    found = await CALLERS.who_is_writing(
        connection, credential_kind="api_key", **caller_params(key, "events:write")
    )
    assert found["credential_id"] == key_id
    assert "locked_api_key_caller(" in (await statements_sent(sent))[-1]
    # The negative twin: a scope the key lacks finds no caller through the rewritten call.
    assert (
        await CALLERS.who_is_writing(
            connection, credential_kind="api_key", **caller_params(key, "events:read")
        )
        is None
    )


async def test_an_unknown_credential_kind_is_refused_before_anything_runs(conn, org, make_key):
    connection, sent = conn
    _, key = await make_key(org, ["events:read"])
    with pytest.raises(ValueError, match="who_is_calling: credential_kind must be one of"):
        await CALLERS.who_is_calling(
            connection, credential_kind="robot", note="n", **caller_params(key)
        )
    assert await statements_sent(sent) == []


def test_credential_kind_anywhere_but_the_callers_first_argument_is_refused_at_load():
    with pytest.raises(ValueError, match="sneaky: :credential_kind only as authorized_caller"):
        Queries("-- name: sneaky^\nSELECT :credential_kind::text AS kind;")
    with pytest.raises(ValueError, match="twice: :credential_kind only"):
        Queries(
            "-- name: twice^\nSELECT c.*, :credential_kind::text FROM "
            "authorized_caller(:credential_kind, :lookup_id, :secret_hash, "
            ":environment, :scope) c;"
        )


def test_a_statement_kind_the_server_cannot_run_is_refused_at_load():
    with pytest.raises(ValueError, match="make_one: use \\^, \\$, ! or no suffix"):
        Queries("-- name: make-one<!\nINSERT INTO remembered (note) VALUES (:note) RETURNING note;")


async def test_parameters_are_passed_in_the_order_the_statement_names_them(conn):
    connection, sent = conn
    row = await PLAIN.echo_in_order(connection, a="first", b="second")
    assert dict(row) == {"b": "second", "a": "first", "b_again": "second"}
    statement = (await statements_sent(sent))[-1]
    assert "$1::text AS b_again" in statement and "$2::text AS a" in statement


async def test_an_unknown_parameter_is_refused_not_dropped_and_nothing_is_written(conn):
    connection, sent = conn
    with pytest.raises(
        TypeError,
        match=r"remember: unknown parameters \['noet'\], "
        r"missing \['note'\]",
    ):
        await PLAIN.remember(connection, noet="misspelt")
    with pytest.raises(
        TypeError,
        match=r"remember: unknown parameters \['extra'\], "
        r"missing \[\]",
    ):
        await PLAIN.remember(connection, note="kept", extra="dropped before")
    with pytest.raises(
        TypeError,
        match=r"remember: unknown parameters \[\], "
        r"missing \['note'\]",
    ):
        await PLAIN.remember(connection)
    assert await statements_sent(sent) == []
    assert await connection.fetchval("SELECT count(*) FROM remembered") == 0

    # The twin: the right parameters write.
    await PLAIN.remember(connection, note="kept")
    assert [row["note"] for row in await connection.fetch("SELECT note FROM remembered")] == [
        "kept"
    ]


async def test_an_authorizing_statement_refuses_unknown_parameters_too(conn, org, make_key):
    connection, sent = conn
    _, key = await make_key(org, ["events:read"])
    with pytest.raises(TypeError, match=r"who_is_calling: unknown parameters \['org_id'\]"):
        await CALLERS.who_is_calling(
            connection, credential_kind="api_key", note="n", org_id=org.id, **caller_params(key)
        )
    assert await statements_sent(sent) == []


async def test_the_callers_parameters_travel_together_even_where_one_is_unused(conn, org, make_key):
    connection, sent = conn
    key_id, key = await make_key(org, ["events:read"])
    # Any scope: the statement ignores the one the handler's caller parameters carry.
    found = await CALLERS.who_is_it(connection, credential_kind="api_key", **caller_params(key))
    assert found["credential_id"] == key_id
    # The twins: anything else unused is still refused, and a statement that authorizes
    # no caller takes no caller parameter.
    with pytest.raises(TypeError, match=r"who_is_it: unknown parameters \['id'\]"):
        await CALLERS.who_is_it(
            connection, credential_kind="api_key", id=key_id, **caller_params(key)
        )
    with pytest.raises(TypeError, match=r"remember: unknown parameters \['scope'\]"):
        await PLAIN.remember(connection, note="n", scope="events:read")
