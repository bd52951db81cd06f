/**
 * Snapshots of a database lease and restores from them (sql/snapshots.sql says the steps): what the
 * test helpers' snapshot()/restore() stand on, so that a suite seeds once and resets in the time of
 * one CREATE DATABASE instead of re-running its migrations.
 *
 * What it guarantees:
 *   - a snapshot is a copy of the lease's database at one moment; the lease's sessions are ended
 *     for it (a database cannot be copied with sessions on it: the answer says how many) and the
 *     lease is closed to new ones for the copy only, reopened whatever happens;
 *   - a restore swaps in a copy of the snapshot made in advance (or now, while the lease keeps
 *     working, when there is none yet) in one transaction: the lease's name and URL never lack a
 *     database, its roles and password are unchanged, its open sessions are ended (they were on
 *     the old contents); the next copy is made after the answer;
 *   - after a snapshot or a restore the lease's database is marked as holding the snapshot's
 *     contents, until its next transaction: a fork meanwhile takes the prepared copy
 *     (./lease-fork.ts);
 *   - the service never connects to the lease's database or to a snapshot: catalogs only;
 *   - snapshots go with the lease (queued with its database).
 */
import type pg from 'pg';
import { CopySourceGone, whileClosed } from './copy-bracket.js';
import { dropQueuedDatabases } from './database-drops.js';
import { openLeaseDatabaseSession } from './lease-database-session.js';
import { leaseDatabaseUrl } from './lease-session.js';

export interface SnapshotRow {
  name: string;
  created_at: Date;
  size_bytes: number | null;
}

export class SnapshotError extends Error {
  constructor(
    readonly code: 'PGLEASE_LEASE_NOT_ACTIVE' | 'PGLEASE_SNAPSHOT_NOT_FOUND' | 'PGLEASE_INVALID_FIELD' | 'PGLEASE_SNAPSHOT_LIMIT' | 'PGLEASE_LEASE_BUSY',
    message: string,
  ) {
    super(message);
  }
}

/** Postgres's refusals of the functions of sql/snapshots.sql, as SnapshotErrors. */
function snapshotError(error: unknown): unknown {
  const code = (error as { code?: string }).code;
  const message = (error as Error).message;
  if (code === 'PGLTG' || error instanceof CopySourceGone) return new SnapshotError('PGLEASE_LEASE_NOT_ACTIVE', 'The lease is not an active database lease (any more)');
  if (code === 'PGLSN') return new SnapshotError('PGLEASE_SNAPSHOT_NOT_FOUND', message);
  if (code === '22023') return new SnapshotError('PGLEASE_INVALID_FIELD', message);
  if (code === '54000') return new SnapshotError('PGLEASE_SNAPSHOT_LIMIT', message);
  if (code === '55006') return new SnapshotError('PGLEASE_LEASE_BUSY', 'The lease\'s database could not be copied now: another copy of it (fork, snapshot or restore) is under way, or a session of the lease outlived the 5 s it was given to end; try again');
  return error;
}

/**
 * One copy operation per lease at a time in this process (a fork of it, taking, restoring,
 * preparing a restore's copy, deleting): each is several statements, and a copy being made from a snapshot
 * that another operation replaces or drops would fail both. (Two processes acting on one lease at
 * the same moment can still collide: one of them then answers an error, and nothing is lost.)
 */
const busy = new Map<string, Promise<unknown>>();

export function oneAtATime<T>(leaseId: string, work: () => Promise<T>): Promise<T> {
  const before = busy.get(leaseId) ?? Promise.resolve();
  const mine = before.catch(() => undefined).then(work);
  const settled = mine.catch(() => undefined);
  busy.set(leaseId, settled);
  void settled.then(() => {
    if (busy.get(leaseId) === settled) busy.delete(leaseId);
  });
  return mine;
}

/** Takes snapshot `name` of the lease (replacing one of that name). */
export function takeSnapshot(pool: pg.Pool, leaseId: string, name: string, serviceUrl?: string): Promise<{ snapshot: SnapshotRow; sessionsEnded: number }> {
  return oneAtATime(leaseId, () => takeSnapshotNow(pool, leaseId, name, serviceUrl));
}

async function takeSnapshotNow(pool: pg.Pool, leaseId: string, name: string, serviceUrl?: string): Promise<{ snapshot: SnapshotRow; sessionsEnded: number }> {
  try {
    // a snapshot of the same name is replaced: the old one is dropped first (its name is reused)
    const { rows: replaced } = await pool.query<{ n: number }>({ name: 'pglease.queue-snapshot-drops', text: 'SELECT pglease.queue_snapshot_drops($1, $2) AS n', values: [leaseId, name] });
    if (replaced[0]!.n > 0) await dropQueuedDatabases(pool);
    const { rows: ddl } = await pool.query<{ statement: string }>({ name: 'pglease.snapshot-ddl', text: 'SELECT pglease.snapshot_ddl($1, $2) AS statement', values: [leaseId, name] });
    const { sessionsEnded } = await whileClosed(pool, leaseId, async (session) => {
      await session.query(ddl[0]!.statement);
      // the lease's database holds what the snapshot does until its next transaction (a fork may
      // then take the snapshot's prepared copy: sql/snapshots.sql, pglease.fork_from_prepared_copy)
      await session.query({ name: 'pglease.mark-copy', text: 'SELECT pglease.mark_copy($1, $2)', values: [leaseId, name] });
    });
    const { rows } = await pool.query<SnapshotRow>({
      name: 'pglease.note-snapshot',
      text: 'SELECT name, created_at, NULL::bigint AS size_bytes FROM pglease.note_snapshot($1, $2)',
      values: [leaseId, name],
    });
    prepareRestoreLater(pool, leaseId, name, serviceUrl);
    return { snapshot: rows[0]!, sessionsEnded };
  } catch (error) {
    throw snapshotError(error);
  }
}

/**
 * Makes the copy of snapshot `name` that the lease's next restore from it swaps in, unless it
 * exists: a CREATE DATABASE (~100-150 ms here, more under load), which the lease does not notice.
 * Another process (or a background call) making the same copy at this moment is no error.
 */
async function prepareRestore(pool: pg.Pool, leaseId: string, name: string, serviceUrl?: string): Promise<void> {
  const { rows } = await pool.query<{ statement: string | null }>({ name: 'pglease.restore-ddl', text: 'SELECT pglease.restore_ddl($1, $2) AS statement', values: [leaseId, name] });
  const statement = rows[0]!.statement;
  if (statement === null) return;
  try {
    await pool.query(statement);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code !== '42P04' && code !== '23505') throw error; // made by another at this moment
    return;
  }
  if (serviceUrl !== undefined) await buildRelationCacheFile(pool, serviceUrl, leaseId, name);
}

/**
 * One session of the service on the prepared copy, which writes its relation cache file
 * (pg_internal.init; sql/snapshots.sql, pglease.open_prepared_copy says why), then the copy closed
 * again. The session is pinned as every service session in a lease's database is, and runs
 * nothing: logging in writes the file. A failure leaves the copy closed and usable.
 */
async function buildRelationCacheFile(pool: pg.Pool, serviceUrl: string, leaseId: string, name: string): Promise<void> {
  const { rows } = await pool.query<{ copy: string | null }>({ name: 'pglease.open-prepared-copy', text: 'SELECT pglease.open_prepared_copy($1, $2, true) AS copy', values: [leaseId, name] });
  const copy = rows[0]!.copy;
  if (copy === null) return;
  try {
    const session = await openLeaseDatabaseSession(leaseDatabaseUrl(serviceUrl, { kind: 'database', schema_name: copy }), 'pglease-prepare', '1s');
    await session.end().catch(() => undefined);
  } catch {
    // the copy is still good; the first session on it builds the file, as before
  } finally {
    await pool.query({ name: 'pglease.close-prepared-copy', text: 'SELECT pglease.open_prepared_copy($1, $2, false)', values: [leaseId, name] });
  }
}

/**
 * Prepares the next restore's copy after this request (or a fork that took the copy), reporting
 * nothing: a restore makes it itself when it is missing. `serviceUrl`: the service's URL on the
 * lease's host, to build the copy's relation cache file too (buildRelationCacheFile).
 */
export function prepareRestoreLater(pool: pg.Pool, leaseId: string, name: string, serviceUrl?: string): void {
  setImmediate(() => void oneAtATime(leaseId, () => prepareRestore(pool, leaseId, name, serviceUrl)).catch(() => undefined));
}

/** Finishes queued drops after this request (the reaper and cleanup-orphans retry what fails). */
function dropQueuedLater(pool: pg.Pool): void {
  setImmediate(() => void dropQueuedDatabases(pool).catch(() => undefined));
}

/**
 * Resets the lease's database to snapshot `name`; answers how many of its sessions were ended.
 * With the copy prepared in advance (after the snapshot and after each restore), this is the end
 * of the lease's sessions and two renames; the old database is dropped after the answer.
 */
export function restoreSnapshot(pool: pg.Pool, leaseId: string, name: string, serviceUrl?: string): Promise<number> {
  return oneAtATime(leaseId, () => restoreSnapshotNow(pool, leaseId, name, serviceUrl));
}

async function restoreSnapshotNow(pool: pg.Pool, leaseId: string, name: string, serviceUrl?: string): Promise<number> {
  try {
    await prepareRestore(pool, leaseId, name);
    const { sessionsEnded } = await whileClosed(pool, leaseId, (session) =>
      session.query({ name: 'pglease.swap-restored-database', text: 'SELECT pglease.swap_restored_database($1, $2)', values: [leaseId, name] }),
    );
    dropQueuedLater(pool);
    prepareRestoreLater(pool, leaseId, name, serviceUrl);
    return sessionsEnded;
  } catch (error) {
    throw snapshotError(error);
  }
}

/** The lease's snapshots, with their size on disk. */
export async function listSnapshots(pool: pg.Pool, leaseId: string): Promise<SnapshotRow[]> {
  const { rows } = await pool.query<SnapshotRow>({
    name: 'pglease.list-snapshots',
    text: `SELECT s.name, s.created_at, pg_catalog.pg_database_size(d.oid) AS size_bytes
             FROM pglease.lease_snapshots s JOIN pg_catalog.pg_database d ON d.datname = s.database_name
            WHERE s.lease_id = $1 ORDER BY s.created_at`,
    values: [leaseId],
  });
  return rows.map((row) => ({ ...row, size_bytes: row.size_bytes === null ? null : Number(row.size_bytes) }));
}

/** Deletes snapshot `name`; false when the lease has none of that name. */
export function deleteSnapshot(pool: pg.Pool, leaseId: string, name: string): Promise<boolean> {
  return oneAtATime(leaseId, () => deleteSnapshotNow(pool, leaseId, name));
}

async function deleteSnapshotNow(pool: pg.Pool, leaseId: string, name: string): Promise<boolean> {
  const { rows } = await pool.query<{ n: number }>({ name: 'pglease.queue-snapshot-drops', text: 'SELECT pglease.queue_snapshot_drops($1, $2) AS n', values: [leaseId, name] });
  await dropQueuedDatabases(pool);
  return rows[0]!.n > 0;
}
