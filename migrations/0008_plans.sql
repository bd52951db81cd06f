-- Up Migration

-- Plans: the limits a lease lives within. Every lease has one (leases.plan), so every lease has a
-- size bound: without one, a single lease could fill the server's disk and take every other lease
-- down (one wrote 176 MB and nothing refused it). NULL in a column other than max_size_bytes: no
-- limit of that kind beyond the host's own (PGLEASE_LEASE_CONNECTIONS, PGLEASE_MAX_TTL, ...).
CREATE TABLE pglease.plans (
  name               text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9-]{0,62}$'),
  description        text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
  max_size_bytes     bigint NOT NULL CHECK (max_size_bytes >= 65536),
  max_rows           bigint CHECK (max_rows >= 1),
  max_connections    int CHECK (max_connections BETWEEN 2 AND 10000),
  max_ttl_seconds    int CHECK (max_ttl_seconds >= 1),
  statement_timeout  text CHECK (statement_timeout ~ '^\d+(ms|s|min|h)?$'),
  -- whether a caller with a lease token (not only the admin) may choose this plan at create
  token_may_choose   boolean NOT NULL DEFAULT false,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
-- 'default': a developer's own machine and the admin; 'network': anonymous clients from elsewhere
-- (Heroku's hobby-dev capped rows at 10,000). 'default' is 1 GB: a test suite's leases hold kilobytes
-- to a few megabytes, so no developer's suite on their own machine comes near it.
INSERT INTO pglease.plans (name, description, max_size_bytes, max_rows, token_may_choose) VALUES
  ('default', 'Every lease without another plan: 1 GB, no row limit', 1073741824, NULL, true),
  ('network', 'Anonymous clients from the network: 100 MB and 10,000 rows', 104857600, 10000, true);

ALTER TABLE pglease.leases ADD COLUMN plan text NOT NULL DEFAULT 'default'
  REFERENCES pglease.plans (name) ON UPDATE CASCADE;

-- Down Migration
ALTER TABLE pglease.leases DROP COLUMN plan;
DROP TABLE pglease.plans;
