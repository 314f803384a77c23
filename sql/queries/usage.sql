-- Key usage: requests per credential per minute and per hour, by outcome
-- (server/ventryx_server/usage.py; tables in 0017_key_usage.up.sql).

-- name: record-credential-usage!
-- global: credentials are found by their lookup ids; each row then names its organization.
-- A process's usage flush, one statement: the counts it kept in memory per credential
-- (its lookup id and hash, so that refusals of revoked or expired keys count against
-- them; counts of credentials that do not exist match nothing and are dropped) and
-- minute (Unix minutes), added to the minute and hour rows. Rows are upserted in key
-- order, so two processes flushing the same credentials wait for each other but never
-- deadlock.
WITH counted AS (
    SELECT *
    FROM unnest(:kinds::text[], :lookup_ids::text[], :secret_hashes::bytea[],
                :minutes::bigint[], :success::bigint[], :denied_scope::bigint[],
                :rate_limited::bigint[], :revoked_or_expired::bigint[])
         AS c (kind, lookup_id, secret_hash, minute, success, denied_scope, rate_limited,
               revoked_or_expired)
), credential AS (
    SELECT k.org_id, k.id AS credential_id, c.*
    FROM counted c
    JOIN api_keys k ON k.lookup_id = c.lookup_id AND k.secret_hash = c.secret_hash
    WHERE c.kind = 'api_key'
    UNION ALL
    SELECT s.org_id, s.id, c.*
    FROM counted c
    JOIN sessions s ON s.lookup_id = c.lookup_id AND s.secret_hash = c.secret_hash
    WHERE c.kind = 'session'
), minutes AS (
    INSERT INTO credential_usage_minutes AS u (org_id, credential_id, bucket_start, success,
                                               denied_scope, rate_limited, revoked_or_expired)
    SELECT org_id, credential_id, to_timestamp(minute * 60), sum(success), sum(denied_scope),
           sum(rate_limited), sum(revoked_or_expired)
    FROM credential
    GROUP BY org_id, credential_id, minute
    ORDER BY org_id, credential_id, minute
    ON CONFLICT (org_id, credential_id, bucket_start) DO UPDATE
    SET success = u.success + excluded.success,
        denied_scope = u.denied_scope + excluded.denied_scope,
        rate_limited = u.rate_limited + excluded.rate_limited,
        revoked_or_expired = u.revoked_or_expired + excluded.revoked_or_expired
)
INSERT INTO credential_usage_hours AS u (org_id, credential_id, bucket_start, success,
                                         denied_scope, rate_limited, revoked_or_expired)
SELECT org_id, credential_id, to_timestamp(minute / 60 * 3600), sum(success),
       sum(denied_scope), sum(rate_limited), sum(revoked_or_expired)
FROM credential
GROUP BY org_id, credential_id, minute / 60
ORDER BY org_id, credential_id, minute / 60
ON CONFLICT (org_id, credential_id, bucket_start) DO UPDATE
SET success = u.success + excluded.success,
    denied_scope = u.denied_scope + excluded.denied_scope,
    rate_limited = u.rate_limited + excluded.rate_limited,
    revoked_or_expired = u.revoked_or_expired + excluded.revoked_or_expired;

-- name: delete-old-usage-minutes^
-- global: retention is the same for every organization; one bounded batch across them.
-- One batch of minute rows older than :keep_seconds; SKIP LOCKED leaves rows a flush is
-- writing, and the batch bounds how long any row stays locked.
WITH old AS (
    SELECT ctid FROM credential_usage_minutes
    WHERE bucket_start < now() - make_interval(secs => :keep_seconds)
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM credential_usage_minutes WHERE ctid IN (SELECT ctid FROM old) RETURNING 1
)
SELECT count(*) AS deleted FROM gone;

-- name: delete-old-usage-hours^
-- global: retention is the same for every organization; one bounded batch across them.
WITH old AS (
    SELECT ctid FROM credential_usage_hours
    WHERE bucket_start < now() - make_interval(secs => :keep_seconds)
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM credential_usage_hours WHERE ctid IN (SELECT ctid FROM old) RETURNING 1
)
SELECT count(*) AS deleted FROM gone;

-- name: api-key-usage
-- A key's buckets, oldest first, zero-filled: :buckets buckets of :step seconds from
-- :first (Unix seconds, aligned by the caller). Minutes come from the minute rows, hours
-- and days from the hour rows. One row with a NULL id: no such key for this caller.
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id, k.id,
       b.bucket_start, b.success, b.denied_scope, b.rate_limited, b.revoked_or_expired
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
LEFT JOIN api_keys k
       ON k.org_id = c.org_id AND k.id = :id
      AND (c.environment = 'live' OR k.environment = c.environment)
LEFT JOIN LATERAL (
    SELECT to_timestamp(:first::float8 + i * :step::float8) AS bucket_start,
           coalesce(t.success, 0) AS success, coalesce(t.denied_scope, 0) AS denied_scope,
           coalesce(t.rate_limited, 0) AS rate_limited,
           coalesce(t.revoked_or_expired, 0) AS revoked_or_expired
    FROM generate_series(0, :buckets::integer - 1) AS i
    LEFT JOIN (
        SELECT floor((extract(epoch FROM u.bucket_start) - :first::float8) / :step::float8)
                   ::integer AS i,
               sum(u.success)::bigint AS success, sum(u.denied_scope)::bigint AS denied_scope,
               sum(u.rate_limited)::bigint AS rate_limited,
               sum(u.revoked_or_expired)::bigint AS revoked_or_expired
        FROM (
            SELECT * FROM credential_usage_minutes m
            WHERE :step::float8 = 60 AND m.org_id = k.org_id AND m.credential_id = k.id
            UNION ALL
            SELECT * FROM credential_usage_hours h
            WHERE :step::float8 > 60 AND h.org_id = k.org_id AND h.credential_id = k.id
        ) u
        WHERE u.bucket_start >= to_timestamp(:first::float8)
          AND u.bucket_start < to_timestamp(:first::float8 + :buckets::integer * :step::float8)
        GROUP BY 1
    ) t USING (i)
    ORDER BY i
) b ON k.id IS NOT NULL;
