-- The events table as one unpartitioned table again, every row kept as it is.
DROP FUNCTION maintain_events(integer);

ALTER TABLE events RENAME TO events_partitioned;
ALTER INDEX events_pkey RENAME TO events_partitioned_pkey;
ALTER INDEX events_org_environment_type RENAME TO events_partitioned_org_environment_type;
ALTER INDEX events_feed_order RENAME TO events_partitioned_feed_order;

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
    PRIMARY KEY (org_id, environment, id)
);

INSERT INTO events SELECT * FROM events_partitioned;
DROP TABLE events_partitioned;

CREATE INDEX events_org_environment_type ON events (org_id, environment, type, id);
CREATE INDEX events_feed_order ON events (org_id, environment, xact_id, id);

DROP FUNCTION event_id_time(text);

ALTER TABLE organizations
    DROP COLUMN event_retention_days_test,
    DROP COLUMN event_retention_days_live;

DELETE FROM schema_migrations WHERE version = 18;
