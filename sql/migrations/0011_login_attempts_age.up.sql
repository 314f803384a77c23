-- Lets each login clear a batch of attempts that have left the throttle window, whatever
-- their key: failures for emails never tried again would otherwise stay for good.

CREATE INDEX login_attempts_age ON login_attempts (attempted_at);

INSERT INTO schema_migrations (version, name, checksum) VALUES (11, 'login_attempts_age', 'sha256:e390b6af5965121271e97cb7139a4ea592f90395742a43304f0915dc6b048131');
