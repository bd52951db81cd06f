/**
 * bench:leases — what a lease costs over HTTP against the raw SQL underneath it, in one run.
 *
 * Starts pglease as its own process (embedded Postgres in a temporary directory), then:
 *   1. raw:  pglease.provision + pglease.release called directly over one connection (verifiers
 *            precomputed, so this is Postgres's share alone);
 *   2. HTTP sequential: POST /v1/leases then DELETE, one at a time;
 *   3. HTTP with concurrency 8.
 * Prints p50/p99 latency of create and release and leases/s, and the ratios the issue sets goals on
 * (HTTP create p50 within 2x of raw; at least 300 leases/s with concurrency).
 * Then both kinds of lease side by side (issue 14): create-to-first-query (POST, connect with the
 * URL, SELECT 1) from the warm pool (one at a time, with a pause that lets the pool refill) and
 * sustained at concurrency 8 (each lease released right after its query), for schema and database
 * leases; goal: the database kind from the pool within 1.5x of the schema kind. Last, fork of a
 * 20-table, 1,000-row lease of each kind (a schema lease cannot be forked: its 409 is printed), and
 * of a database lease as its snapshot left it (the fork takes the snapshot's prepared copy).
 *
 * With --pg15 pglease runs against a throwaway cluster of the machine's own Postgres (`pg_config
 * --bindir`: Debian's postgresql-15 here; bench/support/throwaway-cluster.ts) through DATABASE_URL,
 * as against an external server, instead of the embedded one (issue 14's goal: schema kind ≥ 300
 * creates/s at concurrency 8 against an external Postgres 15). --only-schema skips the kinds table.
 *
 *   npm run bench:leases [-- --count 400] [-- --pg15] [-- --only-schema]
 */
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { cpus } from 'node:os';
import pg from 'pg';
import { hashToken, scramVerifier } from '../src/leases/credentials.js';
import { startBenchPglease } from './support/pglease-process.js';
import { cpuMicros, postmasterOf, serverCpuMicros } from './support/process-cpu.js';
import { TWENTY_TABLES_SQL } from './support/twenty-tables.js';
import { startThrowawayCluster, type ThrowawayCluster } from './support/throwaway-cluster.js';

const count = Number(process.argv[process.argv.indexOf('--count') + 1]) || 400;
const external = process.argv.includes('--pg15');
const onlySchema = process.argv.includes('--only-schema');
const ADMIN = 'bench-admin-' + randomBytes(8).toString('hex');
// passed on to the service (the environment is inherited): `PGLEASE_SCRAM_ITERATIONS=1024 npm run bench:leases`
const scramIterations = Number(process.env.PGLEASE_SCRAM_ITERATIONS || 4096);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Figures {
  createP50: number;
  createP99: number;
  releaseP50: number;
  releaseP99: number;
  /** leases created per second */
  perSecond: number;
  /** leases released per second */
  releasedPerSecond: number;
}

function summarise(creates: number[], releases: number[], createWallMs: number, releaseWallMs: number): Figures {
  creates.sort((a, b) => a - b);
  releases.sort((a, b) => a - b);
  return {
    createP50: percentile(creates, 50),
    createP99: percentile(creates, 99),
    releaseP50: percentile(releases, 50),
    releaseP99: percentile(releases, 99),
    perSecond: (creates.length / createWallMs) * 1000,
    releasedPerSecond: (releases.length / releaseWallMs) * 1000,
  };
}

const agent = new Agent({ keepAlive: true, maxSockets: 16 });

function http(method: string, url: string, token?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The processes whose CPU time a run counts: the Postgres server (its postmaster) and pglease. */
interface CpuWatch {
  postmaster: number;
  pglease: number;
}

/** CPU time per create (ms) of the Postgres server, of pglease and of this client, over a run's creates. */
interface CreateCpu {
  postgres: number;
  pglease: number;
  client: number;
}

/** Creates `total` leases with `concurrency` requests in flight, then releases them the same way. */
async function httpRun(baseUrl: string, total: number, concurrency: number, watch?: CpuWatch): Promise<Figures & { cpu?: CreateCpu }> {
  const creates: number[] = [];
  const releases: number[] = [];
  const leases: { id: string; token: string }[] = [];
  const inParallel = async (work: (i: number) => Promise<void>) => {
    let next = 0;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < total) await work(next++);
    }));
  };
  const before = watch && { postgres: await serverCpuMicros(watch.postmaster), pglease: await cpuMicros(watch.pglease), client: process.cpuUsage() };
  const started = performance.now();
  await inParallel(async () => {
    const t = performance.now();
    const created = await http('POST', `${baseUrl}/v1/leases`, ADMIN);
    creates.push(performance.now() - t);
    if (created.status !== 201) throw new Error(`create: ${created.status} ${created.body}`);
    leases.push(JSON.parse(created.body) as { id: string; token: string });
  });
  const createWall = performance.now() - started;
  const cpu = before && {
    postgres: ((await serverCpuMicros(watch.postmaster)) - before.postgres) / 1000 / total,
    pglease: ((await cpuMicros(watch.pglease)) - before.pglease) / 1000 / total,
    client: (({ user, system }) => (user + system) / 1000 / total)(process.cpuUsage(before.client)),
  };
  await inParallel(async (i) => {
    const lease = leases[i]!;
    const t = performance.now();
    const released = await http('DELETE', `${baseUrl}/v1/leases/${lease.id}`, lease.token);
    releases.push(performance.now() - t);
    if (released.status !== 204) throw new Error(`release: ${released.status} ${released.body}`);
  });
  return { ...summarise(creates, releases, createWall, performance.now() - started - createWall), cpu };
}

async function rawRun(databaseUrl: string, total: number): Promise<Figures> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const hostId = (await client.query('SELECT id FROM pglease.hosts LIMIT 1')).rows[0].id;
  // the same verifiers the service makes: the login role's at PGLEASE_SCRAM_ITERATIONS, the authenticator's at 1
  const loginVerifier = await scramVerifier(randomBytes(32).toString('base64url'), scramIterations);
  const authVerifier = await scramVerifier(randomBytes(32).toString('base64url'), 1);
  const creates: number[] = [];
  const ids: string[] = [];
  let started = performance.now();
  for (let i = 0; i < total; i++) {
    const t = performance.now();
    const { rows } = await client.query({
      name: 'provision',
      text: `SELECT id FROM pglease.provision($1, $2, $3, $4, interval '30 minutes', NULL, NULL, $5, 20, '60s', '60s')`,
      values: ['lease_' + randomBytes(8).toString('hex'), loginVerifier, authVerifier, hashToken(randomBytes(8).toString('hex')), hostId],
    });
    creates.push(performance.now() - t);
    ids.push(rows[0].id);
  }
  const createWall = performance.now() - started;
  const releases: number[] = [];
  started = performance.now();
  for (const id of ids) {
    const t = performance.now();
    await client.query({ name: 'release', text: `SELECT pglease.release($1)`, values: [id] });
    releases.push(performance.now() - t);
  }
  const figures = summarise(creates, releases, createWall, performance.now() - started);
  await client.end();
  return figures;
}

interface FirstQueryFigures {
  p50: number;
  p99: number;
  perSecond: number;
}

/**
 * Create-to-first-query of `total` leases of `kind`, `concurrency` at a time: POST /v1/leases, a
 * connection with its URL, SELECT 1 (timed together); then its release (not timed). `pauseMs`
 * between one lease and the next of a worker lets the warm pool refill (its refills wait for 150 ms
 * without creates, then take a create's time).
 */
async function firstQueryRun(baseUrl: string, kind: 'schema' | 'database', total: number, concurrency: number, pauseMs: number): Promise<FirstQueryFigures> {
  const times: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) {
      next++;
      const t = performance.now();
      const created = await httpJson('POST', `${baseUrl}/v1/leases`, ADMIN, { kind });
      if (created.status !== 201) throw new Error(`create: ${created.status} ${created.body}`);
      const lease = JSON.parse(created.body) as { id: string; token: string; url: string };
      const client = new pg.Client({ connectionString: lease.url });
      await client.connect();
      await client.query('SELECT 1');
      times.push(performance.now() - t);
      await client.end();
      const released = await http('DELETE', `${baseUrl}/v1/leases/${lease.id}`, lease.token);
      if (released.status !== 204) throw new Error(`release: ${released.status} ${released.body}`);
      if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  }));
  const wall = performance.now() - started - (pauseMs * total) / concurrency;
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p99: percentile(times, 99), perSecond: (times.length / wall) * 1000 };
}

/**
 * Fork of a lease of `kind` holding TWENTY_TABLES_SQL (POST /v1/leases/:id/fork, then a first query
 * on the fork, timed together; its release not), `rounds` times; the error code instead when the
 * kind cannot be forked (a schema lease: 409 PGLEASE_FORK_NEEDS_DATABASE).
 */
async function forkRun(baseUrl: string, kind: 'schema' | 'database', rounds: number, asOfSnapshot = false): Promise<{ p50: number; p99: number } | string> {
  const created = await httpJson('POST', `${baseUrl}/v1/leases`, ADMIN, { kind, ttl: 600 });
  if (created.status !== 201) throw new Error(`create: ${created.status} ${created.body}`);
  const source = JSON.parse(created.body) as { id: string; url: string };
  const query = async (url: string, sql: string) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  try {
    await query(source.url, TWENTY_TABLES_SQL);
    // as a suite that seeds once and forks per worker: the forks take the snapshot's prepared copy
    if (asOfSnapshot) await httpJson('POST', `${baseUrl}/v1/leases/${source.id}/snapshots`, ADMIN, { name: 'seeded' });
    const times: number[] = [];
    for (let round = 0; round < rounds; round++) {
      // the next copy is made in the background after each fork (a CREATE DATABASE): not timed
      if (asOfSnapshot) await new Promise((resolve) => setTimeout(resolve, 1_500));
      const t = performance.now();
      const forked = await httpJson('POST', `${baseUrl}/v1/leases/${source.id}/fork`, ADMIN, {});
      if (forked.status !== 201) return `${forked.status} ${(JSON.parse(forked.body) as { code?: string }).code ?? ''}`;
      const fork = JSON.parse(forked.body) as { id: string; url: string; copied_from_snapshot: string | null };
      await query(fork.url, 'SELECT count(*) FROM t19');
      times.push(performance.now() - t);
      if (asOfSnapshot !== (fork.copied_from_snapshot !== null)) return `a fork ${asOfSnapshot ? 'copied the live database' : 'took a snapshot\'s copy'}`;
      await http('DELETE', `${baseUrl}/v1/leases/${fork.id}`, ADMIN);
    }
    times.sort((a, b) => a - b);
    return { p50: percentile(times, 50), p99: percentile(times, 99) };
  } finally {
    await http('DELETE', `${baseUrl}/v1/leases/${source.id}`, ADMIN);
  }
}

function httpJson(method: string, url: string, token: string, body: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = request(url, { method, agent, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

function row(label: string, f: Figures): string {
  const ms = (n: number) => n.toFixed(2).padStart(7);
  return `${label.padEnd(22)} ${ms(f.createP50)} ${ms(f.createP99)} ${ms(f.releaseP50)} ${ms(f.releaseP99)} ${f.perSecond.toFixed(0).padStart(9)} ${f.releasedPerSecond.toFixed(0).padStart(10)}`;
}

async function main(): Promise<void> {
  const cluster: ThrowawayCluster | undefined = external ? await startThrowawayCluster() : undefined;
  const pglease = await startBenchPglease({
    env: {
      PGLEASE_ADMIN_TOKEN: ADMIN,
      // the benchmark is one client making thousands of leases: lift the per-client limits
      PGLEASE_RATE_LIMIT: '1000000',
      PGLEASE_MAX_ACTIVE: '1000000',
      ...(cluster ? { DATABASE_URL: cluster.url('postgres') } : {}),
    },
  }).catch(async (error: unknown) => {
    await cluster?.stop();
    throw error;
  });
  try {
    const baseUrl = pglease.baseUrl;
    const databaseUrl = cluster ? cluster.url('pglease') : await pglease.superuserUrl();
    if (cluster) console.log(`against a throwaway cluster of ${cluster.version} (DATABASE_URL), not the embedded server`);

    // warm both paths (connections, prepared statements, JIT) before measuring
    await rawRun(databaseUrl, 20);
    await httpRun(baseUrl, 20, 1);

    const raw = await rawRun(databaseUrl, count);
    const sequential = await httpRun(baseUrl, count, 1);
    const watch = await (async () => {
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      try {
        const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        return { postmaster: await postmasterOf(pid), pglease: pglease.child.pid! };
      } finally {
        await client.end();
      }
    })();
    const concurrent = await httpRun(baseUrl, count, 8, watch);

    console.log(`bench:leases — ${count} leases per run, SCRAM iterations ${scramIterations}, times in ms\n`);
    console.log(`${'run'.padEnd(22)} ${'create'.padStart(7)} ${''.padStart(7)} ${'release'.padStart(7)} ${''.padStart(7)} ${'created/s'.padStart(9)} ${'released/s'.padStart(10)}`);
    console.log(`${''.padEnd(22)} ${'p50'.padStart(7)} ${'p99'.padStart(7)} ${'p50'.padStart(7)} ${'p99'.padStart(7)}`);
    console.log(row('raw SQL, 1 connection', raw));
    console.log(row('HTTP, sequential', sequential));
    console.log(row('HTTP, concurrency 8', concurrent));
    console.log('');
    const ratio = sequential.createP50 / raw.createP50;
    console.log(`HTTP create p50 / raw create p50: ${ratio.toFixed(2)}x (goal ≤ 2x)  ${ratio <= 2 ? 'met' : 'NOT met'}`);
    console.log(`leases/s with concurrency 8: ${concurrent.perSecond.toFixed(0)} (goal ≥ 300)  ${concurrent.perSecond >= 300 ? 'met' : 'NOT met'}`);
    if (concurrent.cpu) {
      // what the machine's cores could make if these three had them to themselves: moves less with
      // other work on the machine than leases/s does
      const { postgres, pglease: service, client } = concurrent.cpu;
      const sum = postgres + service + client;
      console.log(
        `CPU per create with concurrency 8 (ms): Postgres ${postgres.toFixed(2)}, pglease ${service.toFixed(2)}, this client ${client.toFixed(2)}; ` +
          `together ${sum.toFixed(2)}, so ${cpus().length} cores to themselves: at most ${((cpus().length * 1000) / sum).toFixed(0)} leases/s`,
      );
    }

    if (onlySchema) return;
    // both kinds side by side: create-to-first-query, from the warm pool and sustained
    const kindsCount = Math.max(20, Math.min(count, 80));
    await firstQueryRun(baseUrl, 'database', 4, 1, 600); // starts the database pool
    const kinds = {
      schema: { pooled: await firstQueryRun(baseUrl, 'schema', kindsCount, 1, 400), sustained: await firstQueryRun(baseUrl, 'schema', kindsCount, 8, 0) },
      database: { pooled: await firstQueryRun(baseUrl, 'database', kindsCount, 1, 600), sustained: await firstQueryRun(baseUrl, 'database', kindsCount, 8, 0) },
    };
    console.log(`\ncreate to first query (POST, connect, SELECT 1), ${kindsCount} leases per run, ms\n`);
    console.log(`${'kind'.padEnd(10)} ${'warm pool p50'.padStart(14)} ${'p99'.padStart(7)} ${'concurrency 8 p50'.padStart(18)} ${'p99'.padStart(7)} ${'leases/s'.padStart(9)}`);
    for (const [kind, figures] of Object.entries(kinds)) {
      const ms = (n: number) => n.toFixed(1);
      console.log(`${kind.padEnd(10)} ${ms(figures.pooled.p50).padStart(14)} ${ms(figures.pooled.p99).padStart(7)} ${ms(figures.sustained.p50).padStart(18)} ${ms(figures.sustained.p99).padStart(7)} ${figures.sustained.perSecond.toFixed(0).padStart(9)}`);
    }
    const kindRatio = kinds.database.pooled.p50 / kinds.schema.pooled.p50;
    console.log(`\ndatabase / schema, from the warm pool (p50): ${kindRatio.toFixed(2)}x (goal ≤ 1.5x)  ${kindRatio <= 1.5 ? 'met' : 'NOT met'}`);
    console.log(`\nfork of a 20-table, 1,000-row lease, then a first query on it, 10 rounds, ms (bench:fork has more)\n`);
    for (const [label, kind, asOfSnapshot] of [['schema', 'schema', false], ['database', 'database', false], ['database, as of its snapshot', 'database', true]] as const) {
      const fork = await forkRun(baseUrl, kind, 10, asOfSnapshot);
      console.log(`${label.padEnd(29)} ${typeof fork === 'string' ? `refused: ${fork}` : `p50 ${fork.p50.toFixed(1)}  p99 ${fork.p99.toFixed(1)}  (goal < 100 ms: ${fork.p50 < 100 ? 'met' : 'NOT met'})`}`);
    }
  } finally {
    agent.destroy();
    await pglease.stop();
    await cluster?.stop();
  }
}

await main();
