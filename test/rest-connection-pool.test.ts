/**
 * The REST API's per-lease connection pool against a real Postgres: at most `max` sessions, an
 * idle one handed out at once, waiters served in turn or failed after the timeout, connections
 * that die (terminated while idle, broken in use) replaced, and `end` closing everything. Pools
 * sharing a budget, as LeasePools' do: one connection per pool until requests queue on it, a
 * pool's surplus closed before another's only connection, a lease's only idle connection kept from
 * a growing pool unless that lease had no request for STALE_IDLE_MS, the places given in arrival order to
 * pools that have none first, and a thousand pools with a request each served within the budget.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { closeIdleConnectionOf, ConnectionBudget, ConnectionPool, SLOW_QUEUE_MS, STALE_IDLE_MS, type UsedPool } from '../src/rest/executor/connection-pool.js';

const serverUrl = inject('serverUrl');
const appName = `pool-test-${randomBytes(4).toString('hex')}`;
let admin: pg.Client;

async function sessions(): Promise<number> {
  const { rows } = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [appName]);
  return rows[0]!.n;
}

/**
 * A pool that grows as soon as more requests wait than it has connections (`queuePerConnection`
 * 1), and not for a request that waits long (`slowQueueMs` a minute), so that the tests of sharing
 * places can make a pool grow with two requests and hold connections as long as they need; the
 * defaults have tests of their own.
 */
function newPool(max: number, timeoutMs = 2_000, idleErrors: Error[] = [], budget?: ConnectionBudget): ConnectionPool {
  return new ConnectionPool({ connectionString: serverUrl, application_name: appName }, { max, budget, connectionTimeoutMs: timeoutMs, onIdleError: (error) => idleErrors.push(error), queuePerConnection: 1, slowQueueMs: 60_000 });
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

  it('opens another connection only once more than twice as many requests wait as it has connections', async () => {
    // slowQueueMs out of the way: the requests here may wait longer than SLOW_QUEUE_MS on a loaded machine
    const pool = new ConnectionPool({ connectionString: serverUrl, application_name: appName }, { max: 5, connectionTimeoutMs: 2_000, onIdleError: () => undefined, slowQueueMs: 60_000 });
    const first = await acquire(pool);
    // two requests queue on the one busy connection: they wait for it rather than open a session
    // (pool.size counts a connection being opened; looked at before SLOW_QUEUE_MS could pass)
    const queued = [acquire(pool), acquire(pool)];
    expect(pool.size).toBe(1);
    // a third: more than two per connection wait, so the pool grows by one
    queued.push(acquire(pool));
    expect(pool.size).toBe(2);
    // the new connection goes to the first waiter; the others get connections as they come back
    const second = await queued[0]!;
    expect(second).not.toBe(first);
    expect(pool.size).toBe(2);
    expect(await sessions()).toBe(2);
    pool.release(first);
    pool.release(second);
    pool.release(await queued[1]!);
    pool.release(await queued[2]!);
    expect(pool.size).toBe(2);
    await pool.end();
    await expect.poll(sessions).toBe(0);
  });

  it('opens another connection for a request that waited SLOW_QUEUE_MS behind a slow one, one at a time', async () => {
    const pool = new ConnectionPool({ connectionString: serverUrl, application_name: appName }, { max: 5, connectionTimeoutMs: 5_000, onIdleError: () => undefined });
    const slow = await acquire(pool);
    // cancelled below: without the rule the waiters would wait the whole 10 s
    const running = slow.query('SELECT pg_sleep(10)').catch((error: Error) => error);
    // one request behind the slow statement: too short a queue to grow for, until it has waited
    const started = performance.now();
    const [behind, alsoBehind] = [acquire(pool), acquire(pool)];
    const served = await behind;
    const waited = performance.now() - started;
    expect(served).not.toBe(slow);
    expect(waited).toBeGreaterThanOrEqual(SLOW_QUEUE_MS - 5);
    // (a connect took up to a second at load 11-12)
    expect(waited).toBeLessThan(5_000);
    // the second waiter then waits its own SLOW_QUEUE_MS for a third connection, not for the slow one
    const third = await alsoBehind;
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(pool.size).toBe(3);
    pool.release(served);
    pool.release(third);
    await admin.query('SELECT pg_cancel_backend($1)', [(slow as unknown as { processID: number }).processID]);
    expect(String(await running)).toMatch(/cancel/);
    pool.release(slow);
    await pool.end();
    await expect.poll(sessions).toBe(0);
  });

  it('fails a waiter after the timeout when every connection stays in use', async () => {
    // the timeout bounds the first connect too: 100 ms was too short for one at load 11-12
    const pool = newPool(1, 1_000);
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

/**
 * Pools sharing a budget as LeasePools' do, on a clock of the test's own (ms) so that staleness
 * does not depend on how fast the machine runs: `use(i)` marks pool i used now (for the eviction
 * order) and moves the clock on by 1 ms, `pass(ms)` lets time pass without a request.
 */
function sharedPools(
  max: number,
  count: number,
  perPool = max,
  timeoutMs = 5_000,
  patienceMs?: number,
): { budget: ConnectionBudget; pools: ConnectionPool[]; use: (i: number) => ConnectionPool; pass: (ms: number) => void } {
  const entries: UsedPool[] = [];
  let clock = 0;
  const budget = new ConnectionBudget(max, (connections, lastOnes) => closeIdleConnectionOf(entries, connections, lastOnes, clock - STALE_IDLE_MS), patienceMs);
  for (let i = 0; i < count; i++) entries.push({ pool: newPool(perPool, timeoutMs, [], budget), lastUsed: 0 });
  const use = (i: number) => {
    entries[i]!.lastUsed = ++clock;
    return entries[i]!.pool;
  };
  return { budget, pools: entries.map((entry) => entry.pool), use, pass: (ms) => (clock += ms) };
}

async function endAll(pools: ConnectionPool[]): Promise<void> {
  await Promise.all(pools.map((pool) => pool.end()));
  await expect.poll(sessions).toBe(0);
}

describe('connection pools sharing a budget', () => {
  it('keeps one connection for a lease whose requests come one at a time', async () => {
    const { pools, use } = sharedPools(10, 1, 5);
    for (let i = 0; i < 20; i++) {
      const client = await acquire(use(0));
      await client.query('SELECT 1');
      use(0).release(client);
    }
    expect(pools[0]!.size).toBe(1);
    await endAll(pools);
  });

  it("closes a lease's surplus idle connection to make room before any lease's only one, even a more recently used one", async () => {
    const { budget, pools, use } = sharedPools(3, 3);
    const [a, b, c] = pools as [ConnectionPool, ConnectionPool, ConnectionPool];
    const b1 = await acquire(use(1));
    b.release(b1);
    // a is used after b: least-recently-used eviction would close b's only connection
    const [a1, a2] = await Promise.all([acquire(use(0)), acquire(use(0))]);
    a.release(a1);
    a.release(a2);
    expect(budget.inUse).toBe(3);
    const c1 = await acquire(use(2));
    expect([a.size, b.size, c.size]).toEqual([1, 1, 1]);
    expect(b.acquire()).toBe(b1);
    b.release(b1);
    c.release(c1);
    await endAll(pools);
  });

  it("keeps another lease's only idle connection from a growing pool while that lease was used recently, and gives it up once it is stale", async () => {
    const { budget, pools, use, pass } = sharedPools(2, 2);
    const [a, b] = pools as [ConnectionPool, ConnectionPool];
    const a1 = await acquire(use(0));
    a.release(a1);
    const b1 = await acquire(use(1));
    // the budget is full; two requests queue on b's one connection, so b wants to grow
    const second = acquire(use(1));
    const third = acquire(use(1));
    await new Promise((resolve) => setTimeout(resolve, 100));
    // a was used a moment ago: its only connection is kept, and b's requests wait for b's own
    expect([a.size, a.idleCount, b.size]).toEqual([1, 1, 1]);
    b.release(b1);
    expect(await second).toBe(b1);
    b.release(b1);
    expect(await third).toBe(b1);
    // a has had no request for longer than STALE_IDLE_MS: a growing b closes its idle connection
    pass(STALE_IDLE_MS + 1);
    const fourth = acquire(use(1));
    const fifth = acquire(use(1));
    // b1 still serves the third request: the fourth runs on b's new connection
    const b2 = await fourth;
    expect(b2).not.toBe(b1);
    expect((await b2.query('SELECT 5 AS five')).rows[0].five).toBe(5);
    expect([a.size, b.size]).toEqual([0, 2]);
    b.release(b1);
    expect(await fifth).toBe(b1);
    b.release(b1);
    b.release(b2);
    expect(budget.inUse).toBe(2);
    await endAll(pools);
  });

  it("has a lease without a connection wait for another lease's surplus, before that lease's queued requests, rather than close a lease's only idle one", async () => {
    const { budget, pools, use } = sharedPools(3, 3, 3, 10_000, 60_000);
    const [a, b, c] = pools as [ConnectionPool, ConnectionPool, ConnectionPool];
    const b1 = await acquire(use(1));
    b.release(b1);
    // a holds two connections (one of them surplus) and queues a third request on them
    const [a1, a2] = await Promise.all([acquire(use(0)), acquire(use(0))]);
    const aThird = acquire(use(0));
    expect(budget.inUse).toBe(3);
    // c has none: closing b's idle connection would leave b none, and b would take the next one's
    const cFirst = acquire(use(2));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect([a.size, b.size, b.idleCount, c.size]).toEqual([2, 1, 1, 0]);
    // a gives one back: it is closed for c, whose new session takes its place
    a.release(a1);
    const c1 = await cFirst;
    expect([a.size, b.size, c.size]).toEqual([1, 1, 1]);
    expect(b.acquire()).toBe(b1);
    // a's queued request runs on its remaining connection
    a.release(a2);
    expect(await aThird).toBe(a2);
    a.release(a2);
    b.release(b1);
    c.release(c1);
    expect(budget.inUse).toBe(3);
    await endAll(pools);
  });

  it("has a lease without a connection take a lease's only idle one when the surplus stays in use past its patience", async () => {
    const { pools, use } = sharedPools(3, 3, 3, 10_000, 200);
    const [a, b, c] = pools as [ConnectionPool, ConnectionPool, ConnectionPool];
    const b1 = await acquire(use(1));
    b.release(b1);
    const [a1, a2] = await Promise.all([acquire(use(0)), acquire(use(0))]);
    const waited = performance.now();
    const c1 = await acquire(use(2));
    expect(performance.now() - waited).toBeGreaterThanOrEqual(150);
    expect([a.size, b.size, c.size]).toEqual([2, 0, 1]);
    a.release(a1);
    a.release(a2);
    c.release(c1);
    await endAll(pools);
  });

  it('gives freed places to waiting leases in arrival order, those without a connection first', async () => {
    const { pools, use } = sharedPools(2, 4);
    const [a, b, c, d] = pools as [ConnectionPool, ConnectionPool, ConnectionPool, ConnectionPool];
    const a1 = await acquire(use(0));
    const d1 = await acquire(use(3));
    const served: string[] = [];
    // d waits to grow first (two requests queue on its one connection), then b and c, which
    // have no connection, in that order
    const dSecond = acquire(use(3)).then((client) => (served.push('d'), client));
    const dThird = acquire(use(3)).then((client) => (served.push('d'), client));
    const bFirst = acquire(use(1)).then((client) => (served.push('b'), client));
    const cFirst = acquire(use(2)).then((client) => (served.push('c'), client));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(served).toEqual([]);
    // a's connection goes idle: its place goes to b, which has none, though d waited longer
    a.release(a1);
    const b1 = await bFirst;
    expect(served).toEqual(['b']);
    // b is done: c, still without a connection, comes next
    b.release(b1);
    const c1 = await cFirst;
    expect(served).toEqual(['b', 'c']);
    // d's own connection serves its queued requests
    d.release(d1);
    expect(await dSecond).toBe(d1);
    d.release(d1);
    expect(await dThird).toBe(d1);
    expect(served).toEqual(['b', 'c', 'd', 'd']);
    c.release(c1);
    d.release(d1);
    await endAll(pools);
  });

  it('serves a thousand leases with a request each, fifty at a time, within a budget of twenty', async () => {
    const { budget, pools, use } = sharedPools(20, 1_000, 5, 60_000);
    let most = 0;
    let watching = false;
    const watch = setInterval(() => {
      if (watching) return;
      watching = true;
      void sessions().then((n) => (most = Math.max(most, n)), () => undefined).finally(() => (watching = false));
    }, 20);
    const answers: number[] = [];
    let next = 0;
    try {
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          for (let i = next++; i < pools.length; i = next++) {
            const pool = use(i);
            const client = await acquire(pool);
            answers.push((await client.query<{ n: number }>('SELECT $1::int AS n', [i])).rows[0]!.n);
            pool.release(client);
            expect(budget.inUse).toBeLessThanOrEqual(20);
          }
        }),
      );
    } finally {
      clearInterval(watch);
    }
    expect(answers.sort((x, y) => x - y)).toEqual(Array.from({ length: 1_000 }, (_, i) => i));
    // a closed connection's backend may linger in pg_stat_activity a moment after its successor logged in
    expect(most).toBeLessThanOrEqual(20 + 5);
    expect(pools.reduce((sum, pool) => sum + pool.size, 0)).toBeLessThanOrEqual(20);
    await endAll(pools);
  }, 180_000);
});
