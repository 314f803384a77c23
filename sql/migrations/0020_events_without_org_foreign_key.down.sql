-- Events reference their organization again (every existing row is checked).
ALTER TABLE events ADD CONSTRAINT events_org_id_fkey1
    FOREIGN KEY (org_id) REFERENCES organizations (org_id);

DELETE FROM schema_migrations WHERE version = 20;
