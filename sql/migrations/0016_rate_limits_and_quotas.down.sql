DROP TABLE rate_limit_counters;

ALTER TABLE api_keys
    DROP CONSTRAINT api_keys_rate_limit_whole,
    DROP COLUMN rate_limit_window_seconds,
    DROP COLUMN rate_limit_requests;

ALTER TABLE organizations
    DROP COLUMN max_workflows,
    DROP COLUMN max_active_api_keys,
    DROP COLUMN default_rate_limit_window_seconds,
    DROP COLUMN default_rate_limit_requests;

DELETE FROM schema_migrations WHERE version = 16;
