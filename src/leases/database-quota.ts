/**
 * The restriction of a database lease (issue 14) over its plan, made where its objects are: in its
 * own database. The observer (sql/observe.sql) measures the lease from here (pg_database_size) and
 * decides; a function in the lease database cannot reach another database, so it leaves the
 * decision pending (pglease.database_quota_work), and this module carries it out at the end of each
 * observer run: one session per lease to restrict or restore, a few at most in a run.
 *
 * What it guarantees:
 *   - the same restriction as a schema lease's (sql/quota.sql), schema by schema
 *     (pglease.restrict_database_writes, sql/quota-schema.sql), and the database handed to the
 *     lease's quota role so that it cannot CREATE SCHEMA around it. Its functions are made in the
 *     database's schema pglease, the service's (every lease database has it from the lease
 *     template), from the same file as the lease database's, each time: a database cloned from an
 *     older template gets them too;
 *   - nothing of the lease's runs: the session is the service's, with search_path, role and
 *     read-write pinned against the defaults the lease may have set on its database
 *     (src/leases/lease-database-session.ts); the functions change catalogs only (ALTER ... OWNER,
 *     GRANT, REVOKE, CREATE TRIGGER);
 *   - a failure (a lock held past lock_timeout, the database gone) is recorded in last_error and the
 *     decision stays pending: the next run, a second later, tries again.
 */
import { readFile } from 'node:fs/promises';
import type pg from 'pg';
import { projectPath } from '../paths.js';
import { openLeaseDatabaseSession } from './lease-database-session.js';
import { leaseDatabaseUrl } from './lease-session.js';

/** A decision of the observer not yet made in the lease's database. */
interface PendingRestriction {
  lease_id: string;
  database_name: string;
  role_name: string;
  pending: 'restrict' | 'restore';
  restricted: { message?: string; hint?: string } & Record<string, unknown>;
}

let quotaSql: Promise<string> | undefined;

/** Makes or undoes the pending restrictions of database leases; resolves to how many were made and how many failed. */
export async function applyDatabaseQuotas(pool: pg.Pool, serviceUrl: string): Promise<{ applied: number; failed: number }> {
  const { rows } = await pool.query<PendingRestriction>({
    name: 'pglease.database-quota-work',
    text: 'SELECT lease_id, database_name, role_name, pending, restricted FROM pglease.database_quota_work()',
  });
  let applied = 0;
  let failed = 0;
  for (const work of rows) {
    let result: unknown = null;
    let error: string | null = null;
    try {
      result = await inLeaseDatabase(leaseDatabaseUrl(serviceUrl, { kind: 'database', schema_name: work.database_name }), work);
      applied++;
    } catch (caught) {
      error = (caught as Error).message;
      failed++;
    }
    await pool.query({
      name: 'pglease.database-quota-done',
      text: 'SELECT pglease.database_quota_done($1, $2, $3, $4)',
      values: [work.lease_id, work.pending, result === null ? null : JSON.stringify(result), error],
    });
  }
  return { applied, failed };
}

/** Restricts or restores one lease in its database, in one transaction; resolves to what the restriction returned. */
async function inLeaseDatabase(url: string, work: PendingRestriction): Promise<unknown> {
  quotaSql ??= readFile(projectPath('sql', 'quota-schema.sql'), 'utf8');
  const session = await openLeaseDatabaseSession(url, 'pglease-quota');
  try {
    await session.query('BEGIN');
    await session.query(await quotaSql);
    let result: unknown = null;
    if (work.pending === 'restrict') {
      const { rows } = await session.query<{ restricted: unknown }>(
        'SELECT pglease.restrict_database_writes($1, $2, $3, $4) AS restricted',
        [work.role_name, work.restricted.message ?? 'lease over its plan', work.restricted.hint ?? '', JSON.stringify(work.restricted)],
      );
      result = rows[0]!.restricted;
    } else {
      await session.query('SELECT pglease.restore_database_writes($1, $2)', [work.role_name, JSON.stringify(work.restricted)]);
    }
    await session.query('COMMIT');
    return result;
  } finally {
    await session.end().catch(() => undefined);
  }
}
