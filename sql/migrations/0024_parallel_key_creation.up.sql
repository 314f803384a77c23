-- Key creations of one organization no longer take turns. add_api_key (0022) counted the
-- organization's active keys under one advisory lock held until commit, so creations
-- waited for each other's count and commit (fsync included): measured with 64
-- connections creating keys in one organization, 212 creations/s at 2,316 µs of server
-- CPU each, 3.1 times an authenticated key read, and 3,064 µs of database CPU, most of it
-- counting the organization's thousands of keys under the lock. Creations waiting in
-- turn leave the server's event loop idle between them, and every wake-up from idle
-- costs CPU (bench/README.md). With this migration, same run set-up: 552 creations/s,
-- 1.85 times the read's server CPU, 1,367 µs of database CPU.
--
-- Now an organization has 8 quota slots (advisory locks) and, per slot, a count of the
-- keys added through it (api_key_quota_slots). Their sum is an upper bound on the keys
-- that count against the quota: every creation adds one in its own transaction, while a
-- revocation or an expiry only makes the bound loose. A creation takes one free slot
-- and goes on if even 8 creations in flight could not pass the quota from that bound
-- (bound + 8 <= quota): up to 8 run at once and commit together, and none counts keys.
-- Near the quota (or with no bound yet) it lets its slot go (taken in a subtransaction,
-- which the function leaves by an exception), takes all 8 in order, so that no other
-- creation is in flight, counts exactly as before, and sets the bound to that count. No
-- creation waits on another crosswise: one holds at most one slot while it waits for
-- one, and one that takes them all holds none when it starts.
-- A refusal at the quota may keep the bound it set (the exact count, true either way);
-- the key, its audit entry and the Idempotency-Key's claim are written only on success.
--
-- The exact count reads a partial index of the keys not revoked (api_keys_not_revoked),
-- not every key the organization ever had.

CREATE INDEX api_keys_not_revoked ON api_keys (org_id, expires_at, id) WHERE revoked_at IS NULL;

CREATE FUNCTION api_key_quota_slot(p_org_id text, p_slot integer) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('quota:active_api_keys:' || p_org_id || ':' || p_slot, 0)
$$;

-- Per organization and slot, the keys added through the slot since the last exact
-- count (which slot 0 holds): their sum is the bound. Written only under the slot's lock.
CREATE TABLE api_key_quota_slots (
    org_id     text NOT NULL REFERENCES organizations (org_id),
    slot       integer NOT NULL CHECK (slot BETWEEN 0 AND 7),
    keys_added bigint NOT NULL CHECK (keys_added >= 0),
    PRIMARY KEY (org_id, slot)
);

-- The organization's quota of active keys; how many it holds, leaving out p_retiring_id
-- (a key the calling transaction retires: its successor takes its place), which is what
-- the quota compares; and how many it holds with that key (expired and revoked keys never
-- count), which is what the slots' bound must not fall below.
CREATE FUNCTION active_api_keys(p_org_id text, p_retiring_id text)
RETURNS TABLE (quota integer, used bigint, active bigint)
LANGUAGE sql STABLE AS $$
    SELECT o.max_active_api_keys, c.used, c.active
    FROM organizations o,
         LATERAL (SELECT count(*) FILTER (WHERE k.id IS DISTINCT FROM p_retiring_id) AS used,
                         count(*) AS active
                  FROM api_keys k
                  WHERE k.org_id = o.org_id AND k.revoked_at IS NULL
                    AND (k.expires_at IS NULL OR k.expires_at > now())) c
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
    my_slot integer;
    active bigint;
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
    -- Far from the quota: one free slot (or wait for one), the bound, and on.
    BEGIN
        first_slot := floor(random() * slots)::integer;
        FOR i IN 0 .. slots - 1 LOOP
            my_slot := (first_slot + i) % slots;
            EXIT WHEN pg_try_advisory_xact_lock(api_key_quota_slot(p_org_id, my_slot));
            my_slot := NULL;
        END LOOP;
        IF my_slot IS NULL THEN
            my_slot := first_slot;
            PERFORM pg_advisory_xact_lock(api_key_quota_slot(p_org_id, my_slot));
        END IF;
        SELECT o.max_active_api_keys,
               (SELECT sum(s.keys_added) FROM api_key_quota_slots s WHERE s.org_id = o.org_id)
        INTO quota, used
        FROM organizations o
        WHERE o.org_id = p_org_id;
        IF used IS NULL OR used + slots > quota THEN
            RAISE EXCEPTION USING ERRCODE = 'VTXQ1';  -- near the quota, or no bound yet
        END IF;
    EXCEPTION WHEN SQLSTATE 'VTXQ1' THEN
        -- Every slot, in order, holding none; then the exact count, and the bound.
        FOR i IN 0 .. slots - 1 LOOP
            PERFORM pg_advisory_xact_lock(api_key_quota_slot(p_org_id, i));
        END LOOP;
        SELECT q.quota, q.used, q.active INTO quota, used, active
        FROM active_api_keys(p_org_id, p_retiring_id) q;
        DELETE FROM api_key_quota_slots s WHERE s.org_id = p_org_id;
        INSERT INTO api_key_quota_slots (org_id, slot, keys_added)
        SELECT p_org_id, n, CASE WHEN n = 0 THEN active ELSE 0 END
        FROM generate_series(0, slots - 1) n;
        my_slot := 0;
    END;
    IF used >= quota THEN
        outcome := 'quota_exceeded';
        RETURN NEXT;
        RETURN;
    END IF;
    UPDATE api_key_quota_slots s SET keys_added = s.keys_added + 1
    WHERE s.org_id = p_org_id AND s.slot = my_slot;
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

INSERT INTO schema_migrations (version, name, checksum) VALUES (24, 'parallel_key_creation', 'sha256:e8d7a6f79ae73e23965235f24048249792d87a37cc70b8ef0c437c1a8e4848ee');
