/**
 * The tables and rows of database leases (issue 14), counted in their own databases. The observer's
 * function (sql/observe.sql) runs in the lease database and reads only its catalog, where a
 * database lease has no schema: it showed 0 tables and 0 rows for every database lease, and a
 * plan's row limit never bound one. Each observer run first counts a few database leases here, in a
 * session of the service role in each one's database, and keeps the counts in lease_health
 * (pglease.note_database_counts), which the run's observation then reads.
 *
 * What it guarantees:
 *   - nothing of the lease's runs: the session is pinned (src/leases/lease-database-session.ts) and
 *     reads the catalog and the statistics only (pg_class, pg_namespace, pg_stat_get_live_tuples),
 *     the same facts a schema lease's observation reads; no lock on the lease's tables, and at most
 *     1 s of waiting for one on its catalog (the database's owner may VACUUM FULL pg_class there,
 *     which would otherwise hold the whole observer run);
 *   - bounded cost: a lease is counted again only when its database's row counters moved
 *     (pg_stat_database) and at most every COUNT_EVERY_SECONDS, and at most COUNTS_PER_RUN leases
 *     a run (one connection each, one after the other): a busy database lease costs one short
 *     session every 5 s;
 *   - a lease whose database refuses the session (its owner set CONNECTION LIMIT 0, or it is being
 *     copied) keeps its last counts, and is tried again COUNT_EVERY_SECONDS later; its size, read
 *     without a session (pg_database_size), still holds it to its plan.
 */
import type pg from 'pg';
import { COPY_UNLOCK_SQL, TRY_COPY_LOCK_SQL } from './copy-bracket.js';
import { openLeaseDatabaseSession } from './lease-database-session.js';
import { leaseDatabaseUrl } from './lease-session.js';

/** Database leases counted per observer run at most (one session each). */
const COUNTS_PER_RUN = 4;
/** A database lease is counted again at most this often (s), and only when its row counters moved. */
const COUNT_EVERY_SECONDS = 5;

/** Tables (ordinary and partitioned) and live rows in the schemas a database lease made, public included. */
const COUNT_SQL = `SELECT count(*) FILTER (WHERE c.relkind IN ('r', 'p'))::int AS tables,
                          coalesce(sum(pg_stat_get_live_tuples(c.oid)) FILTER (WHERE c.relkind IN ('r', 'm')), 0)::bigint AS rows
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'pglease')
                      AND n.nspname !~ '^pg_(toast_)?temp_'`;

/** Counts the database leases that are due (see the module comment); resolves to how many were counted and how many failed. */
export async function countDatabaseLeases(pool: pg.Pool, serviceUrl: string): Promise<{ counted: number; failed: number }> {
  const { rows } = await pool.query<{ lease_id: string; database_name: string; changes: string }>({
    name: 'pglease.database-count-work',
    text: 'SELECT lease_id, database_name, changes::text FROM pglease.database_count_work($1, make_interval(secs => $2))',
    values: [COUNTS_PER_RUN, COUNT_EVERY_SECONDS],
  });
  let counted = 0;
  let failed = 0;
  for (const work of rows) {
    // not while a copy bracket holds the lease (src/leases/copy-bracket.ts, COPY_LOCK): the lease
    // stays due and is counted at a later run
    const locker = await pool.connect();
    let locked = false;
    try {
      locked = (await locker.query<{ locked: boolean }>({ name: 'pglease.try-copy-lock', text: TRY_COPY_LOCK_SQL, values: [work.lease_id] })).rows[0]!.locked;
      if (locked) {
        if (await countOne(pool, serviceUrl, work)) counted++;
        else failed++;
      }
    } finally {
      const unlocked = locked ? locker.query({ name: 'pglease.copy-unlock', text: COPY_UNLOCK_SQL, values: [work.lease_id] }).then(() => true, () => false) : Promise.resolve(true);
      locker.release(!(await unlocked) || undefined);
    }
  }
  return { counted, failed };
}

/** Counts one database lease's tables and rows; false when its session failed. */
async function countOne(pool: pg.Pool, serviceUrl: string, work: { lease_id: string; database_name: string; changes: string }): Promise<boolean> {
  let counts: { tables: number; rows: string } | null = null;
  // a lease whose database holds its snapshot's contents unchanged (its copy mark: sql/snapshots.sql)
  // keeps that mark past this session, which changes nothing there
  const { rows: marked } = await pool.query<{ sessions: string | null }>({
    name: 'pglease.copy-mark-sessions',
    text: 'SELECT pglease.copy_mark_sessions($1) AS sessions',
    values: [work.lease_id],
  });
  const markedSessions = marked[0]?.sessions ?? null;
  try {
    const session = await openLeaseDatabaseSession(leaseDatabaseUrl(serviceUrl, { kind: 'database', schema_name: work.database_name }), 'pglease-observer', '1s');
    try {
      counts = (await session.query<{ tables: number; rows: string }>(COUNT_SQL)).rows[0]!;
    } finally {
      await session.end().catch(() => undefined);
    }
  } catch {
    // counts stays null
  }
  if (markedSessions !== null) {
    await pool.query({ name: 'pglease.advance-copy-mark', text: 'SELECT pglease.advance_copy_mark($1, $2)', values: [work.lease_id, markedSessions] });
  }
  // a failure keeps the last counts (NULL changes nothing) and waits COUNT_EVERY_SECONDS
  await pool.query({
    name: 'pglease.note-database-counts',
    text: 'SELECT pglease.note_database_counts($1, $2, $3, $4)',
    values: [work.lease_id, counts?.tables ?? null, counts?.rows ?? null, counts ? work.changes : null],
  });
  return counts !== null;
}
