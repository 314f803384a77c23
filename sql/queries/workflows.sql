-- Workflows. Every statement is confined to the caller's organization AND environment:
-- a test credential sees only test workflows, a live one only live ones. Reads fold
-- authentication into their own statement; writes run in a transaction that first
-- locks the caller's key (lock-caller in auth.sql), so a revocation stops them.

-- name: get-workflow^
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id, w.*
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
LEFT JOIN workflows w
       ON w.org_id = c.org_id AND w.environment = c.environment AND w.id = :id;

-- name: list-workflows
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id, w.*
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
LEFT JOIN LATERAL (
    SELECT *
    FROM workflows w
    WHERE w.org_id = c.org_id AND w.environment = c.environment
      AND (:enabled::boolean IS NULL OR w.enabled = :enabled)
      AND (:trigger::text IS NULL OR w.trigger = :trigger)
      AND (:event_type::text IS NULL OR w.trigger = ANY (event_trigger_patterns(:event_type)))
      AND (:name_contains::text IS NULL OR strpos(lower(w.name), lower(:name_contains)) > 0)
      AND (:starting_after::text IS NULL OR w.id < :starting_after)
    ORDER BY w.id DESC
    LIMIT :limit
) w ON true;

-- name: insert-workflow^
-- Nothing (no row) when the name is taken in this organization and environment.
INSERT INTO workflows (org_id, id, environment, name, description, trigger, enabled, steps,
                       created_by)
VALUES (:org_id, :id, :environment, :name, :description, :trigger, :enabled, :steps::jsonb,
        :created_by)
ON CONFLICT (org_id, environment, name) DO NOTHING
RETURNING *;

-- name: update-workflow^
-- Only from the version the editor saw; no row when it is stale or the workflow is gone.
UPDATE workflows
SET name = coalesce(:name, name),
    description = coalesce(:description, description),
    trigger = coalesce(:trigger, trigger),
    enabled = coalesce(:enabled, enabled),
    steps = coalesce(:steps::jsonb, steps),
    version = version + 1,
    updated_at = now()
WHERE org_id = :org_id AND environment = :environment AND id = :id AND version = :version
RETURNING *;

-- name: workflow-version$
SELECT version FROM workflows
WHERE org_id = :org_id AND environment = :environment AND id = :id;

-- name: delete-workflow^
DELETE FROM workflows
WHERE org_id = :org_id AND environment = :environment AND id = :id
  AND (:version::integer IS NULL OR version = :version)
RETURNING id, environment, name, version;

-- name: workflows-quota^
-- After lock-quota: the organization's quota and its workflows (both environments).
SELECT o.max_workflows AS quota,
       (SELECT count(*) FROM workflows w WHERE w.org_id = o.org_id) AS used
FROM organizations o
WHERE o.org_id = :org_id;
