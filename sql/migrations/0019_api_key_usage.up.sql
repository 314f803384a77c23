-- What GET /v1/api-keys and GET /v1/api-keys/{id} show of a key's usage (0017_key_usage):
-- one definition for both statements instead of the same joins written twice.
--   requests_last_24h       every request counted against the key in the last 24 hours
--   requests_since_rotation its successful requests from the minute of its rotation (the
--                           minute rows for the rest of that hour, the hour rows after);
--                           NULL for a key never rotated
--   traffic_migrated        for a rotated key: no successful request for p_quiet_seconds
--                           (last_used_at is at most one usage flush old); else NULL
-- A single-SELECT SQL function, STABLE and not STRICT: PostgreSQL inlines it into the
-- calling statement, which plans as the joins it replaces did.
CREATE FUNCTION api_key_usage(p_org_id text, p_key_id text, p_rotated_at timestamptz,
                              p_rotated_to text, p_last_used_at timestamptz,
                              p_quiet_seconds float8)
RETURNS TABLE (requests_last_24h bigint, requests_since_rotation bigint,
               traffic_migrated boolean)
LANGUAGE sql STABLE AS $$
    SELECT
        (SELECT coalesce(sum(m.success + m.denied_scope + m.rate_limited
                             + m.revoked_or_expired), 0)::bigint
         FROM credential_usage_minutes m
         WHERE m.org_id = p_org_id AND m.credential_id = p_key_id
           AND m.bucket_start >= now() - interval '24 hours'),
        CASE WHEN p_rotated_at IS NOT NULL THEN
            ((SELECT coalesce(sum(m.success), 0) FROM credential_usage_minutes m
              WHERE m.org_id = p_org_id AND m.credential_id = p_key_id
                AND m.bucket_start >= date_trunc('minute', p_rotated_at)
                AND m.bucket_start < date_trunc('hour', p_rotated_at, 'UTC') + interval '1 hour')
           + (SELECT coalesce(sum(h.success), 0) FROM credential_usage_hours h
              WHERE h.org_id = p_org_id AND h.credential_id = p_key_id
                AND h.bucket_start >= date_trunc('hour', p_rotated_at, 'UTC') + interval '1 hour')
            )::bigint
        END,
        CASE WHEN p_rotated_to IS NOT NULL
             THEN p_last_used_at IS NULL
                  OR p_last_used_at < now() - make_interval(secs => p_quiet_seconds)
        END
$$;

INSERT INTO schema_migrations (version, name, checksum) VALUES (19, 'api_key_usage', 'sha256:1f642791c9aa812f9d57d4f4a2eaf02605937320ececc5017b62f515868cbf09');
