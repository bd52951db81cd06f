/**
 * GET /v1/dashboard and GET /v1/dashboard/leases, the JSON the operator dashboard reads (and
 * scripts may): admin only; figures that move with creates (plain and from a template), 429s,
 * REST requests and reaps; charts whose last point is the live count now; a lease search by id
 * prefix, name and client address that treats LIKE's wildcards as text.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from './support/wait.js';
import { ADMIN_TOKEN, createLease, startTestService, type TestService } from './support/service.js';

const METRICS_TOKEN = 'scraper-token';
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
let service: TestService;

beforeAll(async () => {
  service = await startTestService({ PGLEASE_METRICS_TOKEN: METRICS_TOKEN, PGLEASE_MAX_ACTIVE: '2', PGLEASE_CLIENT_CONNECTIONS: '0', PGLEASE_LIMIT_LOCAL: 'on' });
});
afterAll(async () => {
  await service?.close();
});

interface Snapshot {
  generated_at: string;
  leases: { live: number; warm_pool: number; by_status: Record<string, number>; by_kind: { plain: number; template: number }; by_plan: Record<string, number> };
  creates: { last_hour: number; top_clients: { client: string; creates: number }[] };
  reaper: { backlog: number; oldest_seconds: number; reaped_last_hour: number; lag_p50_seconds: number | null; lag_p95_seconds: number | null; lag_max_seconds: number | null };
  attention: { total: number; leases: unknown[] };
  events: { at: string; kind: string; lease_id: string; detail: Record<string, unknown> | null }[];
  job_failures: unknown[];
  process: {
    scope: 'process';
    rest: { per_second: number; p95_ms: number | null; window_seconds: number };
    creates_last_hour: { created: number; refused: number };
    warm_pools: { ready_plain: number; ready_template: number; hits: number; misses: number };
    rest_connections: { in_use: number; idle: number; waiting: number; budget: number };
  };
  history: { bucket_seconds: number; catalog: { at: string; creates: number; ended: number; live: number }[]; process: { at: string; per_second: number; p95_ms: number | null }[] };
}

async function snapshot(): Promise<Snapshot> {
  const response = await fetch(`${service.baseUrl}/v1/dashboard`, { headers: admin });
  expect(response.status).toBe(200);
  return (await response.json()) as Snapshot;
}

async function search(query: string, limit?: number): Promise<{ status: number; items: { id: string; label: string | null; client: string | null }[] }> {
  const response = await fetch(`${service.baseUrl}/v1/dashboard/leases?q=${encodeURIComponent(query)}${limit === undefined ? '' : `&limit=${limit}`}`, { headers: admin });
  const body = (await response.json()) as { items: { id: string; label: string | null; client: string | null }[] };
  return { status: response.status, items: body.items ?? [] };
}

describe('GET /v1/dashboard', () => {
  it('needs the admin token: neither a lease token nor the metrics token will do', async () => {
    const lease = await createLease(service, {}, admin);
    expect((await fetch(`${service.baseUrl}/v1/dashboard`)).status).toBe(401);
    const asLease = await fetch(`${service.baseUrl}/v1/dashboard`, { headers: { authorization: `Bearer ${lease.token}` } });
    expect(asLease.status).toBe(403);
    expect(((await asLease.json()) as { code: string }).code).toBe('PGLEASE_FORBIDDEN');
    expect((await fetch(`${service.baseUrl}/v1/dashboard`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).status).toBe(403);
    expect((await fetch(`${service.baseUrl}/v1/dashboard/leases`, { headers: { authorization: `Bearer ${lease.token}` } })).status).toBe(403);
    await fetch(`${service.baseUrl}/v1/leases/${lease.id}`, { method: 'DELETE', headers: admin });
  });

  it('moves with creates (plain and from a template), 429s and REST requests', async () => {
    const template = await fetch(`${service.baseUrl}/v1/templates`, {
      method: 'POST',
      headers: { ...admin, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'dash', sql: 'CREATE TABLE notes (id serial PRIMARY KEY, body text)' }),
    });
    expect(template.status).toBe(201);
    const before = await snapshot();
    const plain = await createLease(service);
    const seeded = await createLease(service, { template: 'dash' });
    // the third of this client is over PGLEASE_MAX_ACTIVE
    expect((await fetch(`${service.baseUrl}/v1/leases`, { method: 'POST' })).status).toBe(429);
    for (let request = 0; request < 5; request++) {
      expect((await fetch(`${seeded.rest_url}/notes`, { headers: { authorization: `Bearer ${seeded.token}` } })).status).toBe(200);
    }

    const after = await snapshot();
    expect(after.leases.live - before.leases.live).toBe(2);
    expect(after.leases.by_kind.plain - before.leases.by_kind.plain).toBe(1);
    expect(after.leases.by_kind.template - before.leases.by_kind.template).toBe(1);
    expect(Object.values(after.leases.by_status).reduce((sum, count) => sum + count, 0)).toBe(after.leases.live);
    expect(Object.values(after.leases.by_plan).reduce((sum, count) => sum + count, 0)).toBe(after.leases.live);
    expect(after.creates.last_hour - before.creates.last_hour).toBe(2);
    expect(after.creates.top_clients.find((client) => client.client === '127.0.0.1')?.creates).toBeGreaterThanOrEqual(2);
    expect(after.process.creates_last_hour.refused - before.process.creates_last_hour.refused).toBe(1);
    expect(after.process.creates_last_hour.created - before.process.creates_last_hour.created).toBe(2);
    expect(after.process.rest.per_second).toBeGreaterThan(0);
    expect(after.process.rest.p95_ms).not.toBeNull();
    expect(after.process.rest_connections.budget).toBeGreaterThan(0);
    const createdEvents = after.events.filter((event) => event.kind === 'created').map((event) => event.lease_id);
    expect(createdEvents).toEqual(expect.arrayContaining([plain.id, seeded.id]));
    // the warm pools' leases (provisioned, nobody's yet) are not among the events
    const listed = await fetch(`${service.baseUrl}/v1/leases?limit=1000`, { headers: admin });
    const handedOut = new Set(((await listed.json()) as { items: { id: string }[] }).items.map((lease) => lease.id));
    for (const event of after.events) expect(handedOut.has(event.lease_id)).toBe(true);
    expect(after.events.find((event) => event.lease_id === seeded.id)?.detail).toMatchObject({ template: 'dash' });
    // the live chart ends at the live count now; its creates add up to at least the last hour's
    expect(after.history.catalog.at(-1)!.live).toBe(after.leases.live);
    expect(after.history.catalog.reduce((sum, point) => sum + point.creates, 0)).toBeGreaterThanOrEqual(after.creates.last_hour);
    expect(after.history.bucket_seconds).toBe(300);
    for (const lease of [plain, seeded]) await fetch(`${service.baseUrl}/v1/leases/${lease.id}`, { method: 'DELETE', headers: admin });
    const released = await snapshot();
    expect(released.leases.live).toBe(before.leases.live);
    expect(released.history.catalog.at(-1)!.live).toBe(before.leases.live);
  });

  it('reports the reaper lag of leases reaped in the last hour', async () => {
    const lease = await createLease(service, { ttl: 1 }, admin);
    const reaped = await waitFor('the lease to be reaped', async () => {
      const now = await snapshot();
      return now.reaper.reaped_last_hour >= 1 && !now.events.every((event) => event.lease_id !== lease.id || event.kind !== 'expired') ? now : undefined;
    }, 40_000);
    expect(reaped.reaper.lag_p95_seconds).not.toBeNull();
    expect(reaped.reaper.lag_p95_seconds!).toBeGreaterThanOrEqual(0);
    expect(reaped.reaper.lag_max_seconds!).toBeGreaterThanOrEqual(reaped.reaper.lag_p50_seconds!);
    expect(reaped.reaper.lag_max_seconds!).toBeLessThan(60);
    expect(reaped.reaper.backlog).toBe(0);
  }, 60_000);
});

describe('GET /v1/dashboard/leases', () => {
  it('finds live leases by id prefix, by name and by client address, newest first; wildcards are text', async () => {
    const named = await createLease(service, { name: 'Invoice 100% done' }, admin);
    const other = await createLease(service, { name: 'other_one' }, admin);
    expect((await search(named.id.slice(0, 8))).items.map((lease) => lease.id)).toEqual([named.id]);
    expect((await search(named.id.slice(0, 8).toUpperCase())).items.map((lease) => lease.id)).toEqual([named.id]);
    expect((await search('invoice')).items.map((lease) => lease.id)).toEqual([named.id]);
    expect((await search('100%')).items.map((lease) => lease.id)).toEqual([named.id]);
    // '%' and '_' match themselves only
    expect((await search('%')).items.map((lease) => lease.id)).toEqual([named.id]);
    expect((await search('r_o')).items.map((lease) => lease.id)).toEqual([other.id]);
    const byClient = (await search('127.0.0.1')).items.map((lease) => lease.id);
    expect(byClient.slice(0, 2)).toEqual([other.id, named.id]);
    expect((await search('', 1)).items.map((lease) => lease.id)).toEqual([other.id]);
    expect((await search('no such lease')).items).toEqual([]);
    const refused = await fetch(`${service.baseUrl}/v1/dashboard/leases?limit=0`, { headers: admin });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { code: string; field: string })).toMatchObject({ code: 'PGLEASE_INVALID_PARAMETER', field: 'limit' });
    const unknown = await fetch(`${service.baseUrl}/v1/dashboard/leases?nope=1`, { headers: admin });
    expect(unknown.status).toBe(400);
    // released leases are not live: not found any more
    await fetch(`${service.baseUrl}/v1/leases/${named.id}`, { method: 'DELETE', headers: admin });
    expect((await search(named.id.slice(0, 8))).items).toEqual([]);
    await fetch(`${service.baseUrl}/v1/leases/${other.id}`, { method: 'DELETE', headers: admin });
  });
});
