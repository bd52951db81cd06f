/**
 * PostgREST's error mapping, complete: every SQLSTATE class a function can raise answers the
 * status PostgREST 12 gives it, in its `{ code, message, details, hint }` shape; bodies over the
 * configured limit answer 413 without reaching the database.
 */
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
