/**
 * Three pglease processes on one lease database, each with its own scheduler: leases created on
 * one are renewed and released through another while all three reap. Nothing errors, no lease is
 * dropped twice or reaped twice, every scheduled run happens once, and the host ends consistent.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { inject } from 'vitest';
import { withDatabase } from '../src/db/host.js';
import { leaseInconsistencies } from './support/lease-consistency.js';
import { startServiceProcess, stopServiceProcess, type ServiceProcess } from './support/service-process.js';

const database = `pglease_test_${randomBytes(4).toString('hex')}`;
const env = {
  PGLEASE_REAPER_CRON: '* * * * * *',
  PGLEASE_CLEANUP_CRON: '*/2 * * * * *',
  PGLEASE_RATE_LIMIT: '0',
  PGLEASE_MAX_ACTIVE: '0',
  PGLEASE_CLIENT_CONNECTIONS: '0',
};
let processes: ServiceProcess[] = [];
let client: pg.Client | undefined;

afterAll(async () => {
  await client?.end();
  await Promise.all(processes.map((service) => stopServiceProcess(service, 2000)));
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('three processes on one database', () => {
  it('create, renew, release and reap concurrently without errors or double drops', async () => {
    // they start together: migrations and job declarations race too
    processes = await Promise.all([1, 2, 3].map(() => startServiceProcess(database, env)));
    const urls = processes.map((service) => service.baseUrl);
    const unexpected: string[] = [];
    let created = 0;
    const json = { 'content-type': 'application/json' };

    const worker = async (index: number) => {
      // 4 s of traffic, and at least 5 creates per worker however slow the machine is (a loaded
      // CI machine made 23 in 4 s), so that the races below happen often enough to matter
      const stopAt = Date.now() + 4000;
      for (let i = 0; Date.now() < stopAt || i < 5; i++) {
        const home = urls[(index + i) % 3]!;
        const other = urls[(index + i + 1) % 3]!;
        // short TTLs, so the reapers race the releases; but a lease released twice at once must
        // still be live then (on a busy machine a 1 s lease may be gone by the time it is released)
        const ttl = i % 4 === 0 ? 30 : 1 + (i % 2);
        const response = await fetch(`${home}/v1/leases`, { method: 'POST', headers: json, body: JSON.stringify({ ttl }) });
        if (response.status !== 201) {
          unexpected.push(`create: ${response.status} ${await response.text()}`);
          continue;
        }
        created++;
        const lease = (await response.json()) as { id: string; token: string };
        const auth = { authorization: `Bearer ${lease.token}` };
        if (i % 4 === 0) {
          // release through two processes at once: exactly one wins
          const statuses = await Promise.all(
            [home, other].map((url) => fetch(`${url}/v1/leases/${lease.id}`, { method: 'DELETE', headers: auth }).then((r) => r.status)),
          );
          if (statuses.filter((status) => status === 204).length !== 1 || statuses.some((status) => status !== 204 && status !== 404)) {
            unexpected.push(`double release: ${statuses.join(', ')}`);
          }
        } else if (i % 4 === 1) {
          const renewed = await fetch(`${other}/v1/leases/${lease.id}/renew`, { method: 'POST', headers: { ...auth, ...json }, body: JSON.stringify({ ttl: 1 }) });
          if (renewed.status !== 200 && renewed.status !== 409) unexpected.push(`renew: ${renewed.status}`);
        } else if (i % 4 === 2) {
          // release at about the moment the reapers take it
          await sleep(900 + (i % 5) * 50);
          const released = await fetch(`${other}/v1/leases/${lease.id}`, { method: 'DELETE', headers: auth });
          if (released.status !== 204 && released.status !== 404) unexpected.push(`late release: ${released.status}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 9 }, (_, index) => worker(index)));
    expect(unexpected).toEqual([]);
    expect(created).toBeGreaterThan(30);

    client = new pg.Client({ connectionString: withDatabase(inject('serverUrl'), database) });
    await client.connect();
    const deadline = Date.now() + 15_000;
    while ((await client.query(`SELECT 1 FROM pglease.leases WHERE state = 'active'`)).rowCount! > 0) {
      if (Date.now() > deadline) throw new Error('leases were left unreaped');
      await sleep(200);
    }
    expect(await leaseInconsistencies(client)).toEqual([]);
    const { rows: leaseErrors } = await client.query(`SELECT id, last_error FROM pglease.leases WHERE last_error IS NOT NULL`);
    expect(leaseErrors).toEqual([]);

    // each claimed run happened once, and none failed
    const { rows: runs } = await client.query<{ job_name: string; runs: number; distinct_slots: number; workers: number; failed: number }>(
      `SELECT job_name, count(*)::int AS runs, count(DISTINCT scheduled_for)::int AS distinct_slots,
              count(DISTINCT worker)::int AS workers, count(*) FILTER (WHERE outcome = 'failed')::int AS failed
         FROM pglease.job_runs GROUP BY job_name ORDER BY job_name`,
    );
    for (const run of runs) {
      expect(run.distinct_slots, run.job_name).toBe(run.runs);
      expect(run.failed, run.job_name).toBe(0);
    }
    const reaper = runs.find((run) => run.job_name === 'reap-expired')!;
    expect(reaper.runs).toBeGreaterThanOrEqual(4);

    for (const service of processes) {
      expect(service.log()).not.toMatch(/job .* failed|cannot read jobs/);
      expect(await stopServiceProcess(service)).toBe(0);
    }
  }, 90_000); // three processes start, 4 s+ of traffic, every lease reaped: ~14 s alone, far more on a loaded machine
});
