-- Back to 0003's functions, which know only API keys.
CREATE OR REPLACE FUNCTION authorized_caller(p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
RETURNS TABLE (org_id text, credential_id text, member_id text, environment text, scopes text[])
LANGUAGE sql STABLE AS $$
    SELECT k.org_id, k.id, NULL::text, k.environment, k.scopes
    FROM api_keys k
    WHERE k.lookup_id = p_lookup_id
      AND k.secret_hash = p_secret_hash
      AND k.environment = p_environment
      AND k.revoked_at IS NULL
      AND (k.expires_at IS NULL OR k.expires_at > now())
      AND (p_scope IS NULL OR p_scope = ANY (k.scopes) OR 'org:admin' = ANY (k.scopes))
$$;

CREATE OR REPLACE FUNCTION locked_authorized_caller(p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
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

DROP FUNCTION member_session_scopes(text, boolean);
DROP FUNCTION member_role_scopes(text);
DROP INDEX members_email;
DROP TABLE sessions;
DELETE FROM schema_migrations WHERE version = 8;
