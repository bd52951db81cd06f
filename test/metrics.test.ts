/**
 * GET /metrics: Prometheus's text format, parsed with a Prometheus text parser; values that move
 * with creates, 429s, REST requests and job runs; a token required; cardinality that does not grow
 * with the number of leases.
 */
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from './support/wait.js';
import { ADMIN_TOKEN, createLease, queryUrl, startTestService, superuserDatabaseUrl, type TestService } from './support/service.js';

/** parse-prometheus-text-format is CommonJS without types: what it returns, as far as used here. */
interface MetricFamily {
  name: string;
  type: string;
  metrics: { value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string; sum?: string }[];
}
const parsePrometheusTextFormat = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => MetricFamily[];

const METRICS_TOKEN = 'scraper-token';
let service: TestService;
beforeAll(async () => {
  service = await startTestService({ PGLEASE_METRICS_TOKEN: METRICS_TOKEN, PGLEASE_MAX_ACTIVE: '3', PGLEASE_CLIENT_CONNECTIONS: '0', PGLEASE_LIMIT_LOCAL: 'on' });
});
afterAll(async () => {
  await service?.close();
});

async function scrape(token = METRICS_TOKEN): Promise<Map<string, MetricFamily>> {
  const response = await fetch(`${service.baseUrl}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
  return new Map(parsePrometheusTextFormat(await response.text()).map((family) => [family.name, family]));
}

/** The value of the series of `family` whose labels include `labels` (0 when there is none). */
function valueOf(families: Map<string, MetricFamily>, family: string, labels: Record<string, string> = {}): number {
  const series = families.get(family)?.metrics.find((metric) => Object.entries(labels).every(([key, value]) => metric.labels?.[key] === value));
  return Number(series?.value ?? series?.count ?? 0);
}

/**
 * Families whose series appear as things happen, not as leases are made: a job's first run here
 * (job runs, observer passes), a lease's first observation moving it from 'uncertain' to
 * 'available' (live leases by status), the host's first observation. The test checks their labels
 * against the bounded sets they come from instead.
 */
const EVENTUAL_FAMILIES = new Set(['pglease_job_runs_total', 'pglease_observation_pass_seconds', 'pglease_live_leases', 'pglease_host', 'pglease_reaper_lag_seconds']);

/** Series of pglease's own families, but for EVENTUAL_FAMILIES and the Node process's (whose GC kinds appear as they happen). */
function seriesCount(families: Map<string, MetricFamily>): number {
  let count = 0;
  for (const family of families.values()) {
    if (!/^pglease_(process|nodejs)_/.test(family.name) && !EVENTUAL_FAMILIES.has(family.name)) count += family.metrics.length;
  }
  return count;
}

describe('GET /metrics', () => {
  it('needs the metrics or the admin token', async () => {
    expect((await fetch(`${service.baseUrl}/metrics`)).status).toBe(401);
    expect((await fetch(`${service.baseUrl}/metrics`, { headers: { authorization: 'Bearer nope' } })).status).toBe(403);
    await scrape(ADMIN_TOKEN);
  });

  it('counts creates by outcome, REST requests by method and status class, and reads live leases from the catalog', async () => {
    const before = await scrape();
    const leases = [await createLease(service), await createLease(service), await createLease(service)];
    // the fourth of this client is over PGLEASE_MAX_ACTIVE
    const refused = await fetch(`${service.baseUrl}/v1/leases`, { method: 'POST' });
    expect(refused.status).toBe(429);
    const lease = leases[0]!;
    expect((await fetch(`${lease.rest_url}/`, { headers: { authorization: `Bearer ${lease.token}` } })).status).toBe(200);
    expect((await fetch(`${lease.rest_url}/missing`, { headers: { authorization: `Bearer ${lease.token}` } })).status).toBe(404);

    const after = await scrape();
    expect(valueOf(after, 'pglease_lease_creates_total', { outcome: '201' }) - valueOf(before, 'pglease_lease_creates_total', { outcome: '201' })).toBe(3);
    expect(valueOf(after, 'pglease_lease_creates_total', { outcome: '429' }) - valueOf(before, 'pglease_lease_creates_total', { outcome: '429' })).toBe(1);
    expect(valueOf(after, 'pglease_lease_create_seconds') - valueOf(before, 'pglease_lease_create_seconds')).toBe(3);
    expect(valueOf(after, 'pglease_rest_requests_total', { method: 'GET', status_class: '2xx' }) - valueOf(before, 'pglease_rest_requests_total', { method: 'GET', status_class: '2xx' })).toBe(1);
    expect(valueOf(after, 'pglease_rest_requests_total', { method: 'GET', status_class: '4xx' }) - valueOf(before, 'pglease_rest_requests_total', { method: 'GET', status_class: '4xx' })).toBe(1);
    expect(valueOf(after, 'pglease_leases', { state: 'active', source: 'catalog' })).toBeGreaterThanOrEqual(3);
    expect(valueOf(after, 'pglease_rest_schema_load_seconds')).toBeGreaterThanOrEqual(1);
    expect(after.get('pglease_rest_connections')?.metrics.map((metric) => metric.labels?.state).sort()).toEqual(['idle', 'in_use', 'waiting']);
    expect(valueOf(after, 'pglease_rest_connection_budget')).toBeGreaterThan(0);
    expect(after.get('pglease_rest_statements')?.metrics.map((metric) => metric.labels?.state).sort()).toEqual(['running', 'waiting']);
    expect(valueOf(after, 'pglease_rest_statement_limit')).toBeGreaterThanOrEqual(16);
    expect(after.has('pglease_rest_slow_statements_total')).toBe(true);
    expect(after.has('pglease_process_resident_memory_bytes')).toBe(true);
    for (const created of leases) await fetch(`${service.baseUrl}/v1/leases/${created.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${created.token}` } });
  });

  it('times REST requests per method in a histogram whose cumulative buckets end at its count', async () => {
    // parse-prometheus-text-format folds a labelled histogram into one sample: the registry's own JSON gives each method's
    const latency = async () => {
      const families = await service.context.metrics.registry.getMetricsAsJSON();
      const values = families.find((family) => family.name === 'pglease_rest_request_seconds')?.values ?? [];
      const of = (method: string, suffix: string) => values.filter((value) => value.labels.method === method && (value as { metricName?: string }).metricName === `pglease_rest_request_seconds${suffix}`);
      return (method: string) => ({ buckets: of(method, '_bucket').map((value) => value.value), count: of(method, '_count')[0]?.value ?? 0, sum: of(method, '_sum')[0]?.value ?? 0 });
    };
    const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const lease = await createLease(service, {}, admin);
    const before = await latency();
    for (let i = 0; i < 3; i++) expect((await fetch(`${lease.rest_url}/`, { headers: { authorization: `Bearer ${lease.token}` } })).status).toBe(200);
    expect((await fetch(`${lease.rest_url}/`, { method: 'HEAD', headers: { authorization: `Bearer ${lease.token}` } })).status).toBe(200);
    const after = await latency();
    expect(after('GET').count - before('GET').count).toBe(3);
    expect(after('HEAD').count - before('HEAD').count).toBe(1);
    expect(after('GET').sum).toBeGreaterThan(before('GET').sum);
    const buckets = after('GET').buckets;
    expect(buckets).toHaveLength(14);
    for (let index = 1; index < buckets.length; index++) expect(buckets[index]).toBeGreaterThanOrEqual(buckets[index - 1]!);
    expect(buckets.at(-1)).toBe(after('GET').count);
    // and the text a scraper reads has the family, as a histogram
    expect((await scrape()).get('pglease_rest_request_seconds')?.type).toBe('HISTOGRAM');
    await fetch(`${service.baseUrl}/v1/leases/${lease.id}`, { method: 'DELETE', headers: admin });
  });

  it('counts job runs and reports the reaper backlog', async () => {
    const before = await scrape();
    const run = await fetch(`${service.baseUrl}/v1/jobs/cleanup-orphans/run`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(run.status).toBe(202);
    await waitFor('the run to be counted', async () => {
      const now = await scrape();
      return valueOf(now, 'pglease_job_runs_total', { job: 'cleanup-orphans', outcome: 'succeeded' }) > valueOf(before, 'pglease_job_runs_total', { job: 'cleanup-orphans', outcome: 'succeeded' }) ? true : undefined;
    });
    const after = await scrape();
    expect(after.get('pglease_reaper_backlog')?.metrics.map((metric) => metric.labels?.measure).sort()).toEqual(['leases', 'oldest_seconds']);
  });

  it('exports as many series after many leases and requests as before: no label per lease', async () => {
    const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const first = await createLease(service, {}, admin);
    await fetch(`${first.rest_url}/`, { headers: { authorization: `Bearer ${first.token}` } });
    const before = seriesCount(await scrape());
    const leases = await Promise.all(Array.from({ length: 20 }, () => createLease(service, {}, admin)));
    for (const lease of leases) expect((await fetch(`${lease.rest_url}/`, { headers: { authorization: `Bearer ${lease.token}` } })).status).toBe(200);
    const after = await scrape();
    expect(seriesCount(after)).toBe(before);
    // job runs are labelled by job name and outcome only
    const jobs = (await (await fetch(`${service.baseUrl}/v1/jobs`, { headers: admin })).json()) as { items: { name: string }[] };
    const jobNames = new Set(jobs.items.map((job) => job.name));
    for (const series of after.get('pglease_job_runs_total')?.metrics ?? []) {
      expect(jobNames.has(series.labels?.job ?? '')).toBe(true);
      expect(['succeeded', 'failed']).toContain(series.labels?.outcome);
    }
    // live leases by host, plan, kind and status: each label from a set the operator makes or a fixed one
    const hosts = (await (await fetch(`${service.baseUrl}/v1/hosts`, { headers: admin })).json()) as { items: { name: string }[] };
    const plans = (await (await fetch(`${service.baseUrl}/v1/plans`, { headers: admin })).json()) as { items: { name: string }[] };
    const live = after.get('pglease_live_leases')?.metrics ?? [];
    expect(live.length).toBeGreaterThan(0);
    expect(live.length).toBeLessThanOrEqual(hosts.items.length * plans.items.length * 2 * 3);
    for (const series of live) {
      expect(hosts.items.map((host) => host.name)).toContain(series.labels?.host);
      expect(plans.items.map((plan) => plan.name)).toContain(series.labels?.plan);
      expect(['plain', 'template']).toContain(series.labels?.kind);
      expect(['available', 'uncertain', 'over_quota']).toContain(series.labels?.status);
    }
    expect((after.get('pglease_host')?.metrics ?? []).length).toBeLessThanOrEqual(hosts.items.length * 6);
  });

  it('counts live leases by status from the catalog, observes reaper lag and observer passes, and reports the host', async () => {
    const before = await scrape();
    const lease = await createLease(service, { ttl: 1 }, { authorization: `Bearer ${ADMIN_TOKEN}` });
    const liveTotal = (families: Map<string, MetricFamily>) => (families.get('pglease_live_leases')?.metrics ?? []).reduce((sum, series) => sum + Number(series.value), 0);
    const activeOf = (families: Map<string, MetricFamily>) => valueOf(families, 'pglease_leases', { state: 'active', source: 'catalog' });
    // the reaper ends it once its second is up: one more lag observed, no more than the wait
    const reaped = await waitFor('the lease to be reaped and its lag observed', async () => {
      const now = await scrape();
      return valueOf(now, 'pglease_reaper_lag_seconds') > valueOf(before, 'pglease_reaper_lag_seconds') ? now : undefined;
    }, 40_000);
    const lagCount = valueOf(reaped, 'pglease_reaper_lag_seconds') - valueOf(before, 'pglease_reaper_lag_seconds');
    expect(lagCount).toBeGreaterThanOrEqual(1);
    const lagSum = Number(reaped.get('pglease_reaper_lag_seconds')!.metrics[0]!.sum) - Number(before.get('pglease_reaper_lag_seconds')?.metrics[0]?.sum ?? 0);
    expect(lagSum).toBeGreaterThanOrEqual(0);
    expect(lagSum / lagCount).toBeLessThan(60);
    const state = await fetch(`${service.baseUrl}/v1/leases/${lease.id}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(((await state.json()) as { state: string }).state).toBe('expired');
    // the observer has made full passes and the host is up, with its connections and disk
    const observed = await waitFor('an observer pass and a host observation', async () => {
      const now = await scrape();
      return valueOf(now, 'pglease_observation_pass_seconds') > 0 && valueOf(now, 'pglease_host', { measure: 'up' }) === 1 ? now : undefined;
    }, 30_000);
    // every active lease is in exactly one host/plan/kind/status series
    expect(valueOf(observed, 'pglease_host', { measure: 'connections_max' })).toBeGreaterThan(0);
    expect(valueOf(observed, 'pglease_host', { measure: 'connections_used' })).toBeGreaterThan(0);
    expect(valueOf(observed, 'pglease_host', { measure: 'available' })).toBe(1);
    expect(liveTotal(observed)).toBe(activeOf(observed));
  }, 90_000);

  it('exports as many series with 1,000 more live leases (made in bulk, as pglease.provision leaves them)', async () => {
    const before = await scrape();
    const superuser = superuserDatabaseUrl(service);
    const [{ id: hostId }] = await queryUrl<{ id: number }>(superuser, 'SELECT id FROM pglease.hosts ORDER BY id LIMIT 1');
    for (let from = 1; from <= 1000; from += 250) {
      await queryUrl(
        superuser,
        `DO $$ DECLARE n text; BEGIN
           FOR i IN ${from}..${from + 249} LOOP
             n := 'lease_c0' || lpad(to_hex(i), 14, '0');
             EXECUTE format('CREATE ROLE %I LOGIN CONNECTION LIMIT 5', n);
             EXECUTE format('GRANT %I TO %I', pglease.lease_group_for(n), n);
             EXECUTE format('CREATE SCHEMA %I AUTHORIZATION %I', n, n);
             INSERT INTO pglease.leases (host_id, schema_name, role_name, anon_role, auth_role, token_hash, state, expires_at, client_ip)
             VALUES (${hostId}, n, n, n || '_anon', n || '_auth', sha256(n::bytea), 'active', now() + interval '1 day', ('10.1.' || (i % 250) || '.' || (i / 250 + 1))::inet);
           END LOOP; END $$`,
      );
    }
    const after = await scrape();
    expect(valueOf(after, 'pglease_leases', { state: 'active', source: 'catalog' }) - valueOf(before, 'pglease_leases', { state: 'active', source: 'catalog' })).toBe(1000);
    expect(seriesCount(after)).toBe(seriesCount(before));
    // the live leases' series stay within hosts x plans x kinds x statuses, whatever the number of leases and clients
    const plans = (await (await fetch(`${service.baseUrl}/v1/plans`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { items: unknown[] };
    expect((after.get('pglease_live_leases')?.metrics ?? []).length).toBeLessThanOrEqual(plans.items.length * 2 * 3);
    expect(after.get('pglease_live_leases')!.metrics.reduce((sum, series) => sum + Number(series.value), 0)).toBe(valueOf(after, 'pglease_leases', { state: 'active', source: 'catalog' }));
  }, 60_000);
});
