-- API keys and the two functions every authenticated statement starts from.
--
-- A key is stored as HMAC-SHA256(pepper, key): the pepper lives outside the database,
-- so a copy of this table proves nothing. lookup_id is the public part of the key that
-- finds the row; key_suffix is its last four characters, for the redacted form.

CREATE TABLE api_keys (
    org_id       text NOT NULL REFERENCES organizations (org_id),
    id           text NOT NULL CHECK (id ~ '^key_[0-9A-HJKMNP-TV-Z]{26}$'),
    lookup_id    text NOT NULL,
    secret_hash  bytea NOT NULL CHECK (length(secret_hash) = 32),
    key_suffix   text NOT NULL,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    environment  text NOT NULL CHECK (environment IN ('live', 'test')),
    scopes       text[] NOT NULL CHECK (cardinality(scopes) BETWEEN 1 AND 7),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    rotated_to   text,
    PRIMARY KEY (org_id, id)
);

CREATE UNIQUE INDEX api_keys_lookup_id ON api_keys (lookup_id);

-- The caller behind a credential, if it is valid now and holds p_scope (NULL: any).
-- Reads join it into their own statement, so authentication costs no extra round trip.
-- The hash comparison is between HMAC digests under a pepper the caller does not know,
-- so its timing cannot be steered towards a valid key.
CREATE FUNCTION authorized_caller(p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
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

-- The same, for writes: it also locks the key row (FOR KEY SHARE) until the writing
-- transaction ends. Revocation takes FOR UPDATE on that row, so it waits for writes
-- already holding the lock to commit, and a write that comes after it re-reads the
-- row, finds it revoked, and writes nothing. No write commits after a revocation.
CREATE FUNCTION locked_authorized_caller(p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
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

INSERT INTO schema_migrations (version, name, checksum) VALUES (3, 'api_keys', 'sha256:e6b9c9889e4cd0edfa36bbfefd6b89d6ea4422b890a885c0cc252f7f5c3e993f');
