/**
 * The overshoot of a lease writing as fast as it can into a plan with a 16 MB size limit, with the
 * observer running as it does in service (its job every second): how far past the limit the lease
 * gets before its writes are refused. Printed, and bounded.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ADMIN_TOKEN, queryUrl, startTestService, superuserDatabaseUrl, type CreatedLeaseJson, type TestService } from './support/service.js';

let service: TestService;

beforeAll(async () => {
  service = await startTestService({ PGLEASE_LEASE_POOL: '0' });
});
afterAll(async () => {
  await service?.close();
});

const LIMIT = 16 * 1024 * 1024;
/** Rows of 1 kB per INSERT: about 2.3 MB on disk per statement. */
const ROWS_PER_STATEMENT = 2000;

/** Writes as fast as it can into a new lease on plan `sixteen` until refused; its size then. */
async function writeUntilRefused(quietFirstMs: number): Promise<{ bytes: number; seconds: number; statements: number; refusal?: string }> {
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` };
  await fetch(`${service.baseUrl}/v1/plans/sixteen`, { method: 'PUT', headers, body: JSON.stringify({ max_size_bytes: LIMIT }) });
  const lease = (await (await fetch(`${service.baseUrl}/v1/leases`, { method: 'POST', headers, body: JSON.stringify({ plan: 'sixteen' }) })).json()) as CreatedLeaseJson;
  const session = new pg.Client({ connectionString: lease.url });
  session.on('error', () => undefined);
  await session.connect();
  let statements = 0;
  let refusal: string | undefined;
  let started = Date.now();
  try {
    await session.query('CREATE TABLE t (id bigint, v text)');
    if (quietFirstMs > 0) {
      // observed quiet (twice, without growth): its next observation is a full interval away
      await new Promise((resolve) => setTimeout(resolve, quietFirstMs));
      started = Date.now();
    }
    // a writer that only stops when refused (or after 60 s, which fails the test)
    while (Date.now() - started < 60_000) {
      try {
        await session.query(`INSERT INTO t SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, ${ROWS_PER_STATEMENT}) g`);
        statements++;
      } catch (error) {
        refusal = `${(error as { code?: string }).code}: ${(error as Error).message}`;
        // a statement cancelled while the restriction waited for its lock is retried: only the plan's refusal stops it
        if ((error as { code?: string }).code === '53400') break;
      }
    }
  } finally {
    await session.end();
  }
  const seconds = (Date.now() - started) / 1000;
  const [size] = await queryUrl<{ bytes: string }>(superuserDatabaseUrl(service),
    `SELECT sum(pg_total_relation_size(c.oid)) AS bytes FROM pg_class c WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'r'`, [lease.schema]);
  const bytes = Number(size!.bytes);
  console.log(`overshoot${quietFirstMs > 0 ? ` (quiet for ${quietFirstMs} ms first)` : ''}: limit ${LIMIT / 2 ** 20} MB, size when refused ${(bytes / 2 ** 20).toFixed(1)} MB (+${((bytes - LIMIT) / 2 ** 20).toFixed(1)} MB) after ${statements} statements in ${seconds.toFixed(1)} s (${(bytes / seconds / 2 ** 20).toFixed(1)} MB/s); ${refusal}`);
  return { bytes, seconds, statements, refusal };
}

it('stops a lease writing as fast as it can close to its size limit', async () => {
  const { bytes, seconds, refusal } = await writeUntilRefused(0);
  expect(refusal).toMatch(/^53400: lease over its 16 MB plan "sixteen"/);
  // a growing lease is looked at every 200 ms (quick passes), so it is refused within about a
  // second of crossing the limit under load: at most 1.5 s of writing at its measured rate past it
  expect(bytes - LIMIT).toBeLessThan(Math.max(1.5 * (bytes / seconds), 32 * 2 ** 20));
}, 90_000);

it('stops a lease that starts writing only after the observer found it quiet', async () => {
  const { bytes, seconds, refusal } = await writeUntilRefused(2500);
  expect(refusal).toMatch(/^53400: lease over its 16 MB plan "sixteen"/);
  // its write count (statistics, reported once a second by a writing session) makes it due at once
  expect(bytes - LIMIT).toBeLessThan(Math.max(3 * (bytes / seconds), 64 * 2 ** 20));
}, 90_000);
