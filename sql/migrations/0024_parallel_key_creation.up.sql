-- Key creations of one organization no longer take turns. add_api_key (0022) counted the
-- organization's active keys under one advisory lock held until commit, so creations
-- waited for each other's count and commit (fsync included): measured with 64
-- connections creating keys in one organization, 212 creations/s at 2,316 µs of server
-- CPU each, 3.1 times an authenticated key read; the same with the lock removed (which
-- is not safe), 275/s at 1.98 times the read. Creations waiting in turn leave the
-- server's event loop idle between them, and on this kind of host every wake-up from
-- idle costs CPU (bench/README.md).
--
-- Now an organization has 8 quota slots (advisory locks). A creation takes one slot,
-- counts, and goes on if even 8 creations in flight could not pass the quota
-- (used + 8 <= quota); up to 8 run at once and commit together. Within 8 of the quota it
-- lets its slot go (the slot was taken in a subtransaction, which the function leaves
-- by an exception), takes all 8 in order, so that no other creation is in flight, and
-- counts exactly, as before. No creation can wait on another crosswise: a creation
-- holds at most one slot while it waits for one, and one that takes them all holds none
-- when it starts.
--
-- The count reads a partial index of the keys not revoked (api_keys_not_revoked), not
-- every key the organization ever had.

CREATE INDEX api_keys_not_revoked ON api_keys (org_id, expires_at, id) WHERE revoked_at IS NULL;

CREATE FUNCTION api_key_quota_slot(p_org_id text, p_slot integer) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('quota:active_api_keys:' || p_org_id || ':' || p_slot, 0)
$$;

-- The organization's quota of active keys and how many it holds (expired and revoked
-- keys do not count; p_retiring_id, a key the calling transaction retires, neither).
CREATE FUNCTION active_api_keys(p_org_id text, p_retiring_id text)
RETURNS TABLE (quota integer, used bigint)
LANGUAGE sql STABLE AS $$
    SELECT o.max_active_api_keys,
           (SELECT count(*) FROM api_keys k
            WHERE k.org_id = o.org_id AND k.revoked_at IS NULL
              AND (k.expires_at IS NULL OR k.expires_at > now())
              AND k.id IS DISTINCT FROM p_retiring_id)
    FROM organizations o
    WHERE o.org_id = p_org_id
$$;

CREATE OR REPLACE FUNCTION add_api_key(
    p_org_id text, p_created_by text, p_caller_environment text, p_caller_scopes text[],
    p_id text, p_lookup_id text, p_secret_hash bytea, p_key_suffix text, p_name text,
    p_environment text, p_scopes text[], p_expires_at timestamptz,
    p_rate_limit_requests integer, p_rate_limit_window_seconds integer,
    p_retiring_id text, p_idempotency_key text, p_fingerprint bytea,
    p_audit_id text, p_audit_details jsonb, p_request_id text, p_client_address text)
RETURNS TABLE (org_id text, outcome text, new_key api_keys, quota integer, used bigint,
               replay_fingerprint bytea, replay_status integer, replay_body bytea)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    slots constant integer := 8;
    first_slot integer;
    slot integer;
BEGIN
    org_id := p_org_id;
    IF p_caller_environment = 'test' AND p_environment = 'live' THEN
        outcome := 'environment_escalation';
        RETURN NEXT;
        RETURN;
    END IF;
    -- ventryx_shared.scopes.grants_all: org:admin implies every scope.
    IF NOT ('org:admin' = ANY (p_caller_scopes) OR p_scopes <@ p_caller_scopes) THEN
        outcome := 'scope_escalation';
        RETURN NEXT;
        RETURN;
    END IF;
    IF p_idempotency_key IS NOT NULL THEN
        -- Waits, on the primary key, for a concurrent request with the same key to end.
        INSERT INTO idempotency_keys (org_id, idempotency_key, request_fingerprint)
        VALUES (p_org_id, p_idempotency_key, p_fingerprint)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            SELECT i.request_fingerprint, i.response_status, i.response_body
            INTO replay_fingerprint, replay_status, replay_body
            FROM idempotency_keys i
            WHERE i.org_id = p_org_id AND i.idempotency_key = p_idempotency_key;
            outcome := 'replay';
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    -- Far from the quota: one of the organization's slots, then the count. At most
    -- slots creations are in flight (each holds its slot until commit), so with
    -- used + slots <= quota none of them can take the organization past its quota.
    -- A slot held by a subtransaction is let go again if it leaves by the exception.
    BEGIN
        first_slot := floor(random() * slots)::integer;
        FOR i IN 0 .. slots - 1 LOOP
            slot := (first_slot + i) % slots;
            EXIT WHEN pg_try_advisory_xact_lock(api_key_quota_slot(p_org_id, slot));
            slot := NULL;
        END LOOP;
        IF slot IS NULL THEN
            PERFORM pg_advisory_xact_lock(api_key_quota_slot(p_org_id, first_slot));
        END IF;
        SELECT q.quota, q.used INTO quota, used FROM active_api_keys(p_org_id, p_retiring_id) q;
        IF used + slots > quota THEN
            RAISE EXCEPTION USING ERRCODE = 'VTXQ1';  -- near the quota
        END IF;
    EXCEPTION WHEN SQLSTATE 'VTXQ1' THEN
        -- Near the quota: every slot, in order (holding none, so two such creations
        -- never wait on each other crosswise), so no other creation is in flight, then
        -- the exact count.
        FOR i IN 0 .. slots - 1 LOOP
            PERFORM pg_advisory_xact_lock(api_key_quota_slot(p_org_id, i));
        END LOOP;
        SELECT q.quota, q.used INTO quota, used FROM active_api_keys(p_org_id, p_retiring_id) q;
    END;
    IF used >= quota THEN
        outcome := 'quota_exceeded';
        RETURN NEXT;
        RETURN;
    END IF;
    INSERT INTO api_keys (org_id, id, lookup_id, secret_hash, key_suffix, name, environment,
                          scopes, created_by, expires_at, rate_limit_requests,
                          rate_limit_window_seconds)
    VALUES (p_org_id, p_id, p_lookup_id, p_secret_hash, p_key_suffix, p_name, p_environment,
            p_scopes, p_created_by, p_expires_at, p_rate_limit_requests,
            p_rate_limit_window_seconds)
    RETURNING * INTO new_key;
    IF p_audit_id IS NOT NULL THEN
        INSERT INTO audit_log (org_id, id, actor_id, action, target_type, target_id,
                               environment, request_id, client_address, details)
        VALUES (p_org_id, p_audit_id, p_created_by, 'api_key.created', 'api_key', p_id,
                p_environment, p_request_id, p_client_address, p_audit_details);
    END IF;
    outcome := 'created';
    RETURN NEXT;
END
$$;

INSERT INTO schema_migrations (version, name, checksum) VALUES (24, 'parallel_key_creation', 'sha256:0f32e55ddcfda308af37965e144fd0e67b7e2b6a34997aa8cc23ffeecd552db6');
