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
 * Then the same `pk` read three ways, interleaved: with the lease token, with a user's JWT signed
 * HS256 with the lease's secret, and with one signed ES256 by a key of the lease's JWKS (a document
 * setting), each as a declared role; the goal for a JWT read is ≥ 0.9x the lease-token read
 * (verified tokens are cached, src/auth/jwt.ts).
 *
 *   npm run bench:rest [-- --duration 5 --connections 10 --rounds 2 --only pk,list]
 *
 * BENCH_CPU_PROF=<dir> writes a V8 CPU profile of each server process into <dir>.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import autocannon from 'autocannon';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { mintJwt } from '../src/auth/mint.js';
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

function post(url: string, headers: Record<string, string>, payload: unknown = { ttl: 3600 }, method = 'POST'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(payload));
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
    const lease = JSON.parse(created.body) as { id: string; url: string; token: string; jwt_secret: string; schema: string; role: string; anon_role: string; rest_url: string };

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
    const jwtGoalsMet = await benchJwtReads({ baseUrl, lease, restPath, random });
    allMet &&= jwtGoalsMet;
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

/**
 * The pk read with the lease token, an HS256 JWT and an ES256 JWT (JWKS document), interleaved;
 * prints each and the JWT/lease-token ratios. Whether the goal (≥ 0.9x) was met.
 */
async function benchJwtReads(target: {
  baseUrl: string;
  lease: { id: string; token: string; jwt_secret: string; url: string };
  restPath: string;
  random: (max: number) => string;
}): Promise<boolean> {
  const { baseUrl, lease, restPath, random } = target;
  const owner = { authorization: `Bearer ${lease.token}` };
  const declared = await post(`${baseUrl}/v1/leases/${lease.id}/roles`, owner, { name: 'reader' });
  if (declared.status !== 201) throw new Error(`declare role: ${declared.status} ${declared.body}`);
  const readerRole = (JSON.parse(declared.body) as { role: string }).role;
  const keys = await generateKeyPair('ES256');
  const jwks = { keys: [{ ...(await exportJWK(keys.publicKey)), kid: 'bench', alg: 'ES256' }] };
  const configured = await post(`${baseUrl}/v1/leases/${lease.id}/settings`, owner, { jwt_jwks: jwks }, 'PATCH');
  if (configured.status !== 200) throw new Error(`settings: ${configured.status} ${configured.body}`);
  const sql = new pg.Client({ connectionString: lease.url });
  await sql.connect();
  await sql.query(`grant select on films to ${readerRole}`);
  await sql.end();

  const hs256 = await mintJwt(lease.jwt_secret, { role: 'reader', sub: 'bench' });
  const es256 = await new SignJWT({ role: 'reader', sub: 'bench' }).setProtectedHeader({ alg: 'ES256', kid: 'bench' }).setIssuedAt().setExpirationTime('1h').sign(keys.privateKey);
  const ways = [
    { name: 'token', headers: owner },
    { name: 'jwt-hs256', headers: { authorization: `Bearer ${hs256}` } },
    { name: 'jwt-es256', headers: { authorization: `Bearer ${es256}` } },
  ];
  // every way answers the same (the settings reach the REST API by a notification: wait for them)
  const expected = await get(`${baseUrl}${restPath}/films?id=eq.3`, owner);
  for (const way of ways) {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const answer = await get(`${baseUrl}${restPath}/films?id=eq.3`, way.headers);
      if (answer.status === 200 && answer.body === expected.body) break;
      if (Date.now() > deadline) throw new Error(`${way.name}: ${answer.status} ${answer.body.slice(0, 300)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  const runs = new Map<string, Figures[]>(ways.map((way) => [way.name, []]));
  for (let round = 0; round <= ROUNDS; round++) {
    // each round starts with another way, so that none always runs after the same neighbour
    for (let i = 0; i < ways.length; i++) {
      const way = ways[(round + i) % ways.length]!;
      const run = await load(baseUrl, () => `${restPath}/films?id=eq.${random(FILMS)}`, way.headers);
      if (round > 0) runs.get(way.name)!.push(run);
    }
  }
  console.log(`pk read by caller, best of ${ROUNDS} interleaved rounds\n`);
  console.log(`${'caller'.padEnd(10)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'errors'.padStart(7)}`);
  const token = best(runs.get('token')!);
  let met = true;
  for (const way of ways) {
    const f = best(runs.get(way.name)!);
    const ratio = f.requestsPerSecond / token.requestsPerSecond;
    const goal = way.name === 'token' ? '' : `  ${ratio.toFixed(2)}x the token read (goal ≥ 0.9x) ${ratio >= 0.9 ? 'met' : 'NOT met'}`;
    if (way.name !== 'token') met &&= ratio >= 0.9;
    console.log(`${way.name.padEnd(10)} ${f.requestsPerSecond.toFixed(0).padStart(8)} ${f.p50.toFixed(1).padStart(7)} ${f.p99.toFixed(1).padStart(7)} ${String(f.errors).padStart(7)}${goal}`);
  }
  console.log('');
  return met;
}

await main();
