-- Organizations, and the table that records which migrations a database has.
-- Every table of Ventryx carries org_id and leads its primary key with it, so the
-- schema can be sharded on org_id (Citus) without rewriting a query.

CREATE TABLE schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE organizations (
    org_id     text PRIMARY KEY CHECK (org_id ~ '^org_[0-9A-HJKMNP-TV-Z]{26}$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO schema_migrations (version, name, checksum) VALUES (1, 'organizations', 'sha256:b5226318447845929d5c24d37b64ca3337b62a58a31742bcd92ceb797f9eb89b');
