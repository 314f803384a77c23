-- name: claim-idempotency-key^
-- Waits, on the primary key, for a concurrent request with the same key to finish.
INSERT INTO idempotency_keys (org_id, idempotency_key, request_fingerprint)
VALUES (:org_id, :idempotency_key, :fingerprint)
ON CONFLICT DO NOTHING
RETURNING true AS claimed;

-- name: get-idempotent-response^
SELECT request_fingerprint, response_status, response_body
FROM idempotency_keys
WHERE org_id = :org_id AND idempotency_key = :idempotency_key;

-- name: save-idempotent-response!
UPDATE idempotency_keys
SET response_status = :status, response_body = :body
WHERE org_id = :org_id AND idempotency_key = :idempotency_key;
