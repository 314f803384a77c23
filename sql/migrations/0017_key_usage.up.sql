-- Key usage (issue 12): requests per credential per minute and per hour, by outcome,
-- written by each server process's usage flush (server/ventryx_server/usage.py) as one
-- upsert that adds its in-memory counts, so the rows are the sum over every process.
-- Both tables are filled by the same flush rather than the hours rolled up from the
-- minutes later: the hour totals are exact from the start and need no job of their own.
-- Old rows go in small batches (delete-old-usage-*), found by a sequential scan that
-- stops at the limit: rows are appended in time order, so the oldest come first and no
-- index on the bucket alone (one not led by org_id) is needed.

CREATE TABLE credential_usage_minutes (
    org_id             text NOT NULL REFERENCES organizations (org_id) ON DELETE CASCADE,
    credential_id      text NOT NULL,
    bucket_start       timestamptz NOT NULL,
    success            bigint NOT NULL DEFAULT 0 CHECK (success >= 0),
    denied_scope       bigint NOT NULL DEFAULT 0 CHECK (denied_scope >= 0),
    rate_limited       bigint NOT NULL DEFAULT 0 CHECK (rate_limited >= 0),
    revoked_or_expired bigint NOT NULL DEFAULT 0 CHECK (revoked_or_expired >= 0),
    PRIMARY KEY (org_id, credential_id, bucket_start)
);

CREATE TABLE credential_usage_hours (LIKE credential_usage_minutes INCLUDING ALL);
ALTER TABLE credential_usage_hours
    ADD FOREIGN KEY (org_id) REFERENCES organizations (org_id) ON DELETE CASCADE;

-- When a key was rotated: the start of "requests since rotation".
ALTER TABLE api_keys ADD COLUMN rotated_at timestamptz;

INSERT INTO schema_migrations (version, name, checksum) VALUES (17, 'key_usage', 'sha256:04488e86a8442ef81e8cfefe5eb95649110370c4c98701d607b271f4403b09ab');
