/**
 * The REST API's per-lease connection pool against a real Postgres: at most `max` sessions, an
 * idle one handed out at once, waiters served in turn or failed after the timeout, connections
 * that die (terminated while idle, broken in use) replaced, and `end` closing everything.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ConnectionBudget, ConnectionPool } from '../src/rest/executor/connection-pool.js';

const serverUrl = inject('serverUrl');
const appName = `pool-test-${randomBytes(4).toString('hex')}`;
let admin: pg.Client;

async function sessions(): Promise<number> {
  const { rows } = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [appName]);
  return rows[0]!.n;
}

function newPool(max: number, timeoutMs = 2_000, idleErrors: Error[] = [], budget?: ConnectionBudget): ConnectionPool {
  return new ConnectionPool({ connectionString: serverUrl, application_name: appName }, { max, budget, connectionTimeoutMs: timeoutMs, onIdleError: (error) => idleErrors.push(error) });
}

/** Pools sharing a budget of `max` connections, reclaiming idle ones from each other as LeasePools does. */
function budgetedPools(max: number, count: number): { budget: ConnectionBudget; pools: ConnectionPool[] } {
  const pools: ConnectionPool[] = [];
  const budget = new ConnectionBudget(max, () => pools.some((pool) => pool.idleCount > 0 && pool.closeIdleConnection()));
  for (let i = 0; i < count; i++) pools.push(newPool(max, 2_000, [], budget));
  return { budget, pools };
}

async function acquire(pool: ConnectionPool): Promise<pg.Client> {
  return await pool.acquire();
}

beforeAll(async () => {
  admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
});

afterAll(async () => {
  await admin.end();
});

describe('connection pool', () => {
  it('opens at most max sessions, hands an idle one out at once, and serves waiters in turn', async () => {
    const pool = newPool(2);
    const [a, b] = await Promise.all([acquire(pool), acquire(pool)]);
    expect(await sessions()).toBe(2);
    const third = acquire(pool);
    let served = false;
    void third.then(() => (served = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(served).toBe(false);
    pool.release(a);
    expect(await third).toBe(a);
    pool.release(a);
    // an idle connection is returned synchronously, not as a promise
    const again = pool.acquire();
    expect(again).toBe(a);
    pool.release(again as pg.Client);
    pool.release(b);
    expect(await sessions()).toBe(2);
    await pool.end();
    await expect.poll(sessions).toBe(0);
  });

  it('fails a waiter after the timeout when every connection stays in use', async () => {
    const pool = newPool(1, 100);
    const only = await acquire(pool);
    await expect(acquire(pool)).rejects.toThrow(/timeout/);
    pool.release(only);
    expect(pool.acquire()).toBe(only);
    pool.release(only);
    await pool.end();
  });

  it('drops a connection given back as broken, and opens a new one for the next request', async () => {
    const pool = newPool(1);
    const first = await acquire(pool);
    pool.release(first, new Error('broken'));
    const second = await acquire(pool);
    expect(second).not.toBe(first);
    expect((await second.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    pool.release(second);
    await pool.end();
  });

  it('replaces an idle connection whose session was terminated', async () => {
    const idleErrors: Error[] = [];
    const pool = newPool(1, 2_000, idleErrors);
    const first = await acquire(pool);
    const { rows } = await first.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    pool.release(first);
    await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
    await expect.poll(() => idleErrors.length).toBe(1);
    const next = await acquire(pool);
    expect(next).not.toBe(first);
    expect((await next.query('SELECT 2 AS two')).rows[0].two).toBe(2);
    pool.release(next);
    await pool.end();
  });

  it('does not take back a connection that died while in use', async () => {
    const pool = newPool(1);
    const client = await acquire(pool);
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    // the outcome is taken at once: the query fails while the test waits for the terminate
    const failing = client.query('SELECT pg_sleep(5)').then(() => 'finished', (error: Error) => error);
    const closed = new Promise((resolve) => client.once('end', resolve));
    await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
    expect(await failing).toMatchObject({ code: '57P01' });
    await closed;
    // given back late and without a "broken" mark: the pool saw it die and does not hand it out again
    pool.release(client);
    const next = await acquire(pool);
    expect(next).not.toBe(client);
    expect((await next.query('SELECT 3 AS three')).rows[0].three).toBe(3);
    pool.release(next);
    await pool.end();
  });

  it('fails waiting requests and refuses new ones once ended', async () => {
    const pool = newPool(1);
    const only = await acquire(pool);
    const waiting = acquire(pool);
    const ended = pool.end();
    await expect(waiting).rejects.toThrow(/closed/);
    await expect(acquire(pool)).rejects.toThrow(/closed/);
    pool.release(only);
    await ended;
    await expect.poll(sessions).toBe(0);
  });

  it('keeps the pools of a budget within it, closing an idle connection of another pool to make room', async () => {
    const { budget, pools } = budgetedPools(2, 2);
    const [a, b] = pools as [ConnectionPool, ConnectionPool];
    const [a1, a2] = await Promise.all([acquire(a), acquire(a)]);
    a.release(a1);
    a.release(a2);
    expect(a.idleCount).toBe(2);
    const b1 = await acquire(b);
    expect(budget.inUse).toBe(2);
    expect(a.idleCount).toBe(1);
    expect(await sessions()).toBeLessThanOrEqual(2);
    b.release(b1);
    await Promise.all(pools.map((pool) => pool.end()));
    await expect.poll(sessions).toBe(0);
    expect(budget.inUse).toBe(0);
  });

  it('gives a pool waiting for a place the next connection another pool stops using', async () => {
    const { budget, pools } = budgetedPools(2, 2);
    const [a, b] = pools as [ConnectionPool, ConnectionPool];
    const [a1, a2] = await Promise.all([acquire(a), acquire(a)]);
    const waiting = acquire(b);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await sessions()).toBe(2);
    // a's connection is not kept idle while b waits for a place: it is closed, and b opens one
    a.release(a1);
    const b1 = await waiting;
    expect((await b1.query('SELECT 4 AS four')).rows[0].four).toBe(4);
    expect(budget.inUse).toBe(2);
    a.release(a2);
    b.release(b1);
    await Promise.all(pools.map((pool) => pool.end()));
    expect(budget.inUse).toBe(0);
  });

  it('fails the request whose connection cannot be opened', async () => {
    const url = new URL(serverUrl);
    url.password = 'wrong-password';
    const pool = new ConnectionPool({ connectionString: url.toString(), application_name: appName }, { max: 1, connectionTimeoutMs: 2_000, onIdleError: () => undefined });
    await expect(acquire(pool)).rejects.toThrow(/password/);
    await pool.end();
  });
});
