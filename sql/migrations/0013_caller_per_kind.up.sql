-- One caller function per credential kind. The server knows the kind from the token's
-- prefix, and its statements call api_key_caller / session_caller (and their locked_
-- forms) directly (db.Queries picks the function per kind). Folding the other kind away
-- through a literal in authorized_caller(kind, ...) still left a UNION wrapper in every
-- plan; without it an authenticated read costs about 3 µs less database CPU (measured
-- with 20 connections: 31.7 -> 28.0 µs per read, 20.7 for the same read with no caller).
-- authorized_caller and locked_authorized_caller stay, built from the two, for callers
-- that bind the kind as a parameter.

CREATE FUNCTION api_key_caller(p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
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

CREATE FUNCTION session_caller(p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
RETURNS TABLE (org_id text, credential_id text, member_id text, environment text, scopes text[])
LANGUAGE sql STABLE AS $$
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
$$;

-- For writes: lock the key row, or the session row and its member's row (FOR KEY SHARE),
-- until the writing transaction ends; see locked_authorized_caller in 0012.
CREATE FUNCTION locked_api_key_caller(p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
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

CREATE FUNCTION locked_session_caller(p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
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

CREATE OR REPLACE FUNCTION authorized_caller(p_kind text, p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
RETURNS TABLE (org_id text, credential_id text, member_id text, environment text, scopes text[])
LANGUAGE sql STABLE AS $$
    SELECT * FROM api_key_caller(p_lookup_id, p_secret_hash, p_environment, p_scope)
    WHERE p_kind = 'api_key'
    UNION ALL
    SELECT * FROM session_caller(p_lookup_id, p_secret_hash, p_environment, p_scope)
    WHERE p_kind = 'session'
$$;

CREATE OR REPLACE FUNCTION locked_authorized_caller(p_kind text, p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
RETURNS TABLE (org_id text, credential_id text, member_id text, environment text, scopes text[])
LANGUAGE sql VOLATILE AS $$
    SELECT * FROM locked_api_key_caller(p_lookup_id, p_secret_hash, p_environment, p_scope)
    WHERE p_kind = 'api_key'
    UNION ALL
    SELECT * FROM locked_session_caller(p_lookup_id, p_secret_hash, p_environment, p_scope)
    WHERE p_kind = 'session'
$$;

INSERT INTO schema_migrations (version, name, checksum) VALUES (13, 'caller_per_kind', 'sha256:854d9bc28fba816568e934fc6b12bf061f625b04e78f4a3a5e312e84a7fad166');
