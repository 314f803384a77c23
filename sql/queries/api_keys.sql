-- API keys. Reads fold authentication into their own statement; writes run in a
-- transaction that first locks the caller's key (lock-caller in auth.sql).
-- A live credential manages keys of both environments; a test one sees only test keys.

-- name: get-api-key^
-- :quiet_seconds: how long a rotated key must go without a successful request for its
-- traffic to count as migrated. Usage columns: api_key_usage (0019_api_key_usage).
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id, k.*, u.*
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
LEFT JOIN api_keys k
       ON k.org_id = c.org_id AND k.id = :id
      AND (c.environment = 'live' OR k.environment = c.environment)
LEFT JOIN LATERAL api_key_usage(k.org_id, k.id, k.rotated_at, k.rotated_to, k.last_used_at,
                                :quiet_seconds) u ON k.id IS NOT NULL;

-- name: list-api-keys
-- :unused_seconds: only keys without a successful request for that long (a key never
-- used counts from its creation).
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id, k.*, u.*
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
LEFT JOIN LATERAL (
    SELECT *
    FROM api_keys k
    WHERE k.org_id = c.org_id
      AND (c.environment = 'live' OR k.environment = c.environment)
      AND (:key_environment::text IS NULL OR k.environment = :key_environment)
      AND (:starting_after::text IS NULL OR k.id < :starting_after)
      AND CASE :status::text
            WHEN 'active' THEN k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
            WHEN 'expired' THEN k.revoked_at IS NULL AND k.expires_at <= now()
            WHEN 'revoked' THEN k.revoked_at IS NOT NULL
            ELSE true
          END
      AND (:unused_seconds::float8 IS NULL
           OR coalesce(k.last_used_at, k.created_at)
              < now() - make_interval(secs => :unused_seconds::float8))
    ORDER BY k.id DESC
    LIMIT :limit
) k ON true
LEFT JOIN LATERAL api_key_usage(k.org_id, k.id, k.rotated_at, k.rotated_to, k.last_used_at,
                                :quiet_seconds) u ON k.id IS NOT NULL
ORDER BY k.id DESC;

-- name: stop-api-key-writes!
-- Before lock-caller, in every change to a key: waits for the writes in flight with the
-- key and makes later ones wait for this transaction (stop_credential_writes, 0014).
-- First, so a caller acting on its own key never has to upgrade its shared lock.
SELECT stop_credential_writes(k.lookup_id)
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
JOIN api_keys k
  ON k.org_id = c.org_id AND k.id = :id
 AND (c.environment = 'live' OR k.environment = c.environment);

-- name: lock-api-key^
SELECT *
FROM api_keys k
WHERE k.org_id = :org_id AND k.id = :id
  AND (:caller_environment = 'live' OR k.environment = :caller_environment)
FOR UPDATE;

-- name: create-api-key^
-- POST /v1/api-keys in one round trip: the caller's lock, then add_api_key (0022) with
-- the caller's organization, scopes and environment. No row: the credential is not
-- valid or lacks the scope (deny() tells which).
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id,
       c.scopes AS caller_scopes, a.outcome, a.quota, a.used, a.replay_fingerprint,
       a.replay_status, a.replay_body, (a.new_key).*
FROM locked_authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
JOIN LATERAL add_api_key(
    c.org_id, coalesce(c.member_id, c.credential_id), c.environment, c.scopes, :id,
    :key_lookup_id, :key_secret_hash, :key_suffix, :name, :key_environment, :scopes,
    :expires_at, :rate_limit_requests, :rate_limit_window_seconds, NULL, :idempotency_key,
    :fingerprint, :audit_id, :audit_details::jsonb, :request_id, :client_address
) a ON a.org_id = c.org_id;

-- name: add-api-key^
-- add_api_key (0022) for a caller already known: a rotation's successor (inside the
-- rotation's transaction, after lock-caller and the Idempotency-Key's claim) and an
-- organization's first key. The caller writes the audit entry.
SELECT a.outcome, a.quota, a.used, (a.new_key).*
FROM add_api_key(
    :org_id, :created_by, :caller_environment, :caller_scopes, :id, :key_lookup_id,
    :key_secret_hash, :key_suffix, :name, :key_environment, :scopes, :expires_at,
    :rate_limit_requests, :rate_limit_window_seconds, :retiring_id, NULL, NULL, NULL, NULL,
    NULL, NULL
) a;

-- name: update-api-key^
-- :set_rate_limit says whether the rate limit changes (NULLs: the organization's default).
UPDATE api_keys
SET name = coalesce(:name, name), scopes = coalesce(:scopes, scopes),
    rate_limit_requests = CASE WHEN :set_rate_limit THEN :rate_limit_requests::integer
                               ELSE rate_limit_requests END,
    rate_limit_window_seconds = CASE WHEN :set_rate_limit
                                     THEN :rate_limit_window_seconds::integer
                                     ELSE rate_limit_window_seconds END,
    updated_at = now()
WHERE org_id = :org_id AND id = :id
RETURNING *;

-- name: revoke-api-key^
-- clock_timestamp(): the moment of the revocation, once the writes in flight are done
-- (stop-api-key-writes), so no event the key wrote was created after revoked_at.
UPDATE api_keys
SET revoked_at = coalesce(revoked_at, clock_timestamp()), updated_at = now()
WHERE org_id = :org_id AND id = :id
RETURNING *;

-- name: retire-rotated-api-key^
UPDATE api_keys
SET expires_at = least(coalesce(expires_at, 'infinity'),
                       clock_timestamp() + make_interval(secs => :grace_seconds)),
    rotated_to = :successor_id,
    rotated_at = clock_timestamp(),
    updated_at = now()
WHERE org_id = :org_id AND id = :id
RETURNING *;

-- name: stop-leaked-api-key-writes!
-- global: a leaked key is found by its lookup id; its organization is not known yet.
-- Only for the real key: a made-up token with someone's lookup id stops nothing.
SELECT stop_credential_writes(lookup_id) FROM api_keys
WHERE lookup_id = :lookup_id AND secret_hash = :secret_hash AND revoked_at IS NULL;

-- name: revoke-leaked-api-key^
-- global: a leaked key is found by its lookup id; its organization is not known yet.
-- The kill switch for a key found in public: proof of possession is the key itself.
UPDATE api_keys k
SET revoked_at = clock_timestamp(), updated_at = now()
FROM (
    SELECT org_id, id FROM api_keys
    WHERE lookup_id = :lookup_id AND secret_hash = :secret_hash AND revoked_at IS NULL
    FOR UPDATE
) leaked
WHERE k.org_id = leaked.org_id AND k.id = leaked.id
RETURNING k.org_id, k.id, k.environment;
