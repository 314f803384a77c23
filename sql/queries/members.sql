-- Members of an organization. Reads fold authentication into their own statement;
-- writes run in a transaction that starts with lock-caller (auth.sql) and then lock the
-- member rows they change FOR UPDATE, which waits for writes made with that member's
-- sessions (they hold FOR KEY SHARE on the member row) to commit.

-- name: list-members
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id, m.*
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
LEFT JOIN LATERAL (
    SELECT *
    FROM members m
    WHERE m.org_id = c.org_id
      AND (:role::text IS NULL OR m.role = :role)
      AND (:starting_after::text IS NULL OR m.id < :starting_after)
    ORDER BY m.id DESC
    LIMIT :limit
) m ON true;

-- name: get-member^
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id, m.*
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
LEFT JOIN members m ON m.org_id = c.org_id AND m.id = :id;

-- name: get-caller-member^
-- The caller's own member row (a session's), for changing its password.
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id, m.*
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
LEFT JOIN members m ON m.org_id = c.org_id AND m.id = c.member_id;

-- name: get-member-role$
SELECT role FROM members WHERE org_id = :org_id AND id = :id;

-- name: stop-member-writes!
-- Before lock-caller when a member is removed or changed: waits for the writes in flight
-- with the member's sessions and makes later ones wait (stop_credential_writes, 0014).
SELECT stop_credential_writes(m.id)
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
JOIN members m ON m.org_id = c.org_id AND m.id = :id;

-- name: lock-member^
SELECT * FROM members WHERE org_id = :org_id AND id = :id FOR UPDATE;

-- name: count-locked-owners$
-- Locks every owner row, so two requests that each demote or remove one of the last
-- two owners run one after the other and the second sees that only one is left. FOR NO
-- KEY UPDATE, not FOR UPDATE: it does not wait on the FOR KEY SHARE that other owners'
-- writes hold on their rows, which a steady stream of them could make endless.
SELECT count(*) FROM (
    SELECT 1 FROM members WHERE org_id = :org_id AND role = 'owner' FOR NO KEY UPDATE
) owners;

-- name: create-member^
-- No row when the email is already a member of this organization.
INSERT INTO members (org_id, id, email, name, role, password_hash, must_change_password)
VALUES (:org_id, :id, :email, :name, :role, :password_hash, true)
ON CONFLICT DO NOTHING
RETURNING *;

-- name: update-member^
UPDATE members
SET role = coalesce(:role, role), name = coalesce(:name, name), updated_at = now()
WHERE org_id = :org_id AND id = :id
RETURNING *;

-- name: delete-member^
-- The member's sessions go with the row (ON DELETE CASCADE); their API keys stay.
DELETE FROM members WHERE org_id = :org_id AND id = :id RETURNING *;

-- name: set-member-password^
-- Only if the hash is still the one the current password was checked against. FOR
-- UPDATE waits for a login that is creating a session with the old password (it holds
-- FOR KEY SHARE on the row), so that session exists when the other sessions are ended;
-- a login that comes later finds the new hash and creates none.
UPDATE members m
SET password_hash = :new_hash, must_change_password = false, updated_at = now()
FROM (SELECT org_id, id FROM members WHERE org_id = :org_id AND id = :id FOR UPDATE) locked
WHERE m.org_id = locked.org_id AND m.id = locked.id AND m.password_hash = :verified_hash
RETURNING m.*;

-- name: list-active-keys-created-by
SELECT id FROM api_keys
WHERE org_id = :org_id AND created_by = :member_id AND revoked_at IS NULL
  AND (expires_at IS NULL OR expires_at > now())
ORDER BY id;
