/**
 * Leases holding every connection the server lets them have cannot keep pglease out: the embedded
 * server reserves connections (reserved_connections) for roles with pg_use_reserved_connections,
 * which pglease's service role and the REST API's lease authenticators have and lease logins do not
 * (src/db/superuser-setup.ts). Here on a cluster of its own with few connections, so the test can
 * fill them.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startEmbedded, type EmbeddedServer } from '../src/db/embedded.js';
import { startService, type Service } from '../src/service.js';
import { freePort } from './support/free-port.js';

const ADMIN = 'reserve-admin';
let dataDir: string;
let server: EmbeddedServer;
let service: Service;
const sessions: pg.Client[] = [];

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-reserve-'));
  // 60 connections and 34 more reserved for pglease's roles (its own 24 and the REST API's 10, as
  // the service asks for them: src/service.ts): 3 for superusers, 57 for leases' logins while
  // pglease's roles hold at most their reserve, so at least 23 whatever pglease holds
  server = await startEmbedded({ dataDir, port: await freePort(), listen: 'localhost', maxConnections: 60, reservedConnections: 34 });
  service = await startService(
    loadConfig({
      DATABASE_URL: server.url('postgres'),
      PGLEASE_ADMIN_TOKEN: ADMIN,
      PORT: '0',
      HOST: '127.0.0.1',
      PGLEASE_LEASE_POOL: '0',
      PGLEASE_TEMPLATE_POOL: '0',
      PGLEASE_CLIENT_CONNECTIONS: '0',
      PGLEASE_REST_MAX_CONNECTIONS: '10',
    }),
  );
}, 60_000);

afterAll(async () => {
  await Promise.all(sessions.map((session) => session.end().catch(() => undefined)));
  await service?.close();
  await server?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

const admin = { authorization: `Bearer ${ADMIN}` };

async function createLease(): Promise<{ id: string; url: string; token: string }> {
  const response = await service.app.inject({ method: 'POST', url: '/v1/leases', headers: admin });
  expect(response.statusCode, response.body).toBe(201);
  return response.json();
}

/** Logs in as the leases in turn, at most `tries` times, keeping each session in `into`; the refusal that ended it, if one did. */
async function loginUntilRefused(leases: { url: string }[], tries: number, into: pg.Client[]): Promise<{ code?: string; message: string } | undefined> {
  for (let i = 0; i < tries; i++) {
    const session = new pg.Client({ connectionString: leases[i % leases.length]!.url });
    session.on('error', () => undefined);
    try {
      await session.connect();
      into.push(session);
    } catch (error) {
      await session.end().catch(() => undefined);
      return error as { code?: string; message: string };
    }
  }
  return undefined;
}

it('leaves leases their logins while the REST API holds every connection of its budget', async () => {
  // reserved_connections reserves the last free slots, not a share: had the reserve come out of the
  // 60, the REST API's and pglease's own sessions would have taken the leases' slots as well
  const leases = await Promise.all(Array.from({ length: 12 }, () => createLease()));
  for (const lease of leases) {
    const client = new pg.Client({ connectionString: lease.url });
    await client.connect();
    await client.query('create table items (id int primary key)');
    await client.end();
  }
  for (const lease of leases) {
    const rest = await service.app.inject({ method: 'GET', url: `/v1/leases/${lease.id}/rest/items`, headers: { authorization: `Bearer ${lease.token}` } });
    expect(rest.statusCode, rest.body).toBe(200);
  }
  const [restSessions] = (
    await service.host.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pglease-rest'`)
  ).rows;
  expect(restSessions!.n).toBe(10);

  const logins: pg.Client[] = [];
  try {
    const refusal = await loginUntilRefused(leases, 40, logins);
    // 60 - 3 for superusers - 34 reserved: the leases' share, whatever pglease holds of its reserve
    expect(logins.length, refusal?.message).toBeGreaterThanOrEqual(23);
  } finally {
    await Promise.all(logins.map((session) => session.end().catch(() => undefined)));
  }
});

it('keeps creates, stats and the REST API working while leases hold every connection they may have', async () => {
  const leases = await Promise.all([createLease(), createLease(), createLease()]);
  // the attack: lease logins until the server refuses them
  const refusal = await loginUntilRefused(leases, 60, sessions);
  expect(refusal?.code, refusal?.message).toBe('53300');
  expect(refusal?.message).toMatch(/reserved/);
  expect(sessions.length).toBeGreaterThan(20);

  // the victims: a create, a lease's stats (counted as the lease's authenticator), its REST API
  const started = performance.now();
  const created = await createLease();
  const createMs = performance.now() - started;
  const stats = await service.app.inject({ method: 'GET', url: `/v1/leases/${created.id}/stats`, headers: admin });
  expect(stats.statusCode, stats.body).toBe(200);
  expect(stats.json()).toMatchObject({ rows_exact: true });
  const restStarted = performance.now();
  const rest = await service.app.inject({ method: 'GET', url: `/v1/leases/${leases[0]!.id}/rest/`, headers: { authorization: `Bearer ${leases[0]!.token}` } });
  const restMs = performance.now() - restStarted;
  expect(rest.statusCode, rest.body).toBe(200);
  console.log(`lease sessions before the refusal: ${sessions.length}; victim create ${createMs.toFixed(1)} ms, first REST request ${restMs.toFixed(1)} ms`);

  // and a lease login is still refused: the reserve is pglease's alone
  const another = new pg.Client({ connectionString: created.url });
  another.on('error', () => undefined);
  await expect(another.connect()).rejects.toMatchObject({ code: '53300' });
  await another.end().catch(() => undefined);
});
