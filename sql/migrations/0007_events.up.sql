-- Events: what happened, as emitted through the API. Append-only from the API's side.
--
-- type is a dotted lowercase name (order.created); payload a JSON object. The ids are
-- time-sortable (evt_ + ULID), so lists page newest first by id alone.
-- matched_workflows records the enabled workflows whose trigger matched at emit time.

CREATE TABLE events (
    org_id            text NOT NULL REFERENCES organizations (org_id),
    id                text NOT NULL CHECK (id ~ '^evt_[0-9A-HJKMNP-TV-Z]{26}$'),
    environment       text NOT NULL CHECK (environment IN ('live', 'test')),
    -- "C" collation: a type prefix (order.*) is then an index range scan.
    type              text COLLATE "C" NOT NULL CHECK (
        length(type) <= 128 AND type ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    payload           jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    occurred_at       timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    matched_workflows text[] NOT NULL DEFAULT '{}',
    emitted_by        text NOT NULL,
    -- Every read names the environment, so the key that finds an event also serves
    -- the newest-first lists; a separate (org_id, id) index would cost each insert.
    PRIMARY KEY (org_id, environment, id)
);

CREATE INDEX events_org_environment_type ON events (org_id, environment, type, id);

-- Streams of events (GET /v1/events/stream) close at once when their key is revoked,
-- on whichever server process holds them: each listens on this channel.
CREATE FUNCTION notify_api_key_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ventryx_key_revoked', NEW.org_id || ' ' || NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER api_key_revoked_notifies_streams
    AFTER UPDATE OF revoked_at ON api_keys
    FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION notify_api_key_revoked();

INSERT INTO schema_migrations (version, name, checksum) VALUES (7, 'events', 'sha256:5e7d6b982ae472060c899f2947fd0336b6645f5f5e835fa328fa918e7479b739');
