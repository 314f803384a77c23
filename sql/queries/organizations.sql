-- name: insert-organization!
INSERT INTO organizations (org_id, name) VALUES (:org_id, :name);

-- name: insert-member!
INSERT INTO members (org_id, id, email, name, role, password_hash, must_change_password)
VALUES (:org_id, :id, :email, :name, :role, :password_hash, :must_change_password);

-- name: get-organization^
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id,
       o.org_id AS id, o.name, o.created_at, o.updated_at
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
JOIN organizations o ON o.org_id = c.org_id;

-- name: rename-organization^
UPDATE organizations o
SET name = :name, updated_at = now()
FROM (SELECT org_id, name FROM organizations WHERE org_id = :org_id FOR UPDATE) previous
WHERE o.org_id = previous.org_id
RETURNING o.org_id AS id, o.name, o.created_at, o.updated_at, previous.name AS previous_name;
