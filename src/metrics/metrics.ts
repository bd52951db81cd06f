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
 * - **Bounded cardinality.** No label holds a lease id, a client address, a template name or a URL:
 *   methods, status classes, outcomes, job names, lifecycle and health states, and the names of
 *   plans and hosts (which only the operator makes) only, so 1,000 or 100,000 leases export the
 *   same number of series.
 * - **Cheap on the hot path.** A REST request adds to plain numbers (RestTally: a count by status
 *   class, a latency bucket, a sum), which the scrape turns into prom-client's families: 0.09 µs a
 *   request, where prom-client's own inc() and observe(), hashing their label objects each call,
 *   took 0.73 µs (bench:metrics, one run). Those run only for creates and jobs. Everything else is
 *   computed when Prometheus scrapes.
 *
 * Its own registry, not prom-client's global one: tests run several services in one process.
 */
import type pg from 'pg';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';
import { ActivityHistory, type ActivityTotals } from './history.js';

/** Seconds: a create is 5-20 ms, a REST request 1-10 ms, a slow one seconds. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Seconds past expires_at: the reaper runs at each lease's expiry (plan_next_reap) and every 10 s
 * besides, so a healthy reaper stays under a second and a backlog shows in minutes.
 */
const REAPER_LAG_BUCKETS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600];

/** Seconds: a pass over a few leases is milliseconds, one over 5,000 a few seconds (bench:observer). */
const PASS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** What the scrape reads from the parts of the service (kept as plain numbers there). */
export interface MetricSources {
  /** The service pool, for the catalog gauges. */
  pool: pg.Pool;
  /** REST connections: in use, idle, requests waiting for a place, and the budget. */
  restConnections?: () => { inUse: number; idle: number; waiting: number; budget: number };
  /** The REST statement gate of the control host (src/rest/executor/statement-gate.ts). */
  restStatements?: () => { running: number; waiting: number; limit: number; slowReleased: number };
  /** Leases ready in this process's warm pools. */
  warmPools?: () => { plain: number; template: number };
  /** Creates served from a warm pool, and those provisioned in the request. */
  warmPoolCreates?: () => { hits: number; misses: number };
}

export type CreateOutcome = '201' | '429' | '503' | '4xx' | '5xx';

/** The bucket of LATENCY_BUCKETS `seconds` falls in (le: the first bound at or above it; past the last, +Inf). */
function latencyBucket(seconds: number): number {
  let index = 0;
  while (index < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[index]!) index++;
  return index;
}

/** REST requests of one method answered by this process so far, as plain numbers. */
class RestTally {
  /** By status class: index 1 is 1xx, …, 5 is 5xx. */
  readonly byStatusClass = new Float64Array(6);
  /** By latency bucket, not cumulative: one per bound of LATENCY_BUCKETS, then +Inf. */
  readonly buckets = new Float64Array(LATENCY_BUCKETS.length + 1);
  /** The latency histogram's sum and count (requests: byStatusClass). */
  seconds = 0;
  count = 0;
}

/** A value of a family as prom-client's registry prints it. */
interface FamilyValue {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}

/**
 * `pglease_rest_request_seconds`, read from the RestTally of each method at scrape time in the
 * shape of prom-client's own histograms (cumulative `_bucket`s by `le`, `_sum`, `_count`). The
 * registry takes any object with a name, help, type and get() (it prints what get() answers);
 * prom-client's Histogram has no way to add counts already bucketed.
 */
class TalliedLatencyHistogram {
  readonly name = 'pglease_rest_request_seconds';
  readonly help = 'Time to answer a REST API request';
  readonly type = 'histogram';
  readonly aggregator = 'sum';

  constructor(private readonly tallies: Map<string, RestTally>) {}

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: FamilyValue[] }> {
    const values: FamilyValue[] = [];
    for (const [method, tally] of this.tallies) {
      let cumulative = 0;
      tally.buckets.forEach((count, index) => {
        cumulative += count;
        values.push({ metricName: `${this.name}_bucket`, labels: { le: index < LATENCY_BUCKETS.length ? LATENCY_BUCKETS[index]! : '+Inf', method }, value: cumulative });
      });
      values.push({ metricName: `${this.name}_sum`, labels: { method }, value: tally.seconds });
      values.push({ metricName: `${this.name}_count`, labels: { method }, value: tally.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.tallies.clear();
  }
}

export class Metrics {
  readonly registry = new Registry();
  private readonly creates: Counter<'outcome'>;
  private readonly createSeconds: Histogram;
  /** REST requests by method (a bounded set: Node's HTTP parser accepts only the methods it knows), added to on the hot path. */
  private readonly restTallies = new Map<string, RestTally>();
  private readonly schemaLoads: Histogram;
  private readonly jobRuns: Counter<'job' | 'outcome'>;
  private readonly reaperLag: Histogram;
  private readonly observePasses: Histogram;
  private sources: MetricSources | undefined;
  /** The last hours of REST traffic and creates, for the dashboard (sampled every 10 s). */
  readonly history: ActivityHistory;

  constructor() {
    const registers = [this.registry];
    // the process's own (memory, CPU, event loop, GC): pglease_process_* and pglease_nodejs_*
    collectDefaultMetrics({ register: this.registry, prefix: 'pglease_' });
    this.creates = new Counter({ name: 'pglease_lease_creates_total', help: 'POST /v1/leases answered by this process, by outcome (status)', labelNames: ['outcome'], registers });
    this.createSeconds = new Histogram({ name: 'pglease_lease_create_seconds', help: 'Time to answer POST /v1/leases with 201', buckets: LATENCY_BUCKETS, registers });
    const tallies = this.restTallies;
    new Counter({
      name: 'pglease_rest_requests_total',
      help: 'REST API requests answered by this process',
      labelNames: ['method', 'status_class'],
      registers,
      collect() {
        // the tallies count monotonically: expose their totals
        this.reset();
        for (const [method, tally] of tallies) {
          tally.byStatusClass.forEach((count, statusClass) => {
            if (count > 0) this.inc({ method, status_class: `${statusClass}xx` }, count);
          });
        }
      },
    });
    // prom-client's registry prints any object with a name, help, type and get(): see TalliedLatencyHistogram
    this.registry.registerMetric(new TalliedLatencyHistogram(tallies) as unknown as Metric);
    this.schemaLoads = new Histogram({ name: 'pglease_rest_schema_load_seconds', help: 'Schema cache loads (introspection of a lease schema) and their time', buckets: LATENCY_BUCKETS, registers });
    this.jobRuns = new Counter({ name: 'pglease_job_runs_total', help: 'Scheduled job runs made by this process, by job and outcome', labelNames: ['job', 'outcome'], registers });
    this.reaperLag = new Histogram({ name: 'pglease_reaper_lag_seconds', help: 'How long past its expires_at each lease this process reaped was ended (ended_at - expires_at)', buckets: REAPER_LAG_BUCKETS, registers });
    this.observePasses = new Histogram({
      name: 'pglease_observation_pass_seconds',
      help: "The observer's full passes made by this process (every lease due; its quick passes over leases near a limit are not counted)",
      buckets: PASS_BUCKETS,
      registers,
    });
    this.history = new ActivityHistory(LATENCY_BUCKETS, () => this.activityTotals());

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
      name: 'pglease_rest_statements',
      help: 'REST statements of this process at the gate (PGLEASE_REST_ACTIVE_STATEMENTS): running (counted against the limit) and waiting their turn',
      labelNames: ['state'],
      registers,
      collect() {
        const statements = metrics.sources?.restStatements?.();
        if (!statements) return;
        this.set({ state: 'running' }, statements.running);
        this.set({ state: 'waiting' }, statements.waiting);
      },
    });
    new Gauge({
      name: 'pglease_rest_statement_limit',
      help: 'REST statements this process runs at once before others wait (PGLEASE_REST_ACTIVE_STATEMENTS)',
      registers,
      collect() {
        const statements = metrics.sources?.restStatements?.();
        if (statements) this.set(statements.limit);
      },
    });
    new Counter({
      name: 'pglease_rest_slow_statements_total',
      help: 'REST statements that ran past 20 ms while others waited, and gave their place at the gate up',
      registers,
      collect() {
        const statements = metrics.sources?.restStatements?.();
        if (!statements) return;
        // the gate counts monotonically: expose its total
        this.reset();
        this.inc(statements.slowReleased);
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
      name: 'pglease_live_leases',
      help: 'Live (active) leases by host, plan, kind (plain or template) and health status, from the catalog (take max over replicas)',
      labelNames: ['host', 'plan', 'kind', 'status', 'source'],
      registers,
      async collect() {
        const pool = metrics.sources?.pool;
        if (!pool) return;
        const { rows } = await pool.query<{ host: string; plan: string; kind: string; status: string; count: number }>({
          name: 'pglease.metrics-live-leases',
          text: LIVE_LEASES_SQL,
        });
        // a combination that had leases and has none now reads 0, not its last value
        this.reset();
        for (const row of rows) this.set({ host: row.host, plan: row.plan, kind: row.kind, status: row.status, source: 'catalog' }, row.count);
      },
    });
    new Gauge({
      name: 'pglease_host',
      help: "Each host's latest observation, from the catalog: up (1 reachable, 0 not), status (1 for its status), connections used and max, leases, disk free bytes",
      labelNames: ['host', 'measure', 'source'],
      registers,
      async collect() {
        const pool = metrics.sources?.pool;
        if (!pool) return;
        const { rows } = await pool.query<HostRow>({ name: 'pglease.metrics-hosts', text: HOSTS_SQL });
        this.reset();
        for (const row of rows) {
          const set = (measure: string, value: number | null) => {
            if (value !== null) this.set({ host: row.host, measure, source: 'catalog' }, value);
          };
          set('up', row.reachable === null ? null : row.reachable ? 1 : 0);
          set('available', row.status === 'available' ? 1 : 0);
          set('connections_used', row.connections);
          set('connections_max', row.max_connections);
          set('leases', row.leases);
          set('disk_free_bytes', row.disk_free_bytes);
        }
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

  /** This process's REST connections now (zeros before the REST API is attached). */
  restConnections(): { inUse: number; idle: number; waiting: number; budget: number } {
    return this.sources?.restConnections?.() ?? { inUse: 0, idle: 0, waiting: 0, budget: 0 };
  }

  leaseCreated(outcome: CreateOutcome, seconds: number): void {
    this.creates.inc({ outcome });
    if (outcome === '201') this.createSeconds.observe(seconds);
  }

  /** On every REST response (src/server.ts's onResponse hook): a few additions, no allocation. */
  restRequest(method: string, status: number, seconds: number): void {
    let tally = this.restTallies.get(method);
    if (tally === undefined) {
      tally = new RestTally();
      this.restTallies.set(method, tally);
    }
    tally.byStatusClass[Math.min(5, Math.max(1, Math.floor(status / 100)))]!++;
    // a time that is not a number would make the sum NaN for good (prom-client refused one)
    if (!Number.isFinite(seconds)) return;
    tally.buckets[latencyBucket(seconds)]!++;
    tally.seconds += seconds;
    tally.count++;
  }

  schemaLoaded(seconds: number): void {
    this.schemaLoads.observe(seconds);
  }

  jobRan(job: string, outcome: 'succeeded' | 'failed'): void {
    this.jobRuns.inc({ job, outcome });
  }

  /** Leases this process's reaper just ended, each by how long past its expiry (seconds). */
  leasesReaped(lagSeconds: number[]): void {
    for (const lag of lagSeconds) this.reaperLag.observe(Math.max(0, lag));
  }

  observationPass(seconds: number): void {
    this.observePasses.observe(seconds);
  }

  /** Cumulative REST and create counts of this process (for ./history.ts). */
  private async activityTotals(): Promise<ActivityTotals> {
    const creates = await this.creates.get();
    let restRequests = 0;
    const restBuckets = new Array<number>(LATENCY_BUCKETS.length + 1).fill(0);
    for (const tally of this.restTallies.values()) {
      for (const count of tally.byStatusClass) restRequests += count;
      // cumulative, as prom-client's buckets are
      let cumulative = 0;
      tally.buckets.forEach((count, index) => {
        cumulative += count;
        restBuckets[index]! += cumulative;
      });
    }
    const createsByOutcome: Record<string, number> = {};
    for (const value of creates.values) createsByOutcome[String(value.labels.outcome)] = (createsByOutcome[String(value.labels.outcome)] ?? 0) + value.value;
    return { restRequests, restBuckets, createsByOutcome };
  }
}

/**
 * Live leases grouped by what an operator splits them by. kind is 'template' or 'plain' (not the
 * template's name: templates are made by users, so their names would be unbounded labels); a
 * lease never observed yet counts as 'uncertain', as GET /v1/leases/:id/info says.
 */
const LIVE_LEASES_SQL = `
  SELECT h.name AS host, l.plan, CASE WHEN c.template IS NULL THEN 'plain' ELSE 'template' END AS kind,
         coalesce(lh.status::text, 'uncertain') AS status, count(*)::int AS count
    FROM pglease.leases l
    JOIN pglease.hosts h ON h.id = l.host_id
    LEFT JOIN pglease.lease_health lh ON lh.lease_id = l.id
    LEFT JOIN LATERAL (SELECT e.detail ->> 'template' AS template FROM pglease.lease_events e
                        WHERE e.lease_id = l.id AND e.kind = 'created' LIMIT 1) c ON true
   WHERE l.state = 'active'
   GROUP BY 1, 2, 3, 4`;

interface HostRow {
  host: string;
  status: string;
  reachable: boolean | null;
  connections: number | null;
  max_connections: number | null;
  leases: number | null;
  disk_free_bytes: number | null;
}

const HOSTS_SQL = `
  SELECT h.name AS host, h.status::text AS status, o.reachable, o.connections, o.max_connections, o.leases,
         o.disk_free_bytes::float8 AS disk_free_bytes
    FROM pglease.hosts h
    LEFT JOIN LATERAL (SELECT * FROM pglease.host_observations x WHERE x.host_id = h.id ORDER BY x.observed_at DESC LIMIT 1) o ON true`;

/** The outcome label of a create answered with `status`. */
export function createOutcome(status: number): CreateOutcome {
  if (status === 201) return '201';
  if (status === 429) return '429';
  if (status === 503) return '503';
  return status >= 500 ? '5xx' : '4xx';
}
