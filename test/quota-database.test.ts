/**
 * Plans on database leases (issue 14): the observer measures a database lease from its database's
 * size (pg_database_size), restricts it over its plan in its own database (src/leases/database-quota.ts:
 * writes refused with the plan's message, no new table or schema; reads and TRUNCATE still work),
 * and gives it back its database and objects once it is within its plan again.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { observeOnce } from '../src/scheduler/jobs.js';
import { waitFor } from './support/wait.js';
import { ADMIN_TOKEN, createLease, queryUrl, startTestService, superuserDatabaseUrl, type CreatedLeaseJson, type TestService } from './support/service.js';

let service: TestService;

beforeAll(async () => {
  // the scheduler is off: the test runs the observer itself, as the job does
  service = await startTestService({ PGLEASE_SCHEDULER: 'false', PGLEASE_LEASE_POOL: '0' });
});
afterAll(async () => {
  await service?.close();
});

/** One observer run as the job does it, with every lease due now (restrictions of database leases made in their databases). */
async function observeNow(): Promise<void> {
  await service.host.pool.query('UPDATE pglease.lease_health SET next_observation_at = now()');
  await observeOnce(service.host.pool, service.config.jobs, service.host.id, () => false, 0, {}, service.host.databaseUrl);
}

async function healthOf(leaseId: string): Promise<{ status: string; restricted: Record<string, unknown> | null; last_error: string | null }> {
  const { rows } = await service.host.pool.query('SELECT status, restricted, last_error FROM pglease.lease_health WHERE lease_id = $1', [leaseId]);
  return rows[0] as { status: string; restricted: Record<string, unknown> | null; last_error: string | null };
}

async function errorOf(client: pg.Client, sql: string): Promise<{ code?: string; message: string } | undefined> {
  try {
    await client.query(sql);
    return undefined;
  } catch (error) {
    return { code: (error as { code?: string }).code, message: (error as Error).message };
  }
}

async function databaseSize(name: string): Promise<number> {
  const rows = await queryUrl<{ size: string }>(superuserDatabaseUrl(service), 'SELECT pg_database_size($1) AS size', [name]);
  return Number(rows[0]!.size);
}

describe('a database lease on a plan', () => {
  it('is measured from its database, restricted over its size in its own database, and given back its writes once within it', { timeout: 120_000 }, async () => {
    // the plan: what an empty database lease weighs (a clone of the lease template), and 4 MB
    const probe = await createLease(service, { kind: 'database' });
    const emptySize = await databaseSize(probe.role);
    const limit = emptySize + 4 * 1024 * 1024;
    const plan = await fetch(`${service.baseUrl}/v1/plans/db-small`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
      body: JSON.stringify({ max_size_bytes: limit }),
    });
    expect(plan.status).toBeLessThan(300);
    const lease = (await createLease(service, { kind: 'database', plan: 'db-small' }, { authorization: `Bearer ${ADMIN_TOKEN}` })) as CreatedLeaseJson & { plan: string };
    expect(lease.plan).toBe('db-small');
    const session = new pg.Client({ connectionString: lease.url });
    session.on('error', () => undefined);
    await session.connect();
    try {
      await observeNow();
      expect(await healthOf(lease.id)).toMatchObject({ status: 'available', restricted: null });
      const observed = await service.host.pool.query<{ size_bytes: string }>(
        'SELECT size_bytes FROM pglease.observations WHERE lease_id = $1 ORDER BY id DESC LIMIT 1', [lease.id]);
      // its database's size, not 0 (a database lease has no schema in the lease database)
      expect(Number(observed.rows[0]!.size_bytes)).toBeGreaterThan(emptySize / 2);

      // 6 MB of rows in public, its own schema
      await session.query('CREATE TABLE t (id int, v text)');
      await session.query(`INSERT INTO t SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 40000) g`);
      await session.query('SELECT pg_stat_force_next_flush()');
      await waitFor('the database lease restricted', async () => {
        await observeNow();
        const health = await healthOf(lease.id);
        return health.status === 'over_quota' && health.restricted !== null && !('pending' in health.restricted) ? true : undefined;
      }, 60_000);

      const refused = await errorOf(session, `INSERT INTO t VALUES (0, 'x')`);
      expect(refused).toEqual({ code: '53400', message: expect.stringMatching(/^lease over its 1\d MB plan "db-small" \(\d+ MB used\): delete rows or TRUNCATE, writes come back within 10 s$/) });
      expect((await errorOf(session, `UPDATE t SET v = 'y' WHERE id = 1`))?.code).toBe('53400');
      // nothing new to write into: no table, no schema around the restriction
      expect((await errorOf(session, 'CREATE TABLE u (id int)'))?.code).toBe('42501');
      expect((await errorOf(session, 'CREATE SCHEMA elsewhere'))?.code).toBe('42501');
      // nor large objects, which the template took from PUBLIC and gave to the database leases' group
      expect(await errorOf(session, `SELECT lo_from_bytea(0, 'x')`)).toEqual({ code: '42501', message: 'permission denied for function lo_from_bytea' });
      expect((await session.query('SELECT count(*)::int AS n FROM t')).rows[0]).toEqual({ n: 40000 });
      // a new session still logs in (the lease's CONNECT outlives its ownership of the database)
      expect(await queryUrl<{ ok: number }>(lease.url, 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);

      await session.query('TRUNCATE t');
      await waitFor('the database lease back within its plan', async () => {
        await observeNow();
        const health = await healthOf(lease.id);
        return health.status === 'available' && health.restricted === null ? true : undefined;
      }, 60_000);
      await session.query(`INSERT INTO t VALUES (0, 'x')`);
      await session.query(`SELECT lo_unlink(lo_from_bytea(0, 'x'))`);
      await session.query('CREATE TABLE u (id int)');
      await session.query('CREATE SCHEMA elsewhere');
      // the lease owns its database, public (through pg_database_owner) and its tables again
      const owners = await session.query<{ database: string; public: string; tables: string[] }>(
        `SELECT (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()) AS database,
                (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public') AS public,
                ARRAY(SELECT DISTINCT pg_get_userbyid(relowner)::text FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r') AS tables`);
      expect(owners.rows).toEqual([{ database: lease.role, public: 'pg_database_owner', tables: [lease.role] }]);
      const events = await service.host.pool.query<{ to: string }>(`SELECT detail ->> 'to' AS to FROM pglease.lease_events WHERE lease_id = $1 AND kind = 'status' ORDER BY id`, [lease.id]);
      expect(events.rows.map((row) => row.to)).toEqual(['over_quota', 'available']);
    } finally {
      await session.end();
    }
  });

  it("is counted in its own database: pg:info's tables and rows, and a plan's row limit binds", { timeout: 120_000 }, async () => {
    const plan = await fetch(`${service.baseUrl}/v1/plans/db-rows`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
      body: JSON.stringify({ max_rows: 1000, max_size_bytes: 2 ** 30 }),
    });
    expect(plan.status).toBeLessThan(300);
    const lease = await createLease(service, { kind: 'database', plan: 'db-rows' }, { authorization: `Bearer ${ADMIN_TOKEN}` });
    const session = new pg.Client({ connectionString: lease.url });
    session.on('error', () => undefined);
    await session.connect();
    const info = async () => {
      const response = await fetch(`${service.baseUrl}/v1/leases/${lease.id}/info`, { headers: { authorization: `Bearer ${lease.token}` } });
      return (await response.json()) as { tables: number; rows: number; status: string };
    };
    try {
      // what the lease sets on its database and shadows in public must not change the count, nor run
      await session.query(`ALTER DATABASE ${session.escapeIdentifier(lease.role)} SET search_path = public, pg_catalog`);
      await session.query(`CREATE TABLE ran (who text);
        CREATE FUNCTION public.pg_stat_get_live_tuples(oid) RETURNS bigint LANGUAGE sql AS $$ INSERT INTO public.ran VALUES (session_user) RETURNING 0::bigint $$;
        CREATE FUNCTION public.count(oid) RETURNS bigint LANGUAGE sql AS $$ INSERT INTO public.ran VALUES (session_user) RETURNING 0::bigint $$`);
      await session.query('CREATE SCHEMA app; CREATE TABLE app.a (id int); CREATE TABLE public.b (id int)');
      await session.query('INSERT INTO app.a SELECT generate_series(1, 700); INSERT INTO public.b SELECT generate_series(1, 300)');
      await session.query('SELECT pg_stat_force_next_flush()');
      await waitFor('the tables and rows counted', async () => {
        await observeNow();
        const now = await info();
        return now.tables === 3 && now.rows === 1000 ? true : undefined;
      }, 60_000);
      expect((await info()).status).toBe('available');

      await session.query('INSERT INTO public.b SELECT generate_series(1, 500)');
      await session.query('SELECT pg_stat_force_next_flush()');
      await waitFor('the database lease restricted over its rows', async () => {
        await observeNow();
        const health = await healthOf(lease.id);
        return health.status === 'over_quota' && health.restricted !== null && !('pending' in health.restricted) ? true : undefined;
      }, 60_000);
      expect(await errorOf(session, 'INSERT INTO public.b VALUES (0)')).toMatchObject({ code: '53400', message: expect.stringContaining('db-rows') });
      expect(await info()).toMatchObject({ tables: 3, rows: 1500 });
      expect((await session.query('SELECT count(*)::int AS n FROM public.ran')).rows).toEqual([{ n: 0 }]);
    } finally {
      await session.end();
    }
  });

  it('is released while restricted: its database, owned by its quota role then, and every role of it go', { timeout: 180_000 }, async () => {
    const plan = await fetch(`${service.baseUrl}/v1/plans/db-tiny`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
      body: JSON.stringify({ max_size_bytes: 1024 * 1024 }),
    });
    expect(plan.status).toBeLessThan(300);
    const lease = await createLease(service, { kind: 'database', plan: 'db-tiny' }, { authorization: `Bearer ${ADMIN_TOKEN}` });
    await waitFor('the database lease restricted', async () => {
      await observeNow();
      const health = await healthOf(lease.id);
      return health.restricted !== null && !('pending' in health.restricted) ? true : undefined;
    }, 60_000);
    const owner = await queryUrl<{ owner: string }>(superuserDatabaseUrl(service), 'SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = $1', [lease.role]);
    expect(owner).toEqual([{ owner: `${lease.role}_quota` }]);
    const released = await fetch(`${service.baseUrl}/v1/leases/${lease.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${lease.token}` } });
    expect(released.status).toBe(204);
    await waitFor('its database and roles gone', async () => {
      const left = await queryUrl<{ name: string }>(superuserDatabaseUrl(service),
        `SELECT rolname AS name FROM pg_roles WHERE rolname LIKE $1 || '%' UNION ALL SELECT datname FROM pg_database WHERE datname = $1`, [lease.role]);
      if (left.length > 0) {
        const drops = await service.host.pool.query('SELECT attempts, last_error FROM pglease.database_drops WHERE database_name = $1', [lease.role]);
        if (drops.rows[0]?.last_error) throw new Error(`the drop failed (${JSON.stringify(drops.rows[0])}); left: ${left.map((row) => row.name).join(', ')}`);
      }
      // the release answers once its drop is done (a refused drop is tried again for 3.5 s, then
      // named here): what is left goes within moments
      return left.length === 0 ? true : undefined;
    }, 90_000);
  });
});
