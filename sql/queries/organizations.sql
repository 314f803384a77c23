-- name: insert-organization!
INSERT INTO organizations (org_id, name) VALUES (:org_id, :name);

-- name: insert-member!
INSERT INTO members (org_id, id, email, name, role, password_hash, must_change_password)
VALUES (:org_id, :id, :email, :name, :role, :password_hash, :must_change_password);
