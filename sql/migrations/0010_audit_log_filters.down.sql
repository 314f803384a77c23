DROP INDEX audit_log_target;
DROP INDEX audit_log_actor;
DELETE FROM schema_migrations WHERE version = 10;
