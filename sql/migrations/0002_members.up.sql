-- The people of an organization. Passwords are argon2id hashes (never the password);
-- a new member's password is a one-time one that must be changed at first login.

CREATE TABLE members (
    org_id               text NOT NULL REFERENCES organizations (org_id),
    id                   text NOT NULL CHECK (id ~ '^mem_[0-9A-HJKMNP-TV-Z]{26}$'),
    email                text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    role                 text NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'viewer')),
    password_hash        text,
    must_change_password boolean NOT NULL DEFAULT true,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);

CREATE UNIQUE INDEX members_org_email ON members (org_id, lower(email));

INSERT INTO schema_migrations (version, name, checksum) VALUES (2, 'members', 'sha256:e5b8a2a94982e575be38cc5ff1db0904375527ccf9d023d70d4c8f6839c16de1');
