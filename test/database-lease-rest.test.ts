/**
 * The REST API and OpenAPI document over a database lease (issue 14): its pools connect to the
 * lease's own database, the exposed schemas are its own (public first, chosen with Accept-Profile
 * and Content-Profile, 406 PGRST106 for others), and DDL in its database drops the schema cache
 * through the event trigger the lease template gave it.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';

let service: TestService;
let lease: CreatedLeaseJson;
let sql: pg.Client;

beforeAll(async () => {
  service = await startTestService({ PGLEASE_DATABASE_LEASE_POOL: '0' });
  lease = await createLease(service, { kind: 'database' });
  sql = new pg.Client({ connectionString: lease.url });
  await sql.connect();
  await sql.query(`CREATE EXTENSION citext`);
  await sql.query(`CREATE TABLE people (id int PRIMARY KEY, email citext NOT NULL)`);
  await sql.query(`INSERT INTO people VALUES (1, 'Ada@example.org'), (2, 'bob@example.org')`);
  await sql.query(`CREATE SCHEMA app`);
  await sql.query(`CREATE TABLE app.things (id int PRIMARY KEY, name text)`);
  await sql.query(`INSERT INTO app.things VALUES (10, 'thing')`);
});

afterAll(async () => {
  await sql?.end().catch(() => undefined);
  await service?.close();
});

async function rest(path: string, init: RequestInit = {}): Promise<{ status: number; body: unknown; headers: Headers }> {
  const response = await fetch(`${lease.rest_url}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${lease.token}`, ...(init.headers as Record<string, string> | undefined) },
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? null : JSON.parse(text), headers: response.headers };
}

describe('REST over a database lease', () => {
  it('serves public by default, on connections to the lease database', async () => {
    const { status, body } = await rest('/people?email=eq.ADA@EXAMPLE.ORG');
    expect(status).toBe(200);
    expect(body).toEqual([{ id: 1, email: 'Ada@example.org' }]);
    const sessions = await sql.query<{ database: string }>(
      `SELECT DISTINCT datname AS database FROM pg_stat_activity WHERE usename = $1`,
      [`${lease.role}_auth`],
    );
    expect(sessions.rows.map((row) => row.database)).toEqual([lease.database]);
  });

  it('serves its other schemas by Accept-Profile and Content-Profile, and refuses others with 406', async () => {
    expect((await rest('/things', { headers: { 'accept-profile': 'app' } })).body).toEqual([{ id: 10, name: 'thing' }]);
    const written = await rest('/things', {
      method: 'POST',
      headers: { 'content-profile': 'app', 'content-type': 'application/json', prefer: 'return=representation' },
      body: JSON.stringify({ id: 11, name: 'another' }),
    });
    expect(written.status).toBe(201);
    expect(written.body).toEqual([{ id: 11, name: 'another' }]);
    const refused = await rest('/things', { headers: { 'accept-profile': 'pg_catalog' } });
    expect(refused.status).toBe(406);
    expect(refused.body).toMatchObject({ code: 'PGRST106', message: 'The schema must be one of the following: public, app' });
    expect((await rest('/people', { headers: { 'accept-profile': 'pglease' } })).status).toBe(406);
  });

  it('drops its schema cache on DDL in its database (the template\'s event trigger)', async () => {
    await sql.query('CREATE TABLE doomed (id int)');
    expect((await rest('/doomed')).status).toBe(200);
    await sql.query('DROP TABLE doomed');
    const dropped = Date.now();
    let took = 0;
    for (;;) {
      const { body } = await rest('/doomed');
      if ((body as { code?: string }).code === 'PGRST205') break;
      took = Date.now() - dropped;
      if (took > 10_000) throw new Error('the schema cache kept a dropped table for 10 s');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // measured 28-51 ms from the DROP's commit to the first answer without the table (polling
    // every 20 ms, requests included); bounded generously for a loaded machine
    expect(took).toBeLessThan(2_000);
    // a new schema is served too, without any request having named it before
    await sql.query('CREATE SCHEMA later; CREATE TABLE later.t (id int); INSERT INTO later.t VALUES (1)');
    const deadline = Date.now() + 10_000;
    let later = await rest('/t', { headers: { 'accept-profile': 'later' } });
    while (later.status !== 200 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      later = await rest('/t', { headers: { 'accept-profile': 'later' } });
    }
    expect(later.body).toEqual([{ id: 1 }]);
  });

  it('documents public in its OpenAPI document', async () => {
    const { status, body } = await rest('/');
    expect(status).toBe(200);
    const paths = Object.keys((body as { paths: Record<string, unknown> }).paths);
    expect(paths).toContain('/people');
    expect(paths).not.toContain('/things');
  });
});
