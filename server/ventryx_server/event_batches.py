"""A batch of events written in one transaction: the caller locked, the workflows matched
per type, every event copied in with one COPY, and the answer assembled from that."""

from datetime import UTC
from typing import Any

import msgspec

from ventryx_shared.events import Event, EventCreate

from .auth import authorized, caller_params
from .db import Db
from .request_type import AppRequest

decode_matches = msgspec.json.Decoder(dict[str, list[str]]).decode
# What a batch's COPY writes; created_at and xact_id take their defaults (the transaction's
# start and id), as they do for an INSERT.
_COPIED_COLUMNS = (
    "org_id",
    "id",
    "environment",
    "type",
    "payload",
    "occurred_at",
    "matched_workflows",
    "emitted_by",
)


async def copy_batch(
    db: Db, request: AppRequest, ids: list[str], items: list[EventCreate], payloads: list[bytes]
) -> tuple[Any, dict[str, list[str]]]:
    """Inside a transaction: locks the caller's key against revocation (or denies),
    matches the workflows of each type, then writes the events (copy_events)."""
    row = await authorized(
        db,
        request,
        await request.app.state.queries.lock_batch_caller(
            db, **caller_params(request), types=list({item.type for item in items})
        ),
    )
    matches = decode_matches(row["matched_workflows_by_type"])
    await copy_events(db, row, matches, ids, items, payloads)
    return row, matches


async def copy_events(
    db: Db,
    row: Any,
    matches: dict[str, list[str]],
    ids: list[str],
    items: list[EventCreate],
    payloads: list[bytes],
) -> None:
    """Every event of a batch with one COPY, in the caller's transaction. COPY inserts rows
    in blocks where INSERT ... SELECT FROM unnest(...) inserts them one at a time: measured
    on batches of 500, 4-8 µs less database CPU per event (of 45-60; bench/bench_events.py
    shows both in every run). The text format, built here with a few joins per event,
    costs the app 3-5 µs per event less than asyncpg's binary rows (text[] and jsonb
    encoded value by value), and the database about the same.

    A line holds _COPIED_COLUMNS separated by tabs. Of the values only a payload can hold
    a backslash, COPY's escape character (JSON's own escapes), so it is doubled; none can
    hold a tab or a line break (JSON escapes them in strings, msgspec writes no
    whitespace), and the others are ids, types and RFC 3339 times."""
    head = f"{row['org_id']}\t"
    middle = f"\t{row['environment']}\t"
    received = row["created_at"].isoformat()
    workflows = {
        event_type: "{" + ",".join(workflow_ids) + "}"
        for event_type, workflow_ids in matches.items()
    }
    tail = f"\t{row['emitted_by']}\n"
    lines = b"".join(
        [
            (head + event_id + middle + item.type + "\t").encode()
            + payload.replace(b"\\", b"\\\\")
            + (
                "\t"
                + (received if item.occurred_at is None else item.occurred_at.isoformat())
                + "\t"
                + workflows[item.type]
                + tail
            ).encode()
            for event_id, item, payload in zip(ids, items, payloads, strict=True)
        ]
    )
    # A memoryview, because asyncpg reads bytes as the path of a file to copy.
    await db.copy_to_table(
        "events",
        columns=_COPIED_COLUMNS,
        format="text",
        source=memoryview(lines),  # type: ignore[arg-type]  # asyncpg reads any buffer
    )


def batch_events(
    row: Any,
    matches: dict[str, list[str]],
    ids: list[str],
    items: list[EventCreate],
    payloads: list[bytes],
) -> list[Event]:
    """The batch's events as stored: what is common to all of them (created_at, the emitter)
    and the workflows each type matched come from the database, the rest is what was sent.
    Each payload goes out as the JSON already encoded for the insert (msgspec.Raw), the
    same bytes encoding it again would give, so it is encoded once."""
    created_at, environment, emitted_by = row["created_at"], row["environment"], row["emitted_by"]
    # msgspec.Raw encodes as the JSON object it holds; Event declares the decoded form.
    return [
        Event(
            id=event_id,
            type=item.type,
            payload=msgspec.Raw(payload),  # type: ignore[arg-type]
            occurred_at=created_at
            if item.occurred_at is None
            else item.occurred_at.astimezone(UTC),
            created_at=created_at,
            environment=environment,
            matched_workflows=matches[item.type],
            emitted_by=emitted_by,
        )
        for event_id, item, payload in zip(ids, items, payloads, strict=True)
    ]
