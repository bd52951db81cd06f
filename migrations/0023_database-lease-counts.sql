-- Up Migration

-- A database lease's tables and rows live in its own database's catalog, which the observer's
-- function (sql/observe.sql, in the lease database) cannot read: it showed 0 tables and 0 rows for
-- every database lease, and a plan's row limit never bound one. The observer job now counts them in
-- the lease's database (src/leases/database-counts.ts) when its row counters moved, and keeps the
-- count here, where the next observation reads it. The counters the count was made at, and when.
ALTER TABLE pglease.lease_health
  ADD COLUMN database_tables int,
  ADD COLUMN database_rows bigint,
  ADD COLUMN database_counted_changes bigint,
  ADD COLUMN database_counted_at timestamptz;

-- Down Migration
ALTER TABLE pglease.lease_health
  DROP COLUMN database_tables,
  DROP COLUMN database_rows,
  DROP COLUMN database_counted_changes,
  DROP COLUMN database_counted_at;
