-- name: insert-organization!
INSERT INTO organizations (org_id, name) VALUES (:org_id, :name);

-- name: insert-member!
INSERT INTO members (org_id, id, email, name, role, password_hash, must_change_password)
VALUES (:org_id, :id, :email, :name, :role, :password_hash, :must_change_password);

-- name: get-organization^
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id,
       o.org_id AS id, o.*
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
JOIN organizations o ON o.org_id = c.org_id;

-- name: update-organization^
-- NULL parameters leave their column as it was; previous holds the row before.
UPDATE organizations o
SET name = coalesce(:name, o.name),
    default_rate_limit_requests = coalesce(:rate_limit_requests, o.default_rate_limit_requests),
    default_rate_limit_window_seconds = coalesce(:rate_limit_window_seconds,
                                                 o.default_rate_limit_window_seconds),
    event_retention_days_live = coalesce(:retention_days_live, o.event_retention_days_live),
    event_retention_days_test = coalesce(:retention_days_test, o.event_retention_days_test),
    updated_at = now()
FROM (SELECT * FROM organizations WHERE org_id = :org_id FOR NO KEY UPDATE) previous
WHERE o.org_id = previous.org_id
RETURNING o.org_id AS id, o.*, previous.name AS previous_name,
          previous.default_rate_limit_requests AS previous_rate_limit_requests,
          previous.default_rate_limit_window_seconds AS previous_rate_limit_window_seconds,
          previous.event_retention_days_live AS previous_retention_days_live,
          previous.event_retention_days_test AS previous_retention_days_test;

-- name: lock-quota!
-- Serializes the count-then-insert of one quota of one organization until commit, so
-- that concurrent creations cannot all pass the count. An advisory lock rather than a
-- row lock: inserts elsewhere keep taking their foreign-key locks on the organization.
-- It must be its own statement: a count in the same statement would read a snapshot
-- taken before the lock was granted.
SELECT pg_advisory_xact_lock(hashtextextended('quota:' || :quota || ':' || :org_id, 0));
