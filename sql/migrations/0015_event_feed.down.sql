DROP TRIGGER member_deleted_notifies_streams ON members;
DROP TRIGGER member_access_changed_notifies_streams ON members;
DROP TRIGGER session_deleted_notifies_streams ON sessions;
DROP TRIGGER session_ended_notifies_streams ON sessions;
DROP TRIGGER api_key_access_changed_notifies_streams ON api_keys;
DROP FUNCTION notify_stream_access_changed();
DROP INDEX events_feed_order;
ALTER TABLE events DROP COLUMN xact_id;
DELETE FROM schema_migrations WHERE version = 15;
