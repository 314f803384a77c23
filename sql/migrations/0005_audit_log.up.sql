-- Who did what, written in the same transaction as the change it records.
-- Append-only: the database itself refuses UPDATE, DELETE and TRUNCATE, whoever asks.

CREATE TABLE audit_log (
    org_id         text NOT NULL REFERENCES organizations (org_id),
    id             text NOT NULL CHECK (id ~ '^aud_[0-9A-HJKMNP-TV-Z]{26}$'),
    actor_id       text NOT NULL,
    action         text NOT NULL,
    target_type    text NOT NULL,
    target_id      text,
    environment    text CHECK (environment IN ('live', 'test')),
    request_id     text,
    client_address text,
    details        jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);

CREATE FUNCTION refuse_audit_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_is_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_log_change();

INSERT INTO schema_migrations (version, name, checksum) VALUES (5, 'audit_log', 'sha256:8064ec4a58f3d261d8d0017301b29348a1a281229785ea12a469e75e5e38a918');
