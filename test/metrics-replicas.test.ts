/**
 * /metrics behind two replicas (two services on one lease database): what each process did is
 * counted once, by that process, so Prometheus's sum() over replicas is the service's (creates,
 * REST requests); gauges of global state come from the catalog, carry source="catalog" and read
 * the same on both (take max(), and sum() would double them). The dashboard's JSON splits the
 * same way: catalog figures shared, `process` figures the replica's own.
 */
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';

interface MetricFamily {
  name: string;
  metrics: { value?: string; labels?: Record<string, string>; count?: string; buckets?: Record<string, string> }[];
}
const parsePrometheusTextFormat = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => MetricFamily[];

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
let first: TestService;
let second: TestService;

beforeAll(async () => {
  first = await startTestService();
  second = await startTestService({ PGLEASE_DATABASE: first.config.leaseDatabase });
}, 60_000);
afterAll(async () => {
  await second?.close();
  await first?.close();
});

type Scrape = Map<string, MetricFamily>;

async function scrape(service: TestService): Promise<Scrape> {
  const response = await fetch(`${service.baseUrl}/metrics`, { headers: admin });
  expect(response.status).toBe(200);
  return new Map(parsePrometheusTextFormat(await response.text()).map((family) => [family.name, family]));
}

/**
 * The sum of the series of `family` whose labels include `labels`; a histogram's, its count (the
 * +Inf bucket: the parser keeps neither the labels nor the count of a labelled histogram).
 */
function total(families: Scrape, family: string, labels: Record<string, string> = {}): number {
  return (families.get(family)?.metrics ?? [])
    .filter((metric) => Object.entries(labels).every(([key, value]) => metric.labels?.[key] === value))
    .reduce((sum, metric) => sum + Number(metric.value ?? metric.count ?? metric.buckets?.['+Inf'] ?? 0), 0);
}

/** A REST request to `lease` through `service` (a lease answers on every replica). */
async function restRead(service: TestService, lease: CreatedLeaseJson): Promise<void> {
  const path = new URL(lease.rest_url).pathname;
  const response = await fetch(`${service.baseUrl}${path}/`, { headers: { authorization: `Bearer ${lease.token}` } });
  expect(response.status).toBe(200);
}

describe('metrics of two replicas', () => {
  it('sum to the service’s counts, and catalog gauges read the same on both', async () => {
    const before = [await scrape(first), await scrape(second)];
    const leases = [await createLease(first, {}, admin), await createLease(first, {}, admin), await createLease(second, {}, admin)];
    for (let i = 0; i < 2; i++) await restRead(first, leases[2]!);
    for (let i = 0; i < 3; i++) await restRead(second, leases[0]!);
    const after = [await scrape(first), await scrape(second)];

    const moved = (index: number, family: string, labels: Record<string, string> = {}) => total(after[index]!, family, labels) - total(before[index]!, family, labels);
    // each replica counts what it answered, so the sum over replicas is every create and request once
    expect([moved(0, 'pglease_lease_creates_total', { outcome: '201' }), moved(1, 'pglease_lease_creates_total', { outcome: '201' })]).toEqual([2, 1]);
    expect([moved(0, 'pglease_lease_create_seconds'), moved(1, 'pglease_lease_create_seconds')]).toEqual([2, 1]);
    expect([moved(0, 'pglease_rest_requests_total', { method: 'GET' }), moved(1, 'pglease_rest_requests_total', { method: 'GET' })]).toEqual([2, 3]);
    expect([moved(0, 'pglease_rest_request_seconds'), moved(1, 'pglease_rest_request_seconds')]).toEqual([2, 3]);

    // the catalog's gauges say so, and both replicas report the same (max over replicas, not sum)
    for (const family of ['pglease_leases', 'pglease_live_leases', 'pglease_reaper_backlog']) {
      for (const scraped of after) {
        const series = scraped.get(family)?.metrics ?? [];
        expect(series.length, family).toBeGreaterThan(0);
        for (const metric of series) expect(metric.labels?.source, family).toBe('catalog');
      }
    }
    const active = after.map((scraped) => total(scraped, 'pglease_leases', { state: 'active', source: 'catalog' }));
    expect(active[0]).toBe(3);
    expect(active[1]).toBe(3);

    // the dashboard: creates in the last hour from the catalog (all replicas), REST traffic per process
    const snapshots = await Promise.all(
      [first, second].map(async (service) => {
        const response = await fetch(`${service.baseUrl}/v1/dashboard`, { headers: admin });
        expect(response.status).toBe(200);
        return (await response.json()) as { leases: { live: number }; creates: { last_hour: number }; process: { creates_last_hour: { created: number } } };
      }),
    );
    expect(snapshots.map((snapshot) => snapshot.leases.live)).toEqual([3, 3]);
    expect(snapshots.map((snapshot) => snapshot.creates.last_hour)).toEqual([3, 3]);
    expect(snapshots.map((snapshot) => snapshot.process.creates_last_hour.created)).toEqual([2, 1]);
  });
});
