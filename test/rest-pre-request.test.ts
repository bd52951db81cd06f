/**
 * db_pre_request, PostgREST's db-pre-request per lease: a function of the lease called before
 * every request to a table, view or function (reads, compiled reads, writes, calls, EXPLAIN) and
 * before the root document, as the request's role, after request.* are set and in the request's
 * transaction; what it raises is the answer, as PostgREST answers it (RAISE SQLSTATE 'PT403' is
 * 403 with the message, detail and hint; SQLSTATE 'PGRST' chooses the status, headers and body;
 * P0001 is 400).
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintJwt } from '../src/auth/mint.js';
import { createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';
import { waitFor } from './support/wait.js';

type Lease = CreatedLeaseJson & { jwt_secret: string };

let service: TestService;
let lease: Lease;

async function settings(body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${service.baseUrl}/v1/leases/${lease.id}/settings`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${lease.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

interface Answer {
  status: number;
  body: unknown;
  headers: Headers;
}

async function rest(path: string, init: { method?: string; body?: unknown; headers?: Record<string, string>; token?: string | null } = {}): Promise<Answer> {
  const token = init.token === undefined ? lease.token : init.token;
  const response = await fetch(`${lease.rest_url}${path}`, {
    method: init.method ?? 'GET',
    headers: {
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...init.headers,
    },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? null : (JSON.parse(text) as unknown), headers: response.headers };
}

async function asOwner(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: lease.url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  service = await startTestService();
  lease = (await createLease(service)) as Lease;
  const declared = await fetch(`${service.baseUrl}/v1/leases/${lease.id}/roles`, {
    method: 'POST',
    headers: { authorization: `Bearer ${lease.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'authenticated' }),
  });
  expect(declared.status).toBe(201);
  // x-pre: what the pre-request does. 'echo' answers 418 with the role, method, path and the
  // JWT's sub it saw; 'deny' a PT403; 'custom' a whole answer of its own; 'plain' a P0001.
  // Otherwise it sets app.tenant for the rest of the transaction (read by the view and the
  // function below) and, on writes to tables, records the call in pre_calls.
  await asOwner(`
    create table items (id int primary key, tenant text);
    insert into items values (1, 'acme'), (2, 'acme'), (3, 'globex');
    create table pre_calls (n serial primary key, role text, method text);
    create view my_items as select * from items where tenant = current_setting('app.tenant', true);
    create function tenant() returns text language sql stable as $$ select current_setting('app.tenant', true) $$;
    -- PostgREST's teapot (references/transactions.rst, "Response Status Code")
    create function teapot() returns json as $$
    begin
      perform set_config('response.status', '418', true);
      return json_build_object('message', 'The requested entity body is short and stout.', 'hint', 'Tip it over and pour it out.');
    end; $$ language plpgsql;
    create function check_request() returns void language plpgsql as $$
    declare
      pre text := current_setting('request.headers', true)::json->>'x-pre';
    begin
      if pre = 'echo' then
        raise sqlstate 'PT418' using message = current_user || ' ' || current_setting('request.method') || ' ' || current_setting('request.path') || ' ' || coalesce(current_setting('request.jwt.claims')::json->>'sub', '-');
      elsif pre = 'deny' then
        raise sqlstate 'PT403' using message = 'Forbidden by pre-request', detail = 'x-pre says deny', hint = 'Leave x-pre out';
      elsif pre = 'custom' then
        raise sqlstate 'PGRST' using
          message = '{"code":"123","message":"Payment Required","details":"Quota exceeded","hint":"Upgrade your plan"}',
          detail = '{"status":402,"headers":{"X-Powered-By":"Nerd Rage"}}';
      elsif pre = 'plain' then
        raise exception 'no such tenant';
      end if;
      -- response.headers and response.status, as PostgREST's own pre-request example sets them
      if pre = 'cache' then
        perform set_config('response.headers', '[{"Cache-Control": "no-cache, no-store, must-revalidate"}, {"X-Tenant": "a"}, {"X-Tenant": "b"}, {"Content-Type": "application/x-custom"}]', true);
      elsif pre = 'accepted' then
        perform set_config('response.status', '202', true);
      elsif pre = 'bad-headers' then
        perform set_config('response.headers', '{"Cache-Control": "public"}', true);
      elsif pre = 'bad-status' then
        perform set_config('response.status', 'teapot', true);
      end if;
      perform set_config('app.tenant', coalesce(current_setting('request.headers', true)::json->>'x-tenant', 'acme'), true);
      if current_setting('request.method') <> 'GET' and current_setting('request.path') not like '/rpc/%' then
        insert into pre_calls (role, method) values (current_user, current_setting('request.method'));
      end if;
    end $$;
    grant select on items, my_items to ${lease.role}_authenticated;
    grant execute on function check_request() to ${lease.role}_authenticated, ${lease.role}_anon;
    grant execute on function teapot() to ${lease.role}_anon;
  `);
});

afterAll(async () => {
  await service?.close();
});

describe('db_pre_request', () => {
  it('is a setting like the others: shown with the lease, validated, and reset by null', async () => {
    for (const value of ['', 'drop table x', 'a.b.c', '"quoted"', 'x'.repeat(64), 5]) {
      const refused = await settings({ db_pre_request: value });
      expect({ value, status: refused.status, code: refused.body.code }).toEqual({ value, status: 400, code: 'PGLEASE_INVALID_FIELD' });
    }
    expect((await settings({ db_pre_request: 'check_request' })).body.settings).toEqual({ db_pre_request: 'check_request' });
    // until every process hears of the change, a read may still run without it
    await waitFor('the pre-request in force', async () => ((await rest('/items', { headers: { 'x-pre': 'deny' } })).status === 403 ? true : undefined));
  });

  it('runs before reads (twice: the second compiled), as the request\'s role, with request.* already set', async () => {
    for (let i = 0; i < 2; i++) {
      const owner = await rest('/items?select=id&order=id', { headers: { 'x-pre': 'echo' } });
      expect(owner).toMatchObject({ status: 418, body: { code: 'PT418', message: `${lease.role} GET /items -`, details: null, hint: null } });
      const anonymous = await rest('/items?select=id', { token: null, headers: { 'x-pre': 'echo' } });
      expect(anonymous.body).toMatchObject({ code: 'PT418', message: `${lease.role}_anon GET /items -` });
      const jwt = await mintJwt(lease.jwt_secret, { role: 'authenticated', sub: 'alice' });
      const user = await rest('/items?select=id', { token: jwt, headers: { 'x-pre': 'echo' } });
      expect(user.body).toMatchObject({ code: 'PT418', message: `${lease.role}_authenticated GET /items alice` });
    }
  });

  it('runs before the root document too (PostgREST runs it before its OpenAPI query)', async () => {
    expect((await rest('/', { headers: { 'x-pre': 'echo' } })).body).toMatchObject({ code: 'PT418', message: `${lease.role} GET / -` });
    expect((await rest('/', { token: null, headers: { 'x-pre': 'deny' } })).status).toBe(403);
    const document = await rest('/');
    expect({ status: document.status, openapi: (document.body as { openapi?: string }).openapi }).toEqual({ status: 200, openapi: expect.stringMatching(/^3\./) });
  });

  it('answers a RAISE as PostgREST does: PT403, a PGRST answer of its own, P0001', async () => {
    const denied = await rest('/items', { headers: { 'x-pre': 'deny' } });
    expect({ status: denied.status, body: denied.body }).toEqual({
      status: 403,
      body: { code: 'PT403', message: 'Forbidden by pre-request', details: 'x-pre says deny', hint: 'Leave x-pre out' },
    });
    const custom = await rest('/rpc/tenant', { headers: { 'x-pre': 'custom' } });
    expect({ status: custom.status, body: custom.body, poweredBy: custom.headers.get('x-powered-by') }).toEqual({
      status: 402,
      body: { code: '123', message: 'Payment Required', details: 'Quota exceeded', hint: 'Upgrade your plan' },
      poweredBy: 'Nerd Rage',
    });
    const plain = await rest('/items', { method: 'POST', body: { id: 9, tenant: 'x' }, headers: { 'x-pre': 'plain' } });
    expect({ status: plain.status, body: plain.body }).toEqual({ status: 400, body: { code: 'P0001', message: 'no such tenant', details: null, hint: null } });
    expect((await rest('/items?id=eq.9')).body).toEqual([]);
  });

  it('sets the response\'s headers and status through response.headers and response.status, as PostgREST', async () => {
    for (let i = 0; i < 2; i++) {
      const cached = await rest('/items?select=id&order=id&id=lt.4', { headers: { 'x-pre': 'cache' } });
      expect({
        status: cached.status,
        cacheControl: cached.headers.get('cache-control'),
        tenant: cached.headers.get('x-tenant'),
        type: cached.headers.get('content-type'),
        range: cached.headers.get('content-range'),
      }).toEqual({ status: 200, cacheControl: 'no-cache, no-store, must-revalidate', tenant: 'a, b', type: 'application/x-custom', range: '0-2/*' });
      const accepted = await rest('/items', { method: 'POST', body: { id: 20 + i, tenant: 'x' }, headers: { 'x-pre': 'accepted' } });
      expect(accepted.status).toBe(202);
      const call = await rest('/rpc/tenant', { headers: { 'x-pre': 'accepted' } });
      expect({ status: call.status, body: call.body }).toEqual({ status: 202, body: 'acme' });
    }
    const teapot = await rest('/rpc/teapot');
    expect({ status: teapot.status, body: teapot.body }).toEqual({
      status: 418,
      body: { message: 'The requested entity body is short and stout.', hint: 'Tip it over and pour it out.' },
    });
    expect(await rest('/items', { headers: { 'x-pre': 'bad-headers' } })).toMatchObject({
      status: 500,
      body: { code: 'PGRST111', message: 'response.headers guc must be a JSON array composed of objects with a single key and a string value' },
    });
    expect(await rest('/items', { headers: { 'x-pre': 'bad-status' } })).toMatchObject({
      status: 500,
      body: { code: 'PGRST112', message: 'response.status guc must be a valid status code' },
    });
    // a later request on the same sessions is its own again
    expect((await rest('/items?select=id&order=id')).headers.get('cache-control')).toBeNull();
  });

  it('runs in the request\'s transaction, before the main statement: what it sets, the view and function see; what it writes goes with the request', async () => {
    for (let i = 0; i < 2; i++) {
      expect((await rest('/my_items?select=id&order=id')).body).toEqual([{ id: 1 }, { id: 2 }]);
      expect((await rest('/my_items?select=id', { headers: { 'x-tenant': 'globex' } })).body).toEqual([{ id: 3 }]);
      expect((await rest('/rpc/tenant', { headers: { 'x-tenant': 'initech' } })).body).toBe('initech');
      expect((await rest('/rpc/tenant', { method: 'POST', body: {}, headers: { 'x-tenant': 'initech' } })).body).toBe('initech');
    }
    const before = (await rest('/pre_calls?select=n')).body as unknown[];
    expect((await rest('/items', { method: 'POST', body: { id: 4, tenant: 'acme' } })).status).toBe(201);
    // a write that fails takes the pre-request's insert with it; one rolled back by Prefer too
    expect((await rest('/items', { method: 'POST', body: { id: 4, tenant: 'acme' } })).status).toBe(409);
    expect((await rest('/items', { method: 'PATCH', body: { tenant: 'x' }, headers: { prefer: 'tx=rollback' } })).status).toBe(204);
    const calls = (await rest('/pre_calls?select=role,method&order=n')).body as { role: string; method: string }[];
    expect(calls.slice(before.length)).toEqual([{ role: lease.role, method: 'POST' }]);
  });

  it('runs before EXPLAIN too, and a missing or refused function is the request\'s error', async () => {
    expect((await settings({ db_plan_enabled: true })).status).toBe(200);
    await waitFor('plans enabled', async () => ((await rest('/items', { headers: { accept: 'application/vnd.pgrst.plan+json' } })).status === 200 ? true : undefined));
    expect((await rest('/items', { headers: { accept: 'application/vnd.pgrst.plan+json', 'x-pre': 'deny' } })).status).toBe(403);

    // the anonymous role may not execute it: 42501, 401 for the anonymous role as in PostgREST
    await asOwner(`revoke execute on function check_request() from ${lease.role}_anon`);
    const anonymous = await rest('/items', { token: null });
    expect({ status: anonymous.status, code: (anonymous.body as { code: string }).code }).toEqual({ status: 401, code: '42501' });
    expect((await rest('/items?select=id&order=id')).status).toBe(200);

    expect((await settings({ db_pre_request: 'no_such_function' })).status).toBe(200);
    await waitFor('the missing function in force', async () => ((await rest('/items')).status === 404 ? true : undefined));
    expect((await rest('/items')).body).toMatchObject({ code: '42883', message: expect.stringContaining('no_such_function()') });

    // schema-qualified, as PostgREST writes it
    expect((await settings({ db_pre_request: `${lease.schema}.check_request` })).status).toBe(200);
    await waitFor('the qualified name in force', async () => ((await rest('/items', { headers: { 'x-pre': 'deny' } })).status === 403 ? true : undefined));

    expect((await settings({ db_pre_request: null })).body.settings).toEqual({ db_plan_enabled: true });
    await waitFor('no pre-request', async () => ((await rest('/items', { headers: { 'x-pre': 'deny' } })).status === 200 ? true : undefined));
  });
});
