/**
 * GET /metrics: Prometheus's text format, parsed with a Prometheus text parser; values that move
 * with creates, 429s, REST requests and job runs; a token required; cardinality that does not grow
 * with the number of leases.
 */
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from './support/wait.js';
import { ADMIN_TOKEN, createLease, startTestService, type TestService } from './support/service.js';

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
 * Series of pglease's own families, but for job runs (a job's first run here adds its series, at
 * whatever moment the scheduler runs it: the test checks their labels instead) and the Node
 * process's (whose GC kinds appear as they happen).
 */
function seriesCount(families: Map<string, MetricFamily>): number {
  let count = 0;
  for (const family of families.values()) {
    if (!/^pglease_(process|nodejs)_/.test(family.name) && family.name !== 'pglease_job_runs_total') count += family.metrics.length;
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
    expect(after.has('pglease_process_resident_memory_bytes')).toBe(true);
    for (const created of leases) await fetch(`${service.baseUrl}/v1/leases/${created.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${created.token}` } });
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
  });
});
