/**
 * bench:live-creates — how a create's latency grows with the leases already live, warm pools off
 * (every create provisions: its roles, grants and schema made in the request).
 *
 * Starts pglease as its own process (embedded Postgres), then for 0, 200, 600 and 990 live leases
 * times 15 creates one at a time (p50 and min), filling up between steps 8 creates at a time.
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
 * administers the group by walking the service's memberships, 11 ms at 990 leases.
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
    PGLEASE_MAX_LEASES: String(STEPS[STEPS.length - 1]! + 2 * SAMPLES * STEPS.length),
  },
});

async function create(): Promise<number> {
  const started = performance.now();
  const response = await fetch(`${pglease.baseUrl}/v1/leases`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
  const body = await response.text();
  if (response.status !== 201) throw new Error(`create: ${response.status} ${body}`);
  return performance.now() - started;
}

try {
  let live = 0;
  console.log('live leases  create p50 ms  min ms');
  for (const target of STEPS) {
    while (live < target) {
      const batch = Math.min(8, target - live);
      await Promise.all(Array.from({ length: batch }, create));
      live += batch;
    }
    const times: number[] = [];
    for (let i = 0; i < SAMPLES; i++) times.push(await create());
    times.sort((a, b) => a - b);
    console.log(`${String(live).padStart(11)}  ${times[SAMPLES >> 1]!.toFixed(1).padStart(13)}  ${times[0]!.toFixed(1).padStart(6)}`);
    live += SAMPLES;
  }
} finally {
  await pglease.stop();
}
