-- Events. Every statement is confined to the caller's organization AND environment.
-- A single emit is one statement: the caller's key is locked against revocation (its
-- shared write lock, by locked_authorized_caller) in the very statement that inserts; a
-- batch locks it in the first statement of the transaction that writes its events. So an emit either commits
-- before a revocation of its key or finds the key revoked and writes nothing.
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

-- name: lock-batch-caller^
-- A batch's first statement, in the transaction that then writes all its events with one
-- COPY events (org_id, id, environment, type, payload, occurred_at, matched_workflows,
-- emitted_by) FROM STDIN (FORMAT text), sent by asyncpg's copy_to_table
-- (server/ventryx_server/event_batches.py, copy_events): COPY inserts rows in blocks,
-- where INSERT ... SELECT FROM unnest() inserts them one at a time.
-- This statement locks the caller's key against revocation (until the COPY commits, as
-- the single emit does) and matches workflows once per distinct type (event_trigger_patterns
-- costs ~20 µs a call). What the server decided is the same for the whole batch
-- (created_at, the emitter, the workflows per type). No row: the credential is not valid
-- or lacks the scope.
WITH caller AS MATERIALIZED (
    SELECT * FROM locked_authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope)
), types AS MATERIALIZED (
    SELECT type, event_trigger_patterns(type) AS patterns
    FROM unnest(:types::text[]) AS type
), matches AS MATERIALIZED (
    SELECT t.type,
           ARRAY(SELECT w.id FROM workflows w
                 WHERE w.org_id = c.org_id AND w.environment = c.environment AND w.enabled
                   AND w.trigger = ANY (t.patterns)
                 ORDER BY w.id) AS workflow_ids
    FROM caller c, types t
)
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id,
       c.org_id, c.environment, coalesce(c.member_id, c.credential_id) AS emitted_by,
       now() AS created_at,
       (SELECT json_object_agg(m.type, m.workflow_ids) FROM matches m)::text
           AS matched_workflows_by_type
FROM caller c;

-- name: get-event^
-- The id bounds created_at to ±1 hour of its minting, so one partition is searched (two
-- near midnight): see 0018_event_partitions.up.sql.
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id, e.*
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
LEFT JOIN events e
       ON e.org_id = c.org_id AND e.environment = c.environment AND e.id = :id
      AND e.created_at >= event_id_time(:id) - interval '1 hour'
      AND e.created_at < event_id_time(:id) + interval '1 hour';

-- name: list-events
-- The time filters are single conditions on created_at, the partition key, so that the
-- plan skips the partitions outside them, even as a generic plan; a cursor bounds
-- created_at from above as event_id_time does for a get (0018_event_partitions.up.sql).
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
      AND e.created_at >= coalesce(:since::timestamptz, '-infinity')
      AND e.created_at < coalesce(:until::timestamptz, 'infinity')
      AND (:starting_after::text IS NULL OR e.id < :starting_after)
      AND e.created_at < coalesce(event_id_time(:starting_after) + interval '1 hour', 'infinity')
    ORDER BY e.id DESC
    LIMIT :limit
) e ON true;

-- name: notify-events!
-- Each payload is "org_id environment": new events there; the streams fetch them.
SELECT pg_notify('ventryx_events', payload) FROM unnest(:payloads::text[]) AS payload;

-- name: authorize-stream^
-- The caller of a stream, checked when it opens and again while it runs: until when its
-- credential is valid, and where :after (a Last-Event-ID, or NULL) sits in the feed.
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id, c.environment,
       c.member_id,
       coalesce((SELECT k.expires_at FROM api_keys k
                 WHERE k.org_id = c.org_id AND k.id = c.credential_id),
                (SELECT least(s.idle_expires_at, s.absolute_expires_at) FROM sessions s
                 WHERE s.org_id = c.org_id AND s.id = c.credential_id)) AS access_until,
       after_event.xact_id AS after_xact_id, after_event.id AS after_id
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
LEFT JOIN events after_event
       ON after_event.org_id = c.org_id AND after_event.environment = c.environment
      AND after_event.id = :after
      AND after_event.created_at >= event_id_time(:after) - interval '1 hour'
      AND after_event.created_at < event_id_time(:after) + interval '1 hour';

-- name: events-feed
-- The gapless feed (GET /v1/events/feed, and what a resumed stream missed): oldest first
-- in (xact_id, id) order, after the event :after (NULL: from the first), and only below
-- the horizon of transactions still open, so that no event can later commit before a
-- position already handed out (0015_event_feed.up.sql). cursor_id is NULL when :after
-- names no event of this organization and environment.
-- The horizon is read through a scalar subquery so that it bounds the index scan
-- (joined as a row, it was a filter after a scan of every event).
WITH horizon AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id,
       after_event.id AS cursor_id, e.*
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
LEFT JOIN events after_event
       ON after_event.org_id = c.org_id AND after_event.environment = c.environment
      AND after_event.id = :after
      AND after_event.created_at >= event_id_time(:after) - interval '1 hour'
      AND after_event.created_at < event_id_time(:after) + interval '1 hour'
LEFT JOIN LATERAL (
    SELECT e.*
    FROM events e
    WHERE e.org_id = c.org_id AND e.environment = c.environment
      AND (:after::text IS NULL OR after_event.id IS NOT NULL)
      AND (e.xact_id, e.id) > (coalesce(after_event.xact_id, '0'), coalesce(after_event.id, ''))
      AND e.xact_id < (SELECT xmin FROM horizon)
      AND (:type::text IS NULL OR e.type = :type)
      AND (:type_prefix::text IS NULL
           OR (e.type >= :type_prefix COLLATE "C" AND e.type < :type_prefix_end COLLATE "C"))
    ORDER BY e.xact_id, e.id
    LIMIT :limit
) e ON true;

-- name: stream-feed
-- One process's live feed of an organization and environment: the events after its
-- position below the horizon (as events-feed), whether committed events wait above the
-- horizon (held_back: fetch again soon), and which of its streams' credentials may still
-- read events, judged in the same snapshot: an event committed after a credential lost
-- access is only ever fetched together with the news of that loss.
WITH horizon AS MATERIALIZED (
    SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin
), allowed AS MATERIALIZED (
    SELECT array_agg(a.credential_id) AS credential_ids
    FROM (SELECT c.credential_id
          FROM unnest(:key_lookup_ids::text[], :key_secret_hashes::bytea[])
                   AS k (lookup_id, secret_hash)
          CROSS JOIN LATERAL api_key_caller(k.lookup_id, k.secret_hash, :environment, :scope) c
          UNION ALL
          SELECT c.credential_id
          FROM unnest(:session_lookup_ids::text[], :session_secret_hashes::bytea[])
                   AS s (lookup_id, secret_hash)
          CROSS JOIN LATERAL session_caller(s.lookup_id, s.secret_hash, :environment, :scope) c
         ) a
)
SELECT a.credential_ids AS allowed_credential_ids,
       -- Held back: the newest committed event sits at or above the horizon (one step
       -- of a backward index scan; an EXISTS over xact_id >= horizon was planned as a
       -- scan of the environment's every event).
       coalesce((SELECT x.xact_id FROM events x
                 WHERE x.org_id = :org_id AND x.environment = :environment
                 ORDER BY x.xact_id DESC, x.id DESC
                 LIMIT 1) >= (SELECT xmin FROM horizon), false) AS held_back,
       e.*
FROM allowed a
LEFT JOIN LATERAL (
    SELECT e.*
    FROM events e
    WHERE e.org_id = :org_id AND e.environment = :environment
      AND (e.xact_id, e.id) > (:after_xact_id::xid8, :after_id::text)
      AND e.xact_id < (SELECT xmin FROM horizon)
    ORDER BY e.xact_id, e.id
    LIMIT :limit
) e ON true;

-- name: stream-feed-tail^
-- Where a process's live feed of an organization and environment starts.
SELECT e.xact_id, e.id
FROM events e
WHERE e.org_id = :org_id AND e.environment = :environment
  AND e.xact_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.xact_id DESC, e.id DESC
LIMIT 1;

-- name: stream-access-lost$
-- Why a stream's credential (a key_ or ses_ id) may no longer read events: its farewell.
SELECT CASE
    WHEN NOT starts_with(:credential_id::text, 'ses_') THEN (
        SELECT CASE WHEN k.revoked_at IS NOT NULL THEN 'key_revoked'
                    WHEN k.expires_at <= now() THEN 'key_expired'
                    ELSE 'missing_scope' END
        FROM api_keys k WHERE k.org_id = :org_id AND k.id = :credential_id)
    ELSE (
        SELECT CASE WHEN m.id IS NULL THEN 'member_removed'
                    WHEN s.ended_at IS NOT NULL THEN 'session_ended'
                    WHEN least(s.idle_expires_at, s.absolute_expires_at) <= now()
                        THEN 'session_expired'
                    WHEN m.must_change_password THEN 'password_change_required'
                    ELSE 'missing_scope' END
        FROM (SELECT) one
        LEFT JOIN sessions s ON s.org_id = :org_id AND s.id = :credential_id
        LEFT JOIN members m ON m.org_id = s.org_id AND m.id = s.member_id)
END;

-- name: maintain-events$
-- Partitions ahead, expired partitions dropped, then up to :max_deleted expired events of
-- shorter retentions deleted; returns how many (0018_event_partitions.up.sql).
SELECT maintain_events(:max_deleted);
