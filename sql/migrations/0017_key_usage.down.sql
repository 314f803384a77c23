ALTER TABLE api_keys DROP COLUMN rotated_at;
DROP TABLE credential_usage_hours;
DROP TABLE credential_usage_minutes;

DELETE FROM schema_migrations WHERE version = 17;
