-- Revocation that new writes cannot overtake. Writes used to order themselves against a
-- revocation only through row locks: each write held FOR KEY SHARE on its key row and
-- a revocation took FOR UPDATE. PostgreSQL does not queue a new sharer of a row behind a
-- waiting FOR UPDATE, so under steady writes with one key the revocation waited as long
-- as the writes kept coming (measured: > 30 s with 12 writers through two processes).
-- Advisory locks live in the heavyweight lock manager, which does queue them: a shared
-- request waits behind a waiting exclusive one. So every write first takes a shared
-- advisory lock on its credential (an API key's lookup id; for a session, its member's
-- id, so ending sessions, removing and demoting members are covered too), and whatever
-- takes access away takes the exclusive one (stop_credential_writes) before FOR UPDATE.
-- The row locks stay as they were, as the backstop.
--
-- The lock is taken in a statement of its own, before the statement that reads and
-- locks the row: in a VOLATILE SQL function each statement takes a fresh snapshot, so a
-- write that waited behind a revocation sees it committed and is refused.

CREATE FUNCTION credential_write_lock_class() RETURNS int
LANGUAGE sql IMMUTABLE AS $$
    -- 'VTXW'; advisory locks with two int4 keys never collide with the single bigint
    -- key the migration runner locks (server/ventryx_server/migrations.py).
    SELECT 1448368215
$$;

CREATE FUNCTION share_credential_writes(p_subject text) RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT pg_advisory_xact_lock_shared(credential_write_lock_class(), hashtext(p_subject))
$$;

-- Waits for the writes in flight with the credential; writes that come later wait for
-- this transaction. Held until it ends.
CREATE FUNCTION stop_credential_writes(p_subject text) RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT pg_advisory_xact_lock(credential_write_lock_class(), hashtext(p_subject))
$$;

-- Expiry is compared with clock_timestamp(), not now() (the transaction's start): a
-- statement that runs after expires_at is refused even inside an older transaction.
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

CREATE OR REPLACE FUNCTION locked_session_caller(p_lookup_id text, p_secret_hash bytea, p_environment text, p_scope text)
RETURNS TABLE (org_id text, credential_id text, member_id text, environment text, scopes text[])
LANGUAGE sql VOLATILE AS $$
    SELECT share_credential_writes(s.member_id)
    FROM sessions s
    WHERE s.lookup_id = p_lookup_id AND s.secret_hash = p_secret_hash;
    SELECT s.org_id, s.id, s.member_id, p_environment,
           member_session_scopes(m.role, m.must_change_password)
    FROM sessions s
    JOIN members m ON m.org_id = s.org_id AND m.id = s.member_id
    WHERE s.lookup_id = p_lookup_id
      AND s.secret_hash = p_secret_hash
      AND p_environment IN ('live', 'test')
      AND s.ended_at IS NULL
      AND s.idle_expires_at > clock_timestamp()
      AND s.absolute_expires_at > clock_timestamp()
      AND (p_scope IS NULL
           OR p_scope = ANY (member_session_scopes(m.role, m.must_change_password))
           OR 'org:admin' = ANY (member_session_scopes(m.role, m.must_change_password)))
    FOR KEY SHARE OF s, m
$$;

INSERT INTO schema_migrations (version, name, checksum) VALUES (14, 'fair_revocation', 'sha256:1a6d1cc480cbc25fa8546cbe90cc3a2230eda2a852014f9696830a40a95039e4');
