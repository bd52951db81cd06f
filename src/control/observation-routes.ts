/**
 * What the observer saw (sql/observe.sql), read back: GET /v1/leases/:id/info (Heroku's pg:info:
 * plan, status, connections, size and rows against the plan's limits), GET
 * /v1/leases/:id/observations (the history, JSON) and GET /v1/hosts (admin). Everything here reads
 * pglease's own tables and the catalogs' view of the lease's role; nothing touches the lease's objects.
 */
import { authorizedLease as sharedAuthorizedLease } from './lease-access.js';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type, type Static } from '@sinclair/typebox';
import type { ServiceContext } from '../service-context.js';
import type { LeaseRow } from '../leases/lease-store.js';
import { readLeaseUsage } from '../leases/lease-usage.js';
import { identifyCaller } from '../auth/caller.js';
import { ControlError } from './errors.js';
import { HostSchema as RegistryHostSchema, hostJson } from './host-routes.js';
import type pg from 'pg';
import { ErrorSchema, LeaseParams, LeaseStateSchema } from './schemas.js';

const Timestamp = Type.String({ format: 'date-time' });
const MaybeTimestamp = Type.Union([Timestamp, Type.Null()]);
const MaybeInteger = Type.Union([Type.Integer(), Type.Null()]);

export const LeaseStatusSchema = Type.Union([Type.Literal('available'), Type.Literal('uncertain'), Type.Literal('over_quota')], {
  description: 'How the lease is doing, from its observations: uncertain when it cannot log in or was not observed in time; over_quota while its writes are refused',
});

export const LeaseInfoSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.Union([Type.String(), Type.Null()]),
  plan: Type.String(),
  status: LeaseStatusSchema,
  status_since: MaybeTimestamp,
  state: LeaseStateSchema,
  connections: MaybeInteger,
  connection_limit: MaybeInteger,
  pg_version: Type.String(),
  size_bytes: MaybeInteger,
  size_limit_bytes: Type.Integer(),
  tables: MaybeInteger,
  rows: MaybeInteger,
  rows_limit: MaybeInteger,
  compliance: Type.Union([Type.Literal('In compliance'), Type.Literal('Over plan')]),
  created_at: Timestamp,
  expires_at: MaybeTimestamp,
  kind: Type.String({ description: '"plain", or "template <name>" for a lease seeded from a template' }),
  host: Type.String(),
  observed_at: MaybeTimestamp,
  restriction_error: Type.Union([Type.String(), Type.Null()], { description: 'Why restricting or restoring the lease last failed' }),
});
export type LeaseInfoJson = Static<typeof LeaseInfoSchema>;

export const ObservationSchema = Type.Object({
  id: Type.String(),
  observed_at: Timestamp,
  reachable: Type.Boolean(),
  connections: Type.Integer(),
  tables: Type.Integer(),
  rows_estimate: Type.Integer(),
  size_bytes: Type.Integer(),
  size_exact: Type.Boolean(),
  seq_scans: Type.Integer(),
  idx_scans: Type.Integer(),
  took_us: Type.Integer(),
});

const ObservationsQuery = Type.Object(
  {
    since: Type.Optional(Type.String({ description: 'Only observations after this time (ISO 8601)' })),
    limit: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: '1 to 1000 (default 100): the oldest after `since`, else the latest' })),
  },
  { additionalProperties: false },
);

export const HostSchema = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  public_host: Type.String(),
  public_port: Type.Integer(),
  database: Type.String(),
  status: LeaseStatusSchema,
  status_since: Timestamp,
  observed_at: MaybeTimestamp,
  reachable: Type.Union([Type.Boolean(), Type.Null()]),
  connections: MaybeInteger,
  max_connections: MaybeInteger,
  disk_free_bytes: MaybeInteger,
  leases: MaybeInteger,
  /** The host in the registry (src/hosts/): capacity, drain, reachability. */
  registry: Type.Optional(RegistryHostSchema),
});

export async function observationRoutes(app: FastifyInstance, context: ServiceContext): Promise<void> {
  const routes = app.withTypeProvider<TypeBoxTypeProvider>();
  const { config, host } = context;

  /** The lease, its host, and that host's service pool. */
  async function authorizedLease(request: FastifyRequest, id: string): Promise<{ lease: LeaseRow; pool: pg.Pool; leaseHost: typeof host }> {
    const { lease, at } = await sharedAuthorizedLease(context, request, id);
    return { lease, pool: at.host.pool, leaseHost: at.host };
  }

  routes.get(
    '/v1/leases/:id/info',
    {
      schema: {
        summary: 'pg:info of a lease',
        description: 'Plan, status, connections, size and rows against the plan, from the latest observation (`pglease info`).',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        response: { 200: LeaseInfoSchema, 401: ErrorSchema, 404: ErrorSchema },
      },
    },
    async (request) => {
      const { lease, pool, leaseHost } = await authorizedLease(request, request.params.id);
      const info = await readLeaseUsage(pool, lease.id, config.jobs.observeIntervalSeconds);
      return {
        id: lease.id,
        name: lease.label,
        plan: lease.plan,
        status: info.status,
        status_since: info.status_since?.toISOString() ?? null,
        state: lease.state,
        connections: info.connections,
        connection_limit: lease.connection_limit,
        pg_version: info.pg_version,
        size_bytes: info.size_bytes,
        size_limit_bytes: info.size_limit,
        tables: info.tables,
        rows: info.rows_estimate,
        rows_limit: info.max_rows,
        compliance: info.over_plan ? ('Over plan' as const) : ('In compliance' as const),
        created_at: lease.created_at.toISOString(),
        expires_at: lease.expires_at?.toISOString() ?? null,
        kind: info.template === null ? 'plain' : `template ${info.template}`,
        // the lease's own host (with several, not necessarily the control database's)
        host: `${leaseHost.publicHost}:${leaseHost.publicPort}`,
        observed_at: info.observed_at?.toISOString() ?? null,
        restriction_error: info.restriction_error,
      };
    },
  );

  routes.get(
    '/v1/leases/:id/observations',
    {
      schema: {
        summary: 'Observations of a lease',
        description: 'What the observer saw, oldest first (kept PGLEASE_OBSERVATION_RETENTION).',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        querystring: ObservationsQuery,
        response: { 200: Type.Object({ items: Type.Array(ObservationSchema) }), 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema },
      },
    },
    async (request) => {
      const { lease, pool } = await authorizedLease(request, request.params.id);
      const since = request.query.since === undefined ? null : new Date(request.query.since);
      if (since !== null && Number.isNaN(since.getTime())) throw new ControlError('PGLEASE_INVALID_PARAMETER', 'since must be a time such as 2026-01-31T12:00:00Z', 'since');
      const limit = request.query.limit === undefined ? 100 : Number(request.query.limit);
      if (!(limit >= 1 && limit <= 1000)) throw new ControlError('PGLEASE_INVALID_PARAMETER', 'limit must be between 1 and 1000', 'limit');
      const { rows } = await pool.query<Static<typeof ObservationSchema> & { observed_at: Date }>({
        name: 'pglease.lease-observations',
        text: `SELECT * FROM (
                 SELECT id::text, observed_at, reachable, connections, tables, rows_estimate::float8 AS rows_estimate,
                        size_bytes::float8 AS size_bytes, size_exact, seq_scans::float8 AS seq_scans, idx_scans::float8 AS idx_scans, took_us
                   FROM pglease.observations
                  WHERE lease_id = $1 AND ($2::timestamptz IS NULL OR date_trunc('milliseconds', observed_at) > $2)
                  ORDER BY CASE WHEN $2::timestamptz IS NULL THEN 0 ELSE extract(epoch FROM observed_at) END,
                           observed_at DESC
                  LIMIT $3) o
               ORDER BY observed_at`,
        values: [lease.id, since, limit],
      });
      return { items: rows.map((row) => ({ ...row, observed_at: row.observed_at.toISOString() })) };
    },
  );

  routes.get(
    '/v1/hosts',
    {
      schema: {
        summary: 'Hosts and their latest observation (admin)',
        tags: ['hosts'],
        security: [{ bearer: [] }],
        response: { 200: Type.Object({ items: Type.Array(HostSchema) }), 401: ErrorSchema, 403: ErrorSchema },
      },
    },
    async (request) => {
      const caller = identifyCaller(request, config.adminToken);
      if (caller.kind === 'anonymous') throw new ControlError('PGLEASE_UNAUTHORIZED');
      if (caller.kind !== 'admin') throw new ControlError('PGLEASE_FORBIDDEN', 'Listing hosts needs the admin token (PGLEASE_ADMIN_TOKEN)');
      type HostRow = Omit<Static<typeof HostSchema>, 'status_since' | 'observed_at'> & { status_since: Date; observed_at: Date | null };
      const observed = (pool: pg.Pool) =>
        pool.query<HostRow>(
          `SELECT h.id, h.name, h.public_host, h.public_port, h.database_name AS database, h.status, h.status_since,
                  o.observed_at, o.reachable, o.connections, o.max_connections, o.disk_free_bytes::float8 AS disk_free_bytes, o.leases
             FROM pglease.hosts h
             LEFT JOIN LATERAL (SELECT * FROM pglease.host_observations x WHERE x.host_id = h.id ORDER BY x.observed_at DESC LIMIT 1) o ON true
            ORDER BY h.id`,
        );
      // each lease host's own observations (its observer writes them in its lease database), with its registry row
      const items: Static<typeof HostSchema>[] = [];
      for (const { entry, services } of await context.fleet.list()) {
        const registry = hostJson(entry);
        const found = services && (await observed(services.host === host ? host.pool : services.host.pool).catch(() => undefined));
        if (!found) {
          // not reachable from here: what the registry says
          items.push({
            id: -entry.id, name: entry.name, public_host: entry.public_host ?? '', public_port: entry.public_port ?? 0, database: config.leaseDatabase,
            status: 'uncertain', status_since: registry.state_since, observed_at: null, reachable: false,
            connections: null, max_connections: null, disk_free_bytes: null, leases: null, registry,
          });
          continue;
        }
        for (const row of found.rows) items.push({ ...row, status_since: row.status_since.toISOString(), observed_at: row.observed_at?.toISOString() ?? null, registry });
      }
      return { items };
    },
  );
}
