-- Workflows: what an event of a matching type would start. Each belongs to one
-- environment; its name is unique within its organization and environment.
--
-- trigger is an event-type pattern: an exact type (order.created), a prefix that ends
-- in .* (order.* matches order.created and order.refund.issued), or * (every event).
-- version counts updates, for optimistic concurrency: an update names the version it
-- was based on and changes nothing when another update came first.

CREATE TABLE workflows (
    org_id      text NOT NULL REFERENCES organizations (org_id),
    id          text NOT NULL CHECK (id ~ '^wf_[0-9A-HJKMNP-TV-Z]{26}$'),
    environment text NOT NULL CHECK (environment IN ('live', 'test')),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    trigger     text COLLATE "C" NOT NULL CHECK (
        length(trigger) <= 128
        AND trigger ~ '^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$'),
    enabled     boolean NOT NULL DEFAULT true,
    steps       jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(steps) = 'array'),
    version     integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);

CREATE UNIQUE INDEX workflows_org_environment_name ON workflows (org_id, environment, name);

-- Matching an event to the enabled workflows it would start, at emit time.
CREATE INDEX workflows_org_environment_trigger ON workflows (org_id, environment, trigger)
    WHERE enabled;

-- Every trigger that matches an event type: the type itself, each of its prefixes
-- followed by .*, and *. An event then finds its workflows with trigger = ANY (...),
-- one index probe instead of testing every workflow's pattern.
CREATE FUNCTION event_trigger_patterns(p_type text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY[p_type, '*'] || ARRAY(
        SELECT array_to_string((string_to_array(p_type, '.'))[1:n], '.') || '.*'
        FROM generate_series(1, cardinality(string_to_array(p_type, '.')) - 1) AS n
    )
$$;

INSERT INTO schema_migrations (version, name, checksum) VALUES (6, 'workflows', 'sha256:01d2fa77e3f1838f76b44453788ddaa847b70c64c63ae12fa4c3019d0090e739');
