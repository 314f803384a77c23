-- name: get-me^
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id,
       c.org_id, c.credential_id, c.member_id, c.environment, c.scopes, o.name AS org_name
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
JOIN organizations o ON o.org_id = c.org_id;
