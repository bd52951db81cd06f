/**
 * bench:hosts — what many lease hosts cost and what a dead one costs (issue 16), in one run.
 *
 * Starts pglease as its own process (its embedded Postgres holds the control database) and two more
 * clusters from the same binaries, then:
 *   1. creates at concurrency 8 with 1, 2 and 3 hosts (each added through POST /v1/hosts): creates
 *      per second and p50/p99 of a create, each lease released after its phase;
 *   2. control-database transactions per create with 1 and with 3 hosts (pg_stat_database's
 *      commits on the control database during the phase, less its idle rate measured before it:
 *      with 3 hosts and the control host drained, only placement is left there);
 *   3. failover: creates at concurrency 4 for 8 s, the third host's postmaster stopped immediately
 *      (SIGQUIT: pg_ctl stop -m immediate) 2 s in: creates that failed, and for how long.
 * Goals (issue 16): 3 hosts not slower than 1; no create fails for longer than one probe interval.
 *
 *   npm run bench:hosts [-- --count 200]
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startExtraCluster, type ExtraCluster } from '../test/support/extra-clusters.js';
import { startBenchPglease } from './support/pglease-process.js';

const count = Number(process.argv[process.argv.indexOf('--count') + 1]) || 200;
const ADMIN = 'bench-admin-' + randomBytes(8).toString('hex');
const PROBE_SECONDS = 5;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** `token` null: an anonymous create (a client on this machine: no throttling). */
async function call(baseUrl: string, method: string, path: string, body?: unknown, token: string | null = ADMIN): Promise<{ status: number; json: any }> {
  const response = await fetch(baseUrl + path, {
    method,
    headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : null };
}

async function commits(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ n: string }>('SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()');
  return Number(rows[0]!.n);
}

/** pg_stat_database is updated when a backend reports (at most every second): wait it out. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 1200));

interface Phase {
  hosts: number;
  perSecond: number;
  p50: number;
  p99: number;
  controlCommitsPerCreate: number;
  byPort: Record<string, number>;
}

async function phase(baseUrl: string, control: pg.Client, hosts: number): Promise<Phase> {
  // the control database's idle commit rate (jobs, probes) over a while, to subtract below
  await settle();
  const idleFrom = await commits(control);
  const idleStart = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 3000));
  await settle();
  const idleRate = ((await commits(control)) - idleFrom) / (performance.now() - idleStart);

  const before = await commits(control);
  const started = performance.now();
  const latencies: number[] = [];
  const leases: { id: string; token: string; port: number }[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next++ < count) {
        const t0 = performance.now();
        const { status, json } = await call(baseUrl, 'POST', '/v1/leases', { ttl: 600 }, null);
        if (status !== 201) throw new Error(`create: ${status} ${JSON.stringify(json)}`);
        latencies.push(performance.now() - t0);
        leases.push({ id: json.id, token: json.token, port: json.port });
      }
    }),
  );
  const wallMs = performance.now() - started;
  await settle();
  const controlCommits = (await commits(control)) - before - idleRate * (performance.now() - started);
  latencies.sort((a, b) => a - b);
  const byPort: Record<string, number> = {};
  for (const lease of leases) byPort[lease.port] = (byPort[lease.port] ?? 0) + 1;
  for (let i = 0; i < leases.length; i += 8) {
    await Promise.all(leases.slice(i, i + 8).map((lease) => call(baseUrl, 'DELETE', `/v1/leases/${lease.id}`, undefined, lease.token)));
  }
  return { hosts, perSecond: (count / wallMs) * 1000, p50: percentile(latencies, 50), p99: percentile(latencies, 99), controlCommitsPerCreate: controlCommits / count, byPort };
}

async function failover(baseUrl: string, victim: ExtraCluster): Promise<{ creates: number; failures: number; failingMs: number; firstErrors: string[] }> {
  const started = performance.now();
  let crashedAt = 0;
  const failuresAt: number[] = [];
  const errors: string[] = [];
  let creates = 0;
  const crash = (async () => {
    await new Promise((resolve) => setTimeout(resolve, 2000));
    crashedAt = performance.now();
    await victim.crash();
  })();
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (performance.now() - started < 8000) {
        const { status, json } = await call(baseUrl, 'POST', '/v1/leases', { ttl: 120 }, null);
        if (status === 201) creates++;
        else {
          failuresAt.push(performance.now());
          if (errors.length < 3) errors.push(`${status} ${json?.code}: ${json?.message}`);
        }
      }
    }),
  );
  await crash;
  const failingMs = failuresAt.length === 0 ? 0 : Math.max(...failuresAt) - Math.min(crashedAt, ...failuresAt);
  return { creates, failures: failuresAt.length, failingMs, firstErrors: errors };
}

const service = await startBenchPglease({
  env: { PGLEASE_ADMIN_TOKEN: ADMIN, PGLEASE_RATE_LIMIT: '0', PGLEASE_MAX_ACTIVE: '0', PGLEASE_CLIENT_CONNECTIONS: '0', PGLEASE_HOST_PROBE_INTERVAL: String(PROBE_SECONDS) },
});
const clusters: ExtraCluster[] = [];
const control = new pg.Client({ connectionString: await service.superuserUrl() });
try {
  clusters.push(...(await Promise.all([startExtraCluster(), startExtraCluster()])));
  await control.connect();
  await call(service.baseUrl, 'PATCH', '/v1/hosts/control', { capacity: 100_000 });
  const phases: Phase[] = [await phase(service.baseUrl, control, 1)];
  for (const [index, cluster] of clusters.entries()) {
    const added = await call(service.baseUrl, 'POST', '/v1/hosts', { name: `h${index + 2}`, url: cluster.url, capacity: 100_000 });
    if (added.status !== 201) throw new Error(`add host: ${added.status} ${JSON.stringify(added.json)}`);
    phases.push(await phase(service.baseUrl, control, index + 2));
  }
  // placement alone on the control database: its own host drained
  await call(service.baseUrl, 'PATCH', '/v1/hosts/control', { draining: true });
  const placementOnly = await phase(service.baseUrl, control, 2);
  await call(service.baseUrl, 'PATCH', '/v1/hosts/control', { draining: false });

  console.log(`bench:hosts, ${count} creates per phase at concurrency 8 (embedded Postgres 17, 3 clusters on this machine)`);
  console.log('hosts  creates/s  p50 ms  p99 ms  control commits/create  leases per host (by port)');
  for (const figures of phases) {
    console.log(
      `${String(figures.hosts).padStart(5)}  ${figures.perSecond.toFixed(0).padStart(9)}  ${figures.p50.toFixed(1).padStart(6)}  ${figures.p99.toFixed(1).padStart(6)}  ${figures.controlCommitsPerCreate.toFixed(2).padStart(22)}  ${JSON.stringify(figures.byPort)}`,
    );
  }
  console.log(`control drained, 2 extra hosts: ${placementOnly.perSecond.toFixed(0)} creates/s, p50 ${placementOnly.p50.toFixed(1)} ms, ${placementOnly.controlCommitsPerCreate.toFixed(2)} control commits per create (placement)`);
  console.log(`3 hosts vs 1: ${(phases[2]!.perSecond / phases[0]!.perSecond).toFixed(2)}x creates/s, p50 ${(phases[2]!.p50 / phases[0]!.p50).toFixed(2)}x (goal: not slower)`);

  const down = await failover(service.baseUrl, clusters[1]!);
  console.log(
    `failover: ${down.creates} creates in 8 s at concurrency 4, the third host stopped immediately 2 s in: ${down.failures} failed` +
      (down.failures > 0 ? `, over ${down.failingMs.toFixed(0)} ms (${down.firstErrors.join(' | ')})` : '') +
      ` (goal: none failing longer than the ${PROBE_SECONDS} s probe interval)`,
  );
} finally {
  await control.end().catch(() => undefined);
  await service.stop();
  await Promise.all(clusters.map((cluster) => cluster.stop()));
}
