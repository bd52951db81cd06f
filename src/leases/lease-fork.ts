/**
 * The copy at the heart of a fork of a database lease (sql/fork.sql says the whole sequence): the
 * source's database becomes the template of the fork's CREATE DATABASE, and the fork's database is
 * handed over from the source's roles to the fork's (sql/handover/fork.sql).
 *
 * What it guarantees:
 *   - the source is closed to new connections, and its sessions ended, for the copy and the
 *     handover only (src/leases/copy-bracket.ts: reopened whatever happens, by the reaper after a
 *     crash);
 *   - the source's database is the service's during the handover (REASSIGN OWNED would otherwise
 *     give it to the fork), and its own again afterwards, also whatever happens (after a crash,
 *     when the bracket is reopened);
 *   - pglease never connects to the source's database (the lease may have set its own defaults
 *     there); it connects to the fork's new one, before any lease session could have, with
 *     search_path pinned to pg_catalog, and changes catalogs only.
 */
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { projectPath } from '../paths.js';
import { whileClosed, withCopyLock } from './copy-bracket.js';
import { oneAtATime, prepareRestoreLater } from './lease-snapshots.js';
import { leaseDatabaseUrl } from './lease-session.js';
import { SERVICE_SESSION_OPTIONS } from '../db/service-session.js';

let handoverSql: Promise<string> | undefined;

/** A fork's lease, parked (pglease.provision_parked), and the map of the source's role names to its own. */
export interface ParkedFork {
  fork: { id: string; kind: string; schema_name: string };
  roles: Record<string, string>;
}

/** What a fork's copy did: the source's sessions it ended, and the snapshot whose prepared copy it took (null: a copy of the live database). */
export interface ForkCopy {
  sessionsEnded: number;
  fromSnapshot: string | null;
  /**
   * The CREATE DATABASE of a copy of snapshot `fromSnapshot`'s own database, which the bracket found
   * the source still held, for copySnapshotAfter: the copy is not made yet.
   */
  copyAfter?: string;
}

/**
 * Copies source `sourceId`'s database into the parked fork's (made here, then opened to the fork's
 * roles only), hands it over to the fork's roles, and answers how many of the source's sessions
 * were ended. When the source's database has not changed since its last snapshot or restore, the
 * fork's database is that snapshot's prepared copy instead of a copy made now (sql/snapshots.sql,
 * pglease.fork_from_prepared_copy: two renames, not a CREATE DATABASE), and the next prepared copy
 * is made after the answer. When the source still holds its snapshot's contents but that copy is
 * gone (taken by the fork before), the answer is the CREATE DATABASE of a copy of the snapshot's own
 * database, made after the bracket (`copyAfter`, copySnapshotAfter). `live`: a copy of the live
 * database whatever the source holds. `preparing` is awaited before the source closes (see below).
 * Throws CopySourceGone when the source is no active database lease.
 */
export async function copyLeaseDatabase(pool: pg.Pool, serviceUrl: string, sourceId: string, preparing: Promise<ParkedFork>, options: { live?: boolean } = {}): Promise<ForkCopy> {
  // The fork's roles are made before the bracket's session looks at anything, not while the
  // source closes. When they were made meanwhile, the fork's open_lease_database failed "must be
  // owner of database" (bench:fork: a 500 in 3 of 5 runs right after bench:leases; none in 3 runs
  // with this order), though the CREATE DATABASE ... OWNER just before it had passed its own check
  // of the same membership: most likely Postgres's per-session cache of the service's role
  // memberships (acl.c, roles_is_member_of), built by close_for_fork's ownership check of the
  // source while the fork's grants committed, was stored with the older list after their
  // invalidation was taken, and stays so until the next role change on the server.
  const { fork, roles } = await preparing;
  const { sessionsEnded, result } = await whileClosed(pool, sourceId, async (session): Promise<string | { snapshot: string; statement: string }> => {
    // the prepared copy when it will do; else the CREATE DATABASE of a copy of the snapshot, when
    // the source still holds what it does; else the live copy's: one round trip
    const copy = await session.query<{ snapshot: string | null; snapshot_copy: string | null; from_snapshot: string | null; statement: string }>(options.live
      ? {
          name: 'pglease.fork-copy-live',
          text: 'SELECT NULL::text AS snapshot, NULL::text AS from_snapshot, NULL::text AS snapshot_copy, pglease.fork_database_ddl($1, $2) AS statement',
          values: [sourceId, fork.id],
        }
      : {
          name: 'pglease.fork-copy',
          text: `SELECT p.snapshot, s.snapshot AS from_snapshot, s.statement AS snapshot_copy, pglease.fork_database_ddl($1, $2) AS statement
                   FROM pglease.fork_from_prepared_copy($1, $2) p(snapshot), pglease.fork_snapshot_ddl($1, $2) s`,
          values: [sourceId, fork.id],
        });
    const { snapshot, from_snapshot: fromSnapshot, snapshot_copy: snapshotCopy, statement } = copy.rows[0]!;
    // made after the bracket (copySnapshotAfter): the source is open again meanwhile
    if (snapshot === null && fromSnapshot !== null && snapshotCopy !== null) return { snapshot: fromSnapshot, statement: snapshotCopy };
    if (snapshot === null) await session.query(statement);
    // one round trip, one transaction: under load each await here waited up to ~10 ms for its turn
    await session.query({
      name: 'pglease.open-fork-lend-source',
      text: 'SELECT pglease.open_lease_database($1), pglease.lend_source_database($2)',
      values: [fork.id, sourceId],
    });
    try {
      await handOver(leaseDatabaseUrl(serviceUrl, fork), roles);
    } finally {
      await session.query({ name: 'pglease.return-source-database', text: 'SELECT pglease.return_source_database($1)', values: [sourceId] });
    }
    return snapshot ?? '';
  });
  if (typeof result !== 'string') return { sessionsEnded, fromSnapshot: result.snapshot, copyAfter: result.statement };
  const fromSnapshot = result === '' ? null : result;
  if (fromSnapshot !== null) prepareRestoreLater(pool, sourceId, fromSnapshot, serviceUrl);
  return { sessionsEnded, fromSnapshot };
}

/**
 * Makes parked fork `parked`'s database a copy of source `sourceId`'s snapshot `snapshot`, handed
 * over to the fork's roles, for a fork made in advance (sql/ready-forks.sql). The source is not
 * closed: the copy is of the snapshot's own database, and the handover gives the source's database
 * back to its owner in its own transaction. The handover runs one at a time with this process's
 * forks, snapshots and restores of the source, which rename and re-own that database, and with
 * other processes' copy brackets on it (withCopyLock). Answers the
 * moment the copied snapshot was taken, as text (pglease.park_ready_fork checks it is still the one).
 */
export async function copySnapshotForFork(pool: pg.Pool, serviceUrl: string, sourceId: string, parked: ParkedFork, snapshot: string): Promise<string> {
  const { fork, roles } = parked;
  // the moment as text: a JavaScript Date would lose its microseconds, and the check its equality
  const { rows } = await pool.query<{ statement: string; snapshot_at: string }>({
    name: 'pglease.ready-fork-ddl',
    text: 'SELECT statement, snapshot_at::text FROM pglease.ready_fork_ddl($1, $2, $3)',
    values: [sourceId, fork.id, snapshot],
  });
  await pool.query(rows[0]!.statement);
  await pool.query({ name: 'pglease.open-lease-database', text: 'SELECT pglease.open_lease_database($1)', values: [fork.id] });
  await oneAtATime(sourceId, () => withCopyLock(pool, sourceId, () => handOver(leaseDatabaseUrl(serviceUrl, fork), roles)));
  return rows[0]!.snapshot_at;
}

/**
 * A fork's copy of the snapshot the source still held at the fork's bracket (copyLeaseDatabase
 * answered its CREATE DATABASE): made after the bracket, the source open, then opened to the fork's
 * roles and handed over to them, the handover one at a time with every process's brackets on the
 * source (it gives the source's database back in its own transaction). Forks of a seeded lease that
 * come at once (a test worker each) so wait for each other only for their brackets and handovers.
 */
export async function copySnapshotAfter(pool: pg.Pool, serviceUrl: string, sourceId: string, parked: ParkedFork, statement: string): Promise<void> {
  const { fork, roles } = parked;
  await pool.query(statement);
  await pool.query({ name: 'pglease.open-lease-database', text: 'SELECT pglease.open_lease_database($1)', values: [fork.id] });
  await oneAtATime(sourceId, () => withCopyLock(pool, sourceId, () => handOver(leaseDatabaseUrl(serviceUrl, fork), roles)));
}

/**
 * In a fork's copy bracket: takes ready fork `forkId` of `holder` when the source still holds the
 * snapshot it is a copy of (pglease.take_ready_fork). Answers the snapshot's name, or null, and
 * whether the ready fork can never be taken (stale).
 */
export async function takeReadyFork(pool: pg.Pool, sourceId: string, forkId: string, holder: string): Promise<{ sessionsEnded: number; fromSnapshot: string | null; stale: boolean }> {
  const { sessionsEnded, result } = await whileClosed(pool, sourceId, async (session) => {
    const { rows } = await session.query<{ snapshot: string | null; stale: boolean }>({
      name: 'pglease.take-ready-fork',
      text: 'SELECT snapshot, stale FROM pglease.take_ready_fork($1, $2, $3)',
      values: [sourceId, forkId, holder],
    });
    return rows[0]!;
  });
  return { sessionsEnded, fromSnapshot: result.snapshot, stale: result.stale };
}

/** Runs sql/handover/fork.sql in the fork's database, as the service. */
async function handOver(forkDatabaseUrl: string, roles: Record<string, string>): Promise<void> {
  handoverSql ??= readFile(projectPath('sql', 'handover', 'fork.sql'), 'utf8');
  const sql = await handoverSql;
  const session = new pg.Client({ connectionString: forkDatabaseUrl, application_name: 'pglease-fork', options: SERVICE_SESSION_OPTIONS });
  session.on('error', () => undefined);
  await session.connect();
  try {
    // one round trip (simple protocol): the role map, the handover and its commit, all or nothing
    await session.query(`BEGIN; SELECT pg_catalog.set_config('pglease.fork_roles', ${session.escapeLiteral(JSON.stringify(roles))}, true);\n${sql.trimEnd()}\nCOMMIT`);
  } finally {
    // not awaited: the handover is committed, and the backend's exit took ~4 ms of the fork's time
    void session.end().catch(() => undefined);
  }
}
