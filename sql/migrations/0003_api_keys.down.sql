DROP FUNCTION locked_authorized_caller(text, bytea, text, text);
DROP FUNCTION authorized_caller(text, bytea, text, text);
DROP TABLE api_keys;
DELETE FROM schema_migrations WHERE version = 3;
