-- name: insert-audit-entry!
INSERT INTO audit_log (org_id, id, actor_id, action, target_type, target_id, environment,
                       request_id, client_address, details)
VALUES (:org_id, :id, :actor_id, :action, :target_type, :target_id, :environment,
        :request_id, :client_address, :details);
