-- Up Migration

-- The throttle's locks (sql/throttle.sql): a row per slot, locked FOR UPDATE by the final check of
-- a create until it commits. Slot 0 is the lease database's (PGLEASE_MAX_LEASES); slots 1 to 1024
-- are shared by client addresses through a hash (a collision only makes two clients' final
-- checks wait for each other; their counts stay separate). They were advisory locks, which every
-- role of the database can see in pg_locks and take: a lease holding one stopped every create.
-- Lease roles cannot read this table, so they cannot lock its rows.
CREATE TABLE pglease.throttle_locks (slot int PRIMARY KEY);
INSERT INTO pglease.throttle_locks (slot) SELECT generate_series(0, 1024);

-- Down Migration
DROP TABLE pglease.throttle_locks;
