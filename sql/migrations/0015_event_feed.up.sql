-- The gapless event feed, and streams that end when their credential loses access.
--
-- Event ids are minted before commit, so id order is not commit order: an event with a
-- smaller id can commit after a larger one was delivered, and "id > last" never returns
-- it. Each event now records its writing transaction (xact_id). The feed is read in
-- (xact_id, id) order and only below the horizon pg_snapshot_xmin(pg_current_snapshot()):
-- every transaction below it has ended, so nothing can later appear before a position
-- already handed out (the transactional-outbox technique). Rows from before this
-- migration read xact_id 0 (a constant default costs no table rewrite) and so keep their
-- id order ahead of every later event.
ALTER TABLE events ADD COLUMN xact_id xid8 NOT NULL DEFAULT '0';
ALTER TABLE events ALTER COLUMN xact_id SET DEFAULT pg_current_xact_id();

-- The feed's order within an organization and environment. Measured with bench/run.py
-- in the same run as the emit without it: see README "Performance".
CREATE INDEX events_feed_order ON events (org_id, environment, xact_id, id);

-- Streams re-check their credential as soon as anything that grants it access changes,
-- on every server process: "org_id id", the id of the key, session or member changed.
CREATE FUNCTION notify_stream_access_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('ventryx_access_changed', OLD.org_id || ' ' || OLD.id);
    ELSE
        PERFORM pg_notify('ventryx_access_changed', NEW.org_id || ' ' || NEW.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_key_access_changed_notifies_streams
    AFTER UPDATE OF expires_at, scopes ON api_keys
    FOR EACH ROW
    WHEN (OLD.expires_at IS DISTINCT FROM NEW.expires_at OR OLD.scopes IS DISTINCT FROM NEW.scopes)
    EXECUTE FUNCTION notify_stream_access_changed();

CREATE TRIGGER session_ended_notifies_streams
    AFTER UPDATE OF ended_at ON sessions
    FOR EACH ROW
    WHEN (OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL)
    EXECUTE FUNCTION notify_stream_access_changed();

CREATE TRIGGER session_deleted_notifies_streams
    AFTER DELETE ON sessions
    FOR EACH ROW
    EXECUTE FUNCTION notify_stream_access_changed();

CREATE TRIGGER member_access_changed_notifies_streams
    AFTER UPDATE OF role, must_change_password ON members
    FOR EACH ROW
    WHEN (OLD.role IS DISTINCT FROM NEW.role
          OR OLD.must_change_password IS DISTINCT FROM NEW.must_change_password)
    EXECUTE FUNCTION notify_stream_access_changed();

CREATE TRIGGER member_deleted_notifies_streams
    AFTER DELETE ON members
    FOR EACH ROW
    EXECUTE FUNCTION notify_stream_access_changed();

INSERT INTO schema_migrations (version, name, checksum) VALUES (15, 'event_feed', 'sha256:354463fb663cbc93a66de57f8aac6e1b61b26a75f6e20dd163addc9cc5511721');
