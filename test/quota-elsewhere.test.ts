/**
 * What a lease holds outside its schema counts against its plan (sql/observe.sql, sql/plans.sql):
 * a lease trying to fill the disk with temporary files (a sort that spills), temporary tables, or
 * large objects. Temporary files stop at its plan's size per session (temp_file_limit, which the
 * lease cannot change); temporary tables and large objects are counted in its size, so the lease
 * goes over its plan, and the sessions holding the temporary tables are ended (their tables go
 * with them); a lease that unlinks its large objects is back within its plan.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { observeOnce } from '../src/scheduler/jobs.js';
import { waitFor } from './support/wait.js';
import { ADMIN_TOKEN, queryUrl, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';

let service: TestService;

beforeAll(async () => {
  // the scheduler is off: each test runs the observer itself, when it wants an observation
  service = await startTestService({ PGLEASE_SCHEDULER: 'false', PGLEASE_LEASE_POOL: '0' });
});
afterAll(async () => {
  await service?.close();
});

const MB = 1024 * 1024;

async function leaseOnPlan(plan: string, maxSizeBytes: number): Promise<CreatedLeaseJson> {
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` };
  expect((await fetch(`${service.baseUrl}/v1/plans/${plan}`, { method: 'PUT', headers, body: JSON.stringify({ max_size_bytes: maxSizeBytes }) })).status).toBeLessThan(300);
  const response = await fetch(`${service.baseUrl}/v1/leases`, { method: 'POST', headers, body: JSON.stringify({ plan }) });
  expect(response.status).toBe(201);
  return (await response.json()) as CreatedLeaseJson;
}

async function leaseSession(lease: CreatedLeaseJson): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: lease.url });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

async function errorOf(client: pg.Client, sql: string): Promise<{ code?: string; message: string } | undefined> {
  try {
    await client.query(sql);
    return undefined;
  } catch (error) {
    return { code: (error as { code?: string }).code, message: (error as Error).message };
  }
}

/** One observer run with every lease due now; the lease's status and latest observed size after it. */
async function observeNow(leaseId: string): Promise<{ status: string; size: number }> {
  await service.host.pool.query('UPDATE pglease.lease_health SET next_observation_at = now()');
  await observeOnce(service.host.pool, service.config.jobs, service.host.id);
  const { rows } = await service.host.pool.query<{ status: string; size: string }>(
    `SELECT h.status, o.size_bytes AS size FROM pglease.lease_health h JOIN pglease.observations o ON o.id = h.last_observation_id WHERE h.lease_id = $1`,
    [leaseId],
  );
  return { status: rows[0]!.status, size: Number(rows[0]!.size) };
}

describe('temporary files', () => {
  it('stop at the plan\'s size in each session, and the lease cannot lift the bound', async () => {
    const lease = await leaseOnPlan('spill-1mb', MB);
    const session = await leaseSession(lease);
    try {
      expect((await session.query('SHOW temp_file_limit')).rows[0]).toEqual({ temp_file_limit: '1MB' });
      expect((await errorOf(session, 'SET temp_file_limit = -1'))?.code).toBe('42501');
      expect((await errorOf(session, `ALTER ROLE ${lease.role} SET temp_file_limit = -1`))?.code).toBe('42501');
      // a sort of about 20 MB that spills to disk
      await session.query(`SET work_mem = '64kB'`);
      const spilled = await errorOf(session, `SELECT count(*) FROM (SELECT md5(g::text) || md5(g::text) AS v FROM generate_series(1, 300000) g ORDER BY 1) x`);
      expect(spilled).toEqual({ code: '53400', message: expect.stringMatching(/^temporary file size exceeds temp_file_limit \(1024kB\)$/) });
    } finally {
      await session.end();
    }
    // a lease on the default plan: the database's bound, the default plan's 1 GB
    const [other] = await queryUrl<{ temp_file_limit: string }>((await leaseOnPlan('default', 1024 * MB)).url, 'SHOW temp_file_limit');
    expect(other).toEqual({ temp_file_limit: '1GB' });
  });
});

describe('temporary tables', () => {
  it('count in the lease\'s size; over its plan, the sessions that hold them are ended and the space comes back', async () => {
    const lease = await leaseOnPlan('temp-2mb', 2 * MB);
    const filler = await leaseSession(lease);
    const bystander = await leaseSession(lease);
    try {
      expect((await observeNow(lease.id)).status).toBe('available');
      // about 6 MB of temporary table: no row of it is in the lease's schema
      await filler.query(`CREATE TEMP TABLE fill AS SELECT g, repeat(md5(g::text), 32) AS v FROM generate_series(1, 5000) g`);
      const over = await observeNow(lease.id);
      expect(over.status).toBe('over_quota');
      expect(over.size).toBeGreaterThan(4 * MB);
      // the session that held it is gone, and its table with it; the lease's other session is not
      expect((await errorOf(filler, 'SELECT count(*) FROM fill'))?.message).toMatch(/terminat|Connection terminated|not queryable/);
      expect((await bystander.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await waitFor('the lease back within its plan', async () => {
        const seen = await observeNow(lease.id);
        return seen.status === 'available' ? seen : undefined;
      }, 30_000);
      expect((await observeNow(lease.id)).size).toBeLessThan(2 * MB);
    } finally {
      await filler.end().catch(() => undefined);
      await bystander.end();
    }
  });
});

describe('large objects', () => {
  it('count in the lease\'s size: over its plan its writes and new large objects are refused until it unlinks them', async () => {
    const lease = await leaseOnPlan('lo-2mb', 2 * MB);
    const session = await leaseSession(lease);
    try {
      await session.query('CREATE TABLE t (id int)');
      expect((await observeNow(lease.id)).status).toBe('available');
      // 3 MB in a large object, none of it in the lease's schema
      const { rows } = await session.query<{ oid: number }>(`SELECT lo_from_bytea(0, decode(repeat('ab', 3 * 1024 * 1024), 'hex')) AS oid`);
      const over = await observeNow(lease.id);
      expect(over.status).toBe('over_quota');
      expect(over.size).toBeGreaterThanOrEqual(3 * MB);
      expect((await errorOf(session, 'INSERT INTO t VALUES (1)'))?.code).toBe('53400');
      // nor more large objects, nor more in the one it has: the functions that make and grow them
      // are no longer its (a superuser's setup took them from PUBLIC; Postgres words the refusal)
      const refusal = { code: '42501', message: expect.stringMatching(/^permission denied for function lo_/) };
      expect(await errorOf(session, `SELECT lo_from_bytea(0, 'x')`)).toEqual(refusal);
      expect(await errorOf(session, 'SELECT lo_create(0)')).toEqual(refusal);
      expect(await errorOf(session, `SELECT lo_put(${rows[0]!.oid}, 0, 'x')`)).toEqual(refusal);
      // a new session as well, and the REST authenticator's, which logs in still
      const fresh = await leaseSession(lease);
      expect(await errorOf(fresh, `SELECT lo_from_bytea(0, 'x')`)).toEqual(refusal);
      await fresh.end();
      await session.query('SELECT lo_unlink($1)', [rows[0]!.oid]);
      const back = await observeNow(lease.id);
      expect(back).toMatchObject({ status: 'available' });
      expect(back.size).toBeLessThan(MB);
      await session.query('INSERT INTO t VALUES (1)');
      const { rows: again } = await session.query<{ oid: number }>(`SELECT lo_from_bytea(0, 'x') AS oid`);
      await session.query('SELECT lo_unlink($1)', [again[0]!.oid]);
      // restored in place: one grant of its lease group, inheriting again; its authenticator still
      // holds the login role's membership without inheriting from it
      const { rows: memberships } = await service.host.pool.query<{ role: string; member: string; inherit: boolean }>(
        `SELECT pg_get_userbyid(m.roleid) AS role, pg_get_userbyid(m.member) AS member, m.inherit_option AS inherit
           FROM pg_auth_members m
          WHERE m.member IN ($1::regrole, ($1 || '_auth')::regrole) AND pg_get_userbyid(m.roleid) NOT LIKE '%\\_rest\\_%'
          ORDER BY 1, 2, 3`,
        [lease.role],
      );
      const group = memberships.find((m) => m.member === lease.role && !m.role.startsWith('lease_'))!.role;
      expect(memberships.filter((m) => m.role === group)).toEqual([
        { role: group, member: lease.role, inherit: true },
        { role: group, member: `${lease.role}_auth`, inherit: true },
      ]);
      expect(memberships.filter((m) => m.role === lease.role)).toEqual([{ role: lease.role, member: `${lease.role}_auth`, inherit: false }]);
    } finally {
      await session.end();
    }
  });
});
