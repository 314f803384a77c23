DROP FUNCTION add_api_key(text, text, text, text[], text, text, bytea, text, text, text, text[],
                          timestamptz, integer, integer, text, text, bytea, text, jsonb, text,
                          text);

DELETE FROM schema_migrations WHERE version = 22;
