/**
 * Warm pools of plain leases (PGLEASE_LEASE_POOL) and how every pool is held: a pooled lease is
 * provisioned with its password, which only the process that made it knows; a create claims one
 * in one statement with the usual throttling; pooled leases are nobody's until claimed; a
 * process's pool is released when it stops and reaped when it dies.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, createLease, queryUrl as query, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';
import { startServiceProcess, stopServiceProcess, type ServiceProcess } from './support/service-process.js';
import { waitFor } from './support/wait.js';

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
const services: TestService[] = [];
const processes: ServiceProcess[] = [];

async function start(env: Record<string, string> = {}): Promise<TestService> {
  const service = await startTestService(env);
  services.push(service);
  return service;
}

afterAll(async () => {
  await Promise.all(services.map((service) => service.close()));
  for (const child of processes) if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL');
});

interface PooledRow {
  id: string;
  schema_name: string;
  created_at: Date;
  expires_at: Date;
}

/** The leases parked in `holder`'s pool (templateId null: the plain pool), oldest first. */
async function pooledLeases(databaseUrl: string, holder: string, templateId: string | null = null): Promise<PooledRow[]> {
  return query<PooledRow>(
    databaseUrl,
    `SELECT l.id, l.schema_name, l.created_at, l.expires_at FROM pglease.lease_pool p JOIN pglease.leases l ON l.id = p.lease_id
      WHERE p.holder = $1 AND p.template_id IS NOT DISTINCT FROM $2::bigint AND l.state = 'provisioning' ORDER BY p.created_at`,
    [holder, templateId],
  );
}

/**
 * Waits until `holder` has exactly `size` leases ready in that pool, and returns them. When the
 * holder is a service of this file's process, also until that process counts them as ready: a
 * refill's lease is in the table a moment before (its claim is rehearsed first), and a create in
 * that moment provisions instead of claiming.
 */
function poolFilled(databaseUrl: string, holder: string, size: number, templateId: string | null = null): Promise<PooledRow[]> {
  const inProcess = services.find((service) => service.context.leasePool.holder === holder)?.context.leasePool;
  return waitFor(`a pool of ${size}`, async () => {
    if (inProcess && inProcess.readySize(templateId) !== size) return undefined;
    const leases = await pooledLeases(databaseUrl, holder, templateId);
    return leases.length === size ? leases : undefined;
  });
}

function post(service: TestService, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${service.baseUrl}/v1/leases`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

describe('a pooled lease, once claimed', () => {
  let service: TestService;
  let lease: CreatedLeaseJson;
  let pooled: PooledRow[];
  let claimStartedAt: number;

  beforeAll(async () => {
    service = await start({ PGLEASE_LEASE_POOL: '2' });
    pooled = await poolFilled(service.host.databaseUrl, service.context.leasePool.holder, 2);
    // the pooled lease has waited a while: its TTL must count from the claim, not from then
    await new Promise((resolve) => setTimeout(resolve, 1100));
    claimStartedAt = Date.now();
    lease = await createLease(service, { ttl: 120, name: 'from the pool' });
  });

  it('is one of the pool, active, with its TTL counted from the claim and a created event of the claim', async () => {
    expect(pooled.map((row) => row.id)).toContain(lease.id);
    expect(lease).toMatchObject({ state: 'active', name: 'from the pool' });
    const createdAt = Date.parse(lease.created_at);
    expect(createdAt).toBeGreaterThanOrEqual(claimStartedAt - 50);
    expect(createdAt - pooled.find((row) => row.id === lease.id)!.created_at.getTime()).toBeGreaterThan(1000);
    expect(Date.parse(lease.expires_at!) - createdAt).toBe(120_000);
    const [event] = await query<{ at: Date; detail: Record<string, unknown> }>(
      service.host.databaseUrl,
      `SELECT at, detail FROM pglease.lease_events WHERE lease_id = $1 AND kind = 'created'`,
      [lease.id],
    );
    expect(event!.at.getTime()).toBe(createdAt);
    expect(event!.detail).toMatchObject({ pooled: true, ttl_seconds: 120, label: 'from the pool' });
  });

  it('answers node-postgres on its URL, as its own role in its own schema', async () => {
    const [row] = await query<{ user: string; schema: string }>(lease.url, 'SELECT current_user AS user, current_schema() AS schema');
    expect(row).toEqual({ user: lease.role, schema: lease.schema });
  });

  it('has a token that opens the control API and the REST API', async () => {
    const auth = { authorization: `Bearer ${lease.token}` };
    const own = await fetch(`${service.baseUrl}/v1/leases/${lease.id}`, { headers: auth });
    expect(own.status).toBe(200);
    expect(await own.json()).toMatchObject({ id: lease.id, state: 'active' });
    const stats = await fetch(`${service.baseUrl}/v1/leases/${lease.id}/stats`, { headers: auth });
    expect(stats.status).toBe(200);

    await query(lease.url, `CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'pooled')`);
    const rest = await fetch(`${lease.rest_url}/notes?select=body`, { headers: auth });
    expect(rest.status).toBe(200);
    expect(await rest.json()).toEqual([{ body: 'pooled' }]);
    // the token of a pooled lease nobody claimed does not exist: a wrong one is refused
    const wrong = await fetch(`${lease.rest_url}/notes`, { headers: { authorization: 'Bearer pgl_not-a-token' } });
    expect(wrong.status).toBe(401);
  });

  it('cannot see or touch another lease, claimed or still pooled', async () => {
    const other = await createLease(service);
    await query(other.url, 'CREATE TABLE secrets (id int)');
    const [stillPooled] = await poolFilled(service.host.databaseUrl, service.context.leasePool.holder, 2);
    const client = new pg.Client({ connectionString: lease.url });
    await client.connect();
    try {
      const denied = async (sql: string) => (await client.query(sql).then(() => 'allowed', (error: { code?: string }) => error.code));
      expect(await denied(`SELECT * FROM "${other.schema}".secrets`)).toBe('42501');
      expect(await denied(`SET ROLE "${other.role}"`)).toBe('42501');
      expect(await denied(`CREATE TABLE "${stillPooled!.schema_name}".x (id int)`)).toBe('42501');
      expect(await denied(`SET ROLE "${stillPooled!.schema_name}"`)).toBe('42501');
    } finally {
      await client.end();
    }
  });

  it('is dropped by a release, roles and schema', async () => {
    const released = await fetch(`${service.baseUrl}/v1/leases/${lease.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${lease.token}` } });
    expect(released.status).toBe(204);
    const left = await query(
      service.host.databaseUrl,
      `SELECT nspname FROM pg_namespace WHERE nspname = $1 UNION ALL SELECT rolname FROM pg_roles WHERE rolname LIKE $1 || '%'`,
      [lease.schema],
    );
    expect(left).toEqual([]);
    await expect(query(lease.url, 'SELECT 1')).rejects.toMatchObject({ code: '28P01' });
  });
});

describe('the pool', () => {
  let service: TestService;

  beforeAll(async () => {
    service = await start({ PGLEASE_LEASE_POOL: '2' });
  });

  it('is nobody\'s until claimed: not listed, not found, not even by the admin', async () => {
    const pooled = await poolFilled(service.host.databaseUrl, service.context.leasePool.holder, 2);
    const listing = (await (await fetch(`${service.baseUrl}/v1/leases?limit=1000`, { headers: admin })).json()) as { items: { id: string }[] };
    const listed = new Set(listing.items.map((item) => item.id));
    for (const { id } of pooled) {
      expect(listed.has(id)).toBe(false);
      expect((await fetch(`${service.baseUrl}/v1/leases/${id}`, { headers: admin })).status).toBe(404);
      expect((await fetch(`${service.baseUrl}/v1/leases/${id}/stats`, { headers: admin })).status).toBe(404);
      expect((await fetch(`${service.baseUrl}/v1/leases/${id}`, { method: 'DELETE', headers: admin })).status).toBe(404);
    }
    const provisioning = await fetch(`${service.baseUrl}/v1/leases?state=provisioning`, { headers: admin });
    expect(((await provisioning.json()) as { items: unknown[] }).items).toEqual([]);
  });

  it('refills after a claim, only once no lease has been handed out for a while, up to its size', async () => {
    const holder = service.context.leasePool.holder;
    const before = await poolFilled(service.host.databaseUrl, holder, 2);
    const lease = await createLease(service);
    expect(before.map((row) => row.id)).toContain(lease.id);
    const after = await poolFilled(service.host.databaseUrl, holder, 2);
    const refill = after.find((row) => !before.some((old) => old.id === row.id))!;
    // the refill began after the quiet time (150 ms) had passed since the claim
    expect(refill.created_at.getTime() - Date.parse(lease.created_at)).toBeGreaterThanOrEqual(150);
    expect(service.context.leasePool.readySize()).toBe(2);
  });

  it('serves a burst beyond its size by provisioning, then holds its size again', async () => {
    const holder = service.context.leasePool.holder;
    const ready = await poolFilled(service.host.databaseUrl, holder, 2);
    const burst = await Promise.all(Array.from({ length: 6 }, () => createLease(service, { ttl: 60 })));
    expect(new Set(burst.map((lease) => lease.id)).size).toBe(6);
    const fromPool = burst.filter((lease) => ready.some((row) => row.id === lease.id));
    expect(fromPool).toHaveLength(2);
    for (const lease of burst) expect(await query(lease.url, 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
    await poolFilled(service.host.databaseUrl, holder, 2);
    // and no more than that, a while later
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(await pooledLeases(service.host.databaseUrl, holder)).toHaveLength(2);
  });

  it('keeps a global template\'s pool apart: each kind of create gets its own kind of lease, a private template none', async () => {
    const pooledService = await start({ PGLEASE_LEASE_POOL: '1', PGLEASE_TEMPLATE_POOL: '1' });
    const holder = pooledService.context.leasePool.holder;
    const registered = await fetch(`${pooledService.baseUrl}/v1/templates`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...admin },
      body: JSON.stringify({ name: 'seeded', sql: 'CREATE TABLE seeded (id int); INSERT INTO seeded VALUES (1)' }),
    });
    expect(registered.status).toBe(201);
    const [{ id: templateId }] = await query<{ id: string }>(pooledService.host.databaseUrl, `SELECT id::text FROM pglease.templates WHERE name = 'seeded'`);
    const plainReady = await poolFilled(pooledService.host.databaseUrl, holder, 1);
    const seededReady = await poolFilled(pooledService.host.databaseUrl, holder, 1, templateId!);

    const seeded = await createLease(pooledService, { template: 'seeded', name: 'seeded one' });
    expect(seeded.id).toBe(seededReady[0]!.id);
    expect(await query(seeded.url, 'SELECT id FROM seeded')).toEqual([{ id: 1 }]);

    // the admin's "never expires" is applied at the claim too
    const plain = await createLease(pooledService, { ttl: null, name: 'forever' }, admin);
    expect(plain.id).toBe(plainReady[0]!.id);
    expect(plain.expires_at).toBeNull();
    expect(await query(plain.url, `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = current_schema()`)).toEqual([{ n: 0 }]);

    // a private template has no pool: provisioned and seeded in the request, never a pooled lease
    const owner = await createLease(pooledService);
    const privately = await fetch(`${pooledService.baseUrl}/v1/templates`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${owner.token}` },
      body: JSON.stringify({ name: 'seeded', sql: 'CREATE TABLE mine (id int)' }),
    });
    expect(privately.status).toBe(201);
    const plainNow = await poolFilled(pooledService.host.databaseUrl, holder, 1);
    const seededNow = await poolFilled(pooledService.host.databaseUrl, holder, 1, templateId!);
    const own = await createLease(pooledService, { template: 'seeded' }, { authorization: `Bearer ${owner.token}` });
    expect([...plainNow, ...seededNow].map((row) => row.id)).not.toContain(own.id);
    expect(await query(own.url, 'SELECT count(*)::int AS n FROM mine')).toEqual([{ n: 0 }]);
    expect(await pooledLeases(pooledService.host.databaseUrl, holder)).toEqual(plainNow);
  }, 90_000);
});

describe('a claim rehearsal', () => {
  it('prepares the claim on the connection the next claim gets, before any claim, and leaves no trace', async () => {
    // PGLEASE_LIMIT_LOCAL: this test's loopback client is held to the limits, as a stranger would be
    const service = await start({ PGLEASE_LEASE_POOL: '2', PGLEASE_RATE_LIMIT: '5', PGLEASE_MAX_ACTIVE: '3', PGLEASE_MAX_LEASES: '50', PGLEASE_LIMIT_LOCAL: 'on' });
    const url = service.host.databaseUrl;
    const pooled = await poolFilled(url, service.context.leasePool.holder, 2);
    // no lease has been created by this service, yet its claim statement has run (and been
    // planned) on the connection its pool hands out next
    const [prepared] = (
      await service.host.pool.query<{ runs: number }>(
        `SELECT (generic_plans + custom_plans)::int AS runs FROM pg_prepared_statements WHERE name = 'pglease.claim-pooled-lease+limits'`,
      )
    ).rows;
    expect(prepared?.runs).toBeGreaterThanOrEqual(1);
    // rolled back: still pooled, charged to no one, its created event untouched
    const rows = await query<{ state: string; quota_ip: string | null; label: string | null; detail: Record<string, unknown> }>(
      url,
      `SELECT l.state, l.quota_ip::text, l.label, e.detail FROM pglease.leases l JOIN pglease.lease_events e ON e.lease_id = l.id AND e.kind = 'created'
        WHERE l.id = ANY ($1::uuid[])`,
      [pooled.map((row) => row.id)],
    );
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      expect(row).toMatchObject({ state: 'provisioning', quota_ip: null, label: null });
      expect(row.detail?.pooled).toBeUndefined();
    }
    const [charged] = await query<{ n: number }>(url, `SELECT count(*)::int AS n FROM pglease.leases WHERE client_ip = '192.0.2.1' OR quota_ip = '192.0.2.1'`);
    expect(charged!.n).toBe(0);
    // and the leases are still handed out, with a full quota
    const response = await post(service, {});
    expect(response.status).toBe(201);
    expect(response.headers.get('ratelimit-remaining')).toBe('4');
    expect(pooled.map((row) => row.id)).toContain(((await response.json()) as { id: string }).id);
  }, 90_000);
});

describe('throttling of claims', () => {
  let service: TestService;
  const client = (n: number) => ({ 'x-forwarded-for': `198.51.100.${n}` });

  beforeAll(async () => {
    service = await start({ PGLEASE_LEASE_POOL: '2', PGLEASE_RATE_LIMIT: '2', PGLEASE_MAX_ACTIVE: '0', PGLEASE_MAX_LEASES: '5', PGLEASE_TRUST_PROXY: 'on' });
  });

  it('counts a claim as a creation of its client, exactly under concurrency; pooled leases count against no one', async () => {
    const holder = service.context.leasePool.holder;
    const url = service.host.databaseUrl;
    const first = await poolFilled(url, holder, 2);
    const [charged] = await query<{ n: number }>(url, 'SELECT count(*)::int AS n FROM pglease.leases WHERE quota_ip IS NOT NULL');
    expect(charged!.n).toBe(0);

    const claimed: string[] = [];
    for (let i = 0; i < 2; i++) {
      const response = await post(service, { ttl: 300 }, client(1));
      expect(response.status).toBe(201);
      expect(response.headers.get('ratelimit-remaining')).toBe(String(1 - i));
      claimed.push(((await response.json()) as { id: string }).id);
    }
    expect(claimed.sort()).toEqual(first.map((row) => row.id).sort());
    await poolFilled(url, holder, 2);
    const refused = await post(service, {}, client(1));
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { message: string }).message).toMatch(/created 2 leases in the last hour/);

    // 4 at once from one client: each passes the early check, so the exact check in the claim's
    // (or the provisioning's) statement decides; a refused claim leaves its lease in the pool
    const ready = await poolFilled(url, holder, 2);
    const responses = await Promise.all(Array.from({ length: 4 }, () => post(service, {}, client(2))));
    const created = await Promise.all(responses.filter((response) => response.status === 201).map(async (response) => ((await response.json()) as { id: string }).id));
    expect(responses.map((response) => response.status).sort()).toEqual([201, 201, 429, 429]);
    const stillPooled = (await pooledLeases(url, holder)).map((row) => row.id);
    for (const row of ready) expect(created.includes(row.id) !== stillPooled.includes(row.id)).toBe(true);
    const [live] = await query<{ n: number }>(url, `SELECT count(*)::int AS n FROM pglease.leases WHERE quota_ip = '198.51.100.2' AND state = 'active'`);
    expect(live!.n).toBe(2);

    // 4 live leases plus the pool: one more fills the database (PGLEASE_MAX_LEASES=5)...
    await poolFilled(url, holder, 2);
    expect((await post(service, {}, client(3))).status).toBe(201);
    // ...and the next is refused, pool or not
    const full = await post(service, {}, client(4));
    expect(full.status).toBe(503);
    expect(((await full.json()) as { message: string }).message).toMatch(/full: 5 live leases/);
  });
});

describe('a claim under per-client limits', () => {
  let service: TestService;
  beforeAll(async () => {
    service = await start({ PGLEASE_LEASE_POOL: '1' });
  });

  it('charges its lease to the client in the claim itself: the throttle check writes no second row version', async () => {
    const url = service.host.databaseUrl;
    const [pooled] = await poolFilled(url, service.context.leasePool.holder, 1);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query('BEGIN');
      // what LeaseStore.claim runs for a caller under per-client limits
      const { rows } = await client.query<{ quota_ip: string }>(
        `SELECT l.quota_ip FROM pglease.claim_pooled_lease($1, NULL, $2, sha256('x'), interval '1 minute', NULL, '192.0.2.9', '192.0.2.9') AS l,
                LATERAL pglease.check_create_limits(l.id, '192.0.2.9', 100, 20, 0)`,
        [service.context.leasePool.holder, [pooled!.id]],
      );
      expect(rows).toEqual([{ quota_ip: '192.0.2.9' }]);
      const stats = await client.query<{ n_tup_upd: string }>(`SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relid = 'pglease.leases'::regclass`);
      expect(Number(stats.rows[0]!.n_tup_upd)).toBe(1);
    } finally {
      await client.query('ROLLBACK');
      await client.end();
    }
  });
});

describe('several processes on one database', () => {
  it('each claims only its own pooled leases, whose passwords only it knows', async () => {
    const database = `pglease_test_${randomBytes(4).toString('hex')}`;
    const [first, second] = [await start({ PGLEASE_DATABASE: database }), await start({ PGLEASE_DATABASE: database })];
    const url = first.host.databaseUrl;
    const firstPool = await poolFilled(url, first.context.leasePool.holder, 2);
    const secondPool = await poolFilled(url, second.context.leasePool.holder, 2);
    expect(first.context.leasePool.holder).not.toBe(second.context.leasePool.holder);

    // claiming the other process's lease by id, with the other holder, is refused by Postgres
    const [{ n }] = await query<{ n: number }>(
      url,
      `SELECT count(*)::int AS n FROM pglease.claim_pooled_lease($1, NULL, $2, sha256('x'), interval '1 minute', NULL, NULL, NULL)`,
      [second.context.leasePool.holder, firstPool.map((row) => row.id)],
    );
    expect(n).toBe(0);

    const fromFirst = await Promise.all([createLease(first), createLease(first)]);
    const fromSecond = await Promise.all([createLease(second), createLease(second)]);
    expect(fromFirst.map((lease) => lease.id).sort()).toEqual(firstPool.map((row) => row.id).sort());
    expect(fromSecond.map((lease) => lease.id).sort()).toEqual(secondPool.map((row) => row.id).sort());
    for (const lease of [...fromFirst, ...fromSecond]) expect(await query(lease.url, 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
  }, 120_000);

  // two pglease processes start one after the other here (8-10 s each with two suites on two
  // cores): 28 s in a passing run and one timeout at 30 s, both under that load; on session 15's
  // slower machine, over 90 s once beside a second suite
  it('a process that stops releases its pool; one that dies leaves leases that expire within a minute and are reaped', { timeout: 180_000 }, async () => {
    const database = `pglease_test_${randomBytes(4).toString('hex')}`;
    // no schedulers: this test runs the reaper and cleanup-orphans itself, when it means to
    const env = { PGLEASE_LEASE_POOL: '2', PGLEASE_SCHEDULER: 'off' };
    const survivor = await start({ PGLEASE_DATABASE: database, ...env });
    const url = survivor.host.databaseUrl;
    const known = new Set([survivor.context.leasePool.holder]);
    /** Starts a pglease process and finds its pool: the one holder not seen before. */
    const startWithPool = async () => {
      const child = await startServiceProcess(database, env);
      processes.push(child);
      const holder = await waitFor('the new process\'s pool', async () => {
        const rows = await query<{ holder: string }>(url, 'SELECT DISTINCT holder::text FROM pglease.lease_pool WHERE holder <> ALL ($1::uuid[])', [[...known]]);
        return rows[0]?.holder;
      });
      known.add(holder);
      return { child, holder, pooled: await poolFilled(url, holder, 2) };
    };
    const objectsLeft = async (pooled: PooledRow[]) =>
      (await query<{ name: string }>(
        url,
        `SELECT nspname AS name FROM pg_namespace WHERE nspname = ANY ($1)
         UNION ALL SELECT rolname FROM pg_roles WHERE rolname LIKE ANY (SELECT s || '%' FROM unnest($1::text[]) s)`,
        [pooled.map((row) => row.schema_name)],
      )).map((row) => row.name);
    const rowsLeft = async (pooled: PooledRow[]) =>
      query(url, 'SELECT id FROM pglease.leases WHERE id = ANY ($1)', [pooled.map((row) => row.id)]);

    const stopping = await startWithPool();
    const dying = await startWithPool();

    // SIGTERM: the process releases its own pool on the way out, rows and objects
    expect(await stopServiceProcess(stopping.child)).toBe(0);
    expect(await rowsLeft(stopping.pooled)).toEqual([]);
    expect(await objectsLeft(stopping.pooled)).toEqual([]);

    // SIGKILL: its leases stay parked, expiring within one hold, and no one else can claim them
    dying.child.child.kill('SIGKILL');
    expect(await dying.child.exited).toBe('SIGKILL');
    for (const row of dying.pooled) expect(row.expires_at.getTime() - Date.now()).toBeLessThanOrEqual(60_000);
    const claimed = await Promise.all([createLease(survivor), createLease(survivor), createLease(survivor)]);
    for (const row of dying.pooled) expect(claimed.map((lease) => lease.id)).not.toContain(row.id);
    // cleanup-orphans leaves parked leases alone: they have their rows
    await survivor.host.pool.query('SELECT pglease.cleanup_orphans()');
    expect(await objectsLeft(dying.pooled)).toHaveLength(2 * 4);

    // a minute later (here: now) they have expired, and the reaper drops them without a trace
    await survivor.host.pool.query('UPDATE pglease.leases SET expires_at = now() WHERE id = ANY ($1)', [dying.pooled.map((row) => row.id)]);
    const { rows } = await survivor.host.pool.query<{ reaped: number }>('SELECT reaped FROM pglease.reap_expired(50)');
    expect(rows[0]!.reaped).toBe(2);
    expect(await rowsLeft(dying.pooled)).toEqual([]);
    expect(await objectsLeft(dying.pooled)).toEqual([]);
  });

  it('the heartbeat extends only the holder\'s pooled leases and forgets claimed ones', async () => {
    const service = await start({ PGLEASE_LEASE_POOL: '2' });
    const holder = service.context.leasePool.holder;
    const pooled = await poolFilled(service.host.databaseUrl, holder, 2);
    const lease = await createLease(service);
    const held = await query<{ id: string }>(service.host.databaseUrl, `SELECT id FROM pglease.hold_pooled_leases($1, interval '60 seconds') AS id`, [holder]);
    const heldIds = held.map((row) => row.id);
    expect(heldIds).not.toContain(lease.id);
    for (const row of pooled.filter((row) => row.id !== lease.id)) expect(heldIds).toContain(row.id);
    expect(await query(service.host.databaseUrl, `SELECT id FROM pglease.hold_pooled_leases(gen_random_uuid(), interval '60 seconds') AS id`)).toEqual([]);
  });
});
