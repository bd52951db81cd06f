/**
 * A Postgres that stops answering without closing its connections (SIGSTOP here; a frozen VM or a
 * dropped network look the same): control requests fail with 503 after PGLEASE_DB_TIMEOUT instead
 * of waiting as long as it is stopped, and the service works again as soon as it answers.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startEmbedded, type EmbeddedServer } from '../src/db/embedded.js';
import { startService, type Service } from '../src/service.js';
import { freePort } from './support/free-port.js';
import { ADMIN_TOKEN } from './support/service.js';

let dataDir: string;
let postgres: EmbeddedServer;
let service: Service;
let baseUrl: string;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-stopped-'));
  postgres = await startEmbedded({ dataDir, port: await freePort(), listen: 'localhost' });
  const config = loadConfig({
    DATABASE_URL: postgres.url('postgres'),
    PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN,
    PGLEASE_DB_TIMEOUT: '2',
    PGLEASE_SCHEDULER: 'off',
    HOST: '127.0.0.1',
    PORT: '0',
  });
  service = await startService(config, { log: () => undefined });
  baseUrl = await service.app.listen({ host: '127.0.0.1', port: 0 });
});
afterAll(async () => {
  // a test that timed out while Postgres was stopped never reached its own SIGCONT
  if (postgres) await signalPostgres('SIGCONT').catch(() => undefined);
  await service?.close();
  await postgres?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** The postmaster and every process it started (Linux: children found in /proc). */
async function postgresProcesses(): Promise<number[]> {
  const postmaster = Number((await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]);
  const children: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // the parent pid is the second field after the command name, which is in parentheses
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (parent === postmaster) children.push(Number(entry));
  }
  return [postmaster, ...children];
}

async function signalPostgres(signal: 'SIGSTOP' | 'SIGCONT'): Promise<void> {
  for (const pid of await postgresProcesses()) process.kill(pid, signal);
}

async function call(method: string, url: string, headers: Record<string, string> = {}): Promise<{ status: number; seconds: number; retryAfter: string | null; body: Record<string, unknown> }> {
  const started = Date.now();
  const response = await fetch(`${baseUrl}${url}`, { method, headers });
  const text = await response.text();
  return { status: response.status, seconds: (Date.now() - started) / 1000, retryAfter: response.headers.get('retry-after'), body: text ? JSON.parse(text) : {} };
}

describe.skipIf(process.platform !== 'linux')('a Postgres that stops answering', () => {
  it('gets 503s after PGLEASE_DB_TIMEOUT, not an endless wait, and the service answers again once it is back', async () => {
    const created = await call('POST', '/v1/leases');
    expect(created.status).toBe(201);
    const lease = created.body as { id: string; token: string };
    const byToken = { authorization: `Bearer ${lease.token}` };

    await signalPostgres('SIGSTOP');
    try {
      const [create, show, stats, list] = await Promise.all([
        call('POST', '/v1/leases'),
        call('GET', `/v1/leases/${lease.id}`, byToken),
        call('GET', `/v1/leases/${lease.id}/stats`, byToken),
        call('GET', '/v1/leases', { authorization: `Bearer ${ADMIN_TOKEN}` }),
      ]);
      for (const answer of [create, show, stats, list]) {
        expect(answer.status).toBe(503);
        expect(answer.body).toMatchObject({ code: 'PGLEASE_NOT_READY' });
        expect(answer.retryAfter).not.toBeNull();
        // at most a few timeouts in a row (the stats take a connection, then ask twice)
        expect(answer.seconds).toBeLessThan(15);
      }
      expect(create.body.message).toMatch(/did not answer in time|not reachable/);
    } finally {
      await signalPostgres('SIGCONT');
    }

    // the connections that timed out were closed: the pool works with fresh ones
    await expect.poll(async () => (await call('POST', '/v1/leases')).status, { timeout: 15_000, interval: 200 }).toBe(201);
    const shown = await call('GET', `/v1/leases/${lease.id}`, byToken);
    expect(shown).toMatchObject({ status: 200, body: { id: lease.id, state: 'active' } });
  }, 60_000);
});
