/**
 * bench:rest-writes — pglease's REST writes and RPC against a hand-written ceiling that runs the same
 * SQL on the same lease, in one run, interleaved:
 *
 *   insert   POST  /events                      one row, return=minimal (201)
 *   bulk     POST  /events                      1,000 rows in one JSON array (201)
 *   patch    PATCH /write_films?id=eq.N         one row by primary key (204)
 *   rpc      POST  /rpc/add_them                an immutable function, JSON arguments (200)
 *
 * The ceiling (this file with --ceiling) is the smallest Fastify + pg server that answers those
 * requests: the raw body goes to the statement pglease's compiler produces for them, as a named
 * prepared statement, logged in as the lease's own role. What pglease adds (parsing and checking
 * the body, planning, the role switch, request settings, PostgREST headers) is what the ratio shows.
 * `npm run bench:rest` runs these after its reads, on the same pglease process and lease
 * (benchWrites below); alone, pglease runs as its own process with its embedded Postgres in a
 * temporary directory.
 *
 *   npm run bench:rest-writes [-- --duration 5 --connections 10 --rounds 2]
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import pg from 'pg';
import { projectRoot } from '../src/paths.js';
import { planRpc } from '../src/rest/plan/rpc-plan.js';
import { planWrite } from '../src/rest/plan/write-plan.js';
import type { Statement } from '../src/rest/query/read-query.js';
import { rpcStatement } from '../src/rest/query/rpc-query.js';
import { writeStatement } from '../src/rest/query/write-query.js';
import { buildApiRequest } from '../src/rest/request/api-request.js';
import { parsePayload } from '../src/rest/request/body.js';
import { loadSchemaCache } from '../src/rest/schema/load.js';
import type { SchemaCache } from '../src/rest/schema/types.js';
import { freePort } from '../test/support/free-port.js';
import { startBenchPglease, waitFor } from './support/pglease-process.js';

function option(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(process.argv[index + 1]) || fallback;
}

const FILMS = 10_000;
const BULK_ROWS = 1_000;

interface Scenario {
  name: string;
  method: 'POST' | 'PATCH';
  /** REST path and query; `{n}` is a random film id. */
  rest: string;
  body: string;
  /** What both servers answer. */
  status: number;
}

const SCENARIOS: Scenario[] = [
  { name: 'insert', method: 'POST', rest: '/events', body: JSON.stringify({ kind: 'click', value: 42 }), status: 201 },
  {
    name: 'bulk',
    method: 'POST',
    rest: '/events',
    body: JSON.stringify(Array.from({ length: BULK_ROWS }, (_, i) => ({ kind: i % 2 === 0 ? 'view' : 'click', value: i }))),
    status: 201,
  },
  { name: 'patch', method: 'PATCH', rest: '/write_films?id=eq.{n}', body: JSON.stringify({ rating: 7.5 }), status: 204 },
  { name: 'rpc', method: 'POST', rest: '/rpc/add_them', body: JSON.stringify({ a: 40, b: 2 }), status: 200 },
];

/** A compiled statement and which of its values the request fills: the body, the URL's id. */
interface CeilingStatement extends Statement {
  bodyParam: number;
  idParam: number;
  status: number;
}

// ---- the ceiling: started as a child process with --ceiling ------------------------------------

async function ceiling(): Promise<void> {
  const statements = JSON.parse(process.env.STATEMENTS!) as Record<string, CeilingStatement>;
  const pool = new pg.Pool({ connectionString: process.env.LEASE_URL, max: 5 });
  const app = Fastify({ logger: false, bodyLimit: 10 * 1024 * 1024 });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => done(null, body));
  app.get('/ready', async () => 'ok');
  for (const [name, statement] of Object.entries(statements)) {
    app.route<{ Params: { id?: string }; Body: string }>({
      method: ['POST', 'PATCH'],
      url: `/${name}/:id`,
      handler: async (request, reply) => {
        const values = [...statement.values];
        values[statement.bodyParam] = request.body;
        if (statement.idParam >= 0) values[statement.idParam] = request.params.id ?? null;
        const { rows } = await pool.query<{ body: string | null }>({ name, text: statement.text, values });
        reply.code(statement.status);
        return statement.status === 200 ? reply.header('content-type', 'application/json; charset=utf-8').send(rows[0]!.body) : reply.send();
      },
    });
  }
  const address = await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) });
  process.stdout.write(`listening ${address}\n`);
  process.on('SIGTERM', () => void app.close().then(() => pool.end()).then(() => process.exit(0)));
}

// ---- the benchmark -----------------------------------------------------------------------------

async function send(url: string, method: string, body: string | undefined, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const response = await fetch(url, { method, body, headers: { 'content-type': 'application/json', ...headers } });
  return { status: response.status, text: await response.text() };
}

function compile(cache: SchemaCache, scenario: Scenario): CeilingStatement {
  const [pathPart, query = ''] = scenario.rest.replace('{n}', '7').split('?') as [string, string?];
  const request = buildApiRequest({ method: scenario.method, path: pathPart, query, headers: {}, authenticated: true });
  const payload = parsePayload(scenario.body, 'application/json', { columnsGiven: false, forRoutine: pathPart.startsWith('/rpc/') });
  const statement = pathPart.startsWith('/rpc/')
    ? rpcStatement(planRpc(cache, request, pathPart.slice('/rpc/'.length), { payload, mediaType: 'application/json' }))
    : writeStatement(planWrite(cache, request, pathPart.slice(1), payload));
  return { ...statement, bodyParam: statement.values.indexOf(scenario.body), idParam: statement.values.indexOf('7'), status: scenario.status };
}

interface Figures {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  errors: number;
}

export interface BenchOptions {
  duration: number;
  connections: number;
  rounds: number;
}

async function load(url: string, scenario: Scenario, pathFor: () => string, headers: Record<string, string>, options: BenchOptions): Promise<Figures> {
  const result = await autocannon({
    url,
    connections: options.connections,
    duration: options.duration,
    headers: { 'content-type': 'application/json', ...headers },
    requests: [{ method: scenario.method, body: scenario.body, setupRequest: (request) => ({ ...request, path: pathFor() }) }],
  });
  return { requestsPerSecond: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.non2xx };
}

function best(runs: Figures[]): Figures {
  return runs.reduce((a, b) => (b.requestsPerSecond > a.requestsPerSecond ? b : a));
}

/** A running pglease and one of its leases (owner token and connection URL). */
export interface BenchTarget {
  baseUrl: string;
  lease: { url: string; token: string; schema: string; role: string; anon_role: string; rest_url: string };
  /** A superuser URL of the lease database, to load the lease's schema cache. */
  hostUrl: string;
}

/**
 * Creates the write tables and function in the lease, starts the ceiling on it, runs the write and
 * RPC scenarios interleaved and prints their table. Returns whether every ratio met its goal.
 */
export async function benchWrites(target: BenchTarget, options: BenchOptions): Promise<boolean> {
  const { baseUrl, lease } = target;
  const sql = new pg.Client({ connectionString: lease.url });
  await sql.connect();
  await sql.query(`
    create table write_films (id int primary key, title text not null, year int, rating numeric(3,1), summary text);
    insert into write_films select i, 'Film ' || i, 1900 + i % 120, (i % 100) / 10.0, repeat('x', 80) from generate_series(1, ${FILMS}) i;
    create table events (id bigserial primary key, kind text not null, value int, at timestamptz not null default now());
    create function add_them(a int, b int) returns int language sql immutable as $$ select a + b $$;
    analyze;`);
  await sql.end();

  // the ceiling runs exactly the statements pglease's compiler produces for these requests
  const hostPool = new pg.Pool({ connectionString: target.hostUrl, max: 1 });
  const cache = await loadSchemaCache(hostPool, lease.schema, [lease.role, lease.anon_role]);
  await hostPool.end();
  const statements = Object.fromEntries(SCENARIOS.map((scenario) => [scenario.name, compile(cache, scenario)]));

  const ceilingPort = await freePort();
  let ceilingLog = '';
  const ceilingProcess = spawn(process.execPath, ['--import', 'tsx', 'bench/rest-writes.ts', '--ceiling'], {
    cwd: projectRoot,
    env: { ...process.env, PORT: String(ceilingPort), LEASE_URL: lease.url, STATEMENTS: JSON.stringify(statements) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  ceilingProcess.stdout!.on('data', (chunk) => (ceilingLog += chunk));
  ceilingProcess.stderr!.on('data', (chunk) => (ceilingLog += chunk));
  try {
    const ceilingUrl = `http://127.0.0.1:${ceilingPort}`;
    await waitFor(async () => (await fetch(`${ceilingUrl}/ready`)).status === 200, ceilingProcess, () => ceilingLog);

    const auth = { authorization: `Bearer ${lease.token}` };
    const restPath = new URL(lease.rest_url).pathname;
    const random = () => String(1 + Math.floor(Math.random() * FILMS));
    // both answer the same thing
    for (const scenario of SCENARIOS) {
      const ours = await send(`${baseUrl}${restPath}${scenario.rest.replace('{n}', '3')}`, scenario.method, scenario.body, auth);
      const theirs = await send(`${ceilingUrl}/${scenario.name}/3`, scenario.method, scenario.body);
      if (ours.status !== scenario.status || theirs.status !== scenario.status || ours.text !== theirs.text) {
        throw new Error(`${scenario.name}: pglease and the ceiling disagree:\n${ours.status} ${ours.text.slice(0, 300)}\n${theirs.status} ${theirs.text.slice(0, 300)}`);
      }
    }

    const results = new Map(SCENARIOS.map((scenario) => [scenario.name, { pglease: [] as Figures[], ceiling: [] as Figures[] }]));
    for (let round = 0; round <= options.rounds; round++) {
      for (const scenario of SCENARIOS) {
        const ours = await load(baseUrl, scenario, () => restPath + scenario.rest.replace('{n}', random()), auth, options);
        const theirs = await load(ceilingUrl, scenario, () => `/${scenario.name}/${random()}`, {}, options);
        // round 0 warms up connections, prepared statements and the JIT
        if (round > 0) {
          results.get(scenario.name)!.pglease.push(ours);
          results.get(scenario.name)!.ceiling.push(theirs);
        }
      }
    }

    console.log(`bench:rest writes and RPC — ${options.connections} connections, ${options.duration} s per run, best of ${options.rounds} interleaved rounds\n`);
    console.log(`${'scenario'.padEnd(10)} ${'server'.padEnd(9)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'errors'.padStart(7)}`);
    let allMet = true;
    for (const scenario of SCENARIOS) {
      const { pglease: ourRuns, ceiling: theirRuns } = results.get(scenario.name)!;
      const ours = best(ourRuns);
      const theirs = best(theirRuns);
      const line = (server: string, f: Figures) =>
        `${scenario.name.padEnd(10)} ${server.padEnd(9)} ${f.requestsPerSecond.toFixed(0).padStart(8)} ${f.p50.toFixed(1).padStart(7)} ${f.p99.toFixed(1).padStart(7)} ${String(f.errors).padStart(7)}`;
      console.log(line('pglease', ours));
      console.log(line('ceiling', theirs));
      const ratio = ours.requestsPerSecond / theirs.requestsPerSecond;
      allMet &&= ratio >= 0.8;
      console.log(`${''.padEnd(10)} ratio ${ratio.toFixed(2)}x (goal ≥ 0.8x) ${ratio >= 0.8 ? 'met' : 'NOT met'}\n`);
    }
    console.log(allMet ? 'all write goals met' : 'some write goals NOT met');
    return allMet;
  } finally {
    if (ceilingProcess.exitCode === null) {
      ceilingProcess.kill('SIGTERM');
      await new Promise((resolve) => ceilingProcess.once('exit', resolve));
    }
  }
}

/** Alone: a pglease process of its own, one lease, the write scenarios. */
async function main(): Promise<void> {
  const options = { duration: option('duration', 5), connections: option('connections', 10), rounds: option('rounds', 2) };
  const admin = `bench-admin-${randomBytes(8).toString('hex')}`;
  const pglease = await startBenchPglease({ env: { PGLEASE_ADMIN_TOKEN: admin } });
  try {
    const created = await send(`${pglease.baseUrl}/v1/leases`, 'POST', JSON.stringify({ ttl: 3600 }), { authorization: `Bearer ${admin}` });
    if (created.status !== 201) throw new Error(`create lease: ${created.status} ${created.text}`);
    await benchWrites({ baseUrl: pglease.baseUrl, lease: JSON.parse(created.text), hostUrl: await pglease.superuserUrl() }, options);
  } finally {
    await pglease.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  if (process.argv.includes('--ceiling')) await ceiling();
  else await main();
}
