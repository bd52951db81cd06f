-- Up Migration

-- The second dimension of a lease, next to its lifecycle state: how it is doing, from observations.
CREATE TYPE pglease.lease_status AS ENUM ('available', 'uncertain', 'over_quota');

-- One row per observed live lease: its status and when the observer looks at it next. Kept apart
-- from pglease.leases, which every request reads, so that observing thousands of leases every few
-- seconds does not churn that table. No foreign key: its check would lock the lease's row from
-- inside the observer's pass (which holds other rows of this table), and a DELETE of a lease (its
-- cascade locking this row) then deadlocked with the pass; the observer deletes rows of leases no
-- longer live itself (pglease.prune_observations).
CREATE TABLE pglease.lease_health (
  lease_id            uuid PRIMARY KEY,
  status              pglease.lease_status NOT NULL DEFAULT 'available',
  status_since        timestamptz NOT NULL DEFAULT now(),
  next_observation_at timestamptz NOT NULL DEFAULT now(),
  last_observation_id bigint,
  -- rows its tables (and their TOAST) had inserted and updated, cumulated, when last observed: a
  -- lease whose count moved by more than a threshold is observed at once (pglease.observe_leases)
  writes              bigint NOT NULL DEFAULT 0,
  -- its size as last measured with pg_total_relation_size, when, and what its relations looked like
  -- then (rows inserted, updated and deleted; relations, files and page counts): an observation
  -- that finds the same reuses the size instead of measuring every file again
  measured_size       bigint,
  measured_at         timestamptz,
  measured_changes    bigint,
  measured_shape      bigint,
  -- non-NULL while the lease's writes are refused: what pglease changed, so that it can undo it
  -- (the owners of its relations, who held CREATE on its schema)
  restricted          jsonb,
  -- the last failure to restrict or restore it (a lock it held past lock_timeout)
  last_error          text
);
CREATE INDEX lease_health_due ON pglease.lease_health (next_observation_at);

-- What the observer saw, one row per lease per observation, read only from catalogs. Append-only
-- and pruned by age (PGLEASE_OBSERVATION_RETENTION): no foreign key, and a BRIN index on time, so
-- that inserting thousands of rows per pass costs little.
CREATE TABLE pglease.observations (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  lease_id       uuid NOT NULL,
  observed_at    timestamptz NOT NULL DEFAULT now(),
  -- its login role exists, may log in, has CONNECT and a free connection, and its schema exists
  reachable      boolean NOT NULL,
  connections    int NOT NULL,
  tables         int NOT NULL,
  rows_estimate  bigint NOT NULL,
  size_bytes     bigint NOT NULL,
  -- false: a relation was locked exclusively, so its size is pg_class's page count
  size_exact     boolean NOT NULL,
  seq_scans      bigint NOT NULL,
  idx_scans      bigint NOT NULL,
  -- the observing statement's time divided by the leases it observed
  took_us        int NOT NULL
);
CREATE INDEX observations_by_lease ON pglease.observations (lease_id, observed_at);
CREATE INDEX observations_by_time ON pglease.observations USING brin (observed_at);

-- Hosts are observed the same way (pglease.observe_host): the multi-host placement reads these.
ALTER TABLE pglease.hosts
  ADD COLUMN status pglease.lease_status NOT NULL DEFAULT 'available',
  ADD COLUMN status_since timestamptz NOT NULL DEFAULT now();
CREATE TABLE pglease.host_observations (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  host_id          int NOT NULL REFERENCES pglease.hosts (id) ON DELETE CASCADE,
  observed_at      timestamptz NOT NULL DEFAULT now(),
  reachable        boolean NOT NULL,
  connections      int,
  max_connections  int,
  -- NULL: unknown (a server whose data directory this process cannot see)
  disk_free_bytes  bigint,
  leases           int,
  took_us          int NOT NULL
);
CREATE INDEX host_observations_by_host ON pglease.host_observations (host_id, observed_at);

-- status transitions are events of the lease's history, with the observation that caused them
ALTER TABLE pglease.lease_events DROP CONSTRAINT lease_events_kind_check;
ALTER TABLE pglease.lease_events ADD CONSTRAINT lease_events_kind_check
  CHECK (kind IN ('created', 'renewed', 'released', 'expired', 'failed', 'status'));

-- Down Migration
DELETE FROM pglease.lease_events WHERE kind = 'status';
ALTER TABLE pglease.lease_events DROP CONSTRAINT lease_events_kind_check;
ALTER TABLE pglease.lease_events ADD CONSTRAINT lease_events_kind_check
  CHECK (kind IN ('created', 'renewed', 'released', 'expired', 'failed'));
DROP TABLE pglease.host_observations;
ALTER TABLE pglease.hosts DROP COLUMN status, DROP COLUMN status_since;
DROP TABLE pglease.observations;
DROP TABLE pglease.lease_health;
DROP TYPE pglease.lease_status;
