-- name: insert-audit-entry!
INSERT INTO audit_log (org_id, id, actor_id, action, target_type, target_id, environment,
                       request_id, client_address, details)
VALUES (:org_id, :id, :actor_id, :action, :target_type, :target_id, :environment,
        :request_id, :client_address, :details);

-- name: list-audit-entries
-- Newest first. A live credential sees every entry of its organization; a test one
-- only entries of the test environment and those tied to no environment.
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id, a.*
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
LEFT JOIN LATERAL (
    SELECT *
    FROM audit_log a
    WHERE a.org_id = c.org_id
      AND (c.environment = 'live' OR a.environment IS NULL OR a.environment = c.environment)
      AND (:actor::text IS NULL OR a.actor_id = :actor)
      AND (:action::text IS NULL OR a.action = :action)
      AND (:action_prefix::text IS NULL OR starts_with(a.action, :action_prefix))
      AND (:target::text IS NULL OR a.target_id = :target)
      AND (:since::timestamptz IS NULL OR a.created_at >= :since)
      AND (:until::timestamptz IS NULL OR a.created_at < :until)
      AND (:starting_after::text IS NULL OR a.id < :starting_after)
    ORDER BY a.id DESC
    LIMIT :limit
) a ON true;
