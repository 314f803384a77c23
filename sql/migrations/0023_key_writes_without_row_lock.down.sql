-- Back to 0014's locked_api_key_caller: the shared advisory lock and FOR KEY SHARE.
CREATE OR REPLACE FUNCTION locked_api_key_caller(p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
RETURNS TABLE (org_id text, credential_id text, member_id text, environment text, scopes text[])
LANGUAGE sql VOLATILE AS $$
    SELECT share_credential_writes(p_lookup_id);
    SELECT k.org_id, k.id, NULL::text, k.environment, k.scopes
    FROM api_keys k
    WHERE k.lookup_id = p_lookup_id
      AND k.secret_hash = p_secret_hash
      AND k.environment = p_environment
      AND k.revoked_at IS NULL
      AND (k.expires_at IS NULL OR k.expires_at > clock_timestamp())
      AND (p_scope IS NULL OR p_scope = ANY (k.scopes) OR 'org:admin' = ANY (k.scopes))
    FOR KEY SHARE
$$;

DELETE FROM schema_migrations WHERE version = 23;
