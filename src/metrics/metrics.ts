/**
 * What this process did and holds, in Prometheus's text format (prom-client), for `GET /metrics`.
 *
 * Guarantees:
 * - **Per process, summable across replicas.** Counters and histograms count what this process did
 *   (creates it answered, REST requests it served, schema caches it loaded, job runs it made);
 *   Prometheus's sum() over replicas is the service's. Gauges of this process's own state (its REST
 *   connections, its warm pools) likewise. Gauges of global state (leases by state, the reaper's
 *   backlog) are read from the catalog at scrape time and carry `source="catalog"`: every replica
 *   reports the same value, so take max(), not sum().
 * - **Bounded cardinality.** No label holds a lease id, a client address or a URL: methods, status
 *   classes, outcomes, job names and lifecycle states only, so 1,000 or 100,000 leases export the
 *   same number of series.
 * - **Cheap on the hot path.** A request costs one counter increment and one histogram observation
 *   (an onResponse hook, src/server.ts); everything else is computed when Prometheus scrapes.
 *
 * Its own registry, not prom-client's global one: tests run several services in one process.
 */
import type pg from 'pg';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Seconds: a create is 5-20 ms, a REST request 1-10 ms, a slow one seconds. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** What the scrape reads from the parts of the service (kept as plain numbers there). */
export interface MetricSources {
  /** The service pool, for the catalog gauges. */
  pool: pg.Pool;
  /** REST connections: in use, idle, requests waiting for a place, and the budget. */
  restConnections?: () => { inUse: number; idle: number; waiting: number; budget: number };
  /** Leases ready in this process's warm pools. */
  warmPools?: () => { plain: number; template: number };
  /** Creates served from a warm pool, and those provisioned in the request. */
  warmPoolCreates?: () => { hits: number; misses: number };
}

export type CreateOutcome = '201' | '429' | '503' | '4xx' | '5xx';

export class Metrics {
  readonly registry = new Registry();
  private readonly creates: Counter<'outcome'>;
  private readonly createSeconds: Histogram;
  private readonly restRequests: Counter<'method' | 'status_class'>;
  private readonly restSeconds: Histogram<'method'>;
  private readonly schemaLoads: Histogram;
  private readonly jobRuns: Counter<'job' | 'outcome'>;
  private sources: MetricSources | undefined;

  constructor() {
    const registers = [this.registry];
    // the process's own (memory, CPU, event loop, GC): pglease_process_* and pglease_nodejs_*
    collectDefaultMetrics({ register: this.registry, prefix: 'pglease_' });
    this.creates = new Counter({ name: 'pglease_lease_creates_total', help: 'POST /v1/leases answered by this process, by outcome (status)', labelNames: ['outcome'], registers });
    this.createSeconds = new Histogram({ name: 'pglease_lease_create_seconds', help: 'Time to answer POST /v1/leases with 201', buckets: LATENCY_BUCKETS, registers });
    this.restRequests = new Counter({ name: 'pglease_rest_requests_total', help: 'REST API requests answered by this process', labelNames: ['method', 'status_class'], registers });
    this.restSeconds = new Histogram({ name: 'pglease_rest_request_seconds', help: 'Time to answer a REST API request', labelNames: ['method'], buckets: LATENCY_BUCKETS, registers });
    this.schemaLoads = new Histogram({ name: 'pglease_rest_schema_load_seconds', help: 'Schema cache loads (introspection of a lease schema) and their time', buckets: LATENCY_BUCKETS, registers });
    this.jobRuns = new Counter({ name: 'pglease_job_runs_total', help: 'Scheduled job runs made by this process, by job and outcome', labelNames: ['job', 'outcome'], registers });

    const metrics = this;
    new Gauge({
      name: 'pglease_rest_connections',
      help: 'REST API connections of this process (lease authenticators): in use, idle, and requests waiting for a place',
      labelNames: ['state'],
      registers,
      collect() {
        const connections = metrics.sources?.restConnections?.();
        if (!connections) return;
        this.set({ state: 'in_use' }, connections.inUse - connections.idle);
        this.set({ state: 'idle' }, connections.idle);
        this.set({ state: 'waiting' }, connections.waiting);
      },
    });
    new Gauge({
      name: 'pglease_rest_connection_budget',
      help: 'REST API connections this process may open (PGLEASE_REST_MAX_CONNECTIONS)',
      registers,
      collect() {
        const connections = metrics.sources?.restConnections?.();
        if (connections) this.set(connections.budget);
      },
    });
    new Gauge({
      name: 'pglease_warm_pool_leases',
      help: "Leases ready in this process's warm pools",
      labelNames: ['pool'],
      registers,
      collect() {
        const ready = metrics.sources?.warmPools?.();
        if (!ready) return;
        this.set({ pool: 'plain' }, ready.plain);
        this.set({ pool: 'template' }, ready.template);
      },
    });
    new Counter({
      name: 'pglease_warm_pool_creates_total',
      help: 'Creates served by this process from a warm pool (hit) or provisioned in the request (miss)',
      labelNames: ['result'],
      registers,
      collect() {
        const creates = metrics.sources?.warmPoolCreates?.();
        if (!creates) return;
        // the sources count monotonically: expose their totals
        this.reset();
        this.inc({ result: 'hit' }, creates.hits);
        this.inc({ result: 'miss' }, creates.misses);
      },
    });
    new Gauge({
      name: 'pglease_leases',
      help: 'Leases by lifecycle state, from the catalog (every replica reports the same: take max)',
      labelNames: ['state', 'source'],
      registers,
      async collect() {
        const pool = metrics.sources?.pool;
        if (!pool) return;
        const { rows } = await pool.query<{ state: string; count: number }>({
          name: 'pglease.metrics-leases',
          text: `SELECT s.state::text, (SELECT count(*)::int FROM pglease.leases l WHERE l.state = s.state) AS count
                   FROM unnest(enum_range(NULL::pglease.lease_state)) AS s(state)
                  WHERE s.state IN ('provisioning', 'active')`,
        });
        for (const row of rows) this.set({ state: row.state, source: 'catalog' }, row.count);
      },
    });
    new Gauge({
      name: 'pglease_reaper_backlog',
      help: 'Live leases past their expiry, not reaped yet, and how long the oldest has waited (seconds), from the catalog',
      labelNames: ['measure', 'source'],
      registers,
      async collect() {
        const pool = metrics.sources?.pool;
        if (!pool) return;
        const { rows } = await pool.query<{ leases: number; oldest: number | null }>({
          name: 'pglease.metrics-reaper-backlog',
          text: `SELECT count(*)::int AS leases, extract(epoch FROM now() - min(expires_at))::float8 AS oldest
                   FROM pglease.leases WHERE state IN ('active', 'provisioning') AND expires_at <= now()`,
        });
        this.set({ measure: 'leases', source: 'catalog' }, rows[0]!.leases);
        this.set({ measure: 'oldest_seconds', source: 'catalog' }, rows[0]!.oldest ?? 0);
      },
    });
  }

  /** Where the scrape reads the state of the service's parts (set once they exist). */
  attach(sources: MetricSources): void {
    this.sources = sources;
  }

  leaseCreated(outcome: CreateOutcome, seconds: number): void {
    this.creates.inc({ outcome });
    if (outcome === '201') this.createSeconds.observe(seconds);
  }

  restRequest(method: string, status: number, seconds: number): void {
    this.restRequests.inc({ method, status_class: `${Math.floor(status / 100)}xx` });
    this.restSeconds.observe({ method }, seconds);
  }

  schemaLoaded(seconds: number): void {
    this.schemaLoads.observe(seconds);
  }

  jobRan(job: string, outcome: 'succeeded' | 'failed'): void {
    this.jobRuns.inc({ job, outcome });
  }
}

/** The outcome label of a create answered with `status`. */
export function createOutcome(status: number): CreateOutcome {
  if (status === 201) return '201';
  if (status === 429) return '429';
  if (status === 503) return '503';
  return status >= 500 ? '5xx' : '4xx';
}
