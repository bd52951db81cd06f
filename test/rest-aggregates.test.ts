/**
 * Aggregates (db_aggregates_enabled) where PostgREST 12 allows them besides the top level, with the
 * answers of its documentation (references/api/aggregate_functions.rst, whose customers and orders
 * these tables copy): an embedded resource as a grouping column, aggregates within an embedded
 * resource, spread columns as grouping columns and as aggregate inputs; and over a function's
 * result. db_max_rows caps function results as it caps tables (PostgREST's db-max-rows: "from a
 * view, table, or function"), compiled POST calls included.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';
import { waitFor } from './support/wait.js';

let service: TestService;
let lease: CreatedLeaseJson;

async function rest(path: string, init: { method?: string; body?: unknown } = {}): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${lease.rest_url}${path}`, {
    method: init.method ?? 'GET',
    headers: { authorization: `Bearer ${lease.token}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  return { status: response.status, body: (await response.json()) as unknown };
}

async function get(path: string): Promise<unknown> {
  const answer = await rest(path);
  expect(answer, path).toMatchObject({ status: 200 });
  return answer.body;
}

/** Rows in a stable order (a GROUP BY without ORDER BY comes back in any order). */
function sorted(rows: unknown): unknown[] {
  return [...(rows as unknown[])].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}

beforeAll(async () => {
  service = await startTestService();
  lease = await createLease(service, { settings: { db_aggregates_enabled: true } });
  const client = new pg.Client({ connectionString: lease.url });
  await client.connect();
  await client.query(`
    create table customers (id int primary key, name text, city text, state text, joined_date date);
    create table orders (id int primary key, customer_id int references customers, amount numeric(8,2), order_date date);
    insert into customers values
      (1, 'Customer A', 'New York', 'NY', '2013-10-01'),
      (2, 'Customer B', 'Los Angeles', 'CA', '2016-02-11'),
      (3, 'Customer C', 'New York', 'NY', '2023-10-15');
    insert into orders values
      (1, 1, 100.00, '2023-09-01'), (2, 1, 115.22, '2023-09-01'), (3, 1, 905.73, '2023-09-02'),
      (4, 2, 329.71, '2023-09-01'), (5, 2, 425.87, '2023-09-03'), (6, 3, 50.00, '2023-09-02');
    create function orders_since(day date) returns setof orders language sql stable as $$ select * from orders where order_date >= day $$;
    create function amounts() returns setof numeric language sql stable as $$ select amount from orders order by id $$;`);
  await client.end();
});

afterAll(async () => {
  await service?.close();
});

describe('aggregates with embedded resources (PostgREST 12\'s documented answers)', () => {
  it('uses an embedded resource as a grouping column', async () => {
    // GET /orders?select=amount.sum(),customers(name)
    expect(sorted(await get('/orders?select=amount.sum(),customers(name)'))).toEqual(sorted([
      { sum: 1120.95, customers: { name: 'Customer A' } },
      { sum: 755.58, customers: { name: 'Customer B' } },
      { sum: 50, customers: { name: 'Customer C' } },
    ]));
  });

  it('aggregates within an embedded resource, grouped by its own columns only', async () => {
    // GET /customers?select=name,city,state,orders(amount.sum(),order_date)
    const body = (await get('/customers?select=name,city,state,orders(amount.sum(),order_date)&order=name')) as { orders: unknown }[];
    expect(body.map((row) => ({ ...row, orders: sorted(row.orders) }))).toEqual([
      { name: 'Customer A', city: 'New York', state: 'NY', orders: [{ sum: 215.22, order_date: '2023-09-01' }, { sum: 905.73, order_date: '2023-09-02' }] },
      { name: 'Customer B', city: 'Los Angeles', state: 'CA', orders: [{ sum: 329.71, order_date: '2023-09-01' }, { sum: 425.87, order_date: '2023-09-03' }] },
      { name: 'Customer C', city: 'New York', state: 'NY', orders: [{ sum: 50, order_date: '2023-09-02' }] },
    ]);
    // with an order inside the embed, a cast and an alias, twice (the second compiled)
    for (let i = 0; i < 2; i++) {
      expect(await get('/customers?select=name,orders(n:count(),total:amount.sum()::int,order_date)&orders.order=order_date.desc&id=eq.1')).toEqual([
        { name: 'Customer A', orders: [{ n: 1, total: 906, order_date: '2023-09-02' }, { n: 2, total: 215, order_date: '2023-09-01' }] },
      ]);
    }
    // a to-one resource with an aggregate is one group: an object
    expect(await get('/orders?select=id,customers(count())&id=lt.3&order=id')).toEqual([
      { id: 1, customers: { count: 1 } },
      { id: 2, customers: { count: 1 } },
    ]);
  });

  it('groups by the columns of a spread resource, and applies a spread resource\'s aggregates at the top level', async () => {
    // GET /orders?select=amount.sum(),...customers(city,state)
    expect(sorted(await get('/orders?select=amount.sum(),...customers(city,state)'))).toEqual(sorted([
      { sum: 1170.95, city: 'New York', state: 'NY' },
      { sum: 755.58, city: 'Los Angeles', state: 'CA' },
    ]));
    // GET /orders?select=order_date,...customers(joined_date.max(),joined_date.min())
    expect(await get('/orders?select=order_date,...customers(joined_date.max(),joined_date.min())&order=order_date')).toEqual([
      { order_date: '2023-09-01', max: '2016-02-11', min: '2013-10-01' },
      { order_date: '2023-09-02', max: '2023-10-15', min: '2013-10-01' },
      { order_date: '2023-09-03', max: '2016-02-11', min: '2016-02-11' },
    ]);
  });

  it('aggregates over a function\'s result, GET and POST, embeds too', async () => {
    expect(await get('/rpc/orders_since?day=2023-09-02&select=customer_id,amount.sum()&order=customer_id')).toEqual([
      { customer_id: 1, sum: 905.73 },
      { customer_id: 2, sum: 425.87 },
      { customer_id: 3, sum: 50 },
    ]);
    for (let i = 0; i < 2; i++) {
      const posted = await rest('/rpc/orders_since?select=count(),...customers(state)', { method: 'POST', body: { day: '2023-09-01' } });
      expect({ status: posted.status, body: sorted(posted.body) }).toEqual({ status: 200, body: sorted([{ count: 4, state: 'NY' }, { count: 2, state: 'CA' }]) });
    }
  });
});

describe('db_max_rows on function results', () => {
  it('caps a set of rows and a set of scalars, GET and POST, as it caps a table', async () => {
    expect(((await get('/rpc/orders_since?day=2023-09-01&select=id')) as unknown[]).length).toBe(6);
    expect(await get('/rpc/amounts')).toEqual([100, 115.22, 905.73, 329.71, 425.87, 50]);
    const changed = await fetch(`${service.baseUrl}/v1/leases/${lease.id}/settings`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${lease.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ db_max_rows: 2 }),
    });
    expect(changed.status).toBe(200);
    await waitFor('db_max_rows 2', async () => (((await get('/rpc/orders_since?day=2023-09-01&select=id&order=id')) as unknown[]).length === 2 ? true : undefined));
    for (let i = 0; i < 2; i++) {
      expect(await get('/rpc/orders_since?day=2023-09-01&select=id&order=id')).toEqual([{ id: 1 }, { id: 2 }]);
      expect(await get('/rpc/orders_since?day=2023-09-01&select=id&order=id&limit=1')).toEqual([{ id: 1 }]);
      expect(await get('/rpc/orders_since?day=2023-09-01&select=id&order=id&offset=4')).toEqual([{ id: 5 }, { id: 6 }]);
      expect(await get('/rpc/amounts')).toEqual([100, 115.22]);
      expect((await rest('/rpc/orders_since?select=id&order=id', { method: 'POST', body: { day: '2023-09-01' } })).body).toEqual([{ id: 1 }, { id: 2 }]);
    }
    // a table's cap is unchanged by it
    expect(await get('/orders?select=id&order=id')).toEqual([{ id: 1 }, { id: 2 }]);
  });
});
