-- Up Migration

-- The copy bracket of database leases (issue 14): a fork, a snapshot or a restore closes the lease's
-- database to new sessions (ALLOW_CONNECTIONS false; for a fork, it also lends the database to the
-- service) and reopens it a few tens of ms later. One row per lease closed this way, written in the
-- transaction that closes it and deleted in the one that reopens it, naming the service's backend
-- that holds the bracket: when that backend is gone (pglease killed mid-copy, its connection lost)
-- while the row is still here, the reaper reopens the database (pglease.reopen_abandoned_closes).
CREATE TABLE pglease.closed_lease_databases (
  lease_id      uuid PRIMARY KEY REFERENCES pglease.leases (id) ON DELETE CASCADE,
  backend_pid   int NOT NULL,
  backend_start timestamptz NOT NULL,
  closed_at     timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE pglease.closed_lease_databases;
