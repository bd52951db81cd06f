/**
 * Migrations of several lease databases on one host can update the same shared catalog row at
 * once (a database's privileges); Postgres then fails the later one with "tuple concurrently
 * updated". migrate() tries again instead of failing the service's start.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { withDatabase } from '../src/db/host.js';
import { migrate, retryConcurrentCatalogUpdates } from '../src/db/migrate.js';

describe('migrate', () => {
  // a whole migration of a fresh database: 2-17 s in full runs, once past 30 s with two suites on
  // the two cores
  it('retries when another session updated the same catalog row meanwhile', { timeout: 120_000 }, async () => {
    const serverUrl = inject('serverUrl');
    const database = `pglease_retry_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: serverUrl });
    await admin.connect();
    const other = new pg.Client({ connectionString: serverUrl });
    await other.connect();
    try {
      await admin.query(`CREATE DATABASE ${database}`);
      // another session changes this database's privileges and holds its row until it commits
      await other.query('BEGIN');
      await other.query(`REVOKE TEMPORARY ON DATABASE ${database} FROM PUBLIC`);
      // its outcome is taken at once, so that an early failure is this test's and not unhandled
      const migrating = migrate(withDatabase(serverUrl, database)).then(
        (result) => ({ result }),
        (error: Error) => ({ error }),
      );
      // the migration's own GRANT on the database waits for that row, then finds it changed (on a
      // busy machine another session of that database, autovacuum's say, may be waiting too)
      await expect
        .poll(async () => (await admin.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'`, [database])).rows[0].n, { timeout: 10_000 })
        .toBeGreaterThanOrEqual(1);
      await other.query('COMMIT');
      const outcome = await migrating;
      if ('error' in outcome) throw outcome.error;
      expect(outcome.result.migrations.length).toBeGreaterThan(0);
      const { rows } = await admin.query(`SELECT count(*)::int AS n FROM pg_roles WHERE rolname LIKE $1`, [`${database}_leases%`]);
      expect(rows[0].n).toBeGreaterThan(0);
    } finally {
      await other.end();
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
      await admin.query(`SELECT format('DROP ROLE %I', rolname) FROM pg_roles WHERE rolname LIKE $1`, [`${database}_leases%`]).then(async ({ rows }) => {
        for (const row of rows as { format: string }[]) await admin.query(row.format).catch(() => undefined);
      });
      await admin.end();
    }
  });

  it('retries a CREATE ... IF NOT EXISTS that another session made at the same moment', async () => {
    const serverUrl = inject('serverUrl');
    const schema = `retry_${randomBytes(4).toString('hex')}`;
    const first = new pg.Client({ connectionString: serverUrl });
    const second = new pg.Client({ connectionString: serverUrl });
    await Promise.all([first.connect(), second.connect()]);
    second.on('notice', () => undefined);
    try {
      // the first makes the schema and holds its catalog row until it commits; the second's
      // IF NOT EXISTS sees no schema yet, waits on the index entry, then fails on the duplicate
      await first.query('BEGIN');
      await first.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
      const making = retryConcurrentCatalogUpdates(() => second.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`)).then(
        () => 'made',
        (error: { code?: string }) => error.code,
      );
      await expect
        .poll(async () => (await first.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`, [second.processID])).rows[0].n, { timeout: 10_000 })
        .toBe(1);
      await first.query('COMMIT');
      expect(await making).toBe('made');
    } finally {
      await first.query(`DROP SCHEMA IF EXISTS ${schema}`).catch(() => undefined);
      await Promise.all([first.end(), second.end()]);
    }
  });

  it('is not stopped by another role sitting on its advisory lock: that session is ended', async () => {
    const serverUrl = inject('serverUrl');
    const database = `pglease_squat_${randomBytes(4).toString('hex')}`;
    const squatterRole = `${database}_squatter`;
    const admin = new pg.Client({ connectionString: serverUrl });
    await admin.connect();
    let squatter: pg.Client | undefined;
    try {
      await admin.query(`CREATE DATABASE ${database}`);
      await admin.query(`CREATE ROLE ${squatterRole} LOGIN PASSWORD 'squat'`);
      // its own grant: a service of another test file starting on the shared cluster meanwhile
      // revokes CONNECT from PUBLIC on every database (pglease_admin.restrict_other_databases), and
      // the squatter's login then failed with "permission denied for database" (once, at load 8-9)
      await admin.query(`GRANT CONNECT ON DATABASE ${database} TO ${squatterRole}`);
      const url = new URL(withDatabase(serverUrl, database));
      url.username = squatterRole;
      url.password = 'squat';
      squatter = new pg.Client({ connectionString: url.toString() });
      squatter.on('error', () => undefined); // it is terminated
      await squatter.connect();
      // the key pg_locks shows while pglease migrates, held (as a lease could) by an idle session
      await squatter.query('SELECT pg_advisory_lock(31638912646607716)');
      const logged: string[] = [];
      const result = await migrate(withDatabase(serverUrl, database), (message) => logged.push(message));
      expect(result.migrations.length).toBeGreaterThan(0);
      expect(logged.some((line) => line.includes(`of role ${squatterRole}: it held pglease's migration lock`))).toBe(true);
    } finally {
      await squatter?.end().catch(() => undefined);
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
      // (its grant went with the database)
      await admin.query(`DROP ROLE IF EXISTS ${squatterRole}`).catch(() => undefined);
      await admin.query(`SELECT format('DROP ROLE %I', rolname) FROM pg_roles WHERE rolname LIKE $1`, [`${database}_leases%`]).then(async ({ rows }) => {
        for (const row of rows as { format: string }[]) await admin.query(row.format).catch(() => undefined);
      });
      await admin.end();
    }
  });
});
