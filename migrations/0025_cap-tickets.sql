-- Up Migration

-- Tickets of the lease database's cap (PGLEASE_MAX_LEASES, sql/throttle.sql): slots 1025 to 1088 of
-- the throttle's locks. A create's final check holds one ticket until it commits, so at most 64
-- creates are between their count of live leases and their commit; while the count leaves room for
-- all of them, a create needs no lock that every other create waits for. Slot 0, which every create
-- took before, halved creates per second at concurrency 8 (114/s against 235/s with no cap, session
-- 10, Postgres 15): each create waited for the previous one's commit. Lease roles cannot read this
-- table, as for every other slot.
INSERT INTO pglease.throttle_locks (slot) SELECT generate_series(1025, 1088) ON CONFLICT DO NOTHING;

-- Down Migration
DELETE FROM pglease.throttle_locks WHERE slot BETWEEN 1025 AND 1088;
