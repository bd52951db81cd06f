/**
 * The per-client connection budget (PGLEASE_CLIENT_CONNECTIONS, sql/throttle.sql): the connection
 * limits of one client's live leases add up to at most the budget. A new lease gets the per-lease
 * limit, or what is left of the budget; with too little left its create is refused with 429. The
 * budget holds under concurrent creates, on both paths (provisioned and claimed from a warm pool),
 * and it keeps a client whose leases open every connection they may from starving other clients:
 * on a cluster of its own with 40 slots for non-superusers, the attack of the bug report.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startEmbedded, type EmbeddedServer } from '../src/db/embedded.js';
import { startService } from '../src/service.js';
import { freePort } from './support/free-port.js';
import { ADMIN_TOKEN, startTestService, type TestService } from './support/service.js';
import { waitFor } from './support/wait.js';

interface LeaseAnswer {
  id: string;
  url: string;
  token: string;
  role: string;
  connection_limit: number | null;
}

function create(baseUrl: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${baseUrl}/v1/leases`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ ttl: 600 }),
  });
}

async function created(baseUrl: string, headers: Record<string, string> = {}): Promise<LeaseAnswer> {
  const response = await create(baseUrl, headers);
  if (response.status !== 201) throw new Error(`create lease: ${response.status} ${await response.text()}`);
  return (await response.json()) as LeaseAnswer;
}

async function roleLimit(service: TestService, role: string): Promise<number> {
  const { rows } = await service.host.pool.query<{ limit: number }>('SELECT rolconnlimit AS limit FROM pg_roles WHERE rolname = $1', [role]);
  return rows[0]!.limit;
}

/** Opens sessions of `url` until Postgres refuses one (at most `most`); returns them and the refusal. */
async function openUntilRefused(url: string, most: number): Promise<{ sessions: pg.Client[]; refusal: { code?: string; message: string } | undefined }> {
  const sessions: pg.Client[] = [];
  for (let i = 0; i < most; i++) {
    const session = new pg.Client({ connectionString: url });
    session.on('error', () => undefined);
    try {
      await session.connect();
    } catch (error) {
      return { sessions, refusal: error as { code?: string; message: string } };
    }
    sessions.push(session);
  }
  return { sessions, refusal: undefined };
}

async function endAll(sessions: pg.Client[]): Promise<void> {
  await Promise.all(sessions.map((session) => session.end().catch(() => undefined)));
}

// per lease 4, per client 10: two full leases, then one of 2, then none
const BUDGETED = { PGLEASE_LEASE_CONNECTIONS: '4', PGLEASE_CLIENT_CONNECTIONS: '10', PGLEASE_TRUST_PROXY: 'on', PGLEASE_RATE_LIMIT: '0', PGLEASE_MAX_ACTIVE: '0', PGLEASE_MAX_LEASES: '0' };

describe('a client creating leases until its budget is used', () => {
  let service: TestService;
  beforeAll(async () => {
    service = await startTestService({ ...BUDGETED, PGLEASE_LEASE_POOL: '0', PGLEASE_TEMPLATE_POOL: '0' });
  });
  afterAll(async () => {
    await service?.close();
  });

  it('gets the per-lease limit, then what is left, then 429 saying its leases hold its connections', async () => {
    const client = { 'x-forwarded-for': '198.51.100.21' };
    const leases = [await created(service.baseUrl, client), await created(service.baseUrl, client), await created(service.baseUrl, client)];
    expect(leases.map((lease) => lease.connection_limit)).toEqual([4, 4, 2]);
    expect(await Promise.all(leases.map((lease) => roleLimit(service, lease.role)))).toEqual([4, 4, 2]);
    // GET reports the lowered limit too
    const fetched = await fetch(`${service.baseUrl}/v1/leases/${leases[2]!.id}`, { headers: { authorization: `Bearer ${leases[2]!.token}` } });
    expect(((await fetched.json()) as LeaseAnswer).connection_limit).toBe(2);

    const refused = await create(service.baseUrl, client);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(500);
    const body = (await refused.json()) as { code: string; message: string };
    expect(body.code).toBe('PGLEASE_RATE_LIMITED');
    expect(body.message).toBe(
      'client 198.51.100.21 has 3 live leases that may open 10 of the 10 connections one client\'s leases may open together ' +
        '(PGLEASE_CLIENT_CONNECTIONS=10), too few left for another lease; release one or wait until one expires',
    );

    // Postgres enforces the lowered limit at login
    const { sessions, refusal } = await openUntilRefused(leases[2]!.url, 5);
    try {
      expect(sessions).toHaveLength(2);
      expect(refusal).toMatchObject({ code: '53300', message: `too many connections for role "${leases[2]!.role}"` });
    } finally {
      await endAll(sessions);
    }

    // another client has its own budget; the admin token has none
    expect((await created(service.baseUrl, { 'x-forwarded-for': '198.51.100.22' })).connection_limit).toBe(4);
    expect((await created(service.baseUrl, { ...client, authorization: `Bearer ${ADMIN_TOKEN}` })).connection_limit).toBe(4);

    // a release gives its connections back
    const released = await fetch(`${service.baseUrl}/v1/leases/${leases[0]!.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${leases[0]!.token}` } });
    expect(released.status).toBe(204);
    expect((await created(service.baseUrl, client)).connection_limit).toBe(4);
    expect((await create(service.baseUrl, client)).status).toBe(429);
  });

  it('is the same for leases seeded from a template (activated by the statement that checks the limits)', async () => {
    const registered = await fetch(`${service.baseUrl}/v1/templates`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
      body: JSON.stringify({ name: 'budgeted', sql: 'CREATE TABLE item (id int);' }),
    });
    expect(registered.status).toBe(201);
    const seeded = (address: string) =>
      fetch(`${service.baseUrl}/v1/leases`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': address },
        body: JSON.stringify({ ttl: 600, template: 'budgeted' }),
      });
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await seeded('198.51.100.23'));
    expect(answers.map((answer) => answer.status)).toEqual([201, 201, 201, 429]);
    const leases = (await Promise.all(answers.slice(0, 3).map((answer) => answer.json()))) as LeaseAnswer[];
    expect(leases.map((lease) => lease.connection_limit)).toEqual([4, 4, 2]);
    expect(await Promise.all(leases.map((lease) => roleLimit(service, lease.role)))).toEqual([4, 4, 2]);
    expect(((await answers[3]!.json()) as { message: string }).message).toMatch(/^client 198\.51\.100\.23 has 3 live leases/);
  });
});

describe('a lease claimed from a warm pool', () => {
  let service: TestService;
  beforeAll(async () => {
    service = await startTestService({ ...BUDGETED, PGLEASE_LEASE_POOL: '1' });
  });
  afterAll(async () => {
    await service?.close();
  });

  it('was provisioned with the per-lease limit, and its claim lowers it to what is left of the budget', async () => {
    const client = { 'x-forwarded-for': '198.51.100.31' };
    const pool = service.context.leasePool;
    const claimed = async () => {
      await waitFor('a pooled lease', async () => (pool.readySize() >= 1 ? true : undefined), 30_000);
      const lease = await created(service.baseUrl, client);
      const { rows } = await service.host.pool.query(`SELECT detail->>'pooled' AS pooled FROM pglease.lease_events WHERE lease_id = $1 AND kind = 'created'`, [lease.id]);
      expect(rows).toEqual([{ pooled: 'true' }]);
      return lease;
    };
    const leases = [await claimed(), await claimed(), await claimed()];
    expect(leases.map((lease) => lease.connection_limit)).toEqual([4, 4, 2]);
    expect(await Promise.all(leases.map((lease) => roleLimit(service, lease.role)))).toEqual([4, 4, 2]);

    await waitFor('a pooled lease', async () => (pool.readySize() >= 1 ? true : undefined), 30_000);
    const refused = await create(service.baseUrl, client);
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { message: string }).message).toMatch(/has 3 live leases that may open 10 of the 10 connections/);
    // the refused claim was rolled back: the pooled lease is still there, with the per-lease limit
    const { rows } = await service.host.pool.query<{ limit: number }>(
      `SELECT r.rolconnlimit AS limit FROM pglease.lease_pool p JOIN pglease.leases l ON l.id = p.lease_id JOIN pg_roles r ON r.rolname = l.role_name`,
    );
    expect(rows).toEqual([{ limit: 4 }]);
  });
});

describe('concurrent creates of one client', () => {
  let service: TestService;
  beforeAll(async () => {
    // a pool of 3: some creates claim, the others provision, all under the client's lock
    service = await startTestService({ ...BUDGETED, PGLEASE_LEASE_POOL: '3' });
  });
  afterAll(async () => {
    await service?.close();
  });

  it('never both get the last connections: 12 at once leave limits of exactly 4, 4 and 2', async () => {
    for (let round = 0; round < 5; round++) {
      const address = `198.51.100.${41 + round}`;
      await waitFor('the warm pool', async () => (service.context.leasePool.readySize() >= 3 ? true : undefined), 30_000);
      const responses = await Promise.all(Array.from({ length: 12 }, () => create(service.baseUrl, { 'x-forwarded-for': address })));
      const bodies = (await Promise.all(responses.map((response) => response.json()))) as (LeaseAnswer & { code?: string })[];
      const made = bodies.filter((_, i) => responses[i]!.status === 201);
      expect(made.map((lease) => lease.connection_limit).sort(), `round ${round}`).toEqual([2, 4, 4]);
      expect(responses.filter((response) => response.status === 429), `round ${round}`).toHaveLength(9);
      const { rows } = await service.host.pool.query<{ held: number }>(
        `SELECT sum(r.rolconnlimit)::int AS held FROM pglease.leases l JOIN pg_roles r ON r.rolname = l.role_name
          WHERE l.quota_ip = $1 AND l.state = 'active'`,
        [address],
      );
      expect(rows[0]!.held, `round ${round}`).toBe(10);
    }
  });
});

/**
 * The attack of the bug report, scaled down: a cluster of its own whose non-superuser slots are 40
 * (superuser_reserved_connections = 260 of max_connections 300; pglease connects as superuser, as
 * it will through the reserve once it no longer is one). Leases of 10 connections, 8 per client: one
 * client could open 80 sessions, twice the slots. With a budget of 20 it opens 20.
 */
describe('one client whose leases open every connection they may', () => {
  let dataDir: string;
  let server: EmbeddedServer | undefined;
  let service: (Awaited<ReturnType<typeof startService>> & { baseUrl: string }) | undefined;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-conns-'));
    const options = { dataDir, port: await freePort(), listen: 'localhost', stopWithProcess: true, maxConnections: 300 };
    server = await startEmbedded(options);
    // a postmaster setting: written to postgresql.auto.conf, read at the next start
    const admin = new pg.Client({ connectionString: server.url('postgres') });
    await admin.connect();
    await admin.query('ALTER SYSTEM SET superuser_reserved_connections = 260');
    await admin.end();
    await server.stop();
    server = await startEmbedded({ ...options, port: await freePort() });
    const config = loadConfig({
      DATABASE_URL: server.url('postgres'),
      PGLEASE_DATABASE: 'pglease_attack',
      PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN,
      HOST: '127.0.0.1',
      PORT: '0',
      PGLEASE_LEASE_CONNECTIONS: '10',
      PGLEASE_MAX_ACTIVE: '8',
      PGLEASE_CLIENT_CONNECTIONS: '20',
      PGLEASE_TRUST_PROXY: 'on',
      PGLEASE_LEASE_POOL: '0',
    });
    const started = await startService(config);
    service = Object.assign(started, { baseUrl: await started.app.listen({ host: config.httpHost, port: 0 }) });
  });
  afterAll(async () => {
    await service?.close();
    await server?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  /** Milliseconds of each of `times` logins (and a first query) of `url`, one after another. */
  async function connectTimes(url: string, times: number): Promise<number[]> {
    const spent: number[] = [];
    for (let i = 0; i < times; i++) {
      const started = performance.now();
      const session = new pg.Client({ connectionString: url });
      await session.connect();
      await session.query('SELECT 1');
      spent.push(performance.now() - started);
      await session.end();
    }
    return spent;
  }

  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

  it('leaves room for another client: its lease connects, and POST /v1/leases answers 201', async () => {
    const baseUrl = service!.baseUrl;
    const attacker = { 'x-forwarded-for': '198.51.100.66' };
    const victim = { 'x-forwarded-for': '198.51.100.77' };
    const victimLease = await created(baseUrl, victim);
    const quiet = await connectTimes(victimLease.url, 10);

    const held: pg.Client[] = [];
    const refusals: string[] = [];
    const statuses: number[] = [];
    try {
      for (let i = 0; i < 8; i++) {
        const response = await create(baseUrl, attacker);
        statuses.push(response.status);
        if (response.status !== 201) {
          await response.body?.cancel();
          break;
        }
        const { sessions, refusal } = await openUntilRefused(((await response.json()) as LeaseAnswer).url, 12);
        held.push(...sessions);
        if (refusal) refusals.push(refusal.message);
      }

      // the attack's victim: another client logs in and makes a lease
      const createdAt = performance.now();
      const another = await create(baseUrl, victim);
      const createMs = performance.now() - createdAt;
      expect(another.status).toBe(201);
      await another.body?.cancel();
      const attacked = await connectTimes(victimLease.url, 10);
      console.log(
        `victim connect+SELECT 1: median ${median(quiet).toFixed(1)} ms (max ${Math.max(...quiet).toFixed(1)}) before the attack, ` +
          `median ${median(attacked).toFixed(1)} ms (max ${Math.max(...attacked).toFixed(1)}) while the attacker holds ${held.length} sessions; ` +
          `its POST /v1/leases took ${createMs.toFixed(1)} ms`,
      );

      // the attacker: two leases of 10 sessions each, every further login refused by its role's limit
      expect(held).toHaveLength(20);
      expect(statuses).toEqual([201, 201, 429]);
      expect(refusals).toHaveLength(2);
      for (const refusal of refusals) expect(refusal).toMatch(/^too many connections for role "lease_[0-9a-f]{16}"$/);
    } finally {
      await endAll(held);
    }
  });
});
