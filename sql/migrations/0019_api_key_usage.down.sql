DROP FUNCTION api_key_usage(text, text, timestamptz, text, timestamptz, float8);

DELETE FROM schema_migrations WHERE version = 19;
