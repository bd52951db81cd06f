/**
 * Adversarial input to the REST API: quotes, semicolons and comments in values and names, unicode,
 * NUL bytes, huge `in` lists, deep `or` nesting, and random query strings. Each answer is a
 * PostgREST error or a correct result, never a 5xx, and nothing is ever changed.
 */
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLease } from './support/service.js';
import { getJson, startRestFixture, type RestFixture } from './support/rest-fixture.js';

const SCHEMA = `
  create table people (id int primary key, name text, data jsonb);
  insert into people values (1, 'O''Brien', '{"it''s": 1, "a\\"b": 2}'), (2, 'Robert"); DROP TABLE people; --', null),
    (3, '名前 👋', '{"clé": "ü"}'), (4, 'a,b)c', null), (5, '*', null);
  create table "we""ird;table" ("co""l;--" int, "名前" text);
  insert into "we""ird;table" values (7, 'ナ');
`;

let fixture: RestFixture;

beforeAll(async () => {
  fixture = await startRestFixture(SCHEMA);
});

afterAll(async () => {
  await fixture?.close();
});

async function peopleIntact(): Promise<void> {
  const { rows } = await fixture.sql.query<{ count: number }>('select count(*)::int as count from people');
  expect(rows[0]!.count).toBe(5);
}

const ids = async (query: string) => {
  const { status, body } = await getJson(fixture, `/people?select=id&order=id&${query}`);
  expect(status, JSON.stringify(body)).toBe(200);
  return (body as { id: number }[]).map((row) => row.id);
};

describe('values', () => {
  it('treats quotes, semicolons and comments in filter values as data', async () => {
    expect(await ids(`name=eq.${encodeURIComponent("O'Brien")}`)).toEqual([1]);
    expect(await ids(`name=eq.${encodeURIComponent('Robert"); DROP TABLE people; --')}`)).toEqual([2]);
    expect(await ids(`name=like.${encodeURIComponent("*'; DROP TABLE people; --*")}`)).toEqual([]);
    expect(await ids(`name=in.(${encodeURIComponent('"Robert\\"); DROP TABLE people; --","O\'Brien"')})`)).toEqual([1, 2]);
    await peopleIntact();
  });

  it('keeps commas and parentheses inside quoted list and logic values', async () => {
    expect(await ids(`name=in.(${encodeURIComponent('"a,b)c"')})`)).toEqual([4]);
    expect(await ids(`or=(${encodeURIComponent('name.eq."a,b)c",id.eq.1')})`)).toEqual([1, 4]);
  });

  it('passes unicode through untouched', async () => {
    expect(await ids(`name=eq.${encodeURIComponent('名前 👋')}`)).toEqual([3]);
    const { body } = await getJson(fixture, `/people?select=${encodeURIComponent('data->>clé')}&id=eq.3`);
    expect(body).toEqual([{ clé: 'ü' }]);
  });

  it('escapes quotes in JSON keys', async () => {
    const { status, body } = await getJson(fixture, `/people?select=${encodeURIComponent('a:data->>"it\'s",b:data->>"a\\"b"')}&id=eq.1`);
    expect(status).toBe(200);
    expect(body).toEqual([{ a: '1', b: '2' }]);
  });

  it('refuses NUL bytes with 400, not 500', async () => {
    const value = await getJson(fixture, '/people?name=eq.a%00b');
    expect(value.status).toBe(400);
    const name = await getJson(fixture, '/people?select=na%00me');
    expect(name.status).toBe(400);
    expect(name.body).toMatchObject({ code: 'PGRST100' });
  });

  it('handles a huge in list', async () => {
    const list = Array.from({ length: 2000 }, (_, i) => i + 3).join(',');
    expect(await ids(`id=in.(${list})`)).toEqual([3, 4, 5]);
  });

  it('handles deep or/and nesting, and refuses absurd depths with PGRST100', async () => {
    let tree = 'id.eq.1';
    for (let i = 0; i < 25; i++) tree = `or(and(${tree},id.gt.0),id.eq.${i % 2 ? 1 : 2})`;
    expect(await ids(`or=(${tree},id.eq.5)`)).toEqual([1, 2, 5]);
    let deep = 'id.eq.1';
    for (let i = 0; i < 200; i++) deep = `or(${deep})`;
    const { status, body } = await getJson(fixture, `/people?or=(${deep})`);
    expect(status).toBe(400);
    expect(body).toMatchObject({ code: 'PGRST100' });
  });

  it('reports malformed percent-encoding as PGRST100', async () => {
    const { status, body } = await getJson(fixture, '/people?name=eq.%zz');
    expect(status).toBe(400);
    expect(body).toMatchObject({ code: 'PGRST100' });
  });
});

describe('names', () => {
  it('quotes table and column names, whatever they contain', async () => {
    const table = encodeURIComponent('we"ird;table');
    const { status, body } = await getJson(fixture, `/${table}?select=${encodeURIComponent('"co\\"l;--",名前')}`);
    expect(status).toBe(200);
    expect(body).toEqual([{ 'co"l;--': 7, 名前: 'ナ' }]);
  });

  it('answers unknown names with PostgREST errors', async () => {
    expect((await getJson(fixture, `/${encodeURIComponent('people"; drop table people; --')}`)).body).toMatchObject({ code: 'PGRST205' });
    expect((await getJson(fixture, `/people?select=${encodeURIComponent('"id""; drop table people; --"')}`)).body).toMatchObject({ code: 'PGRST100' });
    expect((await getJson(fixture, `/people?select=${encodeURIComponent('"id\\"; drop table people; --"')}`)).body).toMatchObject({ code: '42703' });
    expect((await getJson(fixture, `/people?select=${encodeURIComponent('x"y:id')}`)).status).toBe(400);
    expect((await getJson(fixture, `/people?order=${encodeURIComponent('id; drop table people')}`)).body).toMatchObject({ code: 'PGRST100' });
    await peopleIntact();
  });

  it('cannot smuggle SQL through a cast', async () => {
    const { status, body } = await getJson(fixture, `/people?select=${encodeURIComponent('id::int) from people; drop table people; --')}`);
    expect(status).toBe(400);
    expect(body).toMatchObject({ code: 'PGRST100' });
    const words = await getJson(fixture, `/people?select=${encodeURIComponent('id::int union select 1')}`);
    expect(words.status).toBe(400);
    await peopleIntact();
  });

  it('refuses wrong tokens and odd lease ids without reaching SQL', async () => {
    expect((await getJson(fixture, '/people', { token: "' or 1=1 --" })).status).toBe(401);
    const odd = await fetch(`${fixture.service.baseUrl}/v1/leases/${encodeURIComponent("' or 1=1 --")}/rest/people`);
    expect(odd.status).toBe(404);
  });
});

describe('isolation', () => {
  it("cannot switch to another lease's role from its own SQL", async () => {
    const other = await createLease(fixture.service);
    const otherSql = new pg.Client({ connectionString: other.url });
    await otherSql.connect();
    await otherSql.query("create table private (secret text); insert into private values ('s3cret')");
    await otherSql.end();
    await fixture.sql.query(`
      create function steal() returns setof text language plpgsql as $$
      begin
        perform set_config('role', '${other.role}', true);
        return query execute 'select secret from ${other.schema}.private';
      end $$;
      create view stolen as select * from steal() as secret;`);
    const { status, body } = await getJson(fixture, '/stolen');
    expect(status).toBeGreaterThanOrEqual(400);
    expect(status).toBeLessThan(500);
    expect(JSON.stringify(body)).not.toContain('s3cret');
    expect(body).toMatchObject({ code: '42501' });
  });
});

describe('random input', () => {
  it('never answers 5xx to random query strings', async () => {
    const piece = fc.oneof(
      fc.constantFrom('select', 'order', 'limit', 'offset', 'or', 'and', 'id', 'name', 'data', 'people', 'not.or', 'people.id'),
      fc.string({ maxLength: 12 }),
    );
    const value = fc.oneof(
      fc.constantFrom('eq.1', 'in.(1,2', 'not.', 'is.nul', '(id.eq.1', 'id,name(*)', '*,people!inner(*)', 'id.desc.nullsfirst', '->>a', 'fts(x).y', 'eq(any).{1,2}'),
      fc.string({ maxLength: 20 }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(piece, value), { minLength: 1, maxLength: 4 }), async (pairs) => {
        const query = pairs.map(([key, val]) => `${encodeURIComponent(key)}=${encodeURIComponent(val)}`).join('&');
        const response = await fixture.get(`/people?${query}`);
        await response.arrayBuffer();
        expect(response.status, query).toBeLessThan(500);
      }),
      { numRuns: 150 },
    );
    await peopleIntact();
  });
});
