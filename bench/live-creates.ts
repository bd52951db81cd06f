/**
 * bench:live-creates — how a create's latency grows with the leases already live, warm pools off
 * (every create provisions: its roles, grants and schema made in the request).
 *
 * Starts pglease as its own process (embedded Postgres), then for 0, 200, 600 and 990 live leases
 * times 15 creates one at a time (p50 and min) and their 15 releases, filling up between steps 8
 * creates at a time.
 *
 * Why it exists: wave one measured ~5 ms per create with 3,000 live leases, as the superuser. Since
 * pglease serves as its own non-superuser service role, that role is a member of every lease's roles;
 * each create's CREATE ROLE and GRANT invalidate every backend's role-membership cache, and the next
 * privilege check recomputes the service role's memberships over all of them (session 8, load 6-10:
 * p50 17 ms with 15 live leases, 74 ms with 222, 213 ms with 621). The warm pools hide it from a
 * create that finds a pooled lease; refilling them and sustained creates pay it.
 *
 * Session 9: a superuser's function (pglease_admin.make_lease_roles, sql/lease-roles.sql) now makes
 * the roles, grants and schema, and a superuser's checks skip that recomputation. One run each at load
 * 4-5 (p50 ms at 0 / 200 / 600 / 990 live leases): before 22 / 78 / 219 / 583, after 9.3 / 11.4 /
 * 25.4 / 32.8. What still grows is the lease group's GRANT ... GRANTED BY the service (kept so that
 * the service's later changes to that grant change the same one): Postgres checks that the grantor
 * administers the group by walking the service's memberships, 11 ms at 990 leases. Releases, still
 * the service's own statements (ALTER ROLE, DROP SCHEMA, DROP OWNED, DROP ROLE), grow the same way:
 * p50 5.4 ms at 0 live leases, 11.5 at 200, 35.6 at 600, 50.9 at 990 (load 3-4).
 *
 * Session 10: the group's grant is the superuser's (a quota's change of it goes through
 * pglease_admin.set_lease_group_inherit), and a release closes its logins and leaves the schema to
 * superuser functions: creates 9.6 / 9.6 / 9.7 / 12.4 ms, releases 10.1 / 15.0 / 24.3 / 25.2 (one
 * run, load 2-4; releases were 15.3 / 18.4 / 40.5 / 69.9 just before, load 6-8).
 *
 *   npm run bench:live-creates
 */
import { randomBytes } from 'node:crypto';
import { startBenchPglease } from './support/pglease-process.js';

const ADMIN = 'bench-admin-' + randomBytes(8).toString('hex');
const STEPS = [0, 200, 600, 990];
const SAMPLES = 15;

const pglease = await startBenchPglease({
  env: {
    PGLEASE_ADMIN_TOKEN: ADMIN,
    PGLEASE_LEASE_POOL: '0',
    PGLEASE_TEMPLATE_POOL: '0',
    PGLEASE_RATE_LIMIT: '0',
    PGLEASE_MAX_ACTIVE: '0',
    PGLEASE_CLIENT_CONNECTIONS: '0',
    PGLEASE_MAX_LEASES: String(STEPS[STEPS.length - 1]! + 2 * SAMPLES),
  },
});

const made: string[] = [];

async function create(): Promise<number> {
  const started = performance.now();
  const response = await fetch(`${pglease.baseUrl}/v1/leases`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
  const body = await response.text();
  if (response.status !== 201) throw new Error(`create: ${response.status} ${body}`);
  const elapsed = performance.now() - started;
  made.push((JSON.parse(body) as { id: string }).id);
  return elapsed;
}

async function release(id: string): Promise<number> {
  const started = performance.now();
  const response = await fetch(`${pglease.baseUrl}/v1/leases/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
  await response.text();
  if (response.status >= 300) throw new Error(`release: ${response.status}`);
  return performance.now() - started;
}

const p50 = (times: number[]) => [...times].sort((a, b) => a - b)[times.length >> 1]!;

try {
  let live = 0;
  console.log('live leases  create p50 ms  min ms  release p50 ms');
  for (const target of STEPS) {
    while (live < target) {
      const batch = Math.min(8, target - live);
      await Promise.all(Array.from({ length: batch }, create));
      live += batch;
    }
    const times: number[] = [];
    for (let i = 0; i < SAMPLES; i++) times.push(await create());
    // the samples go again, one at a time: what a release costs at this many live leases
    const releases: number[] = [];
    for (const id of made.splice(made.length - SAMPLES)) releases.push(await release(id));
    console.log(`${String(live).padStart(11)}  ${p50(times).toFixed(1).padStart(13)}  ${Math.min(...times).toFixed(1).padStart(6)}  ${p50(releases).toFixed(1).padStart(14)}`);
  }
} finally {
  await pglease.stop();
}
