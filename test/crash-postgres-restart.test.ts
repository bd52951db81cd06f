/**
 * Postgres restarts under a running service (its own embedded cluster, stopped and started again):
 * while it is down the API answers 503, never 500, and nothing crashes; once it is back the pool,
 * the scheduler and its LISTEN connection reconnect by themselves and expiry works again.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startEmbedded, type EmbeddedServer } from '../src/db/embedded.js';
import { startService, type Service } from '../src/service.js';
import { freePort } from './support/free-port.js';
import { ADMIN_TOKEN } from './support/service.js';

let dataDir: string;
let port: number;
let postgres: EmbeddedServer;
let service: Service;
let baseUrl: string;
const logged: string[] = [];

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-restart-'));
  port = await freePort();
  postgres = await startEmbedded({ dataDir, port, listen: 'localhost' });
  const config = loadConfig({
    DATABASE_URL: postgres.url('postgres'),
    PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN,
    HOST: '127.0.0.1',
    PORT: '0',
    // a daily reaper: only the LISTEN connection (a short lease's NOTIFY) can make it reap on time
    PGLEASE_REAPER_CRON: '0 0 * * *',
  });
  service = await startService(config, { log: (message) => logged.push(message) });
  baseUrl = await service.app.listen({ host: '127.0.0.1', port: 0 });
});
afterAll(async () => {
  await service?.close();
  await postgres?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function create(body: Record<string, unknown> = {}): Promise<Response> {
  return fetch(`${baseUrl}/v1/leases`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

describe('Postgres restart under the service', () => {
  it('answers 503 while Postgres is down and recovers pool, scheduler and listener when it is back', async () => {
    const before = await create({ ttl: 600 });
    expect(before.status).toBe(201);
    const kept = (await before.json()) as { id: string; token: string };

    await postgres.stop();
    const down = await create();
    expect(down.status).toBe(503);
    expect(await down.json()).toMatchObject({ code: 'PGLEASE_NOT_READY' });
    expect((await fetch(`${baseUrl}/readyz`)).status).toBe(503);
    // long enough for the scheduler's and the listener's reconnect attempts to fail a few times
    await sleep(2500);

    postgres = await startEmbedded({ dataDir, port, listen: 'localhost' });
    let recovered: Response | undefined;
    for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(200)) {
      const attempt = await create({ ttl: 1 });
      if (attempt.status === 201) {
        recovered = attempt;
        break;
      }
      expect(attempt.status).toBe(503);
      await attempt.body?.cancel();
    }
    expect(recovered, 'the service never recovered').toBeDefined();
    const short = (await recovered!.json()) as { id: string; token: string };

    // the lease made before the restart is still there
    const keptNow = await fetch(`${baseUrl}/v1/leases/${kept.id}`, { headers: { authorization: `Bearer ${kept.token}` } });
    expect(await keptNow.json()).toMatchObject({ state: 'active' });

    // a 1 s lease is reaped about on time: the reaper was woken through the re-established LISTEN
    const createdAt = Date.now();
    let state = 'active';
    while (state !== 'expired' && Date.now() - createdAt < 10_000) {
      await sleep(200);
      const response = await fetch(`${baseUrl}/v1/leases/${short.id}`, { headers: { authorization: `Bearer ${short.token}` } });
      state = ((await response.json()) as { state: string }).state;
    }
    expect(state).toBe('expired');
    expect(Date.now() - createdAt).toBeLessThan(8000);

    // a job changed through the API runs within seconds: only its NOTIFY can wake the scheduler,
    // which otherwise sleeps until the hourly prune or its 30 s poll
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
    const patchedAt = new Date();
    const patched = await fetch(`${baseUrl}/v1/jobs/prune-history`, { method: 'PATCH', headers: auth, body: JSON.stringify({ schedule: '* * * * * *' }) });
    expect(patched.status).toBe(200);
    let ran = false;
    while (!ran && Date.now() - patchedAt.getTime() < 5000) {
      await sleep(100);
      const runs = await service.host.pool.query(`SELECT 1 FROM pglease.job_runs WHERE job_name = 'prune-history' AND started_at >= $1`, [patchedAt]);
      ran = runs.rowCount! > 0;
    }
    expect(ran, 'the changed job did not run: the LISTEN connection is not back').toBe(true);
    expect(logged.join('\n')).toMatch(/job listener: connection lost, reconnecting/);
  });
});

/** Whether a fresh connection to `url` answers a query now. */
async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.query('SELECT 1 AS ok')).rows[0].ok === 1;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

describe('a postmaster that dies', () => {
  it('is started again by pglease, and the service answers again without a restart', async () => {
    const ownDir = await mkdtemp(path.join(tmpdir(), 'pglease-watchdog-'));
    const events: string[] = [];
    const own = await startEmbedded({ dataDir: ownDir, port: await freePort(), listen: 'localhost', log: (message) => events.push(message) });
    try {
      const postmaster = Number((await readFile(path.join(ownDir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]);
      process.kill(postmaster, 'SIGKILL');
      await expect.poll(() => answers(own.url('postgres')), { timeout: 30_000, interval: 250 }).toBe(true);
      expect(events.some((event) => event.startsWith(`embedded Postgres (pid ${postmaster}) is gone`))).toBe(true);
      // the watchdog's own readiness check may answer a moment after ours
      await expect.poll(() => events.some((event) => event.startsWith('embedded Postgres is back')), { timeout: 10_000 }).toBe(true);
    } finally {
      await own.stop();
      await rm(ownDir, { recursive: true, force: true });
    }
  }, 60_000);

  it('is started again even when a backend busy computing outlives it (it holds the shared memory)', async () => {
    const ownDir = await mkdtemp(path.join(tmpdir(), 'pglease-watchdog-'));
    const events: string[] = [];
    const own = await startEmbedded({ dataDir: ownDir, port: await freePort(), listen: 'localhost', log: (message) => events.push(message) });
    const busy = new pg.Client({ connectionString: own.url('postgres') });
    busy.on('error', () => undefined);
    try {
      await busy.connect();
      // never checks for its postmaster: it would run for minutes, holding the shared memory
      void busy.query('SELECT count(*) FROM generate_series(1, 20000000000)').catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const postmaster = Number((await readFile(path.join(ownDir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]);
      process.kill(postmaster, 'SIGKILL');
      await expect.poll(() => answers(own.url('postgres')), { timeout: 20_000, interval: 250 }).toBe(true);
      expect(events.some((event) => /^ended 1 backend the dead postmaster left running/.test(event))).toBe(true);
    } finally {
      await busy.end().catch(() => undefined);
      await own.stop();
      await rm(ownDir, { recursive: true, force: true });
    }
  }, 60_000);
});
