"""Events: authenticated single and batch emits next to the same inserts without auth.

The baselines run the server's own statements minus the credential: the same INSERT
(for a batch, the same transaction and COPY) with the same matched-workflows lookup, org
and environment given in the path instead of derived from the key, and no announcement to
the event streams. So each ratio is the
price of authentication (locking the key row against revocation) folded into the write,
plus the server's announcing of new events to the streams of every process.
A batch scenario's events/s is its req/s times BATCH_SIZE.

A 500-event batch takes tens of milliseconds, so at the runner's default 64 connections
most requests wait past wrk's 2 s timeout: run the batches with `--connections 8`, and
the rest at 64 with BENCH_BATCH_SIZE=0 (no batch scenarios).
"""

import os

import asyncpg
import msgspec
from harness import BenchContext, Scenario
from litestar import Request, Response, post
from litestar.params import JSONBody

from ventryx_server.controllers.events import emitted_event, payload_json, read_batch
from ventryx_server.db import Queries
from ventryx_server.errors import UnprocessableEntity
from ventryx_server.event_batches import batch_events, copy_events, decode_matches
from ventryx_shared.common import Data
from ventryx_shared.events import Event, EventCreate
from ventryx_shared.ids import new_id, new_ids

BATCH_SIZE = int(os.environ.get("BENCH_BATCH_SIZE", "500"))

# sql/queries/events.sql's emit-event and lock-batch-caller with the caller replaced by
# parameters; called the way the server calls its own statements. insert-events is how
# batches were written before COPY (one INSERT ... SELECT FROM unnest), kept as a second
# baseline so that each run shows what COPY gains.
_QUERIES = Queries(
    """
-- name: insert-event^
WITH inserted AS (
    INSERT INTO events (org_id, id, environment, type, payload, occurred_at,
                        matched_workflows, emitted_by)
    SELECT :org_id, :id, :environment, :type, :payload::jsonb,
           coalesce(:occurred_at::timestamptz, now()),
           ARRAY(SELECT w.id FROM workflows w
                 WHERE w.org_id = :org_id AND w.environment = :environment AND w.enabled
                   AND w.trigger = ANY (t.patterns)
                 ORDER BY w.id),
           'baseline'
    FROM (SELECT event_trigger_patterns(:type) AS patterns OFFSET 0) t
    RETURNING org_id, id, environment, type, occurred_at, created_at, matched_workflows,
              emitted_by
)
SELECT i.* FROM inserted i;

-- name: insert-events^
WITH types AS MATERIALIZED (
    SELECT type, event_trigger_patterns(type) AS patterns
    FROM (SELECT DISTINCT type FROM unnest(:types::text[]) AS type) distinct_types
), matches AS MATERIALIZED (
    SELECT t.type,
           ARRAY(SELECT w.id FROM workflows w
                 WHERE w.org_id = :org_id AND w.environment = :environment AND w.enabled
                   AND w.trigger = ANY (t.patterns)
                 ORDER BY w.id) AS workflow_ids
    FROM types t
), inserted AS (
    INSERT INTO events (org_id, id, environment, type, payload, occurred_at,
                        matched_workflows, emitted_by)
    SELECT :org_id, e.id, :environment, e.type, e.payload::jsonb,
           coalesce(e.occurred_at, now()), m.workflow_ids, 'baseline'
    FROM unnest(:ids::text[], :types::text[], :payloads::text[], :occurred_ats::timestamptz[])
             AS e (id, type, payload, occurred_at)
         JOIN matches m ON m.type = e.type
    RETURNING 1
)
SELECT :org_id AS org_id, :environment AS environment, 'baseline' AS emitted_by,
       now() AS created_at, (SELECT count(*) FROM inserted) AS inserted,
       (SELECT json_object_agg(m.type, m.workflow_ids) FROM matches m)::text
           AS matched_workflows_by_type;

-- name: batch-matches^
WITH types AS MATERIALIZED (
    SELECT type, event_trigger_patterns(type) AS patterns
    FROM unnest(:types::text[]) AS type
), matches AS MATERIALIZED (
    SELECT t.type,
           ARRAY(SELECT w.id FROM workflows w
                 WHERE w.org_id = :org_id AND w.environment = :environment AND w.enabled
                   AND w.trigger = ANY (t.patterns)
                 ORDER BY w.id) AS workflow_ids
    FROM types t
)
SELECT :org_id AS org_id, :environment AS environment, 'baseline' AS emitted_by,
       now() AS created_at,
       (SELECT json_object_agg(m.type, m.workflow_ids) FROM matches m)::text
           AS matched_workflows_by_type;
"""
)

SINGLE_BASELINE = "baseline: insert event, no auth"
BATCH_BASELINE = f"baseline: copy {BATCH_SIZE} events, no auth"
BATCH_INSERT_BASELINE = f"baseline: INSERT ... unnest {BATCH_SIZE} events, no auth"


@post("/baseline/events/{org_id:str}", status_code=201)
async def emit_without_auth(
    db: asyncpg.Connection, org_id: str, data: JSONBody[EventCreate]
) -> Response[Data[Event]]:
    """POST /v1/events minus the credential: same validation, statement and JSON."""
    row = await _QUERIES.insert_event(
        db,
        org_id=org_id,
        environment="live",
        id=new_id("evt"),
        type=data.type,
        payload=payload_json(data),
        occurred_at=data.occurred_at,
    )
    return Response(Data(emitted_event(row, data)), status_code=201)


@post("/baseline/events/{org_id:str}/batch", status_code=201)
async def emit_batch_without_auth(
    request: Request, db: asyncpg.Connection, org_id: str
) -> Response[Data[list[Event]]]:
    """POST /v1/events/batch minus the credential: the same transaction and COPY."""
    items, payloads, errors = read_batch(await request.body())
    if errors:
        raise UnprocessableEntity(errors[0].message)
    ids = new_ids("evt", len(items))
    async with db.transaction():
        row = await _QUERIES.batch_matches(
            db, org_id=org_id, environment="live", types=list({item.type for item in items})
        )
        matches = decode_matches(row["matched_workflows_by_type"])
        await copy_events(db, row, matches, ids, items, payloads)
    return Response(Data(batch_events(row, matches, ids, items, payloads)), status_code=201)


@post("/baseline/events/{org_id:str}/batch-insert", status_code=201)
async def insert_batch_without_auth(
    request: Request, db: asyncpg.Connection, org_id: str
) -> Response[Data[list[Event]]]:
    """The batch as it was written before COPY: one INSERT ... SELECT FROM unnest."""
    items, payloads, errors = read_batch(await request.body())
    if errors:
        raise UnprocessableEntity(errors[0].message)
    ids = new_ids("evt", len(items))
    row = await _QUERIES.insert_events(
        db,
        org_id=org_id,
        environment="live",
        ids=ids,
        types=[i.type for i in items],
        payloads=[payload.decode() for payload in payloads],
        occurred_ats=[i.occurred_at for i in items],
    )
    matches = decode_matches(row["matched_workflows_by_type"])
    return Response(Data(batch_events(row, matches, ids, items, payloads)), status_code=201)


BASELINE_ROUTES = [emit_without_auth, emit_batch_without_auth, insert_batch_without_auth]

# An order as a shop might send it: a few hundred bytes of payload.
PAYLOAD = {
    "order_id": "ord_8842",
    "customer": {"id": "cus_193", "email": "ann@example.com"},
    "total": {"amount": 12999, "currency": "EUR"},
    "items": [{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-7", "quantity": 1}],
}


async def prepare(ctx: BenchContext) -> list[Scenario]:
    # Two workflows the events match, so matched_workflows is part of what is measured.
    admin = {"Authorization": f"Bearer {ctx.admin_key}"}
    for name, trigger in (("bench fulfil", "order.created"), ("bench all orders", "order.*")):
        response = await ctx.api.post(
            "/v1/workflows", headers=admin, json={"name": name, "trigger": trigger}
        )
        if response.status_code not in (201, 409):
            raise RuntimeError(f"could not create a bench workflow: HTTP {response.status_code}")
    _, emitter = await ctx.create_key(["events:write"], name="bench emitter")
    single = msgspec.json.encode({"type": "order.created", "payload": PAYLOAD})
    batch = msgspec.json.encode(
        {"events": [{"type": "order.created", "payload": PAYLOAD}] * BATCH_SIZE}
    )
    scenarios = [
        Scenario(
            SINGLE_BASELINE,
            "baseline",
            f"/baseline/events/{ctx.org_id}",
            method="POST",
            token=emitter,
            body=single,
            expect_status=201,
        ),
        Scenario(
            "POST /v1/events",
            "server",
            "/v1/events",
            method="POST",
            token=emitter,
            body=single,
            baseline=SINGLE_BASELINE,
            expect_status=201,
        ),
    ]
    if BATCH_SIZE == 0:
        return scenarios
    return [
        *scenarios,
        Scenario(
            BATCH_BASELINE,
            "baseline",
            f"/baseline/events/{ctx.org_id}/batch",
            method="POST",
            token=emitter,
            body=batch,
            expect_status=201,
        ),
        Scenario(
            BATCH_INSERT_BASELINE,
            "baseline",
            f"/baseline/events/{ctx.org_id}/batch-insert",
            method="POST",
            token=emitter,
            body=batch,
            baseline=BATCH_BASELINE,
            expect_status=201,
        ),
        Scenario(
            f"POST /v1/events/batch ({BATCH_SIZE})",
            "server",
            "/v1/events/batch",
            method="POST",
            token=emitter,
            body=batch,
            baseline=BATCH_BASELINE,
            expect_status=201,
        ),
    ]
