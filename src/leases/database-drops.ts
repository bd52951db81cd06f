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
 *
 * Every DROP DATABASE asks for an immediate checkpoint and waits for it (Postgres 15 to 18,
 * dbcommands.c: the checkpointer must have forgotten the database's pending fsyncs). It costs the
 * server's other sessions: after a checkpoint, the first change of each page writes the whole page
 * to the WAL again (bench:drop-checkpoints: 24 drops made 24-25 checkpoints on 15 and on 17, and a
 * writer elsewhere wrote 3.5-5x the WAL per update while they ran, at load 8-12). Requests that
 * arrive while a checkpoint runs are all served by the next one, so the queue is dropped
 * DROPS_AT_ONCE at a time, each on its own pool connection: 12 drops of a batch made 5-6
 * checkpoints, not 12 (test/database-leases.test.ts counts them). A release drops its one
 * database at once, as before: its answer says the database is gone (dropReleasedDatabase).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';

/**
 * Queue rows taken per call: each is a DROP DATABASE of a few ms to a few tens of ms. Rows without
 * roles (a lease's snapshots, its database before a restore: src/leases/lease-snapshots.ts) come
 * first: they hold objects of the lease's roles, which cannot be dropped while they exist.
 */
const DROP_BATCH = 50;

/** Drops started together: they share checkpoints (module comment); 4 of the pool's 10 connections. */
const DROPS_AT_ONCE = 4;

export interface DatabaseDropOutcome {
  dropped: number;
  failed: number;
}

/** Drops the queued databases (those of `only`, or any) and then their roles. Never throws for one database. */
export async function dropQueuedDatabases(pool: pg.Pool, only: string[] | null = null): Promise<DatabaseDropOutcome> {
  // the copies of ended leases and the other leftovers of snapshots and restores (sql/snapshots.sql)
  if (only === null) await pool.query({ name: 'pglease.queue-stray-lease-copies', text: 'SELECT pglease.queue_stray_lease_copies()' });
  const { rows } = await pool.query<{ database_name: string; roleless: boolean }>({
    name: 'pglease.queued-database-drops',
    text: `SELECT database_name, cardinality(roles) = 0 AS roleless FROM pglease.database_drops
            WHERE ($1::name[] IS NULL OR database_name = ANY ($1)) ORDER BY cardinality(roles), queued_at LIMIT ${DROP_BATCH}`,
    values: [only],
  });
  const outcome: DatabaseDropOutcome = { dropped: 0, failed: 0 };
  const drop = async (database: string): Promise<void> => {
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
  };
  // those without roles all gone before any with roles (see DROP_BATCH), in rounds that start
  // together: a drop started while others wait for their checkpoint wants one more of its own
  // (rounds of 4 made 5-6 checkpoints for 12 drops, where 4 drops kept under way made 8)
  for (const wave of [rows.filter((row) => row.roleless), rows.filter((row) => !row.roleless)]) {
    for (let first = 0; first < wave.length; first += DROPS_AT_ONCE) {
      await Promise.all(wave.slice(first, first + DROPS_AT_ONCE).map((row) => drop(row.database_name)));
    }
  }
  return outcome;
}

/**
 * Pauses between a release's tries at its database. A drop refused for a moment (a session
 * WITH (FORCE) may not end, such as a superuser's; sessions it ended that are still exiting after
 * DROP DATABASE's own 5 s wait, which a loaded server sees) is tried again before the release
 * answers: 3.5 s at most, then the reaper and cleanup-orphans runs go on trying.
 */
const RELEASE_DROP_PAUSES_MS = [500, 1000, 2000];

/**
 * A released database lease's database and roles, gone before the release answers. The release
 * test of a restricted database lease (test/quota-database.test.ts, no scheduler) found its
 * database still there after the 204 in 2 of 3 clean-clone runs beside a second suite.
 */
export async function dropReleasedDatabase(pool: pg.Pool, database: string): Promise<DatabaseDropOutcome> {
  let outcome = await dropQueuedDatabases(pool, [database]);
  for (const pause of RELEASE_DROP_PAUSES_MS) {
    if (outcome.failed === 0) break;
    await sleep(pause);
    outcome = await dropQueuedDatabases(pool, [database]);
  }
  return outcome;
}
