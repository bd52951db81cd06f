/**
 * What the operator dashboard shows, as JSON for `GET /v1/dashboard` (and any script): the
 * service's state from the catalog, and this process's traffic from its metrics.
 *
 * Guarantees:
 * - **One snapshot, one round trip.** Every catalog figure comes from one statement (subqueries
 *   under one json_build_object), so counts agree with each other; a poll every 5 s costs the
 *   lease database one statement, not one per panel.
 * - **Fast with thousands of leases.** Each subquery is an index range (live leases by expiry,
 *   leases by created_at or ended_at within the last hours, events and job runs by id or time)
 *   or a group-by over live leases; nothing scans a table's history. Charts are built from
 *   per-bucket counts of creates and ends, not by counting live leases at every point in time.
 *   With 3,000 and 5,000 live leases a dashboard read took the figures in docs/metrics.md
 *   (bench:metrics).
 * - **Catalogs and pglease's own tables only.** Nothing here reads or plans a lease's objects
 *   (the security rule): lease rows, health, events, job runs, host observations.
 * - **What is per process says so.** REST traffic, 429s, warm pools and REST connections are this
 *   process's (`scope: "process"`): behind several replicas each dashboard shows its own.
 */
import type pg from 'pg';
import type { ActivityPoint } from '../../metrics/history.js';
import type { ServiceContext } from '../../service-context.js';

/** Width of the catalog charts' buckets, and how far back they reach. */
const BUCKET_SECONDS = 300;
const HISTORY_HOURS = 6;

interface CatalogSnapshot {
  now: string;
  by_state: Record<string, number> | null;
  by_status: Record<string, number> | null;
  by_plan: Record<string, number> | null;
  by_kind: Record<string, number> | null;
  creates_last_hour: number;
  top_clients: { client: string; creates: number }[];
  reaper: { reaped_last_hour: number; lag_p50_seconds: number | null; lag_p95_seconds: number | null; lag_max_seconds: number | null };
  backlog: { leases: number; oldest_seconds: number };
  attention: { id: string; label: string | null; plan: string; status: string; status_since: string }[];
  attention_total: number;
  events: { at: string; kind: string; lease_id: string; detail: Record<string, unknown> | null }[];
  job_failures: { job: string; started_at: string; outcome: string; error: string | null }[];
  created_buckets: { at: number; n: number }[];
  ended_buckets: { at: number; n: number }[];
}

/**
 * Live leases are 'active' ones; 'provisioning' ones are warm pools' (nobody's yet). A lease
 * never observed yet counts as 'uncertain', as GET /v1/leases/:id/info says. A warm-pool lease's
 * created_at is the moment it was handed out (pglease.hand_out), so creates count hand-outs too.
 */
const SNAPSHOT_SQL = `
WITH live AS MATERIALIZED (
  -- one pass over live leases and their health, which the counts by status and plan and the
  -- attention list share (with 3,000 leases, three passes made the statement 64 ms, one 18 ms)
  SELECT l.id, l.label, l.plan, h.status, h.status_since
    FROM pglease.leases l LEFT JOIN pglease.lease_health h ON h.lease_id = l.id
   WHERE l.state = 'active'
)
SELECT json_build_object(
  'now', now(),
  'by_state', (SELECT json_object_agg(state, n) FROM (
      SELECT state::text AS state, count(*)::int AS n FROM pglease.leases WHERE state IN ('active', 'provisioning') GROUP BY 1) s),
  'by_status', (SELECT json_object_agg(status, n) FROM (
      SELECT coalesce(status::text, 'uncertain') AS status, count(*)::int AS n FROM live GROUP BY 1) s),
  'by_plan', (SELECT json_object_agg(plan, n) FROM (SELECT plan, count(*)::int AS n FROM live GROUP BY 1) s),
  'by_kind', (SELECT json_object_agg(kind, n) FROM (
      SELECT CASE WHEN EXISTS (SELECT 1 FROM pglease.lease_events e
                                WHERE e.lease_id = l.id AND e.kind = 'created' AND e.detail ? 'template')
                  THEN 'template' ELSE 'plain' END AS kind, count(*)::int AS n
        FROM pglease.leases l WHERE l.state = 'active' GROUP BY 1) s),
  'creates_last_hour', (SELECT count(*)::int FROM pglease.leases
                         WHERE created_at > now() - interval '1 hour' AND state <> 'provisioning'),
  'top_clients', (SELECT coalesce(json_agg(t), '[]') FROM (
      SELECT host(client_ip) AS client, count(*)::int AS creates FROM pglease.leases
       WHERE created_at > now() - interval '1 hour' AND state <> 'provisioning' AND client_ip IS NOT NULL
       GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10) t),
  'reaper', (SELECT json_build_object(
      'reaped_last_hour', count(*)::int,
      'lag_p50_seconds', percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ended_at - expires_at)),
      'lag_p95_seconds', percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM ended_at - expires_at)),
      'lag_max_seconds', max(extract(epoch FROM ended_at - expires_at)))
      FROM pglease.leases WHERE ended_at > now() - interval '1 hour' AND state = 'expired'),
  'backlog', (SELECT json_build_object('leases', count(*)::int, 'oldest_seconds', coalesce(extract(epoch FROM now() - min(expires_at)), 0))
      FROM pglease.leases WHERE state IN ('active', 'provisioning') AND expires_at <= now()),
  'attention', (SELECT coalesce(json_agg(a), '[]') FROM (
      SELECT id, label, plan, status, status_since FROM live WHERE status <> 'available'
       ORDER BY status_since DESC LIMIT 20) a),
  'attention_total', (SELECT count(*)::int FROM live WHERE status <> 'available'),
  -- a warm pool's lease has a 'created' event from its provisioning: nobody's yet, not shown
  'events', (SELECT coalesce(json_agg(e), '[]') FROM (
      SELECT ev.at, ev.kind, ev.lease_id, ev.detail FROM pglease.lease_events ev
        JOIN pglease.leases l ON l.id = ev.lease_id
       WHERE l.state <> 'provisioning'
       ORDER BY ev.id DESC LIMIT 20) e),
  'job_failures', (SELECT coalesce(json_agg(r), '[]') FROM (
      SELECT job_name AS job, started_at, outcome, error FROM pglease.job_runs
       WHERE started_at > now() - interval '1 hour' AND outcome IN ('failed', 'abandoned')
       ORDER BY started_at DESC LIMIT 10) r),
  'created_buckets', (SELECT coalesce(json_agg(b), '[]') FROM (
      SELECT floor(extract(epoch FROM created_at) / $1) * $1 AS at, count(*)::int AS n FROM pglease.leases
       WHERE created_at > now() - make_interval(hours => $2) AND state <> 'provisioning' GROUP BY 1) b),
  'ended_buckets', (SELECT coalesce(json_agg(b), '[]') FROM (
      SELECT floor(extract(epoch FROM ended_at) / $1) * $1 AS at, count(*)::int AS n FROM pglease.leases
       WHERE ended_at > now() - make_interval(hours => $2) GROUP BY 1) b)
) AS snapshot`;

export interface CatalogPoint {
  /** The bucket's start (ISO time). */
  at: string;
  creates: number;
  ended: number;
  /** Live leases at the bucket's end (or now, for the current bucket). */
  live: number;
}

/**
 * Live leases over time, backwards from the count now: at the start of a bucket there were as
 * many as at its end, minus those created in it, plus those that ended in it.
 */
export function catalogHistory(nowMs: number, liveNow: number, created: { at: number; n: number }[], ended: { at: number; n: number }[]): CatalogPoint[] {
  const createdAt = new Map(created.map((bucket) => [Number(bucket.at), bucket.n]));
  const endedAt = new Map(ended.map((bucket) => [Number(bucket.at), bucket.n]));
  const current = Math.floor(nowMs / 1000 / BUCKET_SECONDS) * BUCKET_SECONDS;
  const points: CatalogPoint[] = [];
  let live = liveNow;
  for (let start = current; start > nowMs / 1000 - HISTORY_HOURS * 3600; start -= BUCKET_SECONDS) {
    const creates = createdAt.get(start) ?? 0;
    const endedHere = endedAt.get(start) ?? 0;
    points.push({ at: new Date(start * 1000).toISOString(), creates, ended: endedHere, live });
    live = Math.max(0, live - creates + endedHere);
  }
  return points.reverse();
}

export interface RestPoint {
  at: string;
  per_second: number;
  /** The worst 10-second p95 within the minute (ms); null: no request. */
  p95_ms: number | null;
  creates: number;
  refused: number;
}

/** This process's 10 s points, one per minute (≤ 360 over 6 h: a poll stays small). */
export function perMinute(points: ActivityPoint[]): RestPoint[] {
  const minutes = new Map<number, { requests: number; seconds: number; p95: number | null; creates: number; refused: number }>();
  for (const point of points) {
    const minute = Math.floor(point.at / 60_000) * 60_000;
    const bucket = minutes.get(minute) ?? { requests: 0, seconds: 0, p95: null, creates: 0, refused: 0 };
    bucket.requests += point.restRequests;
    bucket.seconds += point.seconds;
    if (point.restP95Ms !== null) bucket.p95 = Math.max(bucket.p95 ?? 0, point.restP95Ms);
    bucket.creates += point.creates;
    bucket.refused += point.refused;
    minutes.set(minute, bucket);
  }
  return [...minutes.entries()].map(([at, bucket]) => ({
    at: new Date(at).toISOString(),
    per_second: bucket.seconds > 0 ? bucket.requests / bucket.seconds : 0,
    p95_ms: bucket.p95,
    creates: bucket.creates,
    refused: bucket.refused,
  }));
}

const round = (value: number | null, digits = 3) => (value === null ? null : Math.round(value * 10 ** digits) / 10 ** digits);

/** Everything `GET /v1/dashboard` answers. */
export async function dashboardSnapshot(pool: pg.Pool, context: Pick<ServiceContext, 'metrics' | 'leasePool'>) {
  const { rows } = await pool.query<{ snapshot: CatalogSnapshot }>({ name: 'pglease.dashboard-snapshot', text: SNAPSHOT_SQL, values: [BUCKET_SECONDS, HISTORY_HOURS] });
  const catalog = rows[0]!.snapshot;
  const { metrics, leasePool } = context;
  const [lastMinute, lastHour] = await Promise.all([metrics.history.recent(60), metrics.history.recent(3600)]);
  const byState = catalog.by_state ?? {};
  const live = byState.active ?? 0;
  const connections = metrics.restConnections();
  const warm = leasePool.readyCounts();
  return {
    generated_at: new Date(catalog.now).toISOString(),
    leases: {
      live,
      warm_pool: byState.provisioning ?? 0,
      by_status: { available: 0, uncertain: 0, over_quota: 0, ...catalog.by_status },
      by_kind: { plain: 0, template: 0, ...catalog.by_kind },
      by_plan: catalog.by_plan ?? {},
    },
    creates: {
      last_hour: catalog.creates_last_hour,
      top_clients: catalog.top_clients,
    },
    reaper: {
      backlog: catalog.backlog.leases,
      oldest_seconds: round(catalog.backlog.oldest_seconds),
      reaped_last_hour: catalog.reaper.reaped_last_hour,
      lag_p50_seconds: round(catalog.reaper.lag_p50_seconds),
      lag_p95_seconds: round(catalog.reaper.lag_p95_seconds),
      lag_max_seconds: round(catalog.reaper.lag_max_seconds),
    },
    attention: { total: catalog.attention_total, leases: catalog.attention },
    events: catalog.events,
    job_failures: catalog.job_failures,
    process: {
      scope: 'process' as const,
      rest: { per_second: round(lastMinute.restPerSecond, 2), p95_ms: round(lastMinute.restP95Ms, 1), window_seconds: round(lastMinute.seconds, 1) },
      creates_last_hour: { created: lastHour.creates, refused: lastHour.refused, window_seconds: round(lastHour.seconds, 1) },
      warm_pools: { ready_plain: warm.plain, ready_template: warm.template, hits: leasePool.creates.hits, misses: leasePool.creates.misses },
      rest_connections: { in_use: connections.inUse - connections.idle, idle: connections.idle, waiting: connections.waiting, budget: connections.budget },
    },
    history: {
      bucket_seconds: BUCKET_SECONDS,
      catalog: catalogHistory(Date.parse(catalog.now), live, catalog.created_buckets, catalog.ended_buckets),
      process: perMinute(metrics.history.since(HISTORY_HOURS * 3600)),
    },
  };
}

export type DashboardSnapshot = Awaited<ReturnType<typeof dashboardSnapshot>>;

export interface LeaseSearchRow {
  id: string;
  label: string | null;
  plan: string;
  status: string;
  client: string | null;
  created_at: string;
  expires_at: string | null;
}

/**
 * Live leases whose id starts with, or whose label or client address contains, `query`; newest
 * first. At most `limit`. A scan of live leases (5,000 take a few ms), never of their history.
 */
export async function searchLeases(pool: pg.Pool, query: string, limit: number): Promise<LeaseSearchRow[]> {
  const { rows } = await pool.query<LeaseSearchRow & { created_at: Date; expires_at: Date | null }>({
    name: 'pglease.dashboard-search',
    text: `SELECT l.id::text, l.label, l.plan, coalesce(h.status::text, 'uncertain') AS status, host(l.client_ip) AS client, l.created_at, l.expires_at
             FROM pglease.leases l LEFT JOIN pglease.lease_health h ON h.lease_id = l.id
            WHERE l.state = 'active'
              AND ($1 = '' OR l.id::text LIKE lower($3) || '%' OR strpos(lower(coalesce(l.label, '')), lower($1)) > 0
                   OR strpos(coalesce(host(l.client_ip), ''), $1) > 0)
            ORDER BY l.created_at DESC, l.id DESC
            LIMIT $2`,
    values: [query, limit, query.replace(/[%_\\]/g, '\\$&')],
  });
  return rows.map((row) => ({ ...row, created_at: row.created_at.toISOString(), expires_at: row.expires_at?.toISOString() ?? null }));
}
