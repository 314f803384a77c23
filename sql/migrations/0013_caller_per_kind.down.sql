-- Back to 0012: the two caller functions with both kinds written inside them.
CREATE OR REPLACE FUNCTION authorized_caller(p_kind text, p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
RETURNS TABLE (org_id text, credential_id text, member_id text, environment text, scopes text[])
LANGUAGE sql STABLE AS $$
    SELECT k.org_id, k.id, NULL::text, k.environment, k.scopes
    FROM api_keys k
    WHERE p_kind = 'api_key'
      AND k.lookup_id = p_lookup_id
      AND k.secret_hash = p_secret_hash
      AND k.environment = p_environment
      AND k.revoked_at IS NULL
      AND (k.expires_at IS NULL OR k.expires_at > now())
      AND (p_scope IS NULL OR p_scope = ANY (k.scopes) OR 'org:admin' = ANY (k.scopes))
    UNION ALL
    SELECT s.org_id, s.id, s.member_id, p_environment,
           member_session_scopes(m.role, m.must_change_password)
    FROM sessions s
    JOIN members m ON m.org_id = s.org_id AND m.id = s.member_id
    WHERE p_kind = 'session'
      AND s.lookup_id = p_lookup_id
      AND s.secret_hash = p_secret_hash
      AND p_environment IN ('live', 'test')
      AND s.ended_at IS NULL
      AND s.idle_expires_at > now()
      AND s.absolute_expires_at > now()
      AND (p_scope IS NULL
           OR p_scope = ANY (member_session_scopes(m.role, m.must_change_password))
           OR 'org:admin' = ANY (member_session_scopes(m.role, m.must_change_password)))
$$;

-- For writes: locks the key row, or the session row and its member's row (FOR KEY
-- SHARE), until the writing transaction ends. Ending a session, removing a member and
-- changing a member's role first take FOR UPDATE on those rows, so, as with a key's
-- revocation, they wait for writes already holding the lock, and a write that comes
-- after them re-reads the rows and is refused.
CREATE OR REPLACE FUNCTION locked_authorized_caller(p_kind text, p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
RETURNS TABLE (org_id text, credential_id text, member_id text, environment text, scopes text[])
LANGUAGE sql VOLATILE AS $$
    SELECT * FROM (
        SELECT k.org_id, k.id, NULL::text, k.environment, k.scopes
        FROM api_keys k
        WHERE p_kind = 'api_key'
      AND k.lookup_id = p_lookup_id
          AND k.secret_hash = p_secret_hash
          AND k.environment = p_environment
          AND k.revoked_at IS NULL
          AND (k.expires_at IS NULL OR k.expires_at > now())
          AND (p_scope IS NULL OR p_scope = ANY (k.scopes) OR 'org:admin' = ANY (k.scopes))
        FOR KEY SHARE
    ) key_caller
    UNION ALL
    SELECT * FROM (
        SELECT s.org_id, s.id, s.member_id, p_environment,
               member_session_scopes(m.role, m.must_change_password)
        FROM sessions s
        JOIN members m ON m.org_id = s.org_id AND m.id = s.member_id
        WHERE p_kind = 'session'
      AND s.lookup_id = p_lookup_id
          AND s.secret_hash = p_secret_hash
          AND p_environment IN ('live', 'test')
          AND s.ended_at IS NULL
          AND s.idle_expires_at > now()
          AND s.absolute_expires_at > now()
          AND (p_scope IS NULL
               OR p_scope = ANY (member_session_scopes(m.role, m.must_change_password))
               OR 'org:admin' = ANY (member_session_scopes(m.role, m.must_change_password)))
        FOR KEY SHARE OF s, m
    ) session_caller
$$;

DROP FUNCTION locked_session_caller(text, bytea, text, text);
DROP FUNCTION locked_api_key_caller(text, bytea, text, text);
DROP FUNCTION session_caller(text, bytea, text, text);
DROP FUNCTION api_key_caller(text, bytea, text, text);

DELETE FROM schema_migrations WHERE version = 13;
