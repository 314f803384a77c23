DROP TABLE login_attempts;
DELETE FROM schema_migrations WHERE version = 9;
