-- Failed logins, counted to throttle guessing per email and per client address.
--
-- A login comes before any organization is known, so this table is keyed by what is
-- throttled, not by org_id: throttle_key is 'email:' + HMAC(pepper, lower(email)) (no
-- address book at rest) or 'address:' + the client address. Under Citus it would be
-- distributed on throttle_key; no query reads it across keys. Rows older than the
-- throttle window are deleted by the login path itself, so it stays small.

CREATE TABLE login_attempts (
    throttle_key text NOT NULL CHECK (length(throttle_key) BETWEEN 1 AND 200),
    id           bigint GENERATED ALWAYS AS IDENTITY,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (throttle_key, id)
);

CREATE INDEX login_attempts_recent ON login_attempts (throttle_key, attempted_at);

INSERT INTO schema_migrations (version, name, checksum) VALUES (9, 'login_attempts', 'sha256:d55c0ae7b6f011d3d9bb60909ac25e47652e250ecf0196d820fc5f1780170622');
