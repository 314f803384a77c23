DROP TABLE members;
DELETE FROM schema_migrations WHERE version = 2;
