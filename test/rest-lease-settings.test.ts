/**
 * PostgREST's settings, per lease (PATCH /v1/leases/:id/settings, or `settings` at create):
 * db_max_rows caps what a read of a table or view returns, whatever its limit, as PostgREST's
 * db-max-rows does; changing it takes effect without a restart, compiled reads included.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
  await client.query('create table items (id int primary key); insert into items select generate_series(1, 10)');
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
    const unknown = await settings({ db_plan_enabled: true });
    expect(unknown.status).toBe(400);
  });
});
