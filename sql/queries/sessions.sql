-- Members' dashboard sessions and the login throttle. A session row is locked FOR
-- UPDATE before it ends, which waits for writes made with it (they hold FOR KEY SHARE
-- through locked_authorized_caller) and refuses every later one.

-- name: find-login-candidates
-- global: a login names an email; its organizations are what this finds.
-- The only query that looks across organizations: a login names an email, and the
-- organization only when that email is a member of several.
SELECT m.org_id, m.id, m.email, m.name, m.role, m.password_hash, m.must_change_password,
       m.created_at, m.updated_at, o.name AS org_name
FROM members m
JOIN organizations o ON o.org_id = m.org_id
WHERE lower(m.email) = lower(:email)
  AND (:org_id::text IS NULL OR m.org_id = :org_id)
ORDER BY m.org_id
LIMIT 20;

-- name: lock-throttle-keys!
-- Serializes the count-then-record of logins for the same email or address (briefly:
-- the password is checked after this transaction), so a burst of concurrent guesses
-- cannot all pass the check before any is recorded.
SELECT pg_advisory_xact_lock(hashtextextended(throttle_key, 0))
FROM (SELECT DISTINCT unnest(:throttle_keys::text[]) AS throttle_key ORDER BY 1) sorted;

-- name: login-throttle
-- global: login attempts are counted by email and address, before any organization.
-- Per key: recent failures (up to its limit) and the seconds until the oldest of them
-- leaves the window, which is when one more attempt would be allowed.
SELECT t.throttle_key, t.max_failures, count(recent.attempted_at) AS failures,
       greatest(1, ceil(extract(epoch FROM
           min(recent.attempted_at) + make_interval(secs => :window_seconds) - now())))::int
           AS retry_after_seconds
FROM unnest(:throttle_keys::text[], :max_failures::int[]) AS t (throttle_key, max_failures)
LEFT JOIN LATERAL (
    SELECT a.attempted_at
    FROM login_attempts a
    WHERE a.throttle_key = t.throttle_key
      AND a.attempted_at > now() - make_interval(secs => :window_seconds)
    ORDER BY a.attempted_at DESC
    LIMIT t.max_failures
) recent ON true
GROUP BY t.throttle_key, t.max_failures;

-- name: record-login-attempt
-- global: login attempts are counted by email and address, before any organization.
-- Counted as a failure until the password proves right (then forget-login-failures),
-- so a guess is counted even while its password is still being checked. Each attempt
-- also clears a batch of attempts (of any key) that left the window: the table stays
-- as small as the last window's failures.
WITH cleared AS (
    DELETE FROM login_attempts
    WHERE (throttle_key, id) IN (
        SELECT throttle_key, id FROM login_attempts
        WHERE attempted_at <= now() - make_interval(secs => :window_seconds)
        ORDER BY attempted_at
        LIMIT 100
    )
)
INSERT INTO login_attempts (throttle_key)
SELECT unnest(:throttle_keys::text[])
RETURNING id;

-- name: forget-login-failures!
-- global: login attempts are counted by email and address, before any organization.
-- A right password clears the email's failures and this attempt's mark on the address
-- (other failures from that address still count).
DELETE FROM login_attempts
WHERE throttle_key = :email_key OR id = ANY (:attempt_ids::bigint[]);

-- name: insert-session^
-- Only while the member's password hash is the one just verified: a password changed
-- meanwhile (which ends sessions) cannot be raced by a login with the old one. FOR KEY
-- SHARE waits for a removal of the member in progress, then finds no row: no session.
INSERT INTO sessions (org_id, id, member_id, lookup_id, secret_hash, idle_timeout,
                      idle_expires_at, absolute_expires_at, client_address)
SELECT m.org_id, :id, m.id, :lookup_id, :secret_hash, make_interval(secs => :idle_seconds),
       now() + make_interval(secs => :idle_seconds),
       now() + make_interval(secs => :lifetime_seconds), :client_address
FROM members m
WHERE m.org_id = :org_id AND m.id = :member_id AND m.password_hash = :verified_hash
FOR KEY SHARE
RETURNING *;

-- name: rehash-member-password!
UPDATE members SET password_hash = :new_hash
WHERE org_id = :org_id AND id = :id AND password_hash = :verified_hash;

-- name: stop-own-member-writes!
-- global: the session is found by its lookup id; it names the organization.
-- Before lock-caller when a session ends itself or its member's others (log out, a
-- password change): waits for the writes in flight with any session of the member and
-- makes later ones wait (stop_credential_writes, 0014). Taken first, so the caller never
-- upgrades the shared lock its own lock-caller takes.
SELECT stop_credential_writes(c.member_id)
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
WHERE c.member_id IS NOT NULL;

-- name: end-session^
UPDATE sessions s
SET ended_at = clock_timestamp()
FROM (SELECT org_id, id FROM sessions WHERE org_id = :org_id AND id = :id FOR UPDATE) locked
WHERE s.org_id = locked.org_id AND s.id = locked.id AND s.ended_at IS NULL
RETURNING s.*;

-- name: end-member-sessions$
-- Ends a member's sessions but one (:keep_id, may be NULL); the count is of those that
-- could still have been used.
WITH locked AS (
    SELECT org_id, id FROM sessions
    WHERE org_id = :org_id AND member_id = :member_id AND ended_at IS NULL
      AND id IS DISTINCT FROM :keep_id::text
    FOR UPDATE
), ended AS (
    UPDATE sessions s
    SET ended_at = clock_timestamp()
    FROM locked
    WHERE s.org_id = locked.org_id AND s.id = locked.id
    RETURNING s.idle_expires_at > now() AND s.absolute_expires_at > now() AS was_active
)
SELECT count(*) FILTER (WHERE was_active) FROM ended;

-- name: count-active-member-sessions$
SELECT count(*) FROM sessions
WHERE org_id = :org_id AND member_id = :member_id AND ended_at IS NULL
  AND idle_expires_at > now() AND absolute_expires_at > now();

-- name: record-session-activity!
-- Pushes idle expiry forward for sessions in use; an ended or already idle-expired
-- session stays dead, whatever a late flush says.
UPDATE sessions s
SET idle_expires_at = least(s.absolute_expires_at, now() + s.idle_timeout)
FROM unnest(:org_ids::text[], :session_ids::text[]) AS used (org_id, id)
WHERE s.org_id = used.org_id AND s.id = used.id
  AND s.ended_at IS NULL AND s.idle_expires_at > now();
