-- Who a credential belongs to, and whether it may do what it asks. Every other
-- authenticated statement joins authorized_caller() (reads) or
-- locked_authorized_caller() (writes) itself; these run on their own only to explain
-- a denial (401 or 403) or to start a transaction that writes several rows.

-- name: authenticate^
-- global: the credential is found by its lookup id; it names the organization.
SELECT org_id, credential_id, member_id, environment, scopes
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, NULL);

-- name: authenticate-in-transaction^
-- global: the credential is found by its lookup id; it names the organization.
-- The locked form, though it only explains a denial: it compares expiry with the clock,
-- not with the start of the transaction. Inside a write's transaction that began before
-- its key expired, the key must read as no longer valid (401), not as lacking a scope.
SELECT org_id, credential_id, member_id, environment, scopes
FROM locked_authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, NULL);

-- name: lock-caller^
-- global: the credential is found by its lookup id; it names the organization.
SELECT org_id, credential_id, member_id, environment, scopes
FROM locked_authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope);

-- name: record-key-usage!
UPDATE api_keys k
SET last_used_at = now()
FROM unnest(:org_ids::text[], :key_ids::text[]) AS used (org_id, id)
WHERE k.org_id = used.org_id AND k.id = used.id;
