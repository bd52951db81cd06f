/**
 * PostgREST's settings, per lease (PATCH /v1/leases/:id/settings, or `settings` at create):
 * db_max_rows caps what a read of a table or view returns, whatever its limit, as PostgREST's
 * db-max-rows does; db_aggregates_enabled allows count(), sum(), avg(), min() and max() in select,
 * grouped by the other columns (golden SQL and live results; embeds and calls in rest-aggregates.test.ts); db_plan_enabled answers a read's
 * EXPLAIN for `Accept: application/vnd.pgrst.plan…`. Changing any takes effect without a restart,
 * compiled reads included.
 */
import pg from 'pg';
import { planRead } from '../src/rest/plan/read-plan.js';
import { readStatement } from '../src/rest/query/read-query.js';
import { buildApiRequest } from '../src/rest/request/api-request.js';
import { loadSchemaCache } from '../src/rest/schema/load.js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';
import { waitFor } from './support/wait.js';

let service: TestService;
let lease: CreatedLeaseJson;

async function settings(body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${service.baseUrl}/v1/leases/${lease.id}/settings`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${lease.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function read(query: string, headers: Record<string, string> = {}): Promise<{ status: number; ids: number[]; range: string | null }> {
  const response = await fetch(`${lease.rest_url}/items${query}`, { headers: { authorization: `Bearer ${lease.token}`, ...headers } });
  const rows = (await response.json()) as { id: number }[];
  return { status: response.status, ids: rows.map((row) => row.id), range: response.headers.get('content-range') };
}

beforeAll(async () => {
  service = await startTestService();
  lease = await createLease(service, { settings: { db_max_rows: 3 } });
  const client = new pg.Client({ connectionString: lease.url });
  await client.connect();
  await client.query(`
    create table items (id int primary key);
    insert into items select generate_series(1, 10);
    create table orders (id int primary key, customer text not null, amount numeric(8,2) not null);
    insert into orders values (1, 'ann', 10), (2, 'ann', 32.5), (3, 'bob', 7), (4, 'cid', 100), (5, 'bob', 3);`);
  await client.end();
});

afterAll(async () => {
  await service?.close();
});

describe('db_max_rows', () => {
  it('caps every read of a table, limit or not, and counts all rows', async () => {
    expect((lease as unknown as { settings: unknown }).settings).toEqual({ db_max_rows: 3 });
    // twice each: the second is served from the compiled shape
    for (let i = 0; i < 2; i++) {
      expect((await read('?order=id')).ids).toEqual([1, 2, 3]);
      expect((await read('?order=id&limit=2')).ids).toEqual([1, 2]);
      expect((await read('?order=id&limit=5')).ids).toEqual([1, 2, 3]);
      expect((await read('?order=id&offset=8')).ids).toEqual([9, 10]);
      expect((await read('?order=id&id=gt.4')).ids).toEqual([5, 6, 7]);
    }
    const counted = await read('?order=id', { prefer: 'count=exact' });
    expect(counted).toMatchObject({ status: 206, ids: [1, 2, 3], range: '0-2/10' });
  });

  it('changes without a restart, and goes back to no cap when reset', async () => {
    expect((await settings({ db_max_rows: 5 })).body.settings).toEqual({ db_max_rows: 5 });
    await waitFor('db_max_rows 5', async () => ((await read('?order=id')).ids.length === 5 ? true : undefined));
    expect((await read('?order=id&limit=7')).ids).toEqual([1, 2, 3, 4, 5]);
    expect((await settings({ db_max_rows: null })).body.settings).toEqual({});
    await waitFor('no cap', async () => ((await read('?order=id')).ids.length === 10 ? true : undefined));
    expect((await read('?order=id&limit=7')).ids).toHaveLength(7);
  });

  it('refuses a cap that is not a positive whole number', async () => {
    for (const value of [0, -1, 2.5, '10']) {
      const answer = await settings({ db_max_rows: value });
      expect({ value, status: answer.status, code: answer.body.code }).toEqual({ value, status: 400, code: 'PGLEASE_INVALID_FIELD' });
    }
    const unknown = await settings({ no_such_setting: true });
    expect(unknown.status).toBe(400);
  });
});

describe('db_aggregates_enabled', () => {
  const get = async (query: string) => {
    const response = await fetch(`${lease.rest_url}/orders${query}`, { headers: { authorization: `Bearer ${lease.token}` } });
    return { status: response.status, body: (await response.json()) as unknown };
  };

  it('compiles an aggregate with the other columns as GROUP BY', async () => {
    const url = new URL(inject('serverUrl'));
    url.pathname = `/${service.config.leaseDatabase}`;
    const host = new pg.Pool({ connectionString: url.toString(), max: 1 });
    try {
      const cache = await loadSchemaCache(host, lease.schema, [lease.role]);
      const request = buildApiRequest({ method: 'GET', path: '/orders', query: 'select=customer,total:amount.sum(),count()&order=customer', headers: {}, authenticated: true, aggregatesEnabled: true });
      const statement = readStatement(planRead(cache, request, 'orders'));
      expect(statement.text).toContain(
        `SELECT "orders"."customer", sum("orders"."amount") AS "total", count(*) AS "count" FROM "${lease.schema}"."orders" AS "orders" GROUP BY "orders"."customer" ORDER BY "orders"."customer"`,
      );
    } finally {
      await host.end();
    }
  });

  it('is refused (PGRST123) until enabled, then counts, sums, averages and groups', async () => {
    expect(await get('?select=count()')).toEqual({ status: 400, body: { code: 'PGRST123', message: 'Use of aggregate functions is not allowed', details: null, hint: null } });
    expect((await settings({ db_aggregates_enabled: true })).body.settings).toMatchObject({ db_aggregates_enabled: true });
    await waitFor('aggregates enabled', async () => ((await get('?select=count()')).status === 200 ? true : undefined));
    expect((await get('?select=count()')).body).toEqual([{ count: 5 }]);
    expect((await get('?select=amount.sum(),amount.max(),amount.min()')).body).toEqual([{ sum: 152.5, max: 100, min: 3 }]);
    expect((await get('?select=customer,n:count(),total:amount.sum(),average:amount.avg()::int&order=customer')).body).toEqual([
      { customer: 'ann', n: 2, total: 42.5, average: 21 },
      { customer: 'bob', n: 2, total: 10, average: 5 },
      { customer: 'cid', n: 1, total: 100, average: 100 },
    ]);
    // filters apply before grouping; the same shape again is served compiled
    for (let i = 0; i < 2; i++) expect((await get(`?select=customer,count()&amount=gt.${5 + i}&order=customer`)).body).toEqual([
      { customer: 'ann', count: 2 },
      { customer: 'bob', count: 1 },
      { customer: 'cid', count: 1 },
    ]);
    // an aggregate inside an embed is grouped within it (test/rest-aggregates.test.ts has more)
    const client = new pg.Client({ connectionString: lease.url });
    await client.connect();
    await client.query('create table customers (name text primary key); insert into customers values (\'ann\'), (\'bob\'), (\'cid\'); alter table orders add foreign key (customer) references customers');
    await client.end();
    const nested = await waitFor('the new relationship', async () => {
      const answer = await get('?select=id,customers(name.count())&order=id&id=lt.3');
      return answer.status === 200 ? answer : undefined;
    });
    expect(nested.body).toEqual([{ id: 1, customers: { count: 1 } }, { id: 2, customers: { count: 1 } }]);

    expect((await settings({ db_aggregates_enabled: false })).status).toBe(200);
    await waitFor('aggregates disabled', async () => ((await get('?select=count()')).status === 400 ? true : undefined));
  });
});

describe('db_plan_enabled', () => {
  const explain = async (query: string, accept: string) => {
    const response = await fetch(`${lease.rest_url}/items${query}`, { headers: { authorization: `Bearer ${lease.token}`, accept } });
    return { status: response.status, type: response.headers.get('content-type'), text: await response.text() };
  };

  it('answers the EXPLAIN of a read once enabled, in JSON or text, with EXPLAIN\'s options', async () => {
    const refused = await explain('?id=eq.3', 'application/vnd.pgrst.plan+json');
    expect(refused.status).toBe(406);
    expect(JSON.parse(refused.text).code).toBe('PGRST107');
    expect((await settings({ db_plan_enabled: true })).body.settings).toMatchObject({ db_plan_enabled: true });
    await waitFor('plans enabled', async () => ((await explain('?id=eq.3', 'application/vnd.pgrst.plan+json')).status === 200 ? true : undefined));

    const json = await explain('?id=eq.3', 'application/vnd.pgrst.plan+json');
    expect(json.type).toBe('application/vnd.pgrst.plan+json; for="application/json"; charset=utf-8');
    const [plan] = JSON.parse(json.text) as { Plan: Record<string, unknown>; 'Execution Time'?: number }[];
    // the body's json_agg over the rows: an aggregate on top, the table scanned below it
    expect(plan!.Plan['Node Type']).toBe('Aggregate');
    expect(JSON.stringify(plan!.Plan)).toContain('"Relation Name":"items"');
    expect(plan!['Execution Time']).toBeUndefined();

    const analyzed = await explain('?id=eq.3', 'application/vnd.pgrst.plan+json; options=analyze|verbose');
    expect(analyzed.type).toBe('application/vnd.pgrst.plan+json; for="application/json"; options=analyze|verbose; charset=utf-8');
    const [run] = JSON.parse(analyzed.text) as { Plan: Record<string, unknown>; 'Execution Time'?: number }[];
    expect(typeof run!['Execution Time']).toBe('number');
    expect(run!.Plan['Actual Rows']).toBe(1);
    expect(run!.Plan.Output).toBeDefined();

    const text = await explain('?order=id', 'application/vnd.pgrst.plan+text; for="text/csv"; options=analyze');
    expect(text.type).toBe('application/vnd.pgrst.plan+text; for="text/csv"; options=analyze; charset=utf-8');
    expect(text.text).toMatch(/^Aggregate .*actual time=/);
    expect(text.text).toContain('items');

    const badOption = await explain('', 'application/vnd.pgrst.plan+json; options=costly');
    expect(badOption.status).toBe(406);
    expect((await settings({ db_plan_enabled: null })).status).toBe(200);
  });
});

describe('openapi_mode', () => {
  const root = async () => {
    const response = await fetch(`${lease.rest_url}/`);
    return { status: response.status, body: (await response.json()) as { paths?: Record<string, Record<string, unknown>>; code?: string } };
  };

  it('shows what the role may do, everything (ignore-privileges), or nothing (disabled: 404 PGRST126)', async () => {
    // the anonymous role was granted nothing on items
    expect((await root()).body.paths?.['/items']).toBeUndefined();
    expect((await settings({ openapi_mode: 'ignore-privileges' })).status).toBe(200);
    const everything = await waitFor('ignore-privileges', async () => {
      const answer = await root();
      return answer.body.paths?.['/items'] ? answer : undefined;
    });
    expect(Object.keys(everything.body.paths!['/items']!)).toEqual(expect.arrayContaining(['get', 'post', 'patch', 'delete']));
    expect((await settings({ openapi_mode: 'disabled' })).status).toBe(200);
    const disabled = await waitFor('disabled', async () => {
      const answer = await root();
      return answer.status === 404 ? answer : undefined;
    });
    expect(disabled.body).toEqual({ code: 'PGRST126', message: 'Root endpoint metadata is disabled', details: null, hint: null });
    expect((await settings({ openapi_mode: 'sometimes' })).status).toBe(400);
    expect((await settings({ openapi_mode: null })).status).toBe(200);
  });
});
