/**
 * bench:metrics — what observing pglease costs (issue 17's goal: metrics ≤ 3% of REST throughput).
 *
 *   1. REST throughput (a primary-key read) in interleaved rounds, one run: a service as it is by
 *      default (A), the same service while /metrics is scraped every second (A + scrape), and a
 *      second service with PGLEASE_SERVER_TIMING=on (B) against a twin without it (C, started the
 *      same way). Each round runs a pair back to back (in alternating order) and gives one ratio;
 *      the median ratio is printed, and the ratio of the Node process's CPU per request (from
 *      /proc), which the machine's other load moves much less than throughput (on a shared
 *      2-core machine single runs of the same service varied 5x).
 *   2. One scrape of /metrics and one read of /v1/dashboard (the dashboard's poll), with the
 *      leases the service has at start, then with 3,000 live leases (made in bulk by a superuser
 *      as pglease.provision leaves them, as bench:observer does): median and p95 over 30 of each.
 *
 * Each service is its own process with its own embedded Postgres (bench/support/pglease-process.ts),
 * with its scheduler and warm pools off: their work (an observer run every second) would be
 * charged to whichever requests ran beside it, most to the slowest runs.
 *
 *   npm run bench:metrics [-- --duration 3 --connections 10 --rounds 6 --leases 3000 --scrape-only]
 *
 * --scrape-only skips part 1.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import autocannon from 'autocannon';
import pg from 'pg';
import { ServerTiming } from '../src/rest/response/server-timing.js';
import { startBenchPglease, type BenchPglease } from './support/pglease-process.js';

function option(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(process.argv[index + 1]) || fallback;
}

const DURATION = option('duration', 3);
const CONNECTIONS = option('connections', 10);
const ROUNDS = option('rounds', 6);
const LEASES = option('leases', 3000);
const SCRAPE_ONLY = process.argv.includes('--scrape-only');
const ROWS = 10_000;
const ADMIN = 'bench-admin-' + randomBytes(8).toString('hex');

interface Target {
  name: string;
  service: BenchPglease;
  restUrl: string;
  token: string;
}

async function prepare(name: string, service: BenchPglease): Promise<Target> {
  const response = await fetch(`${service.baseUrl}/v1/leases`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ttl: '1d' }),
  });
  if (response.status !== 201) throw new Error(`create lease: ${response.status} ${await response.text()}`);
  const lease = (await response.json()) as { url: string; token: string; rest_url: string };
  const sql = new pg.Client({ connectionString: lease.url });
  await sql.connect();
  await sql.query(`CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);
                   INSERT INTO notes SELECT g, md5(g::text) FROM generate_series(1, ${ROWS}) g;
                   ANALYZE notes;`);
  await sql.end();
  return { name, service, restUrl: lease.rest_url, token: lease.token };
}

/** CPU seconds a process has used so far (/proc: user + system, in clock ticks of 10 ms). */
async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Run {
  perSecond: number;
  /** CPU of the pglease process per request answered (µs), scrapes included when there were some. */
  cpuMicros: number;
}

async function load(target: Target): Promise<Run> {
  const pid = target.service.child.pid!;
  const cpuBefore = await cpuSeconds(pid);
  const url = new URL(target.restUrl);
  const result = await autocannon({
    url: url.origin,
    connections: CONNECTIONS,
    duration: DURATION,
    headers: { authorization: `Bearer ${target.token}` },
    requests: [{ setupRequest: (request) => ({ ...request, path: `${url.pathname}/notes?id=eq.${1 + Math.floor(Math.random() * ROWS)}` }) }],
  });
  if (result.errors + result.non2xx > 0) throw new Error(`${target.name}: ${result.errors} errors, ${result.non2xx} non-2xx answers`);
  const cpu = (await cpuSeconds(pid)) - cpuBefore;
  return { perSecond: result.requests.average, cpuMicros: (cpu * 1e6) / result.requests.total };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** Scrapes /metrics every second until stopped; returns how many scrapes were made. */
function scrapeEverySecond(service: BenchPglease): () => Promise<number> {
  let scrapes = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const response = await fetch(`${service.baseUrl}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } });
      await response.text();
      scrapes++;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();
  return async () => {
    stopped = true;
    await loop;
    return scrapes;
  };
}

interface RequestFigures {
  median: number;
  p95: number;
  bytes: number;
  /** CPU of the pglease process per request (ms); the Postgres backend's is not in it. */
  cpuMs: number;
}

async function timeRequests(service: BenchPglease, path: string, times: number): Promise<RequestFigures> {
  const url = `${service.baseUrl}${path}`;
  const durations: number[] = [];
  let bytes = 0;
  const cpuBefore = await cpuSeconds(service.child.pid!);
  for (let i = 0; i < times; i++) {
    const started = performance.now();
    const response = await fetch(url, { headers: { authorization: `Bearer ${ADMIN}` } });
    bytes = (await response.text()).length;
    if (response.status !== 200) throw new Error(`${url}: ${response.status}`);
    durations.push(performance.now() - started);
  }
  const cpuMs = (((await cpuSeconds(service.child.pid!)) - cpuBefore) * 1000) / times;
  durations.sort((a, b) => a - b);
  return { median: durations[Math.floor(times / 2)]!, p95: durations[Math.floor(times * 0.95)]!, bytes, cpuMs };
}

/** Live leases until there are `total`, made by a superuser as pglease.provision leaves them (bench/observer.ts). */
async function provisionUpTo(superuserUrl: string, total: number): Promise<void> {
  const superuser = new pg.Client({ connectionString: superuserUrl });
  await superuser.connect();
  try {
    const host = (await superuser.query<{ id: number }>('SELECT id FROM pglease.hosts ORDER BY id LIMIT 1')).rows[0]!.id;
    const existing = Number((await superuser.query<{ n: string }>(`SELECT count(*) AS n FROM pglease.leases WHERE state = 'active'`)).rows[0]!.n);
    for (let from = existing + 1; from <= total; from += 250) {
      const to = Math.min(total, from + 249);
      await superuser.query(`DO $$ DECLARE n text; v_id uuid; BEGIN
        FOR i IN ${from}..${to} LOOP
          n := 'lease_b1' || lpad(to_hex(i), 14, '0');
          EXECUTE format('CREATE ROLE %I LOGIN CONNECTION LIMIT 20', n);
          EXECUTE format('GRANT %I TO %I', pglease.lease_group_for(n), n);
          EXECUTE format('CREATE SCHEMA %I AUTHORIZATION %I', n, n);
          INSERT INTO pglease.leases (host_id, schema_name, role_name, anon_role, auth_role, token_hash, state, expires_at, client_ip)
          VALUES (${host}, n, n, n || '_anon', n || '_auth', sha256(n::bytea), 'active', now() + interval '1 day', ('10.0.' || (i % 200) || '.1')::inet)
          RETURNING id INTO v_id;
          INSERT INTO pglease.lease_events (lease_id, kind, client_ip, detail) VALUES (v_id, 'created', ('10.0.' || (i % 200) || '.1')::inet, '{}');
        END LOOP; END $$`);
    }
  } finally {
    await superuser.end();
  }
}

const ratio = (a: number, b: number) => `${(a / b).toFixed(3)}x`;

const TIMING_ITERATIONS = 200_000;

/**
 * CPU µs per request of what PGLEASE_SERVER_TIMING adds (the object, six marks, the header's
 * text), measured here with process.cpuUsage: a figure the machine's other load hardly moves, to
 * set beside the CPU per request above.
 */
function timingMicros(): number {
  let sink = 0;
  for (let round = 0; round < 2; round++) {
    const started = process.cpuUsage();
    for (let i = 0; i < TIMING_ITERATIONS; i++) {
      const timing = new ServerTiming();
      timing.mark('lease');
      timing.mark('schema');
      timing.mark('plan', 'cached');
      timing.mark('transaction');
      timing.mark('response');
      sink += timing.header().length;
    }
    const used = process.cpuUsage(started);
    if (round === 1) {
      // the headers' lengths are used, so that no engine can drop the loop
      if (sink < 0) console.log(sink);
      return (used.user + used.system) / TIMING_ITERATIONS;
    }
  }
  return NaN;
}

async function main(): Promise<void> {
  const env = { PGLEASE_ADMIN_TOKEN: ADMIN, PGLEASE_MAX_LEASES: String(LEASES + 100), PGLEASE_SCHEDULER: 'off', PGLEASE_LEASE_POOL: '0', PGLEASE_TEMPLATE_POOL: '0' };
  const [a, b, c] = await Promise.all([
    startBenchPglease({ env }),
    startBenchPglease({ env: { ...env, PGLEASE_SERVER_TIMING: 'on' } }),
    startBenchPglease({ env }),
  ]);
  try {
    const [plain, timed, twin] = await Promise.all([prepare('A', a), prepare('B timing on', b), prepare('C timing off', c)]);
    // warm up: schema caches, compiled reads, JIT
    for (const target of [plain, timed, twin]) await autocannon({ url: target.restUrl + '/notes?id=eq.1', connections: CONNECTIONS, duration: 3, headers: { authorization: `Bearer ${target.token}` } });
    const loadBefore = loadavg()[0]!;

    const runs: Record<'plain' | 'scraped' | 'timed' | 'twin', Run[]> = { plain: [], scraped: [], timed: [], twin: [] };
    if (!SCRAPE_ONLY) {
      let scrapes = 0;
      const scraped = async () => {
        const stop = scrapeEverySecond(a);
        const run = await load(plain);
        scrapes += await stop();
        return run;
      };
      for (let round = 0; round < ROUNDS; round++) {
        // alternating order, so that a drift in the machine's load favours neither side
        if (round % 2 === 0) {
          runs.plain.push(await load(plain));
          runs.scraped.push(await scraped());
          runs.twin.push(await load(twin));
          runs.timed.push(await load(timed));
        } else {
          runs.scraped.push(await scraped());
          runs.plain.push(await load(plain));
          runs.timed.push(await load(timed));
          runs.twin.push(await load(twin));
        }
      }
      const pairRatios = (with_: Run[], without: Run[], figure: (run: Run) => number) => with_.map((run, index) => figure(run) / figure(without[index]!));
      const show = (label: string, list: Run[]) =>
        console.log(`  ${label.padEnd(26)} ${median(list.map((run) => run.perSecond)).toFixed(0).padStart(7)} req/s  ${median(list.map((run) => run.cpuMicros)).toFixed(0).padStart(5)} µs CPU/request   runs ${list.map((run) => run.perSecond.toFixed(0)).join(', ')}`);
      console.log(`bench:metrics — ${CONNECTIONS} connections, ${DURATION} s per run, ${ROUNDS} interleaved rounds (medians); GET /notes?id=eq.N\n`);
      show('A', runs.plain);
      show('A, /metrics every 1 s', runs.scraped);
      show('B, Server-Timing on', runs.timed);
      show('C, Server-Timing off', runs.twin);
      console.log(`  (${scrapes} scrapes)\n`);
      console.log(`                              throughput (median of round ratios)   CPU per request (median of round ratios)`);
      console.log(`  scraped / not scraped       ${median(pairRatios(runs.scraped, runs.plain, (run) => run.perSecond)).toFixed(3)}x                                ${median(pairRatios(runs.scraped, runs.plain, (run) => run.cpuMicros)).toFixed(3)}x`);
      console.log(`  Server-Timing on / off      ${median(pairRatios(runs.timed, runs.twin, (run) => run.perSecond)).toFixed(3)}x                                ${median(pairRatios(runs.timed, runs.twin, (run) => run.cpuMicros)).toFixed(3)}x`);
      console.log(`  (machine load average ${loadBefore.toFixed(1)} before the rounds, ${loadavg()[0]!.toFixed(1)} after, on ${cpus().length} cores)`);
    }

    const before = { metrics: await timeRequests(a, '/metrics', 30), dashboard: await timeRequests(a, '/v1/dashboard', 30) };
    const made = performance.now();
    await provisionUpTo(await a.superuserUrl(), LEASES);
    console.log(`\n  ${LEASES} leases made in bulk in ${((performance.now() - made) / 1000).toFixed(1)} s`);
    const after = { metrics: await timeRequests(a, '/metrics', 30), dashboard: await timeRequests(a, '/v1/dashboard', 30) };
    console.log(`\n  one request: median / p95 wall (ms), pglease CPU (ms), size    ~1 lease                          ${LEASES} leases                     ratio of medians`);
    for (const name of ['metrics', 'dashboard'] as const) {
      const path = name === 'metrics' ? 'GET /metrics     ' : 'GET /v1/dashboard';
      const describe = (figures: RequestFigures) => `${figures.median.toFixed(1).padStart(6)} / ${figures.p95.toFixed(1).padStart(6)}  ${figures.cpuMs.toFixed(1).padStart(5)}  ${(figures.bytes / 1000).toFixed(1).padStart(5)} kB`;
      console.log(`  ${path}                                           ${describe(before[name])}    ${describe(after[name])}    ${ratio(after[name].median, before[name].median)}`);
    }
    console.log(`\n  a scrape every second with ${LEASES} leases: ${(after.metrics.cpuMs / 10).toFixed(2)}% of one core in pglease (CPU per scrape / 1 s)`);
    console.log(`  Server-Timing's own work per request (in this process, ${TIMING_ITERATIONS.toLocaleString('en-US')} iterations): ${timingMicros().toFixed(2)} µs`);
  } finally {
    await Promise.all([a.stop(), b.stop(), c.stop()]);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
