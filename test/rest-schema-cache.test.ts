/**
 * The schema cache is never stale: DDL through the lease's own connection is served by REST right
 * after it commits, relationships follow new foreign keys, one lease's reload does not block
 * another's requests, and a released lease stops answering. Past their bound, the caches used
 * longest ago go first.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RestService } from '../src/rest/rest-service.js';
import { loadSchemaCache, SCHEMA_BASE_BYTES, schemaCacheFromDocument } from '../src/rest/schema/load.js';
import { SchemaCaches } from '../src/rest/schema/schema-caches.js';
import { createLease } from './support/service.js';
import { getJson, startRestFixture, type RestFixture } from './support/rest-fixture.js';

let fixture: RestFixture;

beforeAll(async () => {
  fixture = await startRestFixture('create table seed (id int primary key)');
});

afterAll(async () => {
  await fixture?.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('schema cache', () => {
  it('serves a table created through the lease URL right after the DDL commits', async () => {
    expect((await getJson(fixture, '/seed')).status).toBe(200); // the cache is loaded now
    await fixture.sql.query("create table fresh (id int primary key, name text); insert into fresh values (1, 'new')");
    const { status, body } = await getJson(fixture, '/fresh');
    expect(status).toBe(200);
    expect(body).toEqual([{ id: 1, name: 'new' }]);
  });

  it('follows a foreign key added after the cache was loaded', async () => {
    await fixture.sql.query('create table parents (id int primary key); create table kids (id int primary key, parent_id int); insert into parents values (1); insert into kids values (10, 1)');
    expect((await getJson(fixture, '/kids?select=id')).status).toBe(200);
    await fixture.sql.query('alter table kids add foreign key (parent_id) references parents');
    const { status, body } = await getJson(fixture, '/kids?select=id,parents(id)');
    expect(status).toBe(200);
    expect(body).toEqual([{ id: 10, parents: { id: 1 } }]);
  });

  it('drops the cache on DDL (event trigger), so a dropped table is gone at once', async () => {
    await fixture.sql.query('create table doomed (id int)');
    expect((await getJson(fixture, '/doomed')).status).toBe(200);
    await fixture.sql.query('drop table doomed');
    // the notification arrives within milliseconds of the commit
    await sleep(100);
    expect((await getJson(fixture, '/doomed')).body).toMatchObject({ code: 'PGRST205' });
  });

  it('sees a renamed view column in embeddings after DDL', async () => {
    await fixture.sql.query('create view kid_view as select id, parent_id from kids');
    expect((await getJson(fixture, '/kid_view?select=id,parents(id)')).body).toEqual([{ id: 10, parents: { id: 1 } }]);
    await fixture.sql.query('alter view kid_view rename column parent_id to mom_id');
    await sleep(100);
    expect((await getJson(fixture, '/kid_view?select=id,mom_id,parents(id)')).body).toEqual([{ id: 10, mom_id: 1, parents: { id: 1 } }]);
  });

  it("does not make another lease wait for a lease's reload", async () => {
    const other = await createLease(fixture.service);
    const otherSql = new pg.Client({ connectionString: other.url });
    await otherSql.connect();
    try {
      await otherSql.query('create table t (id int); insert into t values (1)');
      const headers = { authorization: `Bearer ${other.token}` };
      expect((await fetch(`${other.rest_url}/t`, { headers })).status).toBe(200);
      // an uncommitted DDL in the first lease: its reloads see the old schema, the other lease is unaffected
      await fixture.sql.query('begin; create table slow (id int)');
      try {
        const started = Date.now();
        const [first, second] = await Promise.all([getJson(fixture, '/slow'), fetch(`${other.rest_url}/t`, { headers })]);
        expect(first.body).toMatchObject({ code: 'PGRST205' });
        expect(second.status).toBe(200);
        expect(Date.now() - started).toBeLessThan(3000);
      } finally {
        await fixture.sql.query('commit');
      }
      expect((await getJson(fixture, '/slow')).status).toBe(200);
    } finally {
      await otherSql.end();
    }
  });
});

describe('lease lifecycle', () => {
  it("does not wait for the lease's locks to load its schema: a locked table is no obstacle, a locked view gives 503 PGRST002", async () => {
    const lease = await createLease(fixture.service);
    const headers = { authorization: `Bearer ${lease.token}` };
    const sessions = [0, 1, 2].map(() => new pg.Client({ connectionString: lease.url }));
    for (const session of sessions) {
      session.on('error', () => undefined); // the release below ends them
      await session.connect();
    }
    const [tableHolder, viewHolder, other] = sessions as [pg.Client, pg.Client, pg.Client];
    try {
      await other.query('create table t (id int); create table u (id int); create view v as select * from u');
      // a lock held by a busy session (so the idle-in-transaction timeout does not end it)
      await tableHolder.query('begin; lock table t in access exclusive mode');
      void tableHolder.query('select pg_sleep(30)').catch(() => undefined);
      const u = await fetch(`${lease.rest_url}/u`, { headers, signal: AbortSignal.timeout(15_000) });
      expect(u.status).toBe(200);

      await viewHolder.query('begin; lock table v in access exclusive mode');
      void viewHolder.query('select pg_sleep(30)').catch(() => undefined);
      await other.query('create table w (id int)'); // a reload is due, and must look at v
      const answering = fetch(`${lease.rest_url}/w`, { headers, signal: AbortSignal.timeout(15_000) });
      // the load waits on a connection of the REST API's own, not on the service pool the control API needs
      await expect
        .poll(async () => (await fixture.service.host.pool.query(`SELECT application_name AS app FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%rest_schema%'`)).rows, { timeout: 1500, interval: 50 })
        .toEqual([{ app: 'pglease-rest-schema' }]);
      const w = await answering;
      expect(w.status).toBe(503);
      expect(w.headers.get('retry-after')).not.toBeNull();
      expect(await w.json()).toMatchObject({ code: 'PGRST002', message: 'Could not query the database for the schema cache. Retrying.' });
      // the service's connection gave up its wait
      const { rows } = await fixture.service.host.pool.query(
        `SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND relation = to_regclass(quote_ident($1) || '.v')`,
        [lease.schema],
      );
      expect(rows).toEqual([{ n: 0 }]);
    } finally {
      await fetch(`${fixture.service.baseUrl}/v1/leases/${lease.id}`, { method: 'DELETE', headers });
      await Promise.all(sessions.map((session) => session.end().catch(() => undefined)));
    }
  });

  it('stops answering once the lease is released', async () => {
    const lease = await createLease(fixture.service);
    const headers = { authorization: `Bearer ${lease.token}` };
    const sql = new pg.Client({ connectionString: lease.url });
    await sql.connect();
    await sql.query('create table t (id int)');
    await sql.end();
    expect((await fetch(`${lease.rest_url}/t`, { headers })).status).toBe(200);
    const released = await fetch(`${fixture.service.baseUrl}/v1/leases/${lease.id}`, { method: 'DELETE', headers });
    expect(released.status).toBe(204);
    const after = await fetch(`${lease.rest_url}/t`, { headers });
    expect(after.status).toBe(404);
    expect(await after.json()).toMatchObject({ code: 'PGLEASE_NOT_FOUND' });
  });
});

describe('a lease released while a request runs on it', () => {
  it('answers that request 404, as for any request after the release, not the error of its cut session', async () => {
    const lease = await createLease(fixture.service);
    const headers = { authorization: `Bearer ${lease.token}` };
    const sql = new pg.Client({ connectionString: lease.url });
    await sql.connect();
    await sql.query('create function slow() returns int language sql as $$ select 1 from pg_sleep(5) $$');
    await sql.end();
    const running = fetch(`${lease.rest_url}/rpc/slow`, { method: 'POST', headers });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await fetch(`${fixture.service.baseUrl}/v1/leases/${lease.id}`, { method: 'DELETE', headers })).status).toBe(204);
    const answer = await running;
    expect(answer.status).toBe(404);
    expect(await answer.json()).toMatchObject({ code: 'PGLEASE_NOT_FOUND' });
  });
});

describe('a lease that ended before this process heard of it', () => {
  it('answers 404, not the error its dropped roles and schema cause', async () => {
    // a RestService of its own, without the notification listener: its lease cache keeps the
    // lease as live, as a process does until the notification of the lease's end arrives
    const rest = new RestService(fixture.service.host);
    try {
      const lease = await createLease(fixture.service);
      const sql = new pg.Client({ connectionString: lease.url });
      await sql.connect();
      await sql.query('create table t (id int primary key); insert into t values (1)');
      await sql.end();
      const request = (method: string, path: string, body?: string) =>
        rest.handle({ leaseId: lease.id, token: lease.token, method, path, query: '', headers: { 'content-type': 'application/json' }, ...(body ? { body } : {}) });
      expect((await request('GET', '/t')).status).toBe(200);
      expect((await request('POST', '/t', '{"id":2}')).status).toBe(201);
      const released = await fetch(`${fixture.service.baseUrl}/v1/leases/${lease.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${lease.token}` } });
      expect(released.status).toBe(204);
      for (const [method, body] of [['GET', undefined], ['POST', '{"id":3}']] as const) {
        await expect(request(method, '/t', body)).rejects.toMatchObject({ code: 'PGLEASE_NOT_FOUND' });
      }
    } finally {
      await rest.close();
    }
  });
});

describe('request settings', () => {
  it("publishes PostgREST's request.* settings as soon as the lease's SQL reads them", async () => {
    await fixture.sql.query("create table notes (id int primary key, body text); insert into notes values (1, 'x')");
    expect((await getJson(fixture, '/notes')).body).toEqual([{ id: 1, body: 'x' }]);
    const readsSettings = async () => (await loadSchemaCache(fixture.service.host.pool, fixture.lease.schema, [])).readsRequestSettings;
    expect(await readsSettings()).toBe(false); // nothing reads them yet: requests only switch role
    await fixture.sql.query(`create view request_info as
      select current_setting('request.method', true) as method, current_setting('request.path', true) as path,
             current_setting('request.headers', true)::json->>'x-trace' as trace,
             current_setting('request.jwt.claims', true)::json->>'role' as role, current_user::text as "user"`);
    const { status, body } = await getJson(fixture, '/request_info', { headers: { 'x-trace': 'abc' } });
    expect(status).toBe(200);
    expect(body).toEqual([{ method: 'GET', path: '/request_info', trace: 'abc', role: fixture.lease.role, user: fixture.lease.role }]);
    expect(await readsSettings()).toBe(true);
  });

  it('publishes them to functions and policies too', async () => {
    await fixture.sql.query(`
      create table tickets (id int primary key, owner text);
      insert into tickets values (1, 'ann'), (2, 'bob');
      alter table tickets enable row level security;
      alter table tickets force row level security;
      create policy by_header on tickets using (owner = current_setting('request.headers', true)::json->>'x-user');`);
    expect((await getJson(fixture, '/tickets', { headers: { 'x-user': 'bob' } })).body).toEqual([{ id: 2, owner: 'bob' }]);
    expect((await getJson(fixture, '/tickets')).body).toEqual([]);
  });

  it('keeps the schema caches used last when there are more than its bound', async () => {
    const loads: string[] = [];
    const caches = new SchemaCaches(async (schema) => {
      loads.push(schema);
      return schemaCacheFromDocument({ schema, exists: true, relations: [], foreignKeys: [], routines: [], enums: {} }, Date.now());
    }, 2 * SCHEMA_BASE_BYTES);
    await caches.get('a', []);
    await caches.get('b', []);
    // a was loaded first but used again: c takes b's place
    await caches.get('a', []);
    await caches.get('c', []);
    expect(['a', 'b', 'c'].map((schema) => caches.has(schema))).toEqual([true, false, true]);
    await caches.get('a', []);
    expect(loads).toEqual(['a', 'b', 'c']);
  });

  it('bounds the caches by their size, not their number: a large schema takes the room of several small ones', async () => {
    const column = (name: string) => ({ name, position: 1, type: 'text', typeName: 'text', typeSchema: 'pg_catalog', typeKind: 'b', nullable: true, default: null, generated: false, identity: false, maxLength: null, description: null });
    const table = (name: string, columns: number) => ({
      name, kind: 'r', description: null, insertable: true, updatable: true, deletable: true,
      columns: Array.from({ length: columns }, (_, i) => column(`c${i}`)),
      primaryKey: [], uniqueKeys: [], privileges: {}, viewDefinition: null, oid: 1,
    });
    const document = (schema: string, columns: number) =>
      ({ schema, exists: true, relations: [table('t', columns)], foreignKeys: [], routines: [], enums: {} }) as unknown as Parameters<typeof schemaCacheFromDocument>[0];
    const small = schemaCacheFromDocument(document('small', 2)).estimatedBytes;
    const large = schemaCacheFromDocument(document('large', 40)).estimatedBytes;
    expect(large).toBeGreaterThan(5 * small);
    const caches = new SchemaCaches(async (schema) => schemaCacheFromDocument(document(schema, schema === 'large' ? 40 : 2)), large + 2 * small);
    for (const schema of ['a', 'b', 'c', 'd']) await caches.get(schema, []);
    // four small ones fit
    expect(['a', 'b', 'c', 'd'].map((schema) => caches.has(schema))).toEqual([true, true, true, true]);
    await caches.get('large', []);
    // the large one leaves room for the two small ones used last
    expect(['a', 'b', 'c', 'd', 'large'].map((schema) => caches.has(schema))).toEqual([false, false, true, true, true]);
    expect(caches.estimatedBytes).toBe(large + 2 * small);
    caches.invalidate('large');
    expect(caches.estimatedBytes).toBe(2 * small);
  });
});
