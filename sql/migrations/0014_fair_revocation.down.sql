-- Back to 0013: writes lock only the credential's rows, expiry compared with now().
CREATE OR REPLACE FUNCTION locked_api_key_caller(p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
RETURNS TABLE (org_id text, credential_id text, member_id text, environment text, scopes text[])
LANGUAGE sql VOLATILE AS $$
    SELECT k.org_id, k.id, NULL::text, k.environment, k.scopes
    FROM api_keys k
    WHERE k.lookup_id = p_lookup_id
      AND k.secret_hash = p_secret_hash
      AND k.environment = p_environment
      AND k.revoked_at IS NULL
      AND (k.expires_at IS NULL OR k.expires_at > now())
      AND (p_scope IS NULL OR p_scope = ANY (k.scopes) OR 'org:admin' = ANY (k.scopes))
    FOR KEY SHARE
$$;

CREATE OR REPLACE FUNCTION locked_session_caller(p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
RETURNS TABLE (org_id text, credential_id text, member_id text, environment text, scopes text[])
LANGUAGE sql VOLATILE AS $$
    SELECT s.org_id, s.id, s.member_id, p_environment,
           member_session_scopes(m.role, m.must_change_password)
    FROM sessions s
    JOIN members m ON m.org_id = s.org_id AND m.id = s.member_id
    WHERE s.lookup_id = p_lookup_id
      AND s.secret_hash = p_secret_hash
      AND p_environment IN ('live', 'test')
      AND s.ended_at IS NULL
      AND s.idle_expires_at > now()
      AND s.absolute_expires_at > now()
      AND (p_scope IS NULL
           OR p_scope = ANY (member_session_scopes(m.role, m.must_change_password))
           OR 'org:admin' = ANY (member_session_scopes(m.role, m.must_change_password)))
    FOR KEY SHARE OF s, m
$$;

DROP FUNCTION stop_credential_writes(text);
DROP FUNCTION share_credential_writes(text);
DROP FUNCTION credential_write_lock_class();

DELETE FROM schema_migrations WHERE version = 14;
