-- Up Migration

-- The observer's cost at thousands of leases (issue 21, sql/observe.sql):
-- * lease_health loses its index on next_observation_at. Every observation moves that column, so
--   with the index no update of the row could be HOT (each wrote two index entries, about 25-30 us
--   a row here); without it an update is HOT (about 8 us), and finding the due rows is a scan of
--   a table of one small row per live lease (about 1 ms at 5,000 leases). Fillfactor 50 keeps room
--   on each page for the next version of its rows.
DROP INDEX pglease.lease_health_due;
ALTER TABLE pglease.lease_health SET (fillfactor = 50);

-- * What the leases of this database had written (rows inserted and updated, from the statistics)
--   when the observer last compared every lease's count with its last observation: until the
--   database's count moves by more than a threshold, no lease can have crossed the threshold that
--   makes it due early, and the observer skips that comparison (a pass over every lease's tables).
--   One row; a process that finds it locked by another leaves the comparison to that one.
CREATE TABLE pglease.observer_marks (
  singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  lease_writes bigint,
  compared_at  timestamptz
);
INSERT INTO pglease.observer_marks DEFAULT VALUES;

-- Down Migration
DROP TABLE pglease.observer_marks;
ALTER TABLE pglease.lease_health RESET (fillfactor);
CREATE INDEX lease_health_due ON pglease.lease_health (next_observation_at);
