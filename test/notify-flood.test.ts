/**
 * A lease floods the service's notification channels (pglease_lease_change, pglease_rest_ddl,
 * pglease_jobs) with hundreds of thousands of notifications: random lease ids and schema names,
 * case variants of a cached lease's id (which Postgres does not fold into one), and that lease's
 * exact id and schema sent in thousands of separate transactions. Meanwhile the service (a real
 * child process) must keep answering /healthz and creates, and its memory must stay bounded:
 * before notifications were validated and coalesced, each one cost a lease lookup on the service
 * pool, and /healthz went unanswered for minutes.
 */
import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN } from './support/service.js';
import { startServiceProcess, stopServiceProcess, type ServiceProcess } from './support/service-process.js';
import { sleep, waitFor } from './support/wait.js';

const database = `pglease_test_${randomBytes(4).toString('hex')}`;
let service: ServiceProcess;

interface Lease {
  id: string;
  url: string;
  token: string;
  schema: string;
  rest_url: string;
}

/**
 * Bounds that hold on a loaded 2-core machine (the test prints what it measured). At load 17 the
 * fix measured /healthz p50 8 ms, p99 410 ms, max 1.3 s (the process waiting for a core, not its
 * event loop: in-process, 600,000 notifications delayed the loop by 130 ms at most); before it,
 * p99 2.3 s with creates failing and 1.1 GB more memory. A run beside a second whole suite (load 8)
 * saw p99 1.15 s from 62 calls, so p99 is the slowest call or two: the creates and the memory tell the
 * fix from the old code, /healthz that the process keeps answering at all.
 */
const RSS_GROWTH_MAX_MB = 150;

/**
 * How many times slower this machine is than the one the time bounds were set on, where PBKDF2-SHA256
 * of 4,096 iterations took 0.85 ms (session 13; on session 14's machine 2.1 ms on average, 1.2 ms at
 * the fastest, and beside a second suite p99 2.3 s and a 12.9 s create were seen there with every
 * other bound held).
 * Measured in this process once the service has started, with the machine's load; never below 1. The
 * memory bound is not scaled.
 */
function slowdown(): number {
  // the fastest of 30: the machine's speed when this process had a core, not how busy it is now
  // (right after the service's start, the mean of 20 was 5x the fastest)
  let fastest = Infinity;
  for (let i = 0; i < 30; i++) {
    const started = performance.now();
    pbkdf2Sync('calibration', 'salt', 4096, 32, 'sha256');
    fastest = Math.min(fastest, performance.now() - started);
  }
  const perCore = Math.max(1, fastest / 0.85);
  // ...and how busy it is: the fastest of 30 finds a quiet moment even beside a second suite, where
  // this process gets a share of a core (slowdown 1.4 there, against 2.3-2.5 in other such runs, and
  // a create under the flood took 15.2 s against a bound of 13.9 s). The runnable processes per core
  // over the last minute, 1 to 3.
  const busy = Math.min(3, Math.max(1, loadavg()[0]! / availableParallelism()));
  return perCore * busy;
}
/** Measured once the service has started (the bounds below are set then). */
let SLOWDOWN = 1;
let HEALTHZ_P99_MS = 2_000;
let HEALTHZ_MAX_MS = 4_000;
let CREATE_MAX_MS = 10_000;
/** Beyond this, a call counts as unanswered (it would fail the bounds anyway). */
let CALL_TIMEOUT_MS = 5_000;

async function createLease(): Promise<Lease> {
  const response = await fetch(`${service.baseUrl}/v1/leases`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
    body: '{}',
    signal: AbortSignal.timeout(CREATE_MAX_MS * 3),
  });
  if (response.status !== 201) throw new Error(`create: ${response.status} ${await response.text()}`);
  return (await response.json()) as Lease;
}

function rssMb(): number {
  const status = readFileSync(`/proc/${service.child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

async function timed(call: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  try {
    await call();
  } catch {
    return CALL_TIMEOUT_MS;
  }
  return performance.now() - start;
}

const percentile = (values: number[], p: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor((values.length * p) / 100))]!;

beforeAll(async () => {
  // no warm pool: its fills would compete with the creates measured here
  service = await startServiceProcess(database, { PGLEASE_LEASE_POOL: '0', PGLEASE_RATE_LIMIT: '0' });
  SLOWDOWN = slowdown();
  [HEALTHZ_P99_MS, HEALTHZ_MAX_MS, CREATE_MAX_MS, CALL_TIMEOUT_MS] = [2_000, 4_000, 10_000, 5_000].map((ms) => Math.round(ms * SLOWDOWN));
}, 60_000);

afterAll(async () => {
  if (service) await stopServiceProcess(service, 2_000);
});

describe('a notification flood from a lease', () => {
  it('leaves /healthz, creates and memory within bounds, and a cached lease still follows its changes', async () => {
    const attacker = await createLease();
    const victim = await createLease();
    const victimSql = new pg.Client({ connectionString: victim.url });
    await victimSql.connect();
    await victimSql.query("create table notes (id int primary key, body text); insert into notes values (1, 'kept')");
    await victimSql.end();
    const readVictim = () => fetch(`${victim.rest_url}/notes`, { headers: { authorization: `Bearer ${victim.token}` }, signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
    // the process now caches the victim's lookup, connection pool and schema
    expect((await readVictim()).status).toBe(200);

    const flooders = await Promise.all([0, 1, 2].map(async () => {
      const client = new pg.Client({ connectionString: attacker.url });
      await client.connect();
      await client.query('set synchronous_commit = off');
      return client;
    }));
    const rssBefore = rssMb();
    const floods = [
      // 3 × 200,000 random lease ids (the attack), then as many random schema names and job names
      async () => {
        for (let round = 0; round < 3; round++) {
          await flooders[0]!.query(`select count(pg_notify('pglease_lease_change', gen_random_uuid()::text)) from generate_series(1, 200000)`);
        }
        await flooders[0]!.query(`select count(pg_notify('pglease_rest_ddl', 'lease_' || substr(md5(random()::text), 1, 16))) from generate_series(1, 200000)`);
      },
      // the victim's id in 100,000 case variants (distinct payloads: Postgres folds none), and garbage on the jobs channel
      async () => {
        await flooders[1]!.query(
          `select count(pg_notify('pglease_lease_change',
                    (select string_agg(case when (g >> (i % 16)) & 1 = 1 then upper(substr($1, i, 1)) else substr($1, i, 1) end, '' order by i)
                       from generate_series(1, 36) i)))
             from generate_series(1, 100000) g`,
          [victim.id],
        );
        await flooders[1]!.query(`select count(pg_notify('pglease_jobs', case when g % 2 = 0 then 'help:' else '' end || md5(g::text))) from generate_series(1, 200000) g`);
      },
      // the victim's exact id and schema, and real job names, in 10,000 transactions of their own
      () =>
        flooders[2]!.query(`do $$ begin
          for i in 1..10000 loop
            perform pg_notify('pglease_lease_change', '${victim.id}');
            perform pg_notify('pglease_rest_ddl', '${victim.schema}');
            perform pg_notify('pglease_jobs', 'help:reaper');
            perform pg_notify('pglease_jobs', 'reaper');
            commit;
          end loop;
        end $$`),
    ];
    const started = performance.now();
    let flooding = true;
    const sent = Promise.all(floods.map((flood) => flood())).finally(() => (flooding = false));
    sent.catch(() => undefined);

    const healthz: number[] = [];
    const creates: number[] = [];
    let rssMax = rssBefore;
    const probeHealth = async () => {
      // during the flood and for 3 s after the last notification was sent (their delivery lags)
      let tailUntil = Infinity;
      while (performance.now() < tailUntil) {
        if (!flooding && tailUntil === Infinity) tailUntil = performance.now() + 3_000;
        healthz.push(await timed(() => fetch(`${service.baseUrl}/healthz`, { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) }).then((response) => response.text())));
        rssMax = Math.max(rssMax, rssMb());
        await sleep(20);
      }
    };
    const probeCreates = async () => {
      while (flooding) creates.push(await timed(() => createLease()));
    };
    await Promise.all([probeHealth(), probeCreates(), sent]);
    const floodMs = performance.now() - started;
    await Promise.all(flooders.map((client) => client.end()));

    const figures = {
      floodSeconds: Math.round(floodMs / 100) / 10,
      healthzCalls: healthz.length,
      healthzP50Ms: Math.round(percentile(healthz, 50)),
      healthzP99Ms: Math.round(percentile(healthz, 99)),
      healthzMaxMs: Math.round(Math.max(...healthz)),
      creates: creates.length,
      createMaxMs: Math.round(Math.max(0, ...creates)),
      rssBeforeMb: Math.round(rssBefore),
      rssGrowthMb: Math.round(rssMax - rssBefore),
    };
    console.log('notification flood:', JSON.stringify({ ...figures, slowdown: Math.round(SLOWDOWN * 10) / 10 }));
    // p99 of a dozen calls is the slowest one, which the max bounds already (a run beside a second
    // suite had 12 calls at p50 858 ms, the slowest 3.2 s against a p99 bound of 2.9 s): judged from 50
    if (figures.healthzCalls >= 50) expect(figures.healthzP99Ms).toBeLessThan(HEALTHZ_P99_MS);
    expect(figures.healthzMaxMs).toBeLessThan(HEALTHZ_MAX_MS);
    expect(creates.length).toBeGreaterThan(0);
    expect(figures.createMaxMs).toBeLessThan(CREATE_MAX_MS);
    expect(figures.rssGrowthMb).toBeLessThan(RSS_GROWTH_MAX_MB);

    // the victim still answers, and its release still reaches this process (the first read after
    // the flood waited over 5 s beside a second suite on a slower 2-core machine: retried for 30 s)
    await waitFor('the victim to answer after the flood', async () => ((await readVictim().catch(() => undefined))?.status === 200 ? true : undefined), 30_000);
    const released = await fetch(`${service.baseUrl}/v1/leases/${victim.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${victim.token}` } });
    expect(released.status).toBeLessThan(300);
    await waitFor('the released lease to stop answering', async () => ((await readVictim()).status === 404 ? true : undefined), 10_000);
    // the flood takes 11-16 s; a create may take up to 3x CREATE_MAX_MS before it counts as failed
  }, 300_000);
});
