/**
 * bench:rest — pglease's REST API against the hand-written ceiling (bench/ceiling-server.ts) that
 * runs the same SQL on the same lease, in one run, interleaved:
 *
 *   pk      GET /films?id=eq.N                                      one row by primary key
 *   list    GET /films?select=id,title,year,rating&director_id=eq.N&limit=20     20 rows, filtered
 *   embed   GET /films?select=id,title,directors(id,name)&director_id=eq.N&limit=20   + a to-one embed
 *
 * Starts pglease as its own process (embedded Postgres in a temporary directory) and the ceiling as
 * another, drives both with autocannon (N random per request), and prints req/s, p50/p99 latency
 * and the ratio pglease/ceiling (goal ≥ 0.8x).
 *
 *   npm run bench:rest [-- --duration 5 --connections 10 --rounds 2 --only pk,list]
 *
 * BENCH_CPU_PROF=<dir> writes a V8 CPU profile of each server process into <dir>.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import autocannon from 'autocannon';
import pg from 'pg';
import { projectRoot } from '../src/paths.js';
import { buildApiRequest } from '../src/rest/request/api-request.js';
import { planRead } from '../src/rest/plan/read-plan.js';
import { readStatement } from '../src/rest/query/read-query.js';
import { loadSchemaCache } from '../src/rest/schema/load.js';
import { freePort } from '../test/support/free-port.js';
import { benchWrites } from './rest-writes.js';
import { startBenchPglease, waitFor } from './support/pglease-process.js';

function option(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(process.argv[index + 1]) || fallback;
}

const DURATION = option('duration', 5);
const CONNECTIONS = option('connections', 10);
const ROUNDS = option('rounds', 2);
const ADMIN = 'bench-admin-' + randomBytes(8).toString('hex');
const DIRECTORS = 500;
const PROFILE_FLAGS = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
const FILMS = 10_000;

interface Scenario {
  name: string;
  /** The REST path and query with `{n}` for the random value. */
  rest: string;
  /** Largest random value. */
  max: number;
}

const ALL_SCENARIOS: Scenario[] = [
  { name: 'pk', rest: '/films?id=eq.{n}', max: FILMS },
  { name: 'list', rest: '/films?select=id,title,year,rating&director_id=eq.{n}&limit=20', max: DIRECTORS },
  { name: 'embed', rest: '/films?select=id,title,directors(id,name)&director_id=eq.{n}&limit=20', max: DIRECTORS },
];
const only = process.argv.indexOf('--only') === -1 ? undefined : process.argv[process.argv.indexOf('--only') + 1]?.split(',');
const SCENARIOS = ALL_SCENARIOS.filter((scenario) => !only || only.includes(scenario.name));

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function post(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(JSON.stringify({ ttl: 3600 }));
  });
}

interface Figures {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  errors: number;
}

async function load(url: string, pathFor: () => string, headers: Record<string, string>): Promise<Figures> {
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: DURATION,
    headers,
    requests: [{ setupRequest: (req) => ({ ...req, path: pathFor() }) }],
  });
  return {
    requestsPerSecond: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.non2xx,
  };
}

function best(runs: Figures[]): Figures {
  return runs.reduce((a, b) => (b.requestsPerSecond > a.requestsPerSecond ? b : a));
}

async function main(): Promise<void> {
  const ceilingPort = await freePort();
  const pglease = await startBenchPglease({ nodeFlags: PROFILE_FLAGS, env: { PGLEASE_ADMIN_TOKEN: ADMIN } });
  const children: ChildProcess[] = [];
  try {
    const baseUrl = pglease.baseUrl;

    const created = await post(`${baseUrl}/v1/leases`, { authorization: `Bearer ${ADMIN}` });
    if (created.status !== 201) throw new Error(`create lease: ${created.status} ${created.body}`);
    const lease = JSON.parse(created.body) as { id: string; url: string; token: string; schema: string; role: string; anon_role: string; rest_url: string };

    const sql = new pg.Client({ connectionString: lease.url });
    await sql.connect();
    await sql.query(`
      create table directors (id int primary key, name text not null, born date);
      create table films (id int primary key, director_id int not null references directors, title text not null, year int, rating numeric(3,1), summary text);
      create index on films (director_id);
      insert into directors select i, 'Director ' || i, date '1900-01-01' + i from generate_series(1, ${DIRECTORS}) i;
      insert into films select i, (i % ${DIRECTORS}) + 1, 'Film ' || i, 1900 + i % 120, (i % 100) / 10.0, repeat('x', 80)
        from generate_series(1, ${FILMS}) i;
      analyze;`);
    await sql.end();

    // The ceiling runs exactly the statements pglease's compiler produces for these requests.
    const hostUrl = await pglease.superuserUrl();
    const hostPool = new pg.Pool({ connectionString: hostUrl, max: 1 });
    const cache = await loadSchemaCache(hostPool, lease.schema, [lease.role, lease.anon_role]);
    await hostPool.end();
    const statements: Record<string, { text: string; values: (string | null)[]; param: number }> = {};
    for (const scenario of SCENARIOS) {
      const sample = scenario.rest.replace('{n}', '7');
      const [pathPart, query] = sample.split('?') as [string, string];
      const apiRequest = buildApiRequest({ method: 'GET', path: pathPart, query, headers: {}, authenticated: true });
      const statement = readStatement(planRead(cache, apiRequest, pathPart.slice(1)));
      statements[scenario.name] = { ...statement, param: statement.values.indexOf('7') };
    }

    let ceilingLog = '';
    const ceiling = spawn(process.execPath, [...PROFILE_FLAGS, '--import', 'tsx', 'bench/ceiling-server.ts'], {
      cwd: projectRoot,
      env: { ...process.env, PORT: String(ceilingPort), LEASE_URL: lease.url, SCENARIOS: JSON.stringify(statements) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(ceiling);
    ceiling.stdout!.on('data', (chunk) => (ceilingLog += chunk));
    ceiling.stderr!.on('data', (chunk) => (ceilingLog += chunk));
    const ceilingUrl = `http://127.0.0.1:${ceilingPort}`;
    await waitFor(async () => (await get(`${ceilingUrl}/${SCENARIOS[0]!.name}/1`)).status === 200, ceiling, () => ceilingLog);

    const auth = { authorization: `Bearer ${lease.token}` };
    const restPath = new URL(lease.rest_url).pathname;
    const random = (max: number) => String(1 + Math.floor(Math.random() * max));
    // the two answer the same thing
    for (const scenario of SCENARIOS) {
      const a = await get(`${baseUrl}${restPath}${scenario.rest.replace('{n}', '3')}`, auth);
      const b = await get(`${ceilingUrl}/${scenario.name}/3`);
      if (a.status !== 200 || JSON.stringify(JSON.parse(a.body)) !== JSON.stringify(JSON.parse(b.body))) {
        throw new Error(`${scenario.name}: pglease and the ceiling disagree:\n${a.status} ${a.body.slice(0, 300)}\n${b.body.slice(0, 300)}`);
      }
    }

    const results = new Map<string, { pglease: Figures[]; ceiling: Figures[] }>(SCENARIOS.map((s) => [s.name, { pglease: [], ceiling: [] }]));
    for (let round = 0; round <= ROUNDS; round++) {
      for (const scenario of SCENARIOS) {
        const pgleaseRun = await load(baseUrl, () => restPath + scenario.rest.replace('{n}', random(scenario.max)), auth);
        const ceilingRun = await load(ceilingUrl, () => `/${scenario.name}/${random(scenario.max)}`, {});
        // round 0 warms up connections, prepared statements and the JIT
        if (round > 0) {
          results.get(scenario.name)!.pglease.push(pgleaseRun);
          results.get(scenario.name)!.ceiling.push(ceilingRun);
        }
      }
    }

    console.log(`bench:rest — ${CONNECTIONS} connections, ${DURATION} s per run, best of ${ROUNDS} interleaved rounds\n`);
    console.log(`${'scenario'.padEnd(10)} ${'server'.padEnd(9)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'errors'.padStart(7)}`);
    let allMet = true;
    for (const scenario of SCENARIOS) {
      const { pglease: ours, ceiling: theirs } = results.get(scenario.name)!;
      const a = best(ours);
      const b = best(theirs);
      const line = (server: string, f: Figures) =>
        `${scenario.name.padEnd(10)} ${server.padEnd(9)} ${f.requestsPerSecond.toFixed(0).padStart(8)} ${f.p50.toFixed(1).padStart(7)} ${f.p99.toFixed(1).padStart(7)} ${String(f.errors).padStart(7)}`;
      console.log(line('pglease', a));
      console.log(line('ceiling', b));
      const ratio = a.requestsPerSecond / b.requestsPerSecond;
      allMet &&= ratio >= 0.8;
      console.log(`${''.padEnd(10)} ratio ${ratio.toFixed(2)}x (goal ≥ 0.8x) ${ratio >= 0.8 ? 'met' : 'NOT met'}\n`);
    }
    console.log(allMet ? 'all goals met' : 'some goals NOT met');
    // writes and RPC (bench/rest-writes.ts) on the same pglease process and lease
    console.log('');
    await benchWrites({ baseUrl, lease, hostUrl }, { duration: DURATION, connections: CONNECTIONS, rounds: ROUNDS });
  } finally {
    for (const child of children) {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((resolve) => child.once('exit', resolve));
      }
    }
    await pglease.stop();
  }
}

await main();
