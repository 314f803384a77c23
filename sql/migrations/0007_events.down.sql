DROP TRIGGER api_key_revoked_notifies_streams ON api_keys;
DROP FUNCTION notify_api_key_revoked();
DROP TABLE events;
DELETE FROM schema_migrations WHERE version = 7;
