-- Up Migration

-- Two kinds of lease (issue 14): 'schema', a schema and its roles in this database (the cheapest,
-- and the only kind until now), and 'database', a database of its own (lease_<hex>, the same name
-- as its login role) cloned from this database's lease template (src/db/lease-template.ts).
ALTER TABLE pglease.leases
  ADD COLUMN kind text NOT NULL DEFAULT 'schema' CHECK (kind IN ('schema', 'database'));

-- Warm pools are per kind: a claim for a database lease must never hand out a schema lease.
ALTER TABLE pglease.lease_pool
  ADD COLUMN kind text NOT NULL DEFAULT 'schema' CHECK (kind IN ('schema', 'database'));
DROP INDEX pglease.lease_pool_by_holder;
CREATE INDEX lease_pool_by_holder ON pglease.lease_pool (holder, kind, template_id, created_at);

-- DROP DATABASE cannot run inside a transaction block, so a database lease ends in two steps: its
-- release (one transaction: sessions cut, roles NOLOGIN, the lease marked ended) queues its
-- database here, and the service drops the database right after, then its roles (which cannot go
-- while a database holds objects of theirs), and deletes the row. A row that outlives a crash is
-- finished by the reaper and cleanup-orphans (sql/reaper.sql).
CREATE TABLE pglease.database_drops (
  database_name name PRIMARY KEY,
  -- the lease's roles, dropped once the database is gone
  roles         text[] NOT NULL,
  queued_at     timestamptz NOT NULL DEFAULT now(),
  attempts      int NOT NULL DEFAULT 0,
  last_error    text
);

-- The NOLOGIN role every database lease's login role and authenticator are granted: it marks them
-- as this database's (roles are shared by the cluster; cleanup-orphans must not touch another
-- pglease's), as the lease groups mark schema leases'. It grants nothing: unlike a lease group it
-- has no CONNECT on this database, so a database lease cannot reach the shared lease database.
DO $$
DECLARE
  v_group text := left(current_database(), 53) || '_dbleases';
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_group) THEN
    EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', v_group);
  END IF;
END
$$;

-- Down Migration
DROP TABLE pglease.database_drops;
DROP INDEX pglease.lease_pool_by_holder;
CREATE INDEX lease_pool_by_holder ON pglease.lease_pool (holder, template_id, created_at);
ALTER TABLE pglease.lease_pool DROP COLUMN kind;
ALTER TABLE pglease.leases DROP COLUMN kind;
