-- Per-credential rate limits, the counters that share them across server processes,
-- and per-organization quotas.
--
-- A key's rate limit is its own (rate_limit_requests per rate_limit_window_seconds) or,
-- when both are NULL, its organization's default. Sessions always take the default.
-- Quotas cap what an organization holds: active API keys and workflows.

ALTER TABLE organizations
    ADD COLUMN default_rate_limit_requests integer NOT NULL DEFAULT 6000
        CHECK (default_rate_limit_requests BETWEEN 1 AND 1000000000),
    ADD COLUMN default_rate_limit_window_seconds integer NOT NULL DEFAULT 60
        CHECK (default_rate_limit_window_seconds BETWEEN 1 AND 86400),
    ADD COLUMN max_active_api_keys integer NOT NULL DEFAULT 500
        CHECK (max_active_api_keys BETWEEN 1 AND 1000000),
    ADD COLUMN max_workflows integer NOT NULL DEFAULT 1000
        CHECK (max_workflows BETWEEN 1 AND 1000000);

ALTER TABLE api_keys
    ADD COLUMN rate_limit_requests integer CHECK (rate_limit_requests BETWEEN 1 AND 1000000000),
    ADD COLUMN rate_limit_window_seconds integer
        CHECK (rate_limit_window_seconds BETWEEN 1 AND 86400),
    ADD CONSTRAINT api_keys_rate_limit_whole
        CHECK ((rate_limit_requests IS NULL) = (rate_limit_window_seconds IS NULL));

-- Requests each credential made in a fixed window (window_start, in Unix seconds, a
-- multiple of the window length), summed over server processes: each process adds what
-- it counted since its last flush, in one statement per flush, never one per request.
-- No foreign keys: a flush must not lock organization or key rows. Rows of ended
-- windows are deleted by the next flush that touches the same credential.
CREATE TABLE rate_limit_counters (
    org_id        text NOT NULL,
    credential_id text NOT NULL,
    window_start  bigint NOT NULL,
    window_end    bigint NOT NULL,
    requests      bigint NOT NULL CHECK (requests >= 0),
    PRIMARY KEY (org_id, credential_id, window_start)
);

INSERT INTO schema_migrations (version, name, checksum) VALUES (16, 'rate_limits_and_quotas', 'sha256:37d23e47f75aed56764dcfb29aeb24691e1eb749ace19dab8f3ac57b5d6b7207');
