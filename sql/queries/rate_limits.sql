-- Per-credential rate limits (server/ventryx_server/rate_limits.py). A credential's
-- limit is its key's own, else its organization's default (sessions: the default).
-- :now is the server process's clock in Unix seconds; windows are fixed and aligned to
-- multiples of their length, so every process puts a request in the same window.

-- name: credential-rate-limit^
-- global: the credential is found by its lookup id; it names the organization.
-- One credential's limit and what every process counted in its current window, for a
-- process that has not seen it yet. No row: no credential has this lookup id and hash.
WITH credential AS (
    SELECT k.org_id, k.id AS credential_id,
           coalesce(k.rate_limit_requests, o.default_rate_limit_requests) AS requests,
           coalesce(k.rate_limit_window_seconds, o.default_rate_limit_window_seconds)
               AS window_seconds
    FROM api_keys k
    JOIN organizations o ON o.org_id = k.org_id
    WHERE :kind = 'api_key' AND k.lookup_id = :lookup_id AND k.secret_hash = :secret_hash
    UNION ALL
    SELECT s.org_id, s.id, o.default_rate_limit_requests, o.default_rate_limit_window_seconds
    FROM sessions s
    JOIN organizations o ON o.org_id = s.org_id
    WHERE :kind = 'session' AND s.lookup_id = :lookup_id AND s.secret_hash = :secret_hash
), current_window AS (
    SELECT c.*, (floor(:now::float8 / c.window_seconds) * c.window_seconds)::bigint
               AS window_start
    FROM credential c
)
SELECT w.requests, w.window_seconds, w.window_start, coalesce(r.requests, 0) AS used
FROM current_window w
LEFT JOIN rate_limit_counters r
       ON r.org_id = w.org_id AND r.credential_id = w.credential_id
      AND r.window_start = w.window_start;

-- name: sync-rate-limits
-- global: credentials are found by their lookup ids, in every organization a process served.
-- A process's flush, one statement per interval: adds the requests it counted per
-- credential (those counted in a window that has ended are dropped: they can no
-- longer refuse anything), and returns for every credential sent its current limit and
-- the total every process counted in its current window. Rows are upserted in key
-- order and ended windows are cleared with SKIP LOCKED, so that two processes flushing
-- the same credentials at once wait for each other but never deadlock.
WITH counted AS (
    SELECT *
    FROM unnest(:kinds::text[], :lookup_ids::text[], :secret_hashes::bytea[],
                :window_starts::bigint[], :counts::bigint[])
         AS p (kind, lookup_id, secret_hash, counted_start, counted)
), credential AS (
    SELECT p.*, k.org_id, k.id AS credential_id,
           coalesce(k.rate_limit_requests, o.default_rate_limit_requests) AS requests,
           coalesce(k.rate_limit_window_seconds, o.default_rate_limit_window_seconds)
               AS window_seconds
    FROM counted p
    JOIN api_keys k ON k.lookup_id = p.lookup_id AND k.secret_hash = p.secret_hash
    JOIN organizations o ON o.org_id = k.org_id
    WHERE p.kind = 'api_key'
    UNION ALL
    SELECT p.*, s.org_id, s.id, o.default_rate_limit_requests,
           o.default_rate_limit_window_seconds
    FROM counted p
    JOIN sessions s ON s.lookup_id = p.lookup_id AND s.secret_hash = p.secret_hash
    JOIN organizations o ON o.org_id = s.org_id
    WHERE p.kind = 'session'
), current_window AS (
    SELECT c.*, (floor(:now::float8 / c.window_seconds) * c.window_seconds)::bigint
               AS window_start
    FROM credential c
), added AS (
    INSERT INTO rate_limit_counters (org_id, credential_id, window_start, window_end, requests)
    SELECT org_id, credential_id, window_start, window_start + window_seconds, counted
    FROM current_window
    WHERE counted > 0 AND counted_start = window_start
    ORDER BY org_id, credential_id
    ON CONFLICT (org_id, credential_id, window_start)
    DO UPDATE SET requests = rate_limit_counters.requests + excluded.requests
    RETURNING org_id, credential_id, requests
), cleared AS (
    DELETE FROM rate_limit_counters r
    WHERE (r.org_id, r.credential_id, r.window_start) IN (
        SELECT old.org_id, old.credential_id, old.window_start
        FROM rate_limit_counters old
        JOIN current_window w ON w.org_id = old.org_id AND w.credential_id = old.credential_id
        WHERE old.window_end <= :now::float8
        FOR UPDATE OF old SKIP LOCKED
    )
)
-- Two kinds of rows: each credential's limit with the total as of the statement's
-- snapshot, and the totals just upserted (newer: they include what other processes
-- committed while this one waited for the row), which the caller prefers. Joining the
-- upserted rows here instead made the planner loop over both (200 ms for 1,000 keys).
SELECT w.credential_id, w.secret_hash, w.requests, w.window_seconds, w.window_start,
       coalesce(r.requests, 0) AS used
FROM current_window w
LEFT JOIN rate_limit_counters r
       ON r.org_id = w.org_id AND r.credential_id = w.credential_id
      AND r.window_start = w.window_start
UNION ALL
SELECT a.credential_id, NULL, NULL, NULL, NULL, a.requests
FROM added a;
