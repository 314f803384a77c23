-- Responses to POSTs that carried an Idempotency-Key, so a retry replays the first
-- response. The row is inserted in the same transaction as the work it guards: a
-- concurrent retry waits on the primary key until the first try commits or rolls back.

CREATE TABLE idempotency_keys (
    org_id              text NOT NULL REFERENCES organizations (org_id),
    idempotency_key     text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_fingerprint bytea NOT NULL,
    -- NULL until the guarded work has produced its response, in the same transaction.
    response_status     integer,
    response_body       bytea,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, idempotency_key)
);

INSERT INTO schema_migrations (version, name, checksum) VALUES (4, 'idempotency_keys', 'sha256:bad39ee6e6582892109087fa2de98553b4197dadadde695bfa6e2f3932a8df2b');
