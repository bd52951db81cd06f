/**
 * Property: whatever payload arrives on pglease_lease_change or pglease_rest_ddl (empty, huge,
 * unicode, UUID-like, lease-like, a cached lease's id in another case), the real handlers never
 * throw and never look up a lease this process has no pool of; and a cached lease's own
 * notifications still invalidate what is cached of it, so a released lease stops answering.
 */
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChangeNotifications, listenForChanges, type CacheListener } from '../src/rest/notifications.js';
import { RestService } from '../src/rest/rest-service.js';
import { RestError } from '../src/rest/response/errors.js';
import { createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';
import { waitFor } from './support/wait.js';

/** The real RestService, recording which leases its notifications made it look up. */
class RecordingRestService extends RestService {
  readonly lookedUp: string[] = [];
  override recheckLease(leaseId: string): Promise<void> {
    this.lookedUp.push(leaseId);
    return super.recheckLease(leaseId);
  }
}

let service: TestService;
let rest: RecordingRestService;
let listener: CacheListener;
let cached: CreatedLeaseJson;
let notifier: pg.Client;

/** Caches the lease's lookup, opens its pool and loads its schema, as a REST request would. */
async function cacheLease(target: RestService, lease: CreatedLeaseJson): Promise<void> {
  const caller = await target.caller(lease.id, lease.token);
  target.pools.pool(caller.lease);
  await target.schema(caller);
}

beforeAll(async () => {
  service = await startTestService({ PGLEASE_SCHEDULER: 'off', PGLEASE_LEASE_POOL: '0' });
  rest = new RecordingRestService(service.host);
  listener = await listenForChanges(service.host, rest, () => undefined);
  cached = await createLease(service);
  await cacheLease(rest, cached);
  // a session of the lease, as an attacker's would be; its release ends it
  notifier = new pg.Client({ connectionString: cached.url });
  notifier.on('error', () => undefined);
  await notifier.connect();
});

afterAll(async () => {
  await notifier?.end().catch(() => undefined);
  await listener?.close();
  await rest?.close();
  await service?.close();
});

const hex = (length: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: length, maxLength: length });
/** `id` with its letters in the case `mask` picks (never all lower case: then it is `id` itself). */
const caseVariant = (id: string, mask: number) => {
  const variant = [...id].map((char, i) => ((mask >> (i % 30)) & 1 ? char.toUpperCase() : char)).join('');
  return variant === id ? id.toUpperCase() : variant;
};
const payload = () =>
  fc.oneof(
    fc.string(),
    fc.string({ unit: 'grapheme', maxLength: 60 }),
    fc.string({ unit: 'binary', maxLength: 60 }),
    fc.uuid(),
    fc.uuid().map((id) => id.toUpperCase()),
    hex(16).map((digits) => `lease_${digits}`),
    fc.tuple(fc.constantFrom('', ' ', '\n', '"', 'LEASE_', 'lease_'), hex(16), fc.constantFrom('', ' ', 'x', '\u0301')).map(([before, digits, after]) => `${before}${digits}${after}`),
    fc.integer({ min: 1, max: 2 ** 30 }).map((mask) => caseVariant(cached.id, mask)),
    fc.constantFrom('', ' ', `${cached.id} `, ` ${cached.id}`, `${cached.id}\n`, cached.schema.toUpperCase(), `${cached.schema} `, 'x'.repeat(1_000_000), '\u{1F600}'.repeat(10_000)),
  );

describe('lease and DDL notification payloads', () => {
  it('never throw and never look up a lease without a pool here, called directly', () => {
    fc.assert(
      fc.property(payload(), (text) => {
        listener.handlers.leaseChanged(text);
        listener.handlers.schemaChanged(text);
        expect(listener.handlers.queued).toBe(0);
      }),
      { numRuns: 2_000, seed: 11 },
    );
    expect(rest.lookedUp).toEqual([]);
    expect(rest.schemas.has(cached.schema)).toBe(true);
    // still held (its lifetime may have run out meanwhile: that is not an invalidation)
    expect(rest.directory.holds(cached.id)).toBe(true);
  });

  it('never throw and never look up a lease without a pool here, sent through NOTIFY', async () => {
    // what NOTIFY can carry: text without NUL, under 8000 bytes
    const sendable = payload().filter((text) => !text.includes('\u0000') && Buffer.byteLength(text) < 7_900);
    const samples = fc.sample(sendable, { numRuns: 300, seed: 12 });
    for (const text of samples) {
      await notifier.query(`select pg_notify('pglease_lease_change', $1), pg_notify('pglease_rest_ddl', $1)`, [text]);
    }
    // notifications of one session arrive in order: once this one is handled, all are. The lease's
    // pool is used again first: one no request used for 15 s is closed, and a lease without a pool
    // here is not looked up (beside a second suite, this test's start came over 15 s after beforeAll's)
    await cacheLease(rest, cached);
    const lookups = rest.lookedUp.length;
    await notifier.query(`select pg_notify('pglease_lease_change', $1)`, [cached.id]);
    await waitFor('the cached lease to be looked up', async () => (rest.lookedUp.length > lookups ? true : undefined));
    expect(new Set(rest.lookedUp)).toEqual(new Set([cached.id]));
    expect(rest.schemas.has(cached.schema)).toBe(true);
  });

  it("invalidates a cached lease's lookup and schema, and closes its pool once it is released", async () => {
    await cacheLease(rest, cached);
    await notifier.query(`select pg_notify('pglease_rest_ddl', $1)`, [cached.schema]);
    await waitFor('the schema cache to be dropped', async () => (rest.schemas.has(cached.schema) ? undefined : true));

    const released = await fetch(`${service.baseUrl}/v1/leases/${cached.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${cached.token}` } });
    expect(released.status).toBeLessThan(300);
    // within the lookup's 5 s lifetime: the notification did it, not the expiry
    await waitFor('the pool of the released lease to close', async () => (rest.pools.has(cached.id) ? undefined : true), 4_000);
    const refused = await rest.caller(cached.id, cached.token).then(() => null, (error: unknown) => error);
    expect(refused).toBeInstanceOf(RestError);
    expect((refused as RestError).code).toBe('PGLEASE_NOT_FOUND');
  });

  it('drops every cache, at once and without lookups, when more leases wait than the bound', async () => {
    const own = new RecordingRestService(service.host);
    try {
      const leases = await Promise.all([1, 2, 3].map(() => createLease(service)));
      for (const lease of leases) await cacheLease(own, lease);
      const handlers = new ChangeNotifications(own, { maxWaiting: 2, lookupsAtOnce: 1 });
      for (const lease of leases) handlers.leaseChanged(lease.id);
      expect(handlers.overflows).toBe(1);
      expect(handlers.queued).toBe(0);
      expect(own.schemas.size).toBe(0);
      for (const lease of leases) expect(own.directory.cached(lease.id)).toBeNull();
      await new Promise((resolve) => setImmediate(resolve));
      expect(own.lookedUp).toEqual([]);
    } finally {
      await own.close();
    }
  });
});
