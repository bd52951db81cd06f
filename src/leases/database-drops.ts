/**
 * The second step of a database lease's end. Its release (sql/leases.sql, pglease.release) is one
 * transaction that ends its sessions, makes its roles NOLOGIN, marks it ended and queues its
 * database in pglease.database_drops; DROP DATABASE cannot run in a transaction block, so it runs
 * here, right after, on the service pool, then pglease.finish_database_drop drops the roles and
 * the queue row together. Whatever interrupts this (a crash, a kill -9, a lost connection) leaves
 * the row, and the next release, reaper run or cleanup-orphans run finishes it: nothing of an
 * ended lease outlives the queue.
 *
 * WITH (FORCE) ends a session that logged in before the roles were made NOLOGIN and that the
 * release's termination missed. The service may drop the database as a member of its owner (the
 * lease's login role, granted to the service at provisioning); that role still exists here.
 */
import type pg from 'pg';

/**
 * Queue rows taken per call: each is a DROP DATABASE of a few ms to a few tens of ms. Rows without
 * roles (a lease's snapshots, its database before a restore: src/leases/lease-snapshots.ts) come
 * first: they hold objects of the lease's roles, which cannot be dropped while they exist.
 */
const DROP_BATCH = 50;

export interface DatabaseDropOutcome {
  dropped: number;
  failed: number;
}

/** Drops the queued databases (those of `only`, or any) and then their roles. Never throws for one database. */
export async function dropQueuedDatabases(pool: pg.Pool, only: string[] | null = null): Promise<DatabaseDropOutcome> {
  // the copies of ended leases and the other leftovers of snapshots and restores (sql/snapshots.sql)
  if (only === null) await pool.query({ name: 'pglease.queue-stray-lease-copies', text: 'SELECT pglease.queue_stray_lease_copies()' });
  const { rows } = await pool.query<{ database_name: string }>({
    name: 'pglease.queued-database-drops',
    text: `SELECT database_name FROM pglease.database_drops
            WHERE ($1::name[] IS NULL OR database_name = ANY ($1)) ORDER BY cardinality(roles), queued_at LIMIT ${DROP_BATCH}`,
    values: [only],
  });
  const outcome: DatabaseDropOutcome = { dropped: 0, failed: 0 };
  for (const { database_name: database } of rows) {
    try {
      // names are lease_<16 hex> (pglease.provision checks it); quoted all the same
      await pool.query(`DROP DATABASE IF EXISTS "${database.replace(/"/g, '""')}" WITH (FORCE)`);
      await pool.query({ name: 'pglease.finish-database-drop', text: 'SELECT pglease.finish_database_drop($1)', values: [database] });
      outcome.dropped++;
    } catch (error) {
      outcome.failed++;
      await pool
        .query({ name: 'pglease.note-database-drop-failure', text: 'SELECT pglease.note_database_drop_failure($1, $2)', values: [database, (error as Error).message] })
        .catch(() => undefined);
    }
  }
  return outcome;
}
