-- Events partitioned by day of receipt (created_at, UTC), and retention per organization
-- and environment.
--
-- Native declarative partitioning: no extension, so it runs on PostgreSQL 13+, the
-- embedded server and managed services. The partition key must be part of every unique
-- index, so the primary key gains created_at. Reads by id stay cheap because event ids
-- are ULIDs that carry the millisecond they were minted, just before their insert:
-- event_id_time(id) ± 1 hour bounds created_at, and the planner prunes every partition
-- outside it (it assumes the clocks of the servers and the database agree within an hour).
--
-- Expired events go by whole partitions where possible and in bounded batches otherwise
-- (maintain_events below). The existing rows are copied as they are, xact_id included,
-- so ids, the feed order, cursors and Last-Event-ID stay exactly as they were. The copy
-- holds the table for its duration: on a large table, run it in a maintenance window.

ALTER TABLE organizations
    ADD COLUMN event_retention_days_live integer NOT NULL DEFAULT 30
        CHECK (event_retention_days_live BETWEEN 1 AND 3650),
    ADD COLUMN event_retention_days_test integer NOT NULL DEFAULT 30
        CHECK (event_retention_days_test BETWEEN 1 AND 3650);

-- The moment a ULID event id (evt_ + 26 Crockford base32 characters) was minted: its
-- first 10 characters are the Unix time in milliseconds.
CREATE FUNCTION event_id_time(id text) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT to_timestamp(sum((strpos('0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(id, 4 + i, 1)) - 1)
                            * (32::numeric ^ (10 - i))) / 1000)
    FROM generate_series(1, 10) AS i
$$;

ALTER TABLE events RENAME TO events_unpartitioned;
ALTER INDEX events_pkey RENAME TO events_unpartitioned_pkey;
ALTER INDEX events_org_environment_type RENAME TO events_unpartitioned_org_environment_type;
ALTER INDEX events_feed_order RENAME TO events_unpartitioned_feed_order;

CREATE TABLE events (
    org_id            text NOT NULL REFERENCES organizations (org_id),
    id                text NOT NULL CHECK (id ~ '^evt_[0-9A-HJKMNP-TV-Z]{26}$'),
    environment       text NOT NULL CHECK (environment IN ('live', 'test')),
    type              text COLLATE "C" NOT NULL CHECK (
        length(type) <= 128 AND type ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    payload           jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    occurred_at       timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    matched_workflows text[] NOT NULL DEFAULT '{}',
    emitted_by        text NOT NULL,
    xact_id           xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (org_id, environment, id, created_at)
) PARTITION BY RANGE (created_at);

CREATE INDEX events_org_environment_type ON events (org_id, environment, type, id);
CREATE INDEX events_feed_order ON events (org_id, environment, xact_id, id);

-- Rows outside every partition: only if maintain_events has not run for a week. They are
-- still served, and moved into their day's partition when it is created.
CREATE TABLE events_default PARTITION OF events DEFAULT;

-- Every row already there, in one partition that ends where today's begins.
DO $$
DECLARE
    today timestamptz := date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
BEGIN
    EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (MINVALUE) TO (%L)',
                   'events_before_' || to_char(today AT TIME ZONE 'UTC', 'YYYYMMDD'), today);
END
$$;

-- Ahead of time: today's partition and the next 7 days'. Dropping expired partitions and
-- rows: the retention of each organization and environment, in whole UTC days (an event
-- goes once it was received before the start of today minus that many days). A partition
-- goes whole once every organization's retention has passed it; then, at most max_deleted
-- rows of shorter retentions go, so each call holds its row locks briefly: call it until
-- it returns less than max_deleted. Partitions are created with ATTACH (which does not
-- block reads or writes) and dropped with a lock_timeout (a drop that would wait is left
-- to the next call). Concurrent calls: one works, the others return 0 at once.
-- SECURITY DEFINER: the server's role needs no DDL rights to keep partitions.
CREATE FUNCTION maintain_events(max_deleted integer DEFAULT 10000) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path FROM CURRENT SET TimeZone = 'UTC' SET DateStyle = 'ISO'
    SET lock_timeout = '1s' AS $$
DECLARE
    today timestamptz := date_trunc('day', now());
    day timestamptz;
    partition_name text;
    upper_bound timestamptz;
    longest_retention integer;
    deleted integer;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('ventryx:maintain_events', 0)) THEN
        RETURN 0;
    END IF;
    FOR day IN SELECT generate_series(today, today + interval '7 days', interval '1 day') LOOP
        partition_name := 'events_' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(partition_name) IS NOT NULL;
        EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       partition_name);
        EXECUTE format('WITH moved AS (DELETE FROM events_default WHERE created_at >= %L AND '
                       'created_at < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
                       day, day + interval '1 day', partition_name);
        EXECUTE format('ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       partition_name, day, day + interval '1 day');
    END LOOP;

    SELECT max(greatest(event_retention_days_live, event_retention_days_test))
    INTO longest_retention FROM organizations;
    FOR partition_name, upper_bound IN
        SELECT c.relname, substring(pg_get_expr(c.relpartbound, c.oid)
                                    FROM 'TO \(''([^'']+)''\)')::timestamptz
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'events'::regclass
    LOOP
        -- Without organizations, the default retention (30 days) still applies.
        CONTINUE WHEN upper_bound IS NULL
            OR upper_bound > today - make_interval(days => coalesce(longest_retention, 30));
        BEGIN
            EXECUTE format('DROP TABLE %I', partition_name);
        EXCEPTION WHEN lock_not_available THEN
            NULL;  -- busy: the next call drops it
        END;
    END LOOP;

    WITH retention AS (
        SELECT o.org_id, r.environment, today - make_interval(days => r.days) AS keep_from
        FROM organizations o
        CROSS JOIN LATERAL (VALUES ('live', o.event_retention_days_live),
                                   ('test', o.event_retention_days_test)) AS r (environment, days)
    ), expired AS (
        SELECT x.*
        FROM retention r
        CROSS JOIN LATERAL (
            SELECT e.org_id, e.environment, e.id, e.created_at
            FROM events e
            WHERE e.org_id = r.org_id AND e.environment = r.environment
              AND e.created_at < r.keep_from
            LIMIT max_deleted) x
        LIMIT max_deleted
    )
    DELETE FROM events e USING expired x
    WHERE e.org_id = x.org_id AND e.environment = x.environment AND e.id = x.id
      AND e.created_at = x.created_at;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;

SELECT maintain_events(0);

INSERT INTO events SELECT org_id, id, environment, type, payload, occurred_at, created_at,
                          matched_workflows, emitted_by, xact_id
FROM events_unpartitioned;
DROP TABLE events_unpartitioned;

INSERT INTO schema_migrations (version, name, checksum) VALUES (18, 'event_partitions', 'sha256:e0c1be13faf6c0cc701fd71f369c8cd9812ee0e61f9ef8e85825bd8017044a51');
