/**
 * How a lease is doing against its plan, from its latest observation (sql/observe.sql): status,
 * connections, size and rows against the plan's limits. One query on the service pool, reading
 * pglease's own tables only; `GET /v1/leases/:id/info` (pg:info) and the lease JSON's `usage` both
 * show it.
 */
import type pg from 'pg';

export type LeaseStatus = 'available' | 'uncertain' | 'over_quota';

export interface LeaseUsage {
  /** uncertain before a first observation, or when the last one is three intervals old */
  status: LeaseStatus;
  status_since: Date | null;
  restriction_error: string | null;
  observed_at: Date | null;
  connections: number | null;
  tables: number | null;
  rows_estimate: number | null;
  size_bytes: number | null;
  size_limit: number;
  max_rows: number | null;
  /** over the size or row limit, or still restricted */
  over_plan: boolean;
  pg_version: string;
  template: string | null;
}

/** The usage of lease `leaseId` (a lease row the caller was authorized for). */
export async function readLeaseUsage(pool: pg.Pool, leaseId: string, observeIntervalSeconds: number): Promise<LeaseUsage> {
  const { rows } = await pool.query<Omit<LeaseUsage, 'status' | 'over_plan'> & { status: LeaseStatus | null; overdue: boolean }>({
    name: 'pglease.lease-usage',
    text: `SELECT h.status, h.status_since, h.last_error AS restriction_error, o.observed_at,
                  h.next_observation_at < now() - make_interval(secs => 3 * $2::int) AS overdue,
                  o.connections, o.tables, o.rows_estimate::float8 AS rows_estimate, o.size_bytes::float8 AS size_bytes,
                  pglease.lease_size_limit(p.max_size_bytes,
                    (SELECT ho.disk_free_bytes FROM pglease.host_observations ho WHERE ho.host_id = l.host_id ORDER BY ho.observed_at DESC LIMIT 1),
                    o.size_bytes)::float8 AS size_limit,
                  p.max_rows::float8 AS max_rows, current_setting('server_version') AS pg_version,
                  (SELECT e.detail ->> 'template' FROM pglease.lease_events e WHERE e.lease_id = l.id AND e.kind = 'created' LIMIT 1) AS template
             FROM pglease.leases l
             JOIN pglease.plans p ON p.name = l.plan
             LEFT JOIN pglease.lease_health h ON h.lease_id = l.id
             LEFT JOIN pglease.observations o ON o.id = h.last_observation_id
            WHERE l.id = $1`,
    values: [leaseId, observeIntervalSeconds],
  });
  const { overdue, ...row } = rows[0]!;
  const overLimits = row.size_bytes !== null && (row.size_bytes > row.size_limit || (row.max_rows !== null && (row.rows_estimate ?? 0) > row.max_rows));
  return {
    ...row,
    // never observed yet, or an observation three intervals late: uncertain even before the observer says so
    status: row.status === null || row.observed_at === null || (overdue && row.status === 'available') ? 'uncertain' : row.status,
    over_plan: overLimits || row.status === 'over_quota',
  };
}
