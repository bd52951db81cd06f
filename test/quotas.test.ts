/**
 * Plans, observations, states and quota enforcement (sql/plans.sql, sql/observe.sql, sql/quota.sql):
 * the plans API, a lease filled past its row and size limits with its own SQL (writes refused with
 * the plan's message, DELETE and TRUNCATE still work, writes come back), the lease trying to undo
 * its restriction, state transitions with their events, and the observer run by three processes.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { observeOnce } from '../src/scheduler/jobs.js';
import { ADMIN_TOKEN, createLease, queryUrl, startTestService, superuserDatabaseUrl, type CreatedLeaseJson, type TestService } from './support/service.js';

let service: TestService;

beforeAll(async () => {
  // the scheduler is off: each test runs the observer itself, when it wants an observation
  service = await startTestService({ PGLEASE_SCHEDULER: 'false', PGLEASE_LEASE_POOL: '0' });
});
afterAll(async () => {
  await service?.close();
});

async function call(method: string, path: string, options: { body?: unknown; token?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: any }> {
  const response = await fetch(`${service.baseUrl}${path}`, {
    method,
    headers: {
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
      ...options.headers,
    },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) };
}

const admin = { token: ADMIN_TOKEN };

/** One observer run as the job does it, with every lease due now. */
async function observeNow(): Promise<Record<string, unknown>> {
  await service.host.pool.query('UPDATE pglease.lease_health SET next_observation_at = now()');
  return (await observeOnce(service.host.pool, service.config.jobs, service.host.id)).result;
}

async function statusOf(leaseId: string): Promise<string> {
  const { rows } = await service.host.pool.query<{ status: string }>('SELECT status FROM pglease.lease_health WHERE lease_id = $1', [leaseId]);
  return rows[0]!.status;
}

/** A session of the lease's own login role. */
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

describe('plans API', () => {
  it('lists the built-in plans, and only the admin changes them', async () => {
    const listed = await call('GET', '/v1/plans');
    expect(listed.status).toBe(200);
    expect(listed.body.items.map((plan: { name: string }) => plan.name)).toEqual(['network', 'default']);
    const lease = await createLease(service);
    expect(lease).toMatchObject({ plan: 'default' });
    expect((await call('PUT', '/v1/plans/tiny', { body: { max_size_bytes: 1 << 20 } })).status).toBe(401);
    expect((await call('PUT', '/v1/plans/tiny', { body: { max_size_bytes: 1 << 20 }, token: lease.token })).status).toBe(403);
    const bad = await call('PUT', '/v1/plans/tiny', { body: { max_size_bytes: 10 }, ...admin });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ code: 'PGLEASE_INVALID_FIELD' });
    expect((await call('PUT', '/v1/plans/Bad_Name', { body: { max_size_bytes: 1 << 20 }, ...admin })).body).toMatchObject({ code: 'PGLEASE_INVALID_PARAMETER', field: 'name' });
    const created = await call('PUT', '/v1/plans/tiny', { body: { max_size_bytes: 1 << 20, max_rows: 100, max_connections: 3, max_ttl_seconds: 600 }, ...admin });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'tiny', max_size_bytes: 1 << 20, max_rows: 100, max_connections: 3, token_may_choose: false });
    expect((await call('PUT', '/v1/plans/tiny', { body: { max_size_bytes: 2 << 20, max_rows: 100, max_connections: 3, max_ttl_seconds: 600 }, ...admin })).status).toBe(200);
    expect((await call('GET', '/v1/plans/nope')).body).toMatchObject({ code: 'PGLEASE_PLAN_NOT_FOUND' });
  });

  it('puts a chosen plan on the lease: admin any, token only an allowed one, anonymous none', async () => {
    await call('PUT', '/v1/plans/small', { body: { max_size_bytes: 1 << 20, max_connections: 3, max_ttl_seconds: 600, statement_timeout: '5s' }, ...admin });
    const leased = await call('POST', '/v1/leases', { body: { plan: 'small', ttl: 300 }, ...admin });
    expect(leased.status).toBe(201);
    expect(leased.body).toMatchObject({ plan: 'small', connection_limit: 3 });
    const [settings] = await queryUrl<{ timeout: string }>(leased.body.url, 'SHOW statement_timeout');
    expect(settings!.timeout ?? Object.values(settings!)[0]).toBe('5s');
    expect((await call('POST', '/v1/leases', { body: { plan: 'small', ttl: 601 }, ...admin })).body).toMatchObject({ code: 'PGLEASE_INVALID_FIELD', field: 'ttl' });
    expect((await call('POST', '/v1/leases', { body: { plan: 'small' } })).body).toMatchObject({ code: 'PGLEASE_FORBIDDEN', field: 'plan' });
    expect((await call('POST', '/v1/leases', { body: { plan: 'small' }, token: leased.body.token })).body).toMatchObject({ code: 'PGLEASE_FORBIDDEN', field: 'plan' });
    expect((await call('POST', '/v1/leases', { body: { plan: 'network' }, token: leased.body.token })).body).toMatchObject({ plan: 'network' });
    expect((await call('POST', '/v1/leases', { body: { plan: 'nope' }, ...admin })).body).toMatchObject({ code: 'PGLEASE_INVALID_FIELD', field: 'plan' });
    expect((await call('DELETE', '/v1/plans/small', admin)).body).toMatchObject({ code: 'PGLEASE_PLAN_IN_USE' });
    await call('PUT', '/v1/plans/unused', { body: { max_size_bytes: 1 << 20 }, ...admin });
    expect((await call('DELETE', '/v1/plans/unused', admin)).status).toBe(204);
  });

  it('gives anonymous clients from the network the network plan, and this machine the default one', async () => {
    // the service trusts no proxy, so X-Forwarded-For changes nothing: local stays local
    expect((await call('POST', '/v1/leases', { body: {}, headers: { 'x-forwarded-for': '203.0.113.9' } })).body).toMatchObject({ plan: 'default' });
    const remote = await startTestService({ PGLEASE_SCHEDULER: 'false', PGLEASE_LEASE_POOL: '0', PGLEASE_TRUST_PROXY: 'true' });
    try {
      const response = await fetch(`${remote.baseUrl}/v1/leases`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': '203.0.113.9' }, body: '{}' });
      expect(await response.json()).toMatchObject({ plan: 'network' });
    } finally {
      await remote.close();
    }
  });
});
