/**
 * RPC against a real lease: GET and POST calls, argument passing (named, defaults, VARIADIC, the
 * whole body to a single json parameter, params=single-object), overload resolution, every kind
 * of result, table-like results read like tables, read-only GET, privileges, custom errors, and
 * the SQL a call compiles to.
 */
import { cappedBody } from '../src/rest/query/response-limit.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planRpc } from '../src/rest/plan/rpc-plan.js';
import { rpcStatement } from '../src/rest/query/rpc-query.js';
import { buildApiRequest } from '../src/rest/request/api-request.js';
import { parsePayload } from '../src/rest/request/body.js';
import { loadSchemaCache } from '../src/rest/schema/load.js';
import { sendRest, startRestFixture, type RestAnswer, type RestFixture } from './support/rest-fixture.js';
import { RESPONSE_SETTINGS_SQL } from '../src/rest/query/sql.js';

let fixture: RestFixture;

const SCHEMA = `
  create table clients (id int primary key, name text);
  create table projects (id int primary key, name text, client_id int references clients);
  create table tasks (id int primary key, name text, project_id int references projects);
  create type point_2d as (x int, y int);
  insert into clients values (1, 'Microsoft'), (2, 'Apple');
  insert into projects values (1, 'Windows 7', 1), (2, 'Windows 10', 1), (3, 'IOS', 2), (4, 'OSX', 2);
  insert into tasks values (1, 'Design w7', 1), (2, 'Code w7', 1), (3, 'Design IOS', 3);

  create function add_them(a integer, b integer) returns integer language sql immutable as $$ select a + b $$;
  create function say_hello(name text) returns text language sql stable as $$ select 'Hello, ' || name $$;
  create function get_projects(min_id int default 0) returns setof projects language sql stable
    as $$ select * from projects where id >= min_id order by id $$;
  create function get_project(id int) returns projects language sql stable as $$ select * from projects p where p.id = get_project.id $$;
  create function mult_them(json) returns int language sql immutable as $$ select ($1->>'x')::int * ($1->>'y')::int $$;
  create function echo_json(p json) returns json language sql immutable as $$ select p $$;
  create function overloaded() returns setof int language sql immutable as $$ values (1), (2), (3) $$;
  create function overloaded(a int, b int) returns int language sql immutable as $$ select a + b $$;
  create function overloaded(a text, b text, c text) returns text language sql immutable as $$ select a || b || c $$;
  create function same_args(arg int) returns int language sql immutable as $$ select arg $$;
  create function same_args(arg text) returns text language sql immutable as $$ select arg $$;
  -- overloads made in an order that is not PostgREST's (PGRST203 lists them as its schema cache sorts them)
  create function late_int(x text) returns text language sql immutable as $$ select x $$;
  create function late_int(x integer) returns integer language sql immutable as $$ select x $$;
  create function fewer_first(a integer, b integer default 0) returns integer language sql immutable as $$ select a + b $$;
  create function fewer_first(a text) returns text language sql immutable as $$ select a $$;
  create function described(x integer) returns integer language sql immutable as $$ select x $$;
  comment on function described(integer) is 'the integer one';
  create function described(x text) returns text language sql immutable as $$ select x $$;
  create function by_name(zeta integer, b integer default 0) returns integer language sql immutable as $$ select zeta $$;
  create function by_name(alpha integer default 0, zeta text default '') returns integer language sql immutable as $$ select alpha $$;
  create function variadic_param(variadic v text[] default '{}') returns text[] language sql immutable as $$ select v $$;
  create function ret_void() returns void language plpgsql as $$ begin end $$;
  create function ret_point() returns point_2d language sql immutable as $$ select row(10, 5)::point_2d $$;
  create function single_out(num int, out num_plus_one int) language sql immutable as $$ select num + 1 $$;
  create function many_out(out num int, out str text) language sql immutable as $$ select 3, 'four' $$;
  create function table_return() returns table(a text, b text) language sql immutable as $$ values ('A', 'B'), ('C', 'D') $$;
  create function ret_null() returns int language sql immutable as $$ select null::int $$;
  create function setof_ints() returns setof int language sql immutable as $$ values (1), (2), (3) $$;
  create function add_client(id int, name text) returns clients language sql volatile
    as $$ insert into clients values (id, name) returning * $$;
  create function sneaky_stable(id int) returns int language sql stable as $$ select (add_client(id, 'x')).id $$;
  create function shout(text) returns text language sql immutable as $$ select upper($1) $$;
  create function raise_pt402() returns void language plpgsql as $$
    begin raise sqlstate 'PT402' using message = 'Payment Required', detail = 'Quota exceeded', hint = 'Upgrade your plan'; end $$;
  create function raise_bad_pt() returns void language plpgsql as $$ begin raise sqlstate 'PT40A' using message = 'Wrong'; end $$;
  create function raise_pgrst() returns void language plpgsql as $$
    begin raise sqlstate 'PGRST' using
      message = '{"code":"123","message":"Payment Required","details":"Quota exceeded","hint":"Upgrade your plan"}',
      detail = '{"status":402,"headers":{"X-Powered-By":"Nerd Rage"}}'; end $$;
  create function raise_bad_pgrst() returns void language plpgsql as $$
    begin raise sqlstate 'PGRST' using message = 'not json', detail = '{}'; end $$;
  create function problem() returns void language plpgsql as $$
    begin raise exception 'I refuse!' using detail = 'Pretty simple', hint = 'There is nothing you can do.'; end $$;
  create function guc(name text) returns text language sql stable as $$ select current_setting(name, true) $$;
  create function secret() returns int language sql immutable as $$ select 42 $$;
  revoke execute on function secret() from public;

  -- unnamed parameters: PostgREST's schema cache leaves these out
  create function unnamed_pair(int, int) returns int language sql immutable as $$ select $1 + $2 $$;
  create function pick_one(a int) returns int language sql immutable as $$ select a $$;
  create function pick_one(int, int) returns int language sql immutable as $$ select $1 $$;
  create function zq_unnamed_only(int) returns int language sql immutable as $$ select $1 $$;
`;

const call = (method: string, path: string, body?: unknown, headers?: Record<string, string>, token?: string | null): Promise<RestAnswer> =>
  sendRest(fixture, method, path, body, headers, token);

beforeAll(async () => {
  fixture = await startRestFixture(SCHEMA);
  // lease functions are not executable by PUBLIC: the anonymous role gets what it is granted
  await fixture.sql.query(`grant execute on function add_them(integer, integer) to "${fixture.lease.anon_role}"`);
});

afterAll(async () => {
  await fixture?.close();
});

describe('calling', () => {
  it('calls with GET query arguments and with POST JSON arguments', async () => {
    expect((await call('GET', '/rpc/add_them?a=1&b=2')).json).toBe(3);
    const posted = await call('POST', '/rpc/add_them', { a: 4, b: 5 });
    expect(posted.status).toBe(200);
    expect(posted.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(posted.json).toBe(9);
    expect((await call('POST', '/rpc/say_hello', { name: 'world' })).json).toBe('Hello, world');
  });

  it('counts a single result as one row', async () => {
    const answer = await call('GET', '/rpc/add_them?a=3&b=4', undefined, { prefer: 'count=exact' });
    expect(answer.headers.get('content-range')).toBe('0-0/1');
    expect(answer.headers.get('preference-applied')).toBe('count=exact');
  });

  it('uses parameter defaults, and takes the last of repeated non-variadic arguments', async () => {
    expect(((await call('GET', '/rpc/get_projects')).json as unknown[]).length).toBe(4);
    expect(((await call('GET', '/rpc/get_projects?min_id=3')).json as unknown[]).length).toBe(2);
    expect((await call('GET', '/rpc/say_hello?name=ignored&name=world')).json).toBe('Hello, world');
  });

  it('passes the whole body to a single unnamed json parameter', async () => {
    expect((await call('POST', '/rpc/mult_them', { x: 4, y: 2 })).json).toBe(8);
  });

  it('leaves out functions with unnamed parameters, as PostgREST\'s schema cache does (but a single json or text one)', async () => {
    // its overload with unnamed parameters is no candidate: no PGRST203
    const picked = await call('POST', '/rpc/pick_one', { a: 7 });
    expect(picked.status).toBe(200);
    expect(picked.json).toBe(7);
    // an empty key names no parameter: 404, not Postgres's zero-length identifier error
    const emptyKey = await call('POST', '/rpc/unnamed_pair', { '': 1 });
    expect(emptyKey.status).toBe(404);
    expect((emptyKey.json as { code: string }).code).toBe('PGRST202');
    expect((await call('GET', '/rpc/unnamed_pair')).status).toBe(404);
    const emptyName = await call('POST', '/rpc/zq_unnamed_only', { '': 1 });
    expect({ status: emptyName.status, code: (emptyName.json as { code: string }).code }).toEqual({ status: 404, code: 'PGRST202' });
    // nor is such a function suggested
    const near = await call('GET', '/rpc/zq_unnamed_onlyy');
    expect(near.status).toBe(404);
    expect((near.json as { hint: unknown }).hint).toBeNull();
  });

  it('passes the body as one object with Prefer: params=single-object', async () => {
    const body = { p1: 1, p2: 'text', p3: { obj: 'text' } };
    expect((await call('POST', '/rpc/echo_json', body, { prefer: 'params=single-object' })).json).toEqual(body);
    expect((await call('GET', '/rpc/echo_json?p1=1&p2=text', undefined, { prefer: 'params=single-object' })).json).toEqual({ p1: '1', p2: 'text' });
    const missing = await call('POST', '/rpc/say_hello', {}, { prefer: 'params=single-object' });
    expect(missing.status).toBe(404);
    expect(missing.json).toEqual({
      code: 'PGRST202',
      message: `Could not find the function ${fixture.lease.schema}.say_hello in the schema cache`,
      details: `Searched for the function ${fixture.lease.schema}.say_hello with a single json/jsonb parameter, but no matches were found in the schema cache.`,
      hint: null,
    });
  });

  it('resolves overloads by argument names', async () => {
    expect((await call('GET', '/rpc/overloaded')).json).toEqual([1, 2, 3]);
    expect((await call('GET', '/rpc/overloaded?a=1&b=2')).json).toBe(3);
    expect((await call('GET', '/rpc/overloaded?a=1&b=2&c=3')).json).toBe('123');
    const ambiguous = await call('GET', '/rpc/same_args?arg=value');
    expect(ambiguous.status).toBe(300);
    expect(ambiguous.json).toEqual({
      code: 'PGRST203',
      message: `Could not choose the best candidate function between: ${fixture.lease.schema}.same_args(arg => integer), ${fixture.lease.schema}.same_args(arg => text)`,
      details: null,
      hint: 'Try renaming the parameters or the function itself in the database so function overloading can be resolved',
    });
  });

  it('lists the candidates of PGRST203 in the order PostgREST\'s schema cache keeps them, not the order they were made', async () => {
    const candidates = async (path: string) => {
      const answer = await call('GET', path);
      expect(answer.status).toBe(300);
      const message = (answer.json as { message: string }).message;
      return message.replace('Could not choose the best candidate function between: ', '').replaceAll(`${fixture.lease.schema}.`, '');
    };
    // same number of parameters, no description: by parameter name, then type
    expect(await candidates('/rpc/late_int?x=1')).toBe('late_int(x => integer), late_int(x => text)');
    // fewer input parameters first
    expect(await candidates('/rpc/fewer_first?a=1')).toBe('fewer_first(a => text), fewer_first(a => integer, b => integer)');
    // a function without a description before one with
    expect(await candidates('/rpc/described?x=1')).toBe('described(x => text), described(x => integer)');
    // parameter names before types: alpha before zeta
    expect(await candidates('/rpc/by_name?zeta=1')).toBe('by_name(alpha => integer, zeta => text), by_name(zeta => integer, b => integer)');
  });

  it('collects VARIADIC arguments from a JSON array or repeated query parameters', async () => {
    expect((await call('POST', '/rpc/variadic_param', { v: ['hi', 'hello', 'there'] })).json).toEqual(['hi', 'hello', 'there']);
    expect((await call('GET', '/rpc/variadic_param?v=hi&v=there')).json).toEqual(['hi', 'there']);
    expect((await call('GET', '/rpc/variadic_param?v=hi')).json).toEqual(['hi']);
    expect((await call('GET', '/rpc/variadic_param')).json).toEqual([]);
    const form = await call('POST', '/rpc/variadic_param', 'v=hi&v=there', { 'content-type': 'application/x-www-form-urlencoded' });
    expect(form.json).toEqual(['hi', 'there']);
  });

  it('calls with the first object of an array body, and with no body', async () => {
    expect((await call('POST', '/rpc/add_them', [{ a: 1, b: 2 }, { a: 4, b: 6 }])).json).toBe(3);
    expect((await call('POST', '/rpc/overloaded', '', { 'content-type': 'application/json' })).json).toEqual([1, 2, 3]);
  });

  it('passes a text/plain body to a single unnamed text parameter', async () => {
    expect((await call('POST', '/rpc/shout', 'plain words', { 'content-type': 'text/plain' })).json).toBe('PLAIN WORDS');
    const none = await call('POST', '/rpc/add_them', 'plain', { 'content-type': 'text/plain' });
    expect(none.status).toBe(404);
    expect(none.json).toMatchObject({ message: `Could not find the function ${fixture.lease.schema}.add_them in the schema cache`, hint: null });
  });

  it('answers HEAD like GET without a body', async () => {
    const answer = await call('HEAD', '/rpc/get_projects?limit=1', undefined, { prefer: 'count=exact' });
    expect(answer.status).toBe(206);
    expect(answer.text).toBe('');
    expect(answer.headers.get('content-range')).toBe('0-0/4');
  });

  it('publishes the request to SQL as PostgREST does', async () => {
    expect((await call('POST', '/rpc/guc', { name: 'request.method' })).json).toBe('POST');
    expect((await call('GET', '/rpc/guc?name=request.path')).json).toBe('/rpc/guc');
    const header = await call('POST', '/rpc/guc', { name: 'request.headers' }, { 'x-custom': 'test' });
    expect(JSON.parse(header.json as string)['x-custom']).toBe('test');
  });
});

describe('results', () => {
  it('returns scalars, null, arrays of scalars and void', async () => {
    expect((await call('POST', '/rpc/ret_null', {})).text).toBe('null');
    expect((await call('GET', '/rpc/setof_ints')).json).toEqual([1, 2, 3]);
    const empty = await call('POST', '/rpc/ret_void', {});
    expect(empty.status).toBe(204);
    expect(empty.text).toBe('');
    expect(empty.headers.get('content-type')).toBeNull();
  });

  it('returns one composite as an object, OUT parameters as an object, TABLE results as rows', async () => {
    expect((await call('GET', '/rpc/ret_point')).json).toEqual({ x: 10, y: 5 });
    expect((await call('GET', '/rpc/get_project?id=2')).json).toEqual({ id: 2, name: 'Windows 10', client_id: 1 });
    expect((await call('GET', '/rpc/single_out?num=5')).json).toEqual({ num_plus_one: 6 });
    expect((await call('GET', '/rpc/many_out')).json).toEqual({ num: 3, str: 'four' });
    expect((await call('GET', '/rpc/table_return?a=eq.C')).json).toEqual([{ a: 'C', b: 'D' }]);
  });

  it('reads set results like a table: select, filters, order, limit, count, embedding', async () => {
    const answer = await call('GET', '/rpc/get_projects?select=id,name,clients(name),tasks(name)&id=gt.1&order=id.desc&limit=2', undefined, { prefer: 'count=exact' });
    expect(answer.status).toBe(206);
    expect(answer.headers.get('content-range')).toBe('0-1/3');
    expect(answer.json).toEqual([
      { id: 4, name: 'OSX', clients: { name: 'Apple' }, tasks: [] },
      { id: 3, name: 'IOS', clients: { name: 'Apple' }, tasks: [{ name: 'Design IOS' }] },
    ]);
    const posted = await call('POST', '/rpc/get_projects?select=id&id=lt.3&offset=1', { min_id: 1 });
    expect(posted.json).toEqual([{ id: 2 }]);
    expect(posted.headers.get('content-range')).toBe('1-1/*');
  });

  it('answers CSV and singular objects, and PGRST116 when the result is not one row', async () => {
    const csv = await call('GET', '/rpc/get_projects?select=id,name&min_id=3', undefined, { accept: 'text/csv' });
    expect(csv.text).toBe('id,name\n3,IOS\n4,OSX');
    expect(csv.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    const single = await call('GET', '/rpc/get_projects?min_id=4', undefined, { accept: 'application/vnd.pgrst.object+json' });
    expect(single.json).toEqual({ id: 4, name: 'OSX', client_id: 2 });
    const many = await call('GET', '/rpc/get_projects', undefined, { accept: 'application/vnd.pgrst.object+json' });
    expect(many.status).toBe(406);
    expect(many.json).toMatchObject({ code: 'PGRST116', details: 'The result contains 4 rows' });
  });
});

describe('transactions and privileges', () => {
  it('runs GET read-only: a function that writes fails with 405, POST to a volatile function writes', async () => {
    const viaGet = await call('GET', '/rpc/add_client?id=10&name=Oracle');
    expect(viaGet.status).toBe(405);
    expect(viaGet.json).toMatchObject({ code: '25006', message: 'cannot execute INSERT in a read-only transaction' });
    const viaPost = await call('POST', '/rpc/add_client', { id: 10, name: 'Oracle' });
    expect(viaPost.json).toEqual({ id: 10, name: 'Oracle' });
    expect((await fixture.sql.query('select name from clients where id = 10')).rows).toEqual([{ name: 'Oracle' }]);
  });

  it('runs POST to a stable function read-only', async () => {
    expect((await call('POST', '/rpc/sneaky_stable', { id: 11 })).status).toBe(405);
  });

  it('rolls a call back with Prefer: tx=rollback and still answers', async () => {
    const answer = await call('POST', '/rpc/add_client', { id: 12, name: 'Rolled' }, { prefer: 'tx=rollback' });
    expect(answer.json).toEqual({ id: 12, name: 'Rolled' });
    expect(answer.headers.get('preference-applied')).toBe('tx=rollback');
    expect((await fixture.sql.query('select count(*)::int as n from clients where id = 12')).rows).toEqual([{ n: 0 }]);
  });

  it('rolls back when max-affected is exceeded with handling=strict', async () => {
    const answer = await call('POST', '/rpc/get_projects', {}, { prefer: 'max-affected=2, handling=strict' });
    expect(answer.status).toBe(400);
    expect(answer.json).toEqual({ code: 'PGRST124', message: 'Query result exceeds max-affected preference constraint', details: 'The query affects 4 rows', hint: null });
    const lenient = await call('POST', '/rpc/get_projects', {}, { prefer: 'max-affected=2' });
    expect(lenient.status).toBe(200);
  });

  it('answers 401 to the anonymous role and 403 to the lease role without EXECUTE', async () => {
    const anonymous = await call('GET', '/rpc/secret', undefined, {}, null);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toBe('Bearer');
    expect(anonymous.json).toMatchObject({ code: '42501' });
    expect((await call('GET', '/rpc/secret')).json).toBe(42);
    await fixture.sql.query(`revoke execute on function secret() from ${fixture.lease.role}`);
    const owner = await call('GET', '/rpc/secret');
    expect(owner.status).toBe(403);
    expect(owner.json).toMatchObject({ code: '42501', message: 'permission denied for function secret' });
    // the anonymous role may call what it was granted
    expect((await call('GET', '/rpc/add_them?a=1&b=1', undefined, {}, null)).json).toBe(2);
  });
});

describe('errors', () => {
  it('answers PGRST202 with a hint for an unknown function or unknown arguments', async () => {
    const schema = fixture.lease.schema;
    const misspelt = await call('GET', '/rpc/say_helo');
    expect(misspelt.status).toBe(404);
    expect(misspelt.json).toEqual({
      code: 'PGRST202',
      message: `Could not find the function ${schema}.say_helo without parameters in the schema cache`,
      details: `Searched for the function ${schema}.say_helo without parameters, but no matches were found in the schema cache.`,
      hint: `Perhaps you meant to call the function ${schema}.say_hello`,
    });
    const wrongArgument = await call('GET', '/rpc/say_hello?nam=Peter');
    expect(wrongArgument.json).toEqual({
      code: 'PGRST202',
      message: `Could not find the function ${schema}.say_hello(nam) in the schema cache`,
      details: `Searched for the function ${schema}.say_hello with parameter nam, but no matches were found in the schema cache.`,
      hint: `Perhaps you meant to call the function ${schema}.say_hello(name)`,
    });
    const extra = await call('POST', '/rpc/add_them', { a: 1, b: 2, smthelse: 3 });
    expect(extra.json).toMatchObject({
      message: `Could not find the function ${schema}.add_them(a, b, smthelse) in the schema cache`,
      details: `Searched for the function ${schema}.add_them with parameters a, b, smthelse or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.`,
    });
  });

  it('refuses other methods with PGRST101 and GET-style arguments on POST with PGRST100', async () => {
    const deleted = await call('DELETE', '/rpc/say_hello');
    expect(deleted.status).toBe(405);
    expect(deleted.json).toEqual({ code: 'PGRST101', message: 'Cannot use the DELETE method on RPC', details: null, hint: null });
    expect((await call('PATCH', '/rpc/say_hello', {})).status).toBe(405);
    const posted = await call('POST', '/rpc/say_hello?name=John', { name: 'John' });
    expect(posted.status).toBe(400);
    expect(posted.json).toMatchObject({ code: 'PGRST100' });
  });

  it('passes RAISE errors through: P0001 is 400 with details and hint, PT### sets the status', async () => {
    const refused = await call('POST', '/rpc/problem', {});
    expect(refused.status).toBe(400);
    expect(refused.json).toEqual({ code: 'P0001', message: 'I refuse!', details: 'Pretty simple', hint: 'There is nothing you can do.' });
    const payment = await call('GET', '/rpc/raise_pt402');
    expect(payment.status).toBe(402);
    expect(payment.json).toEqual({ code: 'PT402', message: 'Payment Required', details: 'Quota exceeded', hint: 'Upgrade your plan' });
    const bad = await call('GET', '/rpc/raise_bad_pt');
    expect(bad.status).toBe(500);
    expect(bad.json).toEqual({ code: 'PT40A', message: 'Wrong', details: null, hint: null });
  });

  it('lets RAISE SQLSTATE PGRST choose the status, headers and body', async () => {
    const answer = await call('GET', '/rpc/raise_pgrst');
    expect(answer.status).toBe(402);
    expect(answer.headers.get('x-powered-by')).toBe('Nerd Rage');
    expect(answer.json).toEqual({ code: '123', message: 'Payment Required', details: 'Quota exceeded', hint: 'Upgrade your plan' });
    const invalid = await call('GET', '/rpc/raise_bad_pgrst');
    expect(invalid.status).toBe(500);
    expect(invalid.json).toEqual({
      code: 'PGRST121',
      message: 'Could not parse JSON in the "RAISE SQLSTATE \'PGRST\'" error',
      details: "Invalid JSON value for MESSAGE: 'not json'",
      hint: "MESSAGE must be a JSON object with obligatory keys: 'code', 'message' and optional keys: 'details', 'hint'.",
    });
  });

  it('answers invalid JSON and wrong argument types in PostgREST format', async () => {
    const invalid = await call('POST', '/rpc/add_them', '{"a": 1,', { 'content-type': 'application/json' });
    expect(invalid.status).toBe(400);
    expect(invalid.json).toEqual({ code: 'PGRST102', message: 'Empty or invalid json', details: null, hint: null });
    const wrongType = await call('GET', '/rpc/add_them?a=one&b=2');
    expect(wrongType.status).toBe(400);
    expect(wrongType.json).toMatchObject({ code: '22P02', message: 'invalid input syntax for type integer: "one"' });
  });
});

describe('compiled SQL', () => {
  async function compile(method: string, path: string, query: string, body?: string) {
    const cache = await loadSchemaCache(fixture.service.host.pool, fixture.lease.schema, [fixture.lease.role]);
    const request = buildApiRequest({ method, path, query, headers: {}, authenticated: true });
    const payload = body === undefined ? undefined : parsePayload(body, 'application/json', { columnsGiven: false, forRoutine: true });
    return rpcStatement(planRpc(cache, request, path.split('/').pop()!, { payload, mediaType: 'application/json' }));
  }

  it('reads named arguments from one JSON parameter typed by the function', async () => {
    const schema = fixture.lease.schema;
    const statement = await compile('POST', '/rpc/add_them', '', '{"a": 1, "b": 2}');
    expect(statement.text).toBe(
      `WITH "pgrst_call" AS (SELECT "${schema}"."add_them"("a" := "pgrst_args"."a", "b" := "pgrst_args"."b") AS "pgrst_scalar" ` +
        `FROM json_to_record($1::json) AS "pgrst_args"("a" integer, "b" integer)), ` +
        `"pgrst_source" AS (SELECT "pgrst_scalar" FROM "pgrst_call") ` +
        `SELECT NULL::bigint AS "total", count(*) AS "page", ${cappedBody(`coalesce((json_agg("pgrst_t"."pgrst_scalar")->0)::text, 'null')`)} AS "body", ${RESPONSE_SETTINGS_SQL} FROM "pgrst_source" AS "pgrst_t"`,
    );
    expect(statement.values).toEqual(['{"a": 1, "b": 2}']);
  });

  it('reads a set result through the read plan, filters as bind parameters', async () => {
    const schema = fixture.lease.schema;
    const statement = await compile('GET', '/rpc/get_projects', 'select=id&min_id=2&id=lt.4');
    expect(statement.text).toBe(
      `WITH "pgrst_call" AS (SELECT "pgrst_result".* FROM json_to_record($1::json) AS "pgrst_args"("min_id" integer), ` +
        `LATERAL "${schema}"."get_projects"("min_id" := "pgrst_args"."min_id") AS "pgrst_result"), ` +
        `"pgrst_source" AS (SELECT "projects"."id" FROM "pgrst_call" AS "projects" WHERE "projects"."id" < $2) ` +
        `SELECT NULL::bigint AS "total", count(*) AS "page", ${cappedBody(`coalesce(json_agg("pgrst_t"), '[]')::text`)} AS "body", ${RESPONSE_SETTINGS_SQL} FROM "pgrst_source" AS "pgrst_t"`,
    );
    expect(statement.values).toEqual(['{"min_id":"2"}', '4']);
  });
});
