/**
 * Throttling of lease creation, counted in Postgres: per client address per hour, live leases per
 * client, and the database's capacity. Counting must hold under concurrency.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startTestService, superuserDatabaseUrl, type TestService } from './support/service.js';

let hourly: TestService;
let bounded: TestService;

beforeAll(async () => {
  [hourly, bounded] = await Promise.all([
    // 100 live leases of one client: no connection budget (test/client-connections.test.ts has it)
    // this file's clients are on loopback, as the developer on their own machine is: PGLEASE_LIMIT_LOCAL
    // holds them to the limits (the last describe tests that they are otherwise exempt)
    startTestService({ PGLEASE_RATE_LIMIT: '100', PGLEASE_MAX_ACTIVE: '0', PGLEASE_MAX_LEASES: '0', PGLEASE_CLIENT_CONNECTIONS: '0', PGLEASE_LIMIT_LOCAL: 'on' }),
    startTestService({ PGLEASE_RATE_LIMIT: '0', PGLEASE_MAX_ACTIVE: '3', PGLEASE_MAX_LEASES: '5', PGLEASE_TRUST_PROXY: 'on' }),
  ]);
});
afterAll(async () => {
  await Promise.all([hourly?.close(), bounded?.close()]);
});

function create(service: TestService, headers: Record<string, string> = {}, body: Record<string, unknown> = { ttl: 600 }): Promise<Response> {
  return fetch(`${service.baseUrl}/v1/leases`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

async function liveLeases(service: TestService): Promise<number> {
  const { rows } = await service.host.pool.query<{ count: number }>(`SELECT count(*)::int AS count FROM pglease.leases WHERE state = 'active'`);
  return rows[0]!.count;
}

describe('creations per client per hour (PGLEASE_RATE_LIMIT)', () => {
  it('gives exactly 100 leases to 200 parallel creates, and 429s with rate-limit headers to the rest', async () => {
    const responses = await Promise.all(Array.from({ length: 200 }, () => create(hourly)));
    const created = responses.filter((response) => response.status === 201);
    const refused = responses.filter((response) => response.status === 429);
    expect(created).toHaveLength(100);
    expect(refused).toHaveLength(100);
    expect(await liveLeases(hourly)).toBe(100);

    // every success reports what is left of the quota: each value once, from 99 down to 0
    const remaining = created.map((response) => Number(response.headers.get('ratelimit-remaining'))).sort((a, b) => a - b);
    expect(remaining).toEqual(Array.from({ length: 100 }, (_, i) => i));
    for (const response of created) {
      expect(response.headers.get('ratelimit-limit')).toBe('100');
      expect(Number(response.headers.get('ratelimit-reset'))).toBeGreaterThan(3500);
      expect(response.headers.get('ratelimit-policy')).toBe('100;w=3600');
    }

    const refusal = refused[0]!;
    expect(refusal.headers.get('ratelimit-limit')).toBe('100');
    expect(refusal.headers.get('ratelimit-remaining')).toBe('0');
    const retryAfter = Number(refusal.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(3500);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    expect(Number(refusal.headers.get('ratelimit-reset'))).toBe(retryAfter);
    const body = (await refusal.json()) as { code: string; message: string };
    expect(body.code).toBe('PGLEASE_RATE_LIMITED');
    expect(body.message).toMatch(/created 100 leases in the last hour.*PGLEASE_RATE_LIMIT=100/);
    await Promise.all([...created, ...refused.slice(1)].map((response) => response.body?.cancel()));
    // 8 s alone on the 2-core machine of session 15; over 30 s beside a second suite
  }, 120_000);

  it('counts releases as creations still (the limit is on creating), and ignores X-Forwarded-For from an untrusted peer', async () => {
    const spoofed = await create(hourly, { 'x-forwarded-for': '203.0.113.9' });
    expect(spoofed.status).toBe(429);
    await spoofed.body?.cancel();
  });

  it('lets the admin token through, without per-client headers, and without using the address’s quota', async () => {
    const response = await create(hourly, { authorization: `Bearer ${ADMIN_TOKEN}` });
    expect(response.status).toBe(201);
    expect(response.headers.get('ratelimit-limit')).toBeNull();
    const { rows } = await hourly.host.pool.query(`SELECT quota_ip FROM pglease.leases WHERE id = $1`, [((await response.json()) as { id: string }).id]);
    expect(rows[0].quota_ip).toBeNull();
  });
});

describe('live leases per client (PGLEASE_MAX_ACTIVE) and capacity (PGLEASE_MAX_LEASES)', () => {
  const clientA = { 'x-forwarded-for': '198.51.100.7' };
  const clientB = { 'x-forwarded-for': '198.51.100.8' };

  it('refuses a 4th live lease to one client behind a trusted proxy, until one is released', async () => {
    const made = [];
    for (let i = 0; i < 3; i++) {
      const response = await create(bounded, clientA, { ttl: 120 + i });
      expect(response.status).toBe(201);
      made.push((await response.json()) as { id: string; token: string });
    }
    // live leases only: the warm pool's parked ones (no client yet) refill at their own pace
    const { rows } = await bounded.host.pool.query<{ ip: string }>(`SELECT DISTINCT host(client_ip) AS ip FROM pglease.leases WHERE state = 'active'`);
    expect(rows).toEqual([{ ip: '198.51.100.7' }]);

    const refused = await create(bounded, clientA);
    expect(refused.status).toBe(429);
    // the soonest of the client's leases expires in about 120 s
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(100);
    expect(retryAfter).toBeLessThanOrEqual(120);
    const body = (await refused.json()) as { code: string; message: string };
    expect(body).toMatchObject({ code: 'PGLEASE_RATE_LIMITED' });
    expect(body.message).toMatch(/198\.51\.100\.7 has 3 live leases.*PGLEASE_MAX_ACTIVE=3/);

    // another address is not affected
    const other = await create(bounded, clientB);
    expect(other.status).toBe(201);
    await other.body?.cancel();

    const released = await fetch(`${bounded.baseUrl}/v1/leases/${made[0]!.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${made[0]!.token}` } });
    expect(released.status).toBe(204);
    const again = await create(bounded, clientA);
    expect(again.status).toBe(201);
    await again.body?.cancel();
  });

  it('answers 503 when the database holds PGLEASE_MAX_LEASES live leases, for the admin too', async () => {
    // 3 of clientA + 1 of clientB are live; one more fills the database
    const last = await create(bounded, clientB);
    expect(last.status).toBe(201);
    await last.body?.cancel();
    expect(await liveLeases(bounded)).toBe(5);

    const full = await create(bounded, { 'x-forwarded-for': '198.51.100.9' });
    expect(full.status).toBe(503);
    expect(Number(full.headers.get('retry-after'))).toBeGreaterThan(0);
    const body = (await full.json()) as { code: string; message: string };
    expect(body.code).toBe('PGLEASE_CAPACITY');
    expect(body.message).toMatch(/full: 5 live leases \(PGLEASE_MAX_LEASES=5\)/);

    const admin = await create(bounded, { authorization: `Bearer ${ADMIN_TOKEN}` });
    expect(admin.status).toBe(503);
    await admin.body?.cancel();
  });

  it('fills the database exactly under concurrency: no more than PGLEASE_MAX_LEASES live leases', async () => {
    const { rows } = await bounded.host.pool.query<{ id: string }>(`SELECT id FROM pglease.leases WHERE state = 'active'`);
    await Promise.all(rows.map((row) => bounded.host.pool.query(`SELECT pglease.release($1)`, [row.id])));
    const responses = await Promise.all(
      Array.from({ length: 12 }, (_, i) => create(bounded, { 'x-forwarded-for': `192.0.2.${i + 1}` })),
    );
    const statuses = responses.map((response) => response.status).sort();
    await Promise.all(responses.map((response) => response.body?.cancel()));
    expect(statuses.filter((status) => status === 201)).toHaveLength(5);
    expect(statuses.filter((status) => status === 503)).toHaveLength(7);
    expect(await liveLeases(bounded)).toBe(5);
  });
});

describe("the database's cap with room to spare (PGLEASE_MAX_LEASES=100)", () => {
  let capped: TestService;
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
  beforeAll(async () => {
    capped = await startTestService({ PGLEASE_RATE_LIMIT: '0', PGLEASE_MAX_ACTIVE: '0', PGLEASE_MAX_LEASES: '100', PGLEASE_LEASE_POOL: '0', PGLEASE_TEMPLATE_POOL: '0' });
  });
  afterAll(async () => {
    await capped?.close();
  });
  async function releaseAll(): Promise<void> {
    const { rows } = await capped.host.pool.query<{ id: string }>(`SELECT id FROM pglease.leases WHERE state = 'active'`);
    await Promise.all(rows.map((row) => capped.host.pool.query(`SELECT pglease.release($1)`, [row.id])));
  }
  /** A create's status, or 'waiting' when it has not answered within `ms`. */
  async function statusWithin(response: Promise<Response>, ms: number): Promise<number | 'waiting'> {
    const answer = await Promise.race([response, new Promise<'waiting'>((resolve) => setTimeout(() => resolve('waiting'), ms))]);
    if (answer === 'waiting') return answer;
    await answer.body?.cancel();
    return answer.status;
  }

  it('gives exactly 100 leases to 120 parallel creates: the first count with a ticket, the last ones alone', { timeout: 120_000 }, async () => {
    const responses = await Promise.all(Array.from({ length: 120 }, () => create(capped, admin)));
    const statuses = responses.map((response) => response.status);
    await Promise.all(responses.map((response) => response.body?.cancel()));
    expect(statuses.filter((status) => status === 201)).toHaveLength(100);
    expect(statuses.filter((status) => status === 503)).toHaveLength(20);
    expect(await liveLeases(capped)).toBe(100);
    await releaseAll();
  });

  it("waits for no other create while the count leaves room for every ticket's holder, and for all of them near the cap", { timeout: 120_000 }, async () => {
    const holder = new pg.Client({ connectionString: superuserDatabaseUrl(capped) });
    await holder.connect();
    try {
      // the lock every create took before: a create far from the cap does not wait for it
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM pglease.throttle_locks WHERE slot = 0 FOR UPDATE');
      expect(await statusWithin(create(capped, admin), 30_000)).toBe(201);
      await holder.query('ROLLBACK');

      // 40 live leases: 40 + 63 other tickets could pass 100, so the next create counts alone
      const fill = await Promise.all(Array.from({ length: 39 }, () => create(capped, admin)));
      await Promise.all(fill.map((response) => response.body?.cancel()));
      expect(await liveLeases(capped)).toBe(40);
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM pglease.throttle_locks WHERE slot = 0 FOR UPDATE');
      const near = create(capped, admin);
      expect(await statusWithin(near, 1_500)).toBe('waiting');
      await holder.query('ROLLBACK');
      expect(await statusWithin(near, 30_000)).toBe(201);
      expect(await liveLeases(capped)).toBe(41);
    } finally {
      await holder.end();
      await releaseAll();
    }
  });
});

describe('the throttle\'s locks', () => {
  it('cannot be held by a lease: its advisory locks stop no create, and it cannot touch the lock rows', async () => {
    const service = await startTestService({ PGLEASE_RATE_LIMIT: '100', PGLEASE_MAX_ACTIVE: '10', PGLEASE_MAX_LEASES: '100', PGLEASE_LEASE_POOL: '0', PGLEASE_LIMIT_LOCAL: 'on' });
    const squatter = new pg.Client({ connectionString: ((await (await create(service)).json()) as { url: string }).url });
    await squatter.connect();
    try {
      // the keys the throttle used to lock: the database's, and 127.0.0.1's
      await squatter.query(`SELECT pg_advisory_lock(28780, 0), pg_advisory_lock(28780, hashtext('127.0.0.1'))`);
      const answers = await Promise.all([create(service), create(service, { authorization: `Bearer ${ADMIN_TOKEN}` })]);
      expect(answers.map((answer) => answer.status)).toEqual([201, 201]);
      await expect(squatter.query('SELECT 1 FROM pglease.throttle_locks WHERE slot = 0 FOR UPDATE')).rejects.toMatchObject({ code: '42501' });
    } finally {
      await squatter.end();
      await service.close();
    }
  });
});

describe('the developer on their own machine (a loopback client of a service bound to loopback)', () => {
  // every per-client limit tight enough that the third create would meet all three
  const TIGHT = { PGLEASE_RATE_LIMIT: '2', PGLEASE_MAX_ACTIVE: '2', PGLEASE_CLIENT_CONNECTIONS: '30', PGLEASE_LEASE_POOL: '0', PGLEASE_TEMPLATE_POOL: '0' };

  it('meets no per-client limit: five creates past every one of them, each lease with its full connection limit, nothing charged', async () => {
    const service = await startTestService(TIGHT);
    try {
      for (let i = 0; i < 5; i++) {
        const response = await create(service);
        expect(response.status).toBe(201);
        expect(response.headers.get('ratelimit-limit')).toBeNull();
        const lease = (await response.json()) as { id: string; connection_limit: number };
        expect(lease.connection_limit).toBe(20);
      }
      const { rows } = await service.host.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM pglease.leases WHERE quota_ip IS NOT NULL`);
      expect(rows[0]!.n).toBe(0);
    } finally {
      await service.close();
    }
  });

  it('is a stranger again through a proxy (X-Forwarded-For or Forwarded), with PGLEASE_LIMIT_LOCAL=on, or when the service listens on every address', async () => {
    const proxied = await startTestService(TIGHT);
    const limited = await startTestService({ ...TIGHT, PGLEASE_LIMIT_LOCAL: 'on' });
    const everywhere = await startTestService({ ...TIGHT, HOST: '0.0.0.0' });
    try {
      const statuses = async (service: TestService, headers: Record<string, string>) => {
        const answers: number[] = [];
        for (let i = 0; i < 3; i++) {
          const response = await create(service, headers);
          answers.push(response.status);
          await response.body?.cancel();
        }
        return answers;
      };
      expect(await statuses(proxied, { 'x-forwarded-for': '203.0.113.5' })).toEqual([201, 201, 429]);
      expect(await statuses(proxied, { forwarded: 'for=203.0.113.6' })).toEqual([429, 429, 429]);
      expect(await statuses(limited, {})).toEqual([201, 201, 429]);
      // listening on 0.0.0.0, reached at 127.0.0.1: a port forwarder may stand in for anyone
      const port = new URL(everywhere.baseUrl).port;
      const viaLoopback = Object.assign(Object.create(everywhere) as TestService, { baseUrl: `http://127.0.0.1:${port}` });
      expect(await statuses(viaLoopback, {})).toEqual([201, 201, 429]);
    } finally {
      await Promise.all([proxied.close(), limited.close(), everywhere.close()]);
    }
    // three services started: over 30 s beside a second suite on a slower 2-core machine
  }, 120_000);
});
