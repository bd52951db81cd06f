/**
 * Brings a lease database up to date: numbered node-pg-migrate migrations (tables, append-only),
 * then the function files of sql/ (CREATE OR REPLACE, re-applied when their text changes).
 * Several pglease processes may start at once: both steps run under one advisory lock, which no
 * lease may sit on (see lockAgainstSquatters).
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import { projectPath } from '../paths.js';

/**
 * Advisory lock key held while a process migrates: "pglease" in ASCII read as an integer, as the
 * nearest double made it (the key earlier versions used, so that they and this one exclude each
 * other during a rolling upgrade).
 */
const MIGRATIONS_LOCK = '31638912646607716';

export interface MigrateResult {
  migrations: string[];
  sqlFiles: string[];
}

export async function migrate(databaseUrl: string, log: (message: string) => void = () => undefined): Promise<MigrateResult> {
  // node-pg-migrate complains that numbered (not timestamped) file names carry no timestamp; they
  // are numbered on purpose and still ordered by their number.
  const report = (message: string) => {
    if (!/determine timestamp/.test(message)) log(message);
  };
  const client = new pg.Client({ connectionString: databaseUrl });
  // errors reach the queries; one between them (a server restarting) is no process error
  client.on('error', () => undefined);
  await client.connect();
  try {
    // Quiet NOTICEs such as "schema already exists" from IF NOT EXISTS statements.
    await client.query(`SET client_min_messages = warning`);
    // node-pg-migrate only tries its own lock and fails with "Another migration is already running"
    // when several processes start at once: wait for our turn instead (released when the client
    // ends); node-pg-migrate's own lock is then not needed (noLock)
    await lockAgainstSquatters(client, MIGRATIONS_LOCK, log);
    return await retryConcurrentCatalogUpdates(async () => {
      const applied = await runner({
      dbClient: client,
      dir: projectPath('migrations'),
      migrationsTable: 'migrations',
      migrationsSchema: 'pglease',
      createMigrationsSchema: true,
      direction: 'up',
      checkOrder: true,
      singleTransaction: true,
      noLock: true,
      log: () => undefined,
        logger: { debug: () => undefined, info: () => undefined, warn: report, error: report },
      });
      const sqlFiles = await applySqlSources(client);
      // the default plan's bound on temporary files, once the service may set it (sql/plans.sql)
      await client.query('SELECT pglease.apply_temp_file_limit()');
      // the large-object functions to the lease groups, once a superuser took them from PUBLIC (sql/quota.sql)
      await client.query('SELECT pglease.grant_large_object_writes(pglease.lease_groups())');
      return { migrations: applied.map((migration) => migration.name), sqlFiles };
    });
  } finally {
    await client.end();
  }
}

/**
 * Takes the session advisory lock `key`. Advisory locks are open to every role of the database,
 * and pg_locks shows every key in use, so a lease could take ours and hold it (an idle session is
 * never timed out) to stop every pglease process from starting. A session of another role that
 * holds the key is terminated; pglease processes, which log in as this same role, wait for
 * each other as before.
 */
export async function lockAgainstSquatters(client: pg.Client, key: string, log: (message: string) => void): Promise<void> {
  let toldWaiting = false;
  for (;;) {
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS locked', [key]);
    if (rows[0]!.locked) return;
    try {
      const squatters = await client.query<{ pid: number; role: string }>(
        `SELECT a.pid, a.usename AS role, pg_terminate_backend(a.pid)
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid
            AND a.usename IS DISTINCT FROM current_user`,
        [key],
      );
      for (const squatter of squatters.rows) log(`terminated session ${squatter.pid} of role ${squatter.role}: it held pglease's migration lock`);
    } catch (error) {
      // not allowed to terminate it: keep waiting, as for another pglease process
      if (!toldWaiting) log(`waiting for pglease's migration lock, held by a session this role may not end (${(error as Error).message})`);
      toldWaiting = true;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * Runs `work` again when Postgres fails it with "tuple concurrently updated" (XX000), or with a
 * duplicate key in a system catalog's unique index (23505 on `pg_…`). The migrations lock is per
 * database, but a migration also updates rows of shared catalogs (its database's privileges in
 * pg_database, roles), which another lease database's pglease on the same host may update at the
 * same moment (pglease.restrict_other_databases). And `CREATE … IF NOT EXISTS` is no guard against
 * another session making the same object at the same moment: the later one fails on the catalog's
 * index (three processes starting at once on a new database, each making the lease template's
 * schema pglease: test/multi-process.test.ts, once in a full run at load 10), and again it finds
 * the object and does nothing. Each attempt is one transaction, rolled back on failure, so trying
 * again is safe.
 */
export async function retryConcurrentCatalogUpdates<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      const { code, constraint } = error as { code?: string; constraint?: string };
      const concurrent =
        (code === 'XX000' && /tuple concurrently updated/.test((error as Error).message)) || (code === '23505' && constraint?.startsWith('pg_') === true);
      if (!concurrent || attempt >= 5) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 80 * attempt));
    }
  }
}

/** Applies each changed sql/*.sql file in one transaction and records its hash. */
async function applySqlSources(client: pg.Client): Promise<string[]> {
  const dir = projectPath('sql');
  const files = (await readdir(dir)).filter((name) => name.endsWith('.sql')).sort();
  const changed: string[] = [];
  await client.query('BEGIN');
  try {
    const { rows } = await client.query<{ file: string; sha256: string }>('SELECT file, sha256 FROM pglease.sql_sources');
    const known = new Map(rows.map((row) => [row.file, row.sha256]));
    for (const file of files) {
      const text = await readFile(path.join(dir, file), 'utf8');
      const sha256 = createHash('sha256').update(text).digest('hex');
      if (known.get(file) === sha256) continue;
      try {
        await client.query(text);
      } catch (error) {
        // keep the SQLSTATE: a concurrent catalog update is retried (retryConcurrentCatalogUpdates)
        throw Object.assign(new Error(`sql/${file} failed to apply: ${error instanceof Error ? error.message : String(error)}`), { code: (error as { code?: string }).code });
      }
      await client.query(
        `INSERT INTO pglease.sql_sources (file, sha256) VALUES ($1, $2)
         ON CONFLICT (file) DO UPDATE SET sha256 = excluded.sha256, applied_at = now()`,
        [file, sha256],
      );
      changed.push(file);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
  return changed;
}
