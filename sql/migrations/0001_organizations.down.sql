DROP TABLE organizations;
DROP TABLE schema_migrations;
