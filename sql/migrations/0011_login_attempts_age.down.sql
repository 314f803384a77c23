DROP INDEX login_attempts_age;
DELETE FROM schema_migrations WHERE version = 11;
