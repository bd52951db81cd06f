-- Up Migration

-- Snapshots of database leases (issue 14, test helpers' snapshot()/restore()): a copy of a lease's
-- database at one moment (CREATE DATABASE <lease>_s_<name> TEMPLATE <lease>), owned by the service
-- and closed to every connection, that the lease's database can be reset to. The copy's objects
-- still belong to the lease's roles, so a restore needs no handover. Dropped with the lease
-- (queued in pglease.database_drops like its database).
CREATE TABLE pglease.lease_snapshots (
  lease_id      uuid NOT NULL REFERENCES pglease.leases (id) ON DELETE CASCADE,
  name          text NOT NULL CHECK (name ~ '^[a-z0-9_]{1,20}$'),
  database_name name NOT NULL UNIQUE,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (lease_id, name)
);

-- Down Migration
DROP TABLE pglease.lease_snapshots;
