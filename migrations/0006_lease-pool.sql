-- Up Migration

-- One warm pool for every kind of lease: plain leases (template_id NULL) and leases seeded from a
-- global template. A pooled lease is provisioned with its final password, which only the process
-- that made it knows (it keeps it in memory; Postgres has only the SCRAM verifier), so a claim is
-- an UPDATE with no password work at all. `holder` names that process (a random id per start):
-- a claim takes only its own holder's leases, and a holder that stops without releasing its pool
-- stops extending their expiry, so the reaper drops them soon after (see sql/pool.sql).
--
-- Leases pooled before this migration had a password nobody knows, set at claim by ALTER ROLE;
-- no process can claim them now, so they expire at once and the reaper drops them.
UPDATE pglease.leases SET expires_at = now()
 WHERE id IN (SELECT lease_id FROM pglease.template_pool) AND state = 'provisioning';
DROP TABLE pglease.template_pool;

CREATE TABLE pglease.lease_pool (
  lease_id     uuid PRIMARY KEY REFERENCES pglease.leases (id) ON DELETE CASCADE,
  -- the process that made the lease and alone knows its password
  holder       uuid NOT NULL,
  -- NULL: a plain lease; otherwise the template version it was seeded with
  template_id  bigint REFERENCES pglease.templates (id) ON DELETE CASCADE,
  created_at   timestamptz NOT NULL DEFAULT now()
);
-- a claim, the holder's heartbeat and its release at shutdown look up its own leases
CREATE INDEX lease_pool_by_holder ON pglease.lease_pool (holder, template_id, created_at);
-- a new version of a template releases the pools of the older ones
CREATE INDEX lease_pool_by_template ON pglease.lease_pool (template_id) WHERE template_id IS NOT NULL;

-- Down Migration
DROP TABLE pglease.lease_pool;
CREATE TABLE pglease.template_pool (
  lease_id     uuid PRIMARY KEY REFERENCES pglease.leases (id) ON DELETE CASCADE,
  template_id  bigint NOT NULL REFERENCES pglease.templates (id) ON DELETE CASCADE,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX template_pool_by_template ON pglease.template_pool (template_id, created_at);
