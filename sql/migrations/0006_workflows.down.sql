DROP FUNCTION event_trigger_patterns(text);
DROP TABLE workflows;
DELETE FROM schema_migrations WHERE version = 6;
