-- Back to 0022's add_api_key: one quota lock per organization.
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
    -- Serializes count-then-insert per organization (lock-quota, 0016): the same lock key.
    PERFORM pg_advisory_xact_lock(hashtextextended('quota:active_api_keys:' || p_org_id, 0));
    SELECT o.max_active_api_keys,
           (SELECT count(*) FROM api_keys k
            WHERE k.org_id = o.org_id AND k.revoked_at IS NULL
              AND (k.expires_at IS NULL OR k.expires_at > now())
              AND k.id IS DISTINCT FROM p_retiring_id)
    INTO quota, used
    FROM organizations o
    WHERE o.org_id = p_org_id;
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

DROP FUNCTION active_api_keys(text, text);
DROP TABLE api_key_quota_slots;
DROP FUNCTION api_key_quota_slot(text, integer);
DROP INDEX api_keys_not_revoked;

DELETE FROM schema_migrations WHERE version = 24;
