/**
 * The REST API's statement gate (src/rest/executor/statement-gate.ts): at most N statements at
 * once over all leases, the others served in arrival order; a statement that runs long gives its
 * place up, so that one lease's slow requests cannot stop every other lease's.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StatementGate, type GateTicket } from '../src/rest/executor/statement-gate.js';
import { createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';

describe('StatementGate', () => {
  it('lets the limit in at once and the rest in arrival order as places free', async () => {
    const gate = new StatementGate(2, 10_000);
    const first = gate.enter() as GateTicket;
    const second = gate.enter() as GateTicket;
    expect(first).not.toBeInstanceOf(Promise);
    expect(second).not.toBeInstanceOf(Promise);
    const order: number[] = [];
    const waiting = [3, 4, 5].map((n) => (gate.enter() as Promise<GateTicket>).then((ticket) => (order.push(n), ticket)));
    expect(gate.waiting).toBe(3);
    expect(gate.inFlight).toBe(2);
    gate.leave(first);
    const third = await waiting[0]!;
    expect(order).toEqual([3]);
    gate.leave(second);
    gate.leave(third);
    const [, fourth, fifth] = await Promise.all(waiting);
    expect(order).toEqual([3, 4, 5]);
    expect(gate.inFlight).toBe(2);
    gate.leave(fourth!);
    gate.leave(fifth!);
    expect(gate.inFlight).toBe(0);
    expect(gate.waiting).toBe(0);
  });

  it('does not let a newcomer pass requests that wait', async () => {
    const gate = new StatementGate(1, 10_000);
    const first = gate.enter() as GateTicket;
    const queued = gate.enter() as Promise<GateTicket>;
    gate.leave(first);
    // the place went to the waiting request, not to one arriving now
    expect(gate.enter()).toBeInstanceOf(Promise);
    expect(gate.inFlight).toBe(1);
    gate.leave(await queued);
  });

  it('gives the place of a statement that runs past slowMs to a waiting request', async () => {
    const gate = new StatementGate(1, 30);
    const slow = gate.enter() as GateTicket;
    const started = Date.now();
    const next = await (gate.enter() as Promise<GateTicket>);
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
    expect(gate.slowReleased).toBe(1);
    // the slow one ending later does not free a place twice
    gate.leave(slow);
    expect(gate.inFlight).toBe(1);
    gate.leave(next);
    expect(gate.inFlight).toBe(0);
  });
});

describe('the gate on the REST API (real Postgres)', () => {
  let service: TestService;
  let slowLease: CreatedLeaseJson;
  let quickLease: CreatedLeaseJson;

  beforeAll(async () => {
    // 2 statements at once: the slow lease's 4 requests would fill the gate twice over
    service = await startTestService({ PGLEASE_REST_ACTIVE_STATEMENTS: '2', PGLEASE_REST_LEASE_CONNECTIONS: '4', PGLEASE_LEASE_POOL: '0' });
    [slowLease, quickLease] = await Promise.all([0, 1].map(() => createLease(service, {}, { authorization: 'Bearer test-admin-token' })));
    for (const lease of [slowLease, quickLease]) {
      const sql = new pg.Client({ connectionString: lease.url });
      await sql.connect();
      await sql.query(`create table items (id int primary key, name text); insert into items values (1, 'one');
        create function nap(seconds float8) returns int language sql as 'select 1 from pg_sleep(seconds)';`);
      await sql.end();
    }
  });

  afterAll(async () => {
    await service?.close();
  });

  const get = (lease: CreatedLeaseJson, path: string) => fetch(`${lease.rest_url}${path}`, { headers: { authorization: `Bearer ${lease.token}` } });

  it("answers another lease's requests while one lease's statements sleep", async () => {
    const naps = Array.from({ length: 4 }, () => get(slowLease, '/rpc/nap?seconds=4'));
    // let the naps take their places
    await new Promise((resolve) => setTimeout(resolve, 300));
    const started = Date.now();
    const quick = await Promise.all(Array.from({ length: 20 }, () => get(quickLease, '/items?id=eq.1').then(async (response) => [response.status, await response.json()] as const)));
    const quickMs = Date.now() - started;
    for (const [status, body] of quick) {
      expect(status).toBe(200);
      expect(body).toEqual([{ id: 1, name: 'one' }]);
    }
    // well before the naps end (4 s): without giving their places up they would hold both
    expect(quickMs).toBeLessThan(3_500);
    for (const response of await Promise.all(naps)) expect(response.status).toBe(200);
  });

  it('serves many requests over both leases through a gate of 2', async () => {
    const answers = await Promise.all(
      Array.from({ length: 60 }, (_, i) => get(i % 2 ? slowLease : quickLease, '/items?select=name').then(async (response) => [response.status, await response.text()] as const)),
    );
    for (const [status, body] of answers) {
      expect(status).toBe(200);
      expect(body).toBe('[{"name":"one"}]');
    }
  });
});
