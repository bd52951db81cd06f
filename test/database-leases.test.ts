/**
 * Database leases (issue 14): a database of its own per lease, cloned from the lease template,
 * through the same lifecycle as schema leases (create, renew, release, reaper, cleanup-orphans),
 * from the warm pool and without it. Run against the test cluster, through the lease's own URL.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, createLease, queryUrl, startTestService, superuserDatabaseUrl, type CreatedLeaseJson, type TestService } from './support/service.js';
import { waitFor } from './support/wait.js';
import { lease as testLease } from '../src/testing/index.js';

let service: TestService;

beforeAll(async () => {
  service = await startTestService({ PGLEASE_DATABASE_LEASE_POOL: '1' });
});

afterAll(async () => {
  await service?.close();
});

function serverUrl(database: string): string {
  const url = new URL(superuserDatabaseUrl(service));
  url.pathname = '/' + database;
  return url.toString();
}

async function databaseExists(name: string): Promise<boolean> {
  const rows = await queryUrl(superuserDatabaseUrl(service), 'SELECT 1 FROM pg_database WHERE datname = $1', [name]);
  return rows.length > 0;
}

async function roleExists(name: string): Promise<boolean> {
  const rows = await queryUrl(superuserDatabaseUrl(service), 'SELECT 1 FROM pg_roles WHERE rolname = $1', [name]);
  return rows.length > 0;
}

async function release(lease: { id: string; token: string }): Promise<Response> {
  return fetch(`${service.baseUrl}/v1/leases/${lease.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${lease.token}` } });
}

/** The SQLSTATE a statement fails with (or 'ok'). */
async function outcome(url: string, sql: string): Promise<string> {
  try {
    await queryUrl(url, sql);
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

describe('a database lease', () => {
  let lease: CreatedLeaseJson & { kind: string };

  beforeAll(async () => {
    lease = (await createLease(service, { kind: 'database' })) as CreatedLeaseJson & { kind: string };
  });

  it('says its kind, and its URL lands in its own database, in public, as its own role', async () => {
    expect(lease.kind).toBe('database');
    expect(lease.database).toBe(lease.role);
    expect(lease.database).toMatch(/^lease_[0-9a-f]{16}$/);
    expect(lease.schema).toBe('public');
    const [row] = await queryUrl<{ database: string; user: string; schema: string; owner: string; search_path: string; super: boolean; createdb: boolean; createrole: boolean }>(
      lease.url,
      `SELECT current_database() AS database, current_user AS user, current_schema() AS schema,
              pg_get_userbyid(d.datdba) AS owner, current_setting('search_path') AS search_path,
              r.rolsuper AS super, r.rolcreatedb AS createdb, r.rolcreaterole AS createrole
         FROM pg_database d, pg_roles r WHERE d.datname = current_database() AND r.rolname = current_user`,
    );
    expect(row).toEqual({ database: lease.database, user: lease.role, schema: 'public', owner: lease.role, search_path: '"$user", public', super: false, createdb: false, createrole: false });
  });

  it('may connect to its database only: PUBLIC has no CONNECT there, the lease database is closed to it', async () => {
    const [acl] = await queryUrl<{ public_connect: boolean; anon_connect: boolean }>(
      superuserDatabaseUrl(service),
      `SELECT has_database_privilege('public', $1, 'CONNECT') AS public_connect, has_database_privilege($2, $1, 'CONNECT') AS anon_connect`,
      [lease.database, lease.anon_role],
    );
    expect(acl).toEqual({ public_connect: false, anon_connect: false });
    const shared = new URL(lease.url);
    shared.pathname = '/' + service.config.leaseDatabase;
    expect(await outcome(shared.toString(), 'SELECT 1')).toBe('42501');
  });

  it('owns public: schemas, types and trusted extensions work; untrusted ones are refused', async () => {
    await queryUrl(lease.url, `CREATE TYPE mood AS ENUM ('happy', 'sad')`);
    await queryUrl(lease.url, 'CREATE TABLE people (id int PRIMARY KEY, mood mood)');
    await queryUrl(lease.url, 'CREATE SCHEMA app');
    await queryUrl(lease.url, 'CREATE TABLE app.things (id int)');
    for (const extension of ['pgcrypto', 'uuid-ossp', 'citext', 'hstore', 'pg_trgm', 'btree_gist', 'ltree', 'unaccent']) {
      expect(`${extension}: ${await outcome(lease.url, `CREATE EXTENSION "${extension}"`)}`).toBe(`${extension}: ok`);
    }
    const [uuid] = await queryUrl<{ ok: boolean }>(lease.url, `SELECT uuid_generate_v4() IS NOT NULL AND 'A'::citext = 'a'::citext AS ok`);
    expect(uuid!.ok).toBe(true);
    for (const extension of ['dblink', 'postgres_fdw', 'file_fdw', 'plpython3u', 'plperlu', 'adminpack']) {
      const code = await outcome(lease.url, `CREATE EXTENSION "${extension}"`);
      // 42501: not trusted; 58P01/0A000: not shipped with this server
      expect(['42501', '58P01', '0A000'], `${extension}: ${code}`).toContain(code);
    }
    expect(await outcome(lease.url, 'CREATE EXTENSION dblink')).toBe('42501');
  });

  it('counts its rows in its own database, as the lease', async () => {
    await queryUrl(lease.url, `INSERT INTO people SELECT g, 'happy' FROM generate_series(1, 7) g`);
    await queryUrl(lease.url, 'INSERT INTO app.things SELECT generate_series(1, 5)');
    const response = await fetch(`${service.baseUrl}/v1/leases/${lease.id}/stats`, { headers: { authorization: `Bearer ${lease.token}` } });
    expect(response.status).toBe(200);
    const stats = (await response.json()) as { tables: number; rows: number; rows_exact: boolean; size_bytes: number };
    expect(stats).toMatchObject({ tables: 2, rows: 12, rows_exact: true });
    expect(stats.size_bytes).toBeGreaterThan(0);
  });

  it('is renewed and released like any lease: DROP DATABASE and its roles go', async () => {
    const renewed = await fetch(`${service.baseUrl}/v1/leases/${lease.id}/renew`, {
      method: 'POST',
      headers: { authorization: `Bearer ${lease.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ttl: '2h' }),
    });
    expect(renewed.status).toBe(200);
    const session = new pg.Client({ connectionString: lease.url });
    session.on('error', () => undefined);
    await session.connect();
    const response = await release(lease);
    expect(response.status).toBe(204);
    const [row] = await queryUrl<{ state: string }>(superuserDatabaseUrl(service), 'SELECT state FROM pglease.leases WHERE id = $1', [lease.id]);
    expect(row!.state).toBe('released');
    expect(await databaseExists(lease.database)).toBe(false);
    expect(await roleExists(lease.role)).toBe(false);
    expect(await roleExists(`${lease.role}_auth`)).toBe(false);
    await expect(session.query('SELECT 1')).rejects.toThrow();
    await session.end().catch(() => undefined);
    const queued = await queryUrl(superuserDatabaseUrl(service), 'SELECT 1 FROM pglease.database_drops');
    expect(queued).toEqual([]);
  });
});

describe('creates', () => {
  it('refuses an unknown kind with the field named', async () => {
    const response = await fetch(`${service.baseUrl}/v1/leases`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ kind: 'cluster' }) });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { code: string; message: string; field?: string };
    expect(body.code).toBe('PGLEASE_INVALID_FIELD');
    expect(body.field).toBe('kind');
    expect(body.message).toMatch(/schema|database/);
  });

  it('keeps schema leases the default, and hands out database leases from their own warm pool', async () => {
    const plain = (await createLease(service)) as CreatedLeaseJson & { kind: string };
    expect(plain.kind).toBe('schema');
    expect(plain.database).toBe(service.config.leaseDatabase);
    // the first database create starts the database pool (PGLEASE_DATABASE_LEASE_POOL=1)
    await createLease(service, { kind: 'database' });
    await waitFor('a database lease in the warm pool', async () => (service.context.leasePool.readySize(null, 'database') >= 1 ? true : undefined), 30_000);
    const before = service.context.leasePool.creates.hits;
    const pooled = (await createLease(service, { kind: 'database' })) as CreatedLeaseJson & { kind: string };
    expect(service.context.leasePool.creates.hits).toBe(before + 1);
    expect(pooled.kind).toBe('database');
    const [row] = await queryUrl<{ database: string }>(pooled.url, 'SELECT current_database() AS database');
    expect(row!.database).toBe(pooled.database);
    // the schema pool never hands out a database lease, nor the other way round
    expect(((await createLease(service)) as CreatedLeaseJson & { kind: string }).kind).toBe('schema');
  });

  it('is reaped at its expiry, database and roles', async () => {
    const lease = await createLease(service, { kind: 'database', ttl: 1 }, { authorization: `Bearer ${ADMIN_TOKEN}` });
    await waitFor('the reaper to drop the expired database lease', async () => ((await databaseExists(lease.database)) || (await roleExists(lease.role)) ? undefined : true), 30_000);
    const [row] = await queryUrl<{ state: string }>(superuserDatabaseUrl(service), 'SELECT state FROM pglease.leases WHERE id = $1', [lease.id]);
    expect(row!.state).toBe('expired');
  });
});

describe('pglease/testing', () => {
  it("lease({ kind: 'database' }) hands out a database lease and releases it", async () => {
    const leased = await testLease({ server: service.baseUrl, local: 'never', kind: 'database', ttl: 60 });
    const [row] = await queryUrl<{ database: string }>(leased.url, 'SELECT current_database() AS database');
    expect(row!.database).toBe(leased.database);
    expect(leased.database).not.toBe(service.config.leaseDatabase);
    await leased.release();
    expect(await databaseExists(leased.database)).toBe(false);
  });
});

describe('crash safety', () => {
  it('cleanup-orphans drops a lease database left without a live lease, and finishes an interrupted drop', async () => {
    const lease = await createLease(service, { kind: 'database' });
    // a release whose process died after its transaction: the database and roles are still there
    await queryUrl(superuserDatabaseUrl(service), `SELECT pglease.release($1)`, [lease.id]);
    expect(await databaseExists(lease.database)).toBe(true);
    // a database whose lease row is gone altogether (a kill -9 mid-create, then the row pruned)
    const orphan = await createLease(service, { kind: 'database' });
    await queryUrl(superuserDatabaseUrl(service), `WITH e AS (DELETE FROM pglease.lease_events WHERE lease_id = $1) DELETE FROM pglease.leases WHERE id = $1`, [orphan.id]);
    const run = await fetch(`${service.baseUrl}/v1/jobs/cleanup-orphans/run`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(run.status).toBeLessThan(300);
    await waitFor('cleanup-orphans to drop both databases and their roles', async () => {
      for (const name of [lease.database, orphan.database]) if ((await databaseExists(name)) || (await roleExists(name))) return undefined;
      return true;
    }, 30_000);
    expect(await queryUrl(superuserDatabaseUrl(service), 'SELECT 1 FROM pglease.database_drops')).toEqual([]);
  });

  it('the lease template is the service\'s and closed to leases', async () => {
    const lease = await createLease(service, { kind: 'database' });
    const template = `${service.config.leaseDatabase}_lease_template`;
    const [row] = await queryUrl<{ owner: string; connect: boolean }>(
      superuserDatabaseUrl(service),
      `SELECT pg_get_userbyid(datdba) AS owner, has_database_privilege($2, datname, 'CONNECT') AS connect FROM pg_database WHERE datname = $1`,
      [template, lease.role],
    );
    expect(row).toEqual({ owner: `${service.config.leaseDatabase}_service`, connect: false });
    const other = new URL(lease.url);
    other.pathname = '/' + template;
    expect(await outcome(other.toString(), 'SELECT 1')).toBe('42501');
    expect(await outcome(lease.url, `DROP DATABASE "${template}"`)).toBe('42501');
    expect(await outcome(lease.url, `ALTER DATABASE "${template}" ALLOW_CONNECTIONS true`)).toBe('42501');
    expect(await outcome(lease.url, `CREATE DATABASE mine TEMPLATE "${template}"`)).toBe('42501');
    // its event triggers are a superuser's, in every lease database
    const [triggers] = await queryUrl<{ n: number }>(serverUrl(lease.database), `SELECT count(*)::int AS n FROM pg_event_trigger WHERE evtname LIKE 'pglease_rest_%'`);
    expect(triggers!.n).toBe(2);
  });
});
