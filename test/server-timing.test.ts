/**
 * Server-Timing (PGLEASE_SERVER_TIMING=on, as PostgREST's server-timing-enabled): REST responses
 * name the phases they went through (lease, schema, plan or a cached plan, transaction, response),
 * which add up to no more than the time the client waited; errors and the lease's root document
 * carry it too, control responses their time. Off (the default), no response has the header.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, createLease, queryUrl, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';

let timed: TestService;
let plain: TestService;
let lease: CreatedLeaseJson;
let plainLease: CreatedLeaseJson;

const SCHEMA = `CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);
  INSERT INTO notes (body) VALUES ('one'), ('two');
  CREATE FUNCTION add_them(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT a + b';`;

beforeAll(async () => {
  [timed, plain] = await Promise.all([startTestService({ PGLEASE_SERVER_TIMING: 'on' }), startTestService()]);
  [lease, plainLease] = await Promise.all([createLease(timed), createLease(plain)]);
  await Promise.all([queryUrl(lease.url, SCHEMA), queryUrl(plainLease.url, SCHEMA)]);
}, 60_000);
afterAll(async () => {
  await Promise.all([timed?.close(), plain?.close()]);
});

interface Phase {
  name: string;
  ms: number;
  description?: string;
}

/** Parses a Server-Timing value (RFC-style list of `name;dur=…;desc="…"`). */
function phasesOf(header: string | null): Phase[] {
  expect(header).not.toBeNull();
  return header!.split(',').map((entry) => {
    const [name, ...params] = entry.trim().split(';');
    const phase: Phase = { name: name!, ms: NaN };
    for (const param of params) {
      const [key, value] = param.split('=');
      if (key === 'dur') phase.ms = Number(value);
      if (key === 'desc') phase.description = JSON.parse(value!) as string;
    }
    expect(phase.ms).toBeGreaterThanOrEqual(0);
    return phase;
  });
}

/** A request, its Server-Timing phases and how long the client waited for the whole answer (ms). */
async function timedRequest(url: string, init: RequestInit = {}): Promise<{ status: number; phases: Phase[]; waitedMs: number }> {
  const started = performance.now();
  const response = await fetch(url, init);
  await response.arrayBuffer();
  const waitedMs = performance.now() - started;
  return { status: response.status, phases: phasesOf(response.headers.get('server-timing')), waitedMs };
}

const total = (phases: Phase[]) => phases.reduce((sum, phase) => sum + phase.ms, 0);

describe('Server-Timing on', () => {
  it('names the phases of a read, a cached plan the second time, adding up to no more than the wait', async () => {
    const headers = { authorization: `Bearer ${lease.token}` };
    const first = await timedRequest(`${lease.rest_url}/notes?select=id,body&order=id`, { headers });
    expect(first.status).toBe(200);
    expect(first.phases.map((phase) => phase.name)).toEqual(['lease', 'schema', 'plan', 'transaction', 'response']);
    expect(first.phases.find((phase) => phase.name === 'plan')!.description).toBeUndefined();
    expect(total(first.phases)).toBeLessThanOrEqual(first.waitedMs);
    const again = await timedRequest(`${lease.rest_url}/notes?select=id,body&order=id`, { headers });
    expect(again.phases.map((phase) => phase.name)).toEqual(['lease', 'schema', 'plan', 'transaction', 'response']);
    expect(again.phases.find((phase) => phase.name === 'plan')!.description).toBe('cached');
    expect(total(again.phases)).toBeLessThanOrEqual(again.waitedMs);
  });

  it('times writes, calls, errors and the root document', async () => {
    const headers = { authorization: `Bearer ${lease.token}`, 'content-type': 'application/json' };
    const write = await timedRequest(`${lease.rest_url}/notes`, { method: 'POST', headers, body: JSON.stringify({ body: 'three' }) });
    expect(write.status).toBe(201);
    expect(write.phases.map((phase) => phase.name)).toEqual(['lease', 'schema', 'plan', 'transaction', 'response']);
    expect(total(write.phases)).toBeLessThanOrEqual(write.waitedMs);
    const call = await timedRequest(`${lease.rest_url}/rpc/add_them`, { method: 'POST', headers, body: JSON.stringify({ a: 1, b: 2 }) });
    expect(call.status).toBe(200);
    expect(call.phases.map((phase) => phase.name)).toEqual(['lease', 'schema', 'plan', 'transaction', 'response']);
    const missing = await timedRequest(`${lease.rest_url}/nope`, { headers });
    expect(missing.status).toBe(404);
    expect(missing.phases[0]!.name).toBe('lease');
    expect(missing.phases.at(-1)!.name).toBe('response');
    expect(total(missing.phases)).toBeLessThanOrEqual(missing.waitedMs);
    const root = await timedRequest(`${lease.rest_url}/`, { headers });
    expect(root.status).toBe(200);
    expect(root.phases.map((phase) => phase.name)).toEqual(['document']);
  });

  it('gives control responses their time', async () => {
    const answer = await timedRequest(`${timed.baseUrl}/v1/leases/${lease.id}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(answer.status).toBe(200);
    expect(answer.phases.map((phase) => phase.name)).toEqual(['app']);
    expect(answer.phases[0]!.ms).toBeLessThanOrEqual(answer.waitedMs);
  });
});

describe('Server-Timing off (the default)', () => {
  it('adds no header to REST or control responses', async () => {
    const read = await fetch(`${plainLease.rest_url}/notes`, { headers: { authorization: `Bearer ${plainLease.token}` } });
    expect(read.status).toBe(200);
    expect(read.headers.has('server-timing')).toBe(false);
    const control = await fetch(`${plain.baseUrl}/v1/leases/${plainLease.id}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(control.status).toBe(200);
    expect(control.headers.has('server-timing')).toBe(false);
  });
});
