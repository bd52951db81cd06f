-- Up Migration

-- Templates: seed SQL (schema and data) registered once and applied to new leases in the same
-- transaction that provisions them (see sql/templates.sql). A template is global (registered with
-- the admin token) or private to the lease whose token registered it, and usable only while that
-- lease is active. The SHA-256 of the SQL identifies a version: registering the same SQL again
-- changes nothing, registering new SQL under the same name adds a version that becomes current.
CREATE TABLE pglease.templates (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name           text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
  -- NULL: a global template; otherwise the lease that owns this private template
  owner_lease_id uuid REFERENCES pglease.leases (id) ON DELETE CASCADE,
  sql            text NOT NULL,
  sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  client_ip      inet,
  created_at     timestamptz NOT NULL DEFAULT now(),
  -- the newest registration of a name is its current version (re-registering an older SQL
  -- makes it current again)
  registered_at  timestamptz NOT NULL DEFAULT now()
);
-- one row per version of a name in its scope; NULL owners compare equal through the coalesce
CREATE UNIQUE INDEX templates_version
  ON pglease.templates (coalesce(owner_lease_id, '00000000-0000-0000-0000-000000000000'::uuid), name, sha256);
-- the lookup at lease time: current version of a name in a scope
CREATE INDEX templates_current
  ON pglease.templates (coalesce(owner_lease_id, '00000000-0000-0000-0000-000000000000'::uuid), name, registered_at DESC);

-- The warm pool of a global template: leases already provisioned and seeded, waiting in state
-- 'provisioning' (no token or password handed out yet) for a create to claim them. Claiming is an
-- update, so a lease from a template costs about what an empty lease costs, whatever the seed.
CREATE TABLE pglease.template_pool (
  lease_id     uuid PRIMARY KEY REFERENCES pglease.leases (id) ON DELETE CASCADE,
  template_id  bigint NOT NULL REFERENCES pglease.templates (id) ON DELETE CASCADE,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX template_pool_by_template ON pglease.template_pool (template_id, created_at);

-- Down Migration
DROP TABLE pglease.template_pool;
DROP TABLE pglease.templates;
