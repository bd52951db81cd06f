-- Up Migration

-- What a database lease's database is known to hold: the contents of its snapshot `snapshot_name`,
-- as of the statistics counters of that database (sql/snapshots.sql, pglease.mark_copy), read in
-- the copy bracket of the snapshot or of a restore from it, when no session was on the database.
-- While its count of client sessions has not moved, no client has connected there since, and a
-- fork can be made from the snapshot's prepared copy instead of a CREATE DATABASE of the live
-- database.
CREATE TABLE pglease.lease_copy_marks (
  lease_id      uuid PRIMARY KEY REFERENCES pglease.leases (id) ON DELETE CASCADE,
  snapshot_name text NOT NULL,
  -- the database the counters are of (a restore swaps in another), its client sessions so far, and
  -- when its counters and the server's shared ones were last reset (a crash resets them all)
  database_oid  oid NOT NULL,
  sessions      bigint NOT NULL,
  database_reset timestamptz,
  server_reset  timestamptz,
  marked_at     timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE pglease.lease_copy_marks;
