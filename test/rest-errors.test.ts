/**
 * PostgREST's error mapping, complete: every SQLSTATE class a function can raise answers the
 * status PostgREST 12 gives it, in its `{ code, message, details, hint }` shape; bodies over the
 * configured limit answer 413 without reaching the database.
 */
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';
import { startRestFixture, type RestFixture } from './support/rest-fixture.js';

let fixture: RestFixture;

beforeAll(async () => {
  fixture = await startRestFixture(`
    create table t (id int primary key);
    create function raise_state(code text) returns void language plpgsql as $$
      begin raise exception 'raised %', code using errcode = code, detail = 'the detail', hint = 'the hint'; end $$;
  `);
});

afterAll(async () => {
  await fixture?.close();
});

/** SQLSTATE → PostgREST 12's status (docs/references/errors.rst), for an authenticated request. */
const STATUSES: [string, number][] = [
  ['08006', 503],
  ['09000', 500],
  ['0L000', 403],
  ['0P000', 403],
  ['23503', 409],
  ['23505', 409],
  ['23502', 400],
  ['23514', 400],
  ['25006', 405],
  ['25001', 500],
  ['28000', 403],
  ['2D000', 500],
  ['38000', 500],
  ['39000', 500],
  ['3B000', 500],
  ['40001', 500],
  ['53400', 500],
  ['53100', 503],
  ['54000', 500],
  ['55000', 500],
  ['57014', 500],
  ['57P01', 503],
  ['57P02', 503],
  ['57P03', 503],
  ['58000', 500],
  ['F0000', 500],
  ['HV000', 500],
  ['P0001', 400],
  ['P0002', 500],
  ['XX000', 500],
  ['42883', 404],
  ['42P01', 404],
  ['42P17', 500],
  ['42501', 403],
  ['22012', 400],
  ['PT418', 418],
  ['PT4XX', 500],
];

describe('Accept-Profile and Content-Profile', () => {
  it("serve the lease's schema and refuse any other with 406 PGRST106, reads and writes alike", async () => {
    const schema = fixture.lease.schema;
    expect((await fixture.get('/t', { headers: { 'accept-profile': schema } })).status).toBe(200);
    const read = await fixture.get('/t', { headers: { 'accept-profile': 'public' } });
    expect(read.status).toBe(406);
    expect(await read.json()).toEqual({ code: 'PGRST106', message: `The schema must be one of the following: ${schema}`, details: null, hint: null });
    const write = await fetch(`${fixture.restUrl}/t`, {
      method: 'POST',
      headers: { authorization: `Bearer ${fixture.lease.token}`, 'content-type': 'application/json', 'content-profile': 'other' },
      body: JSON.stringify({ id: 77 }),
    });
    expect(write.status).toBe(406);
    expect((await write.json()).code).toBe('PGRST106');
    // the write meant for another schema did not land in this one
    expect((await fixture.sql.query('SELECT count(*)::int AS n FROM t WHERE id = 77')).rows).toEqual([{ n: 0 }]);
    const ok = await fetch(`${fixture.restUrl}/t`, {
      method: 'POST',
      headers: { authorization: `Bearer ${fixture.lease.token}`, 'content-type': 'application/json', 'content-profile': schema },
      body: JSON.stringify({ id: 78 }),
    });
    expect(ok.status).toBe(201);
  });
});

describe('SQLSTATE → HTTP status', () => {
  it.each(STATUSES)('%s answers %i with the message, details and hint', async (code, status) => {
    const response = await fetch(`${fixture.restUrl}/rpc/raise_state`, {
      method: 'POST',
      headers: { authorization: `Bearer ${fixture.lease.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ code }),
    });
    expect(response.status).toBe(status);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await response.json()).toEqual({ code, message: `raised ${code}`, details: 'the detail', hint: 'the hint' });
  });

  it('answers a 503 SQLSTATE with Retry-After, as the control API does', async () => {
    for (const code of ['57P03', '53300', '08006']) {
      const response = await fetch(`${fixture.restUrl}/rpc/raise_state`, {
        method: 'POST',
        headers: { authorization: `Bearer ${fixture.lease.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ code }),
      });
      expect(response.status, code).toBe(503);
      expect(response.headers.get('retry-after'), code).toBe('5');
    }
  });

  it('answers 42501 with 401 and WWW-Authenticate to the anonymous role', async () => {
    await fixture.sql.query(`grant execute on function raise_state(text) to "${fixture.lease.anon_role}"`);
    const response = await fetch(`${fixture.restUrl}/rpc/raise_state`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ code: '42501' }),
    });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe('Bearer');
  });
});

describe('response size', () => {
  it('refuses a response body over 128 MiB in Postgres, before the service would have to hold it', async () => {
    await fixture.sql.query(`create or replace function huge(n int) returns text language sql stable as $$ select repeat('x', n) $$`);
    const auth = { authorization: `Bearer ${fixture.lease.token}` };
    const big = await fetch(`${fixture.restUrl}/rpc/huge?n=${140 * 1024 * 1024}`, { headers: auth });
    expect(big.status).toBe(400);
    expect(await big.json()).toEqual({
      code: 'PGLEASE_RESPONSE_TOO_LARGE',
      message: `The response would be ${140 * 1024 * 1024 + 2} bytes; pglease sends at most ${128 * 1024 * 1024}`,
      details: null,
      hint: 'Ask for fewer rows (limit=, offset=, Range) or fewer columns (select=)',
    });
    // the same through a table read; a body under the limit is sent
    await fixture.sql.query(`create table wide as select 1 as id, repeat('y', 140 * 1024 * 1024) as payload`);
    expect((await fetch(`${fixture.restUrl}/wide`, { headers: auth })).status).toBe(400);
    expect((await fetch(`${fixture.restUrl}/wide?select=id`, { headers: auth })).status).toBe(200);
    const fine = await fetch(`${fixture.restUrl}/rpc/huge?n=1000`, { headers: auth });
    expect(fine.status).toBe(200);
    expect(((await fine.json()) as string).length).toBe(1000);
    await fixture.sql.query('drop table wide');
    // (140 MiB written and read twice: over 30 s beside a second suite on a slower 2-core machine)
  }, 120_000);
});

describe('body size', () => {
  let service: TestService;
  let lease: CreatedLeaseJson;

  beforeAll(async () => {
    service = await startTestService({ PGLEASE_BODY_LIMIT: '2048' });
    lease = await createLease(service);
  });

  afterAll(async () => {
    await service?.close();
  });

  it('answers 413 in PostgREST format for a body over PGLEASE_BODY_LIMIT', async () => {
    const response = await fetch(`${lease.rest_url}/t`, {
      method: 'POST',
      headers: { authorization: `Bearer ${lease.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(Array.from({ length: 400 }, (_, id) => ({ id }))),
    });
    expect(response.status).toBe(413);
    expect(await response.json()).toMatchObject({ code: 'PGLEASE_BODY_TOO_LARGE', details: null, hint: null });
  });
});

/** A raw HTTP request (fetch refuses TRACE and would normalise some URLs): status and parsed body. */
function raw(method: string, url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const req = httpRequest({ host: target.hostname, port: target.port, method, path: url.slice(url.indexOf('/', 'http://'.length)) }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('requests no route takes', () => {
  it('answers a method PostgREST does not serve with 405 PGRST117, in its format', async () => {
    const answer = await raw('TRACE', `${fixture.restUrl}/t`);
    expect(answer.status).toBe(405);
    expect(answer.body).toEqual({ code: 'PGRST117', message: 'Unsupported HTTP method: TRACE', details: null, hint: null });
  });

  it('answers a path that is not valid percent-encoding in the format of its API', async () => {
    const rest = await raw('GET', `${fixture.restUrl}/%E0%A4%A`);
    expect(rest.status).toBe(404);
    expect(rest.body).toEqual({ code: 'PGRST125', message: 'Invalid path specified in request URL', details: null, hint: null });
    const control = await raw('GET', `${fixture.service.baseUrl}/v1/leases/%E0%A4%A`);
    expect(control.status).toBe(400);
    expect(control.body).toMatchObject({ code: 'PGLEASE_BAD_URL' });
    const tooLong = await raw('GET', `${fixture.service.baseUrl}/v1/leases/${'a'.repeat(500)}`);
    expect(tooLong.status).toBe(404);
    expect(tooLong.body).toMatchObject({ code: 'PGLEASE_NOT_FOUND' });
    const tooLongTemplate = await raw('GET', `${fixture.service.baseUrl}/v1/templates/${'a'.repeat(500)}`);
    expect(tooLongTemplate.status).toBe(404);
    expect(tooLongTemplate.body).toMatchObject({ code: 'PGLEASE_TEMPLATE_NOT_FOUND' });
    const tooLongRest = await raw('GET', `${fixture.service.baseUrl}/v1/leases/${'a'.repeat(500)}/rest/t`);
    expect(tooLongRest.body).toMatchObject({ code: 'PGRST125' });
  });
});
