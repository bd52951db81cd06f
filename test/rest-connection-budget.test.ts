/**
 * The REST API's connections of all leases stay within PGLEASE_REST_MAX_CONNECTIONS: many leases
 * served at once share them (idle ones of other leases make room), every request is answered; a
 * lease's only idle session goes to a lease whose requests queue once it had no request for 2 s.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STALE_IDLE_MS } from '../src/rest/executor/connection-pool.js';
import { createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';

let service: TestService;
const leases: CreatedLeaseJson[] = [];

beforeAll(async () => {
  service = await startTestService({ PGLEASE_REST_MAX_CONNECTIONS: '2', PGLEASE_REST_LEASE_CONNECTIONS: '2', PGLEASE_LEASE_POOL: '0' });
  for (let i = 0; i < 4; i++) {
    const lease = await createLease(service, {}, { authorization: 'Bearer test-admin-token' });
    const sql = new pg.Client({ connectionString: lease.url });
    await sql.connect();
    await sql.query(`create table items (id int primary key, name text); insert into items values (1, 'lease ${i}')`);
    // a request that holds its session a while, so that the next ones queue behind it
    await sql.query(`create function slow() returns int language sql as 'select 1 from pg_sleep(0.4)'`);
    await sql.end();
    leases.push(lease);
  }
});

afterAll(async () => {
  await service?.close();
});

async function restSessions(): Promise<number> {
  const { rows } = await service.host.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pglease-rest' AND datname = current_database()`,
  );
  return rows[0]!.n;
}

/** The REST sessions of one lease (its authenticator's). */
async function sessionsOf(lease: CreatedLeaseJson): Promise<number> {
  const { rows } = await service.host.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE application_name = 'pglease-rest' AND usename = (SELECT auth_role FROM pglease.leases WHERE id = $1)`,
    [lease.id],
  );
  return rows[0]!.n;
}

async function get(lease: CreatedLeaseJson, path: string): Promise<number> {
  const response = await fetch(`${lease.rest_url}${path}`, { headers: { authorization: `Bearer ${lease.token}` } });
  await response.arrayBuffer();
  return response.status;
}

describe('REST connection budget', () => {
  it('answers concurrent requests to many leases with at most the budget of connections', async () => {
    let most = 0;
    const watch = setInterval(() => void restSessions().then((n) => (most = Math.max(most, n))), 5);
    try {
      const requests = Array.from({ length: 40 }, (_, i) => {
        const lease = leases[i % leases.length]!;
        return fetch(`${lease.rest_url}/items?select=name`, { headers: { authorization: `Bearer ${lease.token}` } }).then(async (response) => ({ status: response.status, body: await response.text(), lease: i % leases.length }));
      });
      const answers = await Promise.all(requests);
      for (const answer of answers) {
        expect(answer.status).toBe(200);
        expect(JSON.parse(answer.body)).toEqual([{ name: `lease ${answer.lease}` }]);
      }
    } finally {
      clearInterval(watch);
    }
    most = Math.max(most, await restSessions());
    expect(most).toBeGreaterThan(0);
    // The budget is 2 (without it, 4 leases x 2 would open up to 8). A connection closed to make
    // room is gone for the service at once, but its backend stays in pg_stat_activity until it
    // has exited, a moment after the new one may have logged in: the watch can see one more.
    expect(most).toBeLessThanOrEqual(3);
  });

  it("gives a lease's only idle session to a lease whose requests queue once the first had no request for STALE_IDLE_MS", async () => {
    const [quiet, busy] = leases as [CreatedLeaseJson, CreatedLeaseJson];
    // one session each: the budget of 2 is full
    expect(await get(quiet, '/items')).toBe(200);
    expect(await get(busy, '/items')).toBe(200);
    await expect.poll(() => Promise.all([sessionsOf(quiet), sessionsOf(busy)]), { timeout: 10_000 }).toEqual([1, 1]);
    await new Promise((resolve) => setTimeout(resolve, STALE_IDLE_MS + 300));
    // four slow requests at once: the others queue on busy's one session, so its pool grows into quiet's place
    const statuses = await Promise.all(Array.from({ length: 4 }, () => get(busy, '/rpc/slow')));
    expect(statuses).toEqual([200, 200, 200, 200]);
    await expect.poll(() => Promise.all([sessionsOf(quiet), sessionsOf(busy)]), { timeout: 10_000 }).toEqual([0, 2]);
    // quiet gets a place again when it needs one
    expect(await get(quiet, '/items')).toBe(200);
  });
});
