/**
 * Property: whatever the method, path, query string, Prefer header, media types and body, the REST
 * API answers in PostgREST's format with a status below 500, and nothing outside the lease changes:
 * another lease's data, the pglease schema, the roles and schemas of the host are as they were.
 */
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';

let service: TestService;
let target: CreatedLeaseJson;
let bystander: CreatedLeaseJson;
let admin: pg.Pool;

const TARGET_SCHEMA = `
  create table directors (id int primary key, name text not null unique);
  create table films (
    id int primary key, director_id int references directors, title text not null, year int check (year > 1800),
    rating numeric(3,1), tags text[], data jsonb, released date, short varchar(8),
    search tsvector generated always as (to_tsvector('english', title)) stored
  );
  create table people (id serial primary key, name text default 'anon', mentor_id int references people);
  create view film_titles as select id, title, director_id from films;
  insert into directors values (1, 'Kubrick'), (2, 'Varda');
  insert into films (id, director_id, title, year, tags, data) values
    (1, 1, 'The Shining', 1980, '{horror}', '{"a": 1}'), (2, 2, 'Vagabond', 1985, null, null);
  insert into people (name, mentor_id) values ('Ada', null), ('Ben', 1);
  create function add(a int, b int default 1) returns int language sql immutable as $$ select a + b $$;
  create function films_since(year int) returns setof films language sql stable as $$ select * from films f where f.year >= films_since.year $$;
  create function touch(title text) returns void language sql as $$ update films set title = touch.title where id = 1 $$;
  create function echo(json) returns json language sql immutable as $$ select $1 $$;
  create function fail(code text) returns void language plpgsql as $$ begin raise exception 'failed' using errcode = 'P0001', detail = code; end $$;
`;

/** A digest of everything outside the target lease that a request must never change. */
async function outsideDigest(): Promise<string> {
  const tables = await admin.query<{ name: string }>(`select table_name as name from information_schema.tables where table_schema = 'pglease' and table_type = 'BASE TABLE' order by 1`);
  const parts: string[] = [];
  for (const { name } of tables.rows) {
    const { rows } = await admin.query(`select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) as digest from pglease."${name}" t`);
    parts.push(`${name}:${rows[0].digest}`);
  }
  const vault = await admin.query(`select md5(string_agg(v::text, '|' order by v::text)) as digest from "${bystander.schema}".vault v`);
  parts.push(`vault:${vault.rows[0].digest}`);
  // roles are shared by the whole cluster (other test files make leases meanwhile): this database's lease roles and their memberships
  const roles = await admin.query(`
    with ours as (select r.oid, r.rolname, r.rolsuper, r.rolcreaterole, r.rolcanlogin from pg_roles r
                   where r.rolname in (select unnest(array[role_name, anon_role, auth_role]) from pglease.leases))
    select md5(coalesce(string_agg(o.rolname || ':' || o.rolsuper || o.rolcreaterole || o.rolcanlogin || ':' ||
             coalesce((select string_agg(m.roleid::regrole::text || '>' || m.member::regrole::text, ',' order by m.roleid, m.member)
                         from pg_auth_members m where m.member = o.oid or m.roleid = o.oid), ''), ',' order by o.rolname), '')) as digest
      from ours o`);
  const schemas = await admin.query(`select md5(string_agg(nspname || ':' || nspowner::regrole::text, ',' order by nspname)) as digest from pg_namespace`);
  parts.push(`roles:${roles.rows[0].digest}`, `schemas:${schemas.rows[0].digest}`);
  return parts.join('\n');
}

beforeAll(async () => {
  // no jobs and no warm pool: nothing in the background changes what outsideDigest() reads
  service = await startTestService({ PGLEASE_SCHEDULER: 'off', PGLEASE_LEASE_POOL: '0' });
  target = await createLease(service);
  bystander = await createLease(service);
  for (const [lease, sql] of [
    [target, TARGET_SCHEMA],
    [bystander, `create table vault (id int primary key, secret text); insert into vault values (1, 'gold'), (2, 'silver')`],
  ] as const) {
    const client = new pg.Client({ connectionString: lease.url });
    await client.connect();
    await client.query(sql);
    await client.end();
  }
  admin = service.host.pool;
});

afterAll(async () => {
  await service?.close();
});

const names = ['id', 'title', 'year', 'director_id', 'name', 'data', 'tags', 'rating', 'released', 'short', 'search', 'mentor_id', 'a', 'b', 'code', '*', 'x"y', "o'k", 'vault'];
const name = fc.oneof({ arbitrary: fc.constantFrom('id', 'title', 'year', 'director_id', 'name', 'data'), weight: 4 }, { arbitrary: fc.constantFrom(...names), weight: 1 });
const text = fc.oneof(
  fc.constantFrom('1', '0', '-1', 'null', 'true', '(1,2)', '{a,b}', '%', '*', 'x"y', "o'k", '', ' ', '\\', '1980', 'The Shining', '2024-01-01', ';drop table films;--', '"', '()'),
  fc.string({ unit: 'grapheme', maxLength: 12 }),
  fc.integer().map(String),
);
const operator = fc.oneof(
  { arbitrary: fc.constantFrom('eq', 'neq', 'gt', 'lte', 'like', 'ilike', 'in', 'is', 'not.eq', 'isdistinct'), weight: 5 },
  { arbitrary: fc.constantFrom('cs', 'cd', 'ov', 'fts', 'not.in', 'match', 'eq(any)', 'bogus', ''), weight: 1 },
);
const enc = encodeURIComponent;

const parameter = fc.oneof(
  { arbitrary: fc.array(fc.oneof(name, fc.constantFrom('directors(*)', 'films(title,year)', 'mentor:people(name)', 'alias:id', 'id::text', 'data->a', '...directors(name)')), { maxLength: 4 }).map((items) => `select=${enc(items.join(','))}`), weight: 3 },
  { arbitrary: fc.tuple(name, operator, text).map(([column, op, value]) => `${enc(column)}=${enc(op === '' ? value : `${op}.${value}`)}`), weight: 4 },
  { arbitrary: fc.tuple(name, fc.constantFrom('', '.asc', '.desc', '.nullsfirst', '.desc.nullslast', '.sideways')).map(([column, direction]) => `order=${enc(column + direction)}`), weight: 2 },
  { arbitrary: fc.tuple(fc.constantFrom('limit', 'offset', 'directors.limit'), fc.integer({ min: -2, max: 1000 })).map(([key, value]) => `${key}=${value}`), weight: 2 },
  { arbitrary: fc.array(name, { maxLength: 3 }).map((columns) => `columns=${enc(columns.join(','))}`), weight: 1 },
  { arbitrary: fc.array(name, { maxLength: 2 }).map((columns) => `on_conflict=${enc(columns.join(','))}`), weight: 1 },
  { arbitrary: fc.tuple(name, text).map(([column, value]) => `or=${enc(`(${column}.eq.${value},id.gt.1)`)}`), weight: 1 },
  // function arguments on GET, bare parameters elsewhere
  { arbitrary: fc.tuple(fc.constantFrom('a', 'b', 'year', 'title', 'code'), text).map(([key, value]) => `${key}=${enc(value)}`), weight: 2 },
  { arbitrary: fc.tuple(text, text).map(([key, value]) => `${enc(key)}=${enc(value)}`), weight: 1 },
);

const path = fc.constantFrom('/films', '/films', '/directors', '/people', '/film_titles', '/nope', '/rpc/add', '/rpc/films_since', '/rpc/touch', '/rpc/echo', '/rpc/fail', '/rpc/nope', '/films/1', '/rpc');
const method = fc.constantFrom('GET', 'HEAD', 'POST', 'POST', 'PATCH', 'PUT', 'DELETE');
const preferences = fc
  .tuple(
    fc.subarray([
      'return=representation', 'return=minimal', 'return=headers-only', 'count=exact', 'count=planned', 'resolution=merge-duplicates',
      'resolution=ignore-duplicates', 'missing=default', 'tx=rollback', 'handling=strict', 'max-affected=1', 'params=single-object',
    ]),
    fc.oneof({ arbitrary: fc.constant([] as string[]), weight: 9 }, { arbitrary: fc.constant(['bogus=1']), weight: 1 }),
  )
  .map(([valid, invalid]) => [...valid, ...invalid]);
const film = fc.record(
  {
    id: fc.integer({ min: 1, max: 40 }),
    title: fc.oneof(fc.string({ unit: 'grapheme', maxLength: 10 }), fc.constant(null)),
    year: fc.oneof(fc.integer({ min: 1700, max: 2100 }), text),
    director_id: fc.constantFrom(1, 2, 3, null),
    data: fc.jsonValue({ maxDepth: 2 }),
    tags: fc.oneof(fc.array(text, { maxLength: 2 }), text),
  },
  { requiredKeys: [] },
);
const row = fc.dictionary(name, fc.oneof(fc.jsonValue({ maxDepth: 2 }), text), { maxKeys: 4 });
const body = fc.oneof(
  { arbitrary: fc.constant(undefined), weight: 1 },
  { arbitrary: film.map((value) => JSON.stringify(value)), weight: 4 },
  { arbitrary: fc.array(film, { maxLength: 3 }).map((value) => JSON.stringify(value)), weight: 2 },
  { arbitrary: row.map((value) => JSON.stringify(value)), weight: 2 },
  { arbitrary: fc.jsonValue({ maxDepth: 2 }).map((value) => JSON.stringify(value)), weight: 1 },
  { arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }), weight: 1 },
  {
    arbitrary: fc.tuple(fc.array(name, { minLength: 1, maxLength: 3 }), fc.array(text, { maxLength: 4 })).map(([header, values]) => `${header.join(',')}\n${values.join(',')}`),
    weight: 1,
  },
);
const contentType = fc.oneof(
  { arbitrary: fc.constant('application/json'), weight: 6 },
  { arbitrary: fc.constantFrom('text/csv', 'application/x-www-form-urlencoded', 'text/plain', 'application/xml', undefined), weight: 2 },
);
const accept = fc.oneof(
  { arbitrary: fc.constant(undefined), weight: 6 },
  { arbitrary: fc.constantFrom('application/json', 'text/csv', 'application/vnd.pgrst.object+json', 'image/png', '*/*'), weight: 2 },
);

const request = fc.record({
  method,
  path,
  query: fc.array(parameter, { maxLength: 4 }).map((parts) => parts.join('&')),
  prefer: preferences.map((list) => list.join(', ')),
  body,
  contentType,
  accept,
  authenticated: fc.oneof({ arbitrary: fc.constant(true), weight: 4 }, { arbitrary: fc.constant(false), weight: 1 }),
});

describe('REST fuzz', () => {
  it('answers every request below 500 in PostgREST format and changes nothing outside the lease', async () => {
    const before = await outsideDigest();
    await fc.assert(
      fc.asyncProperty(request, async (input) => {
        const headers: Record<string, string> = {};
        if (input.authenticated) headers.authorization = `Bearer ${target.token}`;
        if (input.prefer !== '') headers.prefer = input.prefer;
        if (input.contentType !== undefined) headers['content-type'] = input.contentType;
        if (input.accept !== undefined) headers.accept = input.accept;
        const hasBody = input.body !== undefined && input.method !== 'GET' && input.method !== 'HEAD';
        const response = await fetch(`${target.rest_url}${input.path}${input.query === '' ? '' : `?${input.query}`}`, {
          method: input.method,
          headers,
          body: hasBody ? input.body : undefined,
        });
        const answer = await response.text();
        let error: Record<string, unknown> | undefined;
        if (response.status >= 400 && input.method !== 'HEAD') {
          error = JSON.parse(answer) as Record<string, unknown>;
          expect(Object.keys(error).sort()).toEqual(['code', 'details', 'hint', 'message']);
        }
        // PostgREST's one 5xx for a bad body: an upsert naming the same key twice (21000 is 500 there too)
        if (error?.code === '21000' && String(error.message).startsWith('ON CONFLICT DO UPDATE command cannot affect row a second time')) return;
        expect(response.status, `${input.method} ${input.path}?${input.query} → ${answer}`).toBeLessThan(500);
      }),
      { numRuns: 400, seed: 5 },
    );
    expect(await outsideDigest()).toBe(before);
  }, 120_000);
});
