/**
 * Snapshots and restores of a database lease (issue 14: the test helpers' snapshot()/restore()): a
 * suite seeds once, snapshots, and resets the lease to that state between tests at the same URL,
 * without re-running its migrations.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lease as testLease, type Lease } from '../src/testing/index.js';
import { createLease, queryUrl, startTestService, superuserDatabaseUrl, type CreatedLeaseJson, type TestService } from './support/service.js';

type DatabaseLease = CreatedLeaseJson & { database: string; rest_url: string; anon_role: string };

let service: TestService;

beforeAll(async () => {
  service = await startTestService({ PGLEASE_DATABASE_LEASE_POOL: '0' });
});

afterAll(async () => {
  await service?.close();
});

/**
 * A control API call, tried again while it answers 409 PGLEASE_LEASE_BUSY ("try again", as a client
 * does): a restore prepares its next copy in the background, and at load 11 the next test's restore
 * found the lease busy with it once.
 */
async function call(lease: { id: string; token: string }, method: string, path: string, body?: unknown): Promise<Response> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const response = await fetch(`${service.baseUrl}/v1/leases/${lease.id}${path}`, {
      method,
      headers: { authorization: `Bearer ${lease.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status !== 409) return response;
    const text = await response.text();
    if (!text.includes('"PGLEASE_LEASE_BUSY"') || Date.now() > deadline) return new Response(text, { status: response.status, headers: response.headers });
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function databases(prefix: string): Promise<string[]> {
  const rows = await queryUrl<{ datname: string }>(superuserDatabaseUrl(service), `SELECT datname FROM pg_database WHERE datname LIKE $1 || '%' ORDER BY datname`, [prefix]);
  return rows.map((row) => row.datname);
}

describe('snapshots of a database lease', () => {
  let lease: DatabaseLease;

  beforeAll(async () => {
    lease = (await createLease(service, { kind: 'database', ttl: 600 })) as DatabaseLease;
    await queryUrl(lease.url, `CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);
                               INSERT INTO notes (body) SELECT 'seed ' || i FROM generate_series(1, 100) i;
                               GRANT SELECT ON notes TO ${lease.anon_role}`);
  });

  it('resets the database to the snapshot at the same URL, ending the sessions that saw the old contents', async () => {
    const taken = await call(lease, 'POST', '/snapshots', { name: 'seeded' });
    expect(taken.status, await taken.clone().text()).toBe(201);
    expect(await taken.json()).toMatchObject({ name: 'seeded', sessions_ended: 0 });

    const pool = new pg.Pool({ connectionString: lease.url, max: 2 });
    pool.on('error', () => undefined);
    await pool.query(`INSERT INTO notes (body) VALUES ('after the snapshot')`);
    await pool.query(`CREATE TABLE scratch (x int)`);
    expect((await pool.query('SELECT count(*)::int AS n FROM notes')).rows[0].n).toBe(101);

    const restored = await call(lease, 'POST', '/restore', { name: 'seeded' });
    expect(restored.status, await restored.clone().text()).toBe(200);
    const body = (await restored.json()) as { restored_from: string; sessions_ended: number };
    expect(body.restored_from).toBe('seeded');
    expect(body.sessions_ended).toBeGreaterThanOrEqual(1);

    // the pool's old sessions were ended: a query may fail once, then the pool reconnects
    await pool.query('SELECT 1').catch(() => undefined);
    const [after] = await queryUrl<{ n: number; scratch: string | null; owner: string; db: string }>(
      lease.url,
      `SELECT (SELECT count(*)::int FROM notes) AS n, to_regclass('scratch')::text AS scratch,
              pg_get_userbyid((SELECT datdba FROM pg_database WHERE datname = current_database())) AS owner, current_database() AS db`,
    );
    expect(after).toEqual({ n: 100, scratch: null, owner: lease.role, db: lease.database });
    expect((await pool.query('SELECT count(*)::int AS n FROM notes')).rows[0].n).toBe(100);
    await pool.end();

    // again, from the same snapshot
    await queryUrl(lease.url, `DELETE FROM notes`);
    expect((await call(lease, 'POST', '/restore', { name: 'seeded' })).status).toBe(200);
    const [again] = await queryUrl<{ n: number }>(lease.url, 'SELECT count(*)::int AS n FROM notes');
    expect(again!.n).toBe(100);
  });

  it('serves the restored contents over REST at once', async () => {
    await queryUrl(lease.url, `INSERT INTO notes (body) VALUES ('rest sees this')`);
    const before = await fetch(`${lease.rest_url}/notes?select=id`, { headers: { prefer: 'count=exact' } });
    expect(before.headers.get('content-range')).toBe('0-100/101');
    expect((await call(lease, 'POST', '/restore', { name: 'seeded' })).status).toBe(200);
    const after = await fetch(`${lease.rest_url}/notes?select=id`, { headers: { prefer: 'count=exact' } });
    expect(after.status).toBe(200);
    expect(after.headers.get('content-range')).toBe('0-99/100');
  });

  it('keeps snapshots no lease can reach, lists them, replaces one of the same name, and deletes them', async () => {
    expect(await databases(`${lease.database}_s_`)).toEqual([`${lease.database}_s_seeded`]);
    const [closed] = await queryUrl<{ owner: string; allow: boolean; public_connect: boolean }>(
      superuserDatabaseUrl(service),
      `SELECT pg_get_userbyid(datdba) AS owner, datallowconn AS allow, has_database_privilege('public', datname, 'CONNECT') AS public_connect
         FROM pg_database WHERE datname = $1`,
      [`${lease.database}_s_seeded`],
    );
    expect(closed!.owner).not.toBe(lease.role);
    expect(closed).toMatchObject({ allow: false, public_connect: false });
    const snapshotUrl = new URL(lease.url);
    snapshotUrl.pathname = `/${lease.database}_s_seeded`;
    await expect(queryUrl(snapshotUrl.toString(), 'SELECT 1')).rejects.toThrow();
    await expect(queryUrl(lease.url, `ALTER DATABASE ${lease.database}_s_seeded ALLOW_CONNECTIONS true`)).rejects.toThrow(/must be owner/);
    await expect(queryUrl(lease.url, `DROP DATABASE ${lease.database}_s_seeded`)).rejects.toThrow(/must be owner/);

    await queryUrl(lease.url, `INSERT INTO notes (body) VALUES ('in the second snapshot')`);
    expect((await call(lease, 'POST', '/snapshots')).status).toBe(201);
    expect((await call(lease, 'POST', '/snapshots')).status).toBe(201); // replaces "snapshot"
    const listed = (await (await call(lease, 'GET', '/snapshots')).json()) as { items: { name: string; size_bytes: number }[] };
    expect(listed.items.map((item) => item.name)).toEqual(['seeded', 'snapshot']);
    expect(listed.items[0]!.size_bytes).toBeGreaterThan(1_000_000);
    expect((await call(lease, 'POST', '/restore')).status).toBe(200);
    const [n] = await queryUrl<{ n: number }>(lease.url, 'SELECT count(*)::int AS n FROM notes');
    expect(n!.n).toBe(101);

    expect((await call(lease, 'DELETE', '/snapshots/snapshot')).status).toBe(204);
    expect((await call(lease, 'DELETE', '/snapshots/snapshot')).status).toBe(404);
    expect(await databases(`${lease.database}_s_`)).toEqual([`${lease.database}_s_seeded`]);
  }, 120_000); // eight CREATE DATABASEs and their drops: ~10 s alone, far more on a loaded machine

  it('answers clear errors: unknown snapshot, bad name, too many, a schema lease', async () => {
    const missing = await call(lease, 'POST', '/restore', { name: 'nope' });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { code: string }).code).toBe('PGLEASE_SNAPSHOT_NOT_FOUND');
    const bad = await call(lease, 'POST', '/snapshots', { name: 'Bad Name' });
    expect(bad.status).toBe(400);
    for (const name of ['b', 'c', 'd']) expect((await call(lease, 'POST', '/snapshots', { name })).status).toBe(201);
    const tooMany = await call(lease, 'POST', '/snapshots', { name: 'e' });
    expect(tooMany.status).toBe(409);
    expect(((await tooMany.json()) as { code: string }).code).toBe('PGLEASE_SNAPSHOT_LIMIT');
    const schemaLease = await createLease(service, { kind: 'schema' });
    const refused = await call(schemaLease, 'POST', '/snapshots');
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { message: string }).message).toMatch(/"kind": "database"/);
  });

  it('go with the lease: its release drops its snapshots, its database and its roles', async () => {
    expect((await call(lease, 'DELETE', '')).status).toBe(204);
    // the database, its snapshots, and a restore's copy a background step may still be making
    // (dropped by the reaper's next round)
    await expect.poll(() => databases(lease.database), { timeout: 60_000, interval: 500 }).toEqual([]);
    // the roles go in the step after their last database's DROP (pglease.finish_database_drop): at
    // load 10-12 a look right after the databases had gone still found them once
    const roles = async () =>
      (await queryUrl<{ n: number }>(superuserDatabaseUrl(service), `SELECT count(*)::int AS n FROM pg_roles WHERE rolname LIKE $1 || '%'`, [lease.role]))[0]!.n;
    await expect.poll(roles, { timeout: 30_000, interval: 200 }).toBe(0);
  }, 90_000);
});

describe('the test helpers', () => {
  it('snapshot() once after seeding, restore() before each test', async () => {
    const leased: Lease = await testLease({ server: service.baseUrl, adminToken: undefined, kind: 'database' } as Parameters<typeof testLease>[0]);
    try {
      await queryUrl(leased.url, `CREATE TABLE users (id int PRIMARY KEY); INSERT INTO users SELECT generate_series(1, 10)`);
      await leased.snapshot();
      for (let test = 0; test < 3; test++) {
        await leased.restore();
        const [row] = await queryUrl<{ n: number }>(leased.url, 'SELECT count(*)::int AS n FROM users');
        expect(row!.n).toBe(10);
        await queryUrl(leased.url, `DELETE FROM users WHERE id <= 5`);
      }
    } finally {
      await leased.release();
    }
  }, 90_000);
});
