-- Members' dashboard sessions, and the folded-auth functions extended to accept them.
--
-- A session token (vtxs_…) is stored like an API key: HMAC-SHA256(pepper, token), found
-- by its public lookup id. A session has no environment of its own: it picks one per
-- request (Ventryx-Environment header). Its scopes are not stored either: they follow
-- the member's role at the moment of each request, so a role change or a removal takes
-- effect on the very next request.

CREATE TABLE sessions (
    org_id          text NOT NULL,
    id              text NOT NULL CHECK (id ~ '^ses_[0-9A-HJKMNP-TV-Z]{26}$'),
    member_id       text NOT NULL,
    lookup_id       text NOT NULL,
    secret_hash     bytea NOT NULL CHECK (length(secret_hash) = 32),
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Pushed forward by idle_timeout while the session is used (at most once per flush
    -- interval per server process, never a write per request); absolute_expires_at
    -- never moves. The timeout is stored with the session, decided when it began.
    idle_timeout        interval NOT NULL,
    idle_expires_at     timestamptz NOT NULL,
    absolute_expires_at timestamptz NOT NULL,
    ended_at        timestamptz,
    client_address  text,
    PRIMARY KEY (org_id, id),
    -- Removing a member removes their sessions in the same statement.
    FOREIGN KEY (org_id, member_id) REFERENCES members (org_id, id) ON DELETE CASCADE
);

CREATE UNIQUE INDEX sessions_lookup_id ON sessions (lookup_id);
CREATE INDEX sessions_member ON sessions (org_id, member_id) WHERE ended_at IS NULL;

-- Login finds a member by email before any organization is known.
CREATE INDEX members_email ON members (lower(email));

-- What each role may do. owner and admin differ only in the owner-only rules the
-- members endpoints enforce (making, unmaking and removing owners).
CREATE FUNCTION member_role_scopes(p_role text) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_role
        WHEN 'owner' THEN ARRAY['org:admin']
        WHEN 'admin' THEN ARRAY['org:admin']
        WHEN 'developer' THEN ARRAY['workflows:read', 'workflows:write', 'events:read',
                                    'events:write', 'api-keys:read', 'api-keys:write']
        WHEN 'viewer' THEN ARRAY['workflows:read', 'events:read', 'api-keys:read']
        ELSE ARRAY[]::text[]
    END
$$;

-- A member who still holds a one-time password gets a session with no scopes: it can
-- ask who it is, change its password and log out (endpoints that need no scope), and
-- nothing else until the password is changed.
CREATE FUNCTION member_session_scopes(p_role text, p_must_change_password boolean) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_must_change_password THEN ARRAY[]::text[]
                ELSE member_role_scopes(p_role) END
$$;

-- The api_keys branch is exactly 0003's; the sessions branch adds members' sessions,
-- whose environment is whichever one the request asked for.
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
    UNION ALL
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

-- For writes: locks the key row, or the session row and its member's row (FOR KEY
-- SHARE), until the writing transaction ends. Ending a session, removing a member and
-- changing a member's role first take FOR UPDATE on those rows, so, as with a key's
-- revocation, they wait for writes already holding the lock, and a write that comes
-- after them re-reads the rows and is refused.
CREATE OR REPLACE FUNCTION locked_authorized_caller(p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
RETURNS TABLE (org_id text, credential_id text, member_id text, environment text, scopes text[])
LANGUAGE sql VOLATILE AS $$
    SELECT * FROM (
        SELECT k.org_id, k.id, NULL::text, k.environment, k.scopes
        FROM api_keys k
        WHERE k.lookup_id = p_lookup_id
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
    ) session_caller
$$;

INSERT INTO schema_migrations (version, name, checksum) VALUES (8, 'sessions', 'sha256:64f6de3508d4e1a723c28809b2b8c782d4f242913f18f3812833c5439e3123bd');
