-- Events. Every statement is confined to the caller's organization AND environment.
-- Emits are single statements: the caller's key row is locked (FOR KEY SHARE, by
-- locked_authorized_caller) in the very statement that inserts, so an emit either
-- commits before a revocation of its key or finds the key revoked and writes nothing.
-- Emits do not NOTIFY themselves: PostgreSQL serializes the commits of notifying
-- transactions (a database-wide lock held through the WAL flush), which more than
-- halved emit throughput. The process that emitted announces the ids after commit,
-- many emits to one notify-events (server/ventryx_server/event_stream.py).

-- name: emit-event^
-- No row: the credential is not valid or lacks the scope (deny() tells which).
WITH caller AS MATERIALIZED (
    SELECT * FROM locked_authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope)
), inserted AS (
    INSERT INTO events (org_id, id, environment, type, payload, occurred_at,
                        matched_workflows, emitted_by)
    SELECT c.org_id, :id, c.environment, :type, :payload::jsonb,
           coalesce(:occurred_at::timestamptz, now()),
           ARRAY(SELECT w.id FROM workflows w
                 WHERE w.org_id = c.org_id AND w.environment = c.environment AND w.enabled
                   AND w.trigger = ANY (t.patterns)
                 ORDER BY w.id),
           coalesce(c.member_id, c.credential_id)
    -- The patterns once, not once per workflow scanned.
    FROM caller c, (SELECT event_trigger_patterns(:type) AS patterns OFFSET 0) t
    RETURNING org_id, id, environment, type, occurred_at, created_at, matched_workflows,
              emitted_by
)
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id, i.*
FROM caller c
JOIN inserted i ON true;

-- name: emit-events
-- A whole batch in one statement: all rows are written or none. Workflows are matched
-- once per distinct type (event_trigger_patterns costs ~20 µs a call, and batches
-- repeat types), then joined to the events. MATERIALIZED keeps the planner from
-- folding that back into a lookup per event.
WITH caller AS MATERIALIZED (
    SELECT * FROM locked_authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope)
), types AS MATERIALIZED (
    SELECT type, event_trigger_patterns(type) AS patterns
    FROM (SELECT DISTINCT type FROM unnest(:types::text[]) AS type) distinct_types
), matches AS MATERIALIZED (
    SELECT t.type,
           ARRAY(SELECT w.id FROM workflows w
                 WHERE w.org_id = c.org_id AND w.environment = c.environment AND w.enabled
                   AND w.trigger = ANY (t.patterns)
                 ORDER BY w.id) AS workflow_ids
    FROM caller c, types t
), inserted AS (
    INSERT INTO events (org_id, id, environment, type, payload, occurred_at,
                        matched_workflows, emitted_by)
    SELECT c.org_id, e.id, c.environment, e.type, e.payload::jsonb,
           coalesce(e.occurred_at, now()), m.workflow_ids,
           coalesce(c.member_id, c.credential_id)
    FROM caller c,
         unnest(:ids::text[], :types::text[], :payloads::text[], :occurred_ats::timestamptz[])
             AS e (id, type, payload, occurred_at)
         JOIN matches m ON m.type = e.type
    RETURNING org_id, id, environment, occurred_at, created_at, matched_workflows, emitted_by
)
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id, i.*
FROM caller c
LEFT JOIN inserted i ON true;

-- name: get-event^
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id, e.*
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
LEFT JOIN events e
       ON e.org_id = c.org_id AND e.environment = c.environment AND e.id = :id;

-- name: list-events
-- type_prefix is "order." for the filter order.*; type_prefix_end ("order/") bounds the
-- index range, since type sorts bytewise (COLLATE "C").
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id, e.*
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
LEFT JOIN LATERAL (
    SELECT *
    FROM events e
    WHERE e.org_id = c.org_id AND e.environment = c.environment
      AND (:type::text IS NULL OR e.type = :type)
      AND (:type_prefix::text IS NULL
           OR (e.type >= :type_prefix COLLATE "C" AND e.type < :type_prefix_end COLLATE "C"))
      AND (:since::timestamptz IS NULL OR e.created_at >= :since)
      AND (:until::timestamptz IS NULL OR e.created_at < :until)
      AND (:starting_after::text IS NULL OR e.id < :starting_after)
    ORDER BY e.id DESC
    LIMIT :limit
) e ON true;

-- name: notify-events!
-- Each payload is "org_id environment id id ...", under NOTIFY's 8000-byte limit.
SELECT pg_notify('ventryx_events', payload) FROM unnest(:payloads::text[]) AS payload;

-- name: authorize-stream^
-- The caller of a stream, checked when it opens and again while it runs.
SELECT org_id AS caller_org_id, credential_id AS caller_credential_id, environment
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope);

-- name: events-by-ids
SELECT * FROM events
WHERE org_id = :org_id AND environment = :environment AND id = ANY (:ids::text[])
ORDER BY id;

-- name: events-after
-- What a reconnecting stream missed, oldest first.
SELECT * FROM events
WHERE org_id = :org_id AND environment = :environment AND id > :after
ORDER BY id
LIMIT :limit;
