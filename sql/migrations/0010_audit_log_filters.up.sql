-- Indexes for the audit log's filters: entries by one actor or about one target, newest
-- first, without reading the organization's whole log.

CREATE INDEX audit_log_actor ON audit_log (org_id, actor_id, id);
CREATE INDEX audit_log_target ON audit_log (org_id, target_id, id);

INSERT INTO schema_migrations (version, name, checksum) VALUES (10, 'audit_log_filters', 'sha256:ac3e3c92cb68be644206a459a0e34b87324ad1b7a90402edb9ae3cdf3f2245f8');
