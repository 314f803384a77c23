DROP TABLE audit_log;
DROP FUNCTION refuse_audit_log_change();
DELETE FROM schema_migrations WHERE version = 5;
