/**
 * GET /v1/leases/:id/stats: what `pglease info` shows (pg:info style): open connections, tables,
 * rows, size and the template a lease was made from. The service role reads only catalogs and
 * pglease's own tables; exact row counts run as the lease (countRowsAsLease).
 */
import { authorizedLease } from './lease-access.js';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type, type Static } from '@sinclair/typebox';
import type pg from 'pg';
import type { ServiceContext } from '../service-context.js';
import { authenticatorLogin, leaseDatabaseUrl, withLeaseSession } from '../leases/lease-session.js';
import type { LeaseRow } from '../leases/lease-store.js';
import { ErrorSchema, LeaseParams, LeaseStateSchema } from './schemas.js';

export const LeaseStatsSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  state: LeaseStateSchema,
  expires_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  connections: Type.Integer({ description: 'Open sessions of the lease role and its REST authenticator' }),
  connection_limit: Type.Union([Type.Integer(), Type.Null()]),
  tables: Type.Integer(),
  rows: Type.Integer({ description: 'Rows in the lease\'s tables: counted when rows_exact, else the statistics\' estimate' }),
  rows_exact: Type.Boolean(),
  size_bytes: Type.Integer({ description: 'Tables, indexes and TOAST of the lease schema' }),
  size_exact: Type.Boolean({ description: 'false: the lease held a lock on a table, so the size is from the catalog\'s page counts' }),
  template: Type.Union([Type.String(), Type.Null()], { description: 'The template the lease was seeded from' }),
});
export type LeaseStatsJson = Static<typeof LeaseStatsSchema>;


/** Counting every row is cheap for test-sized leases; above these, the statistics' estimate is shown. */
const EXACT_COUNT_MAX_TABLES = 200;
const EXACT_COUNT_MAX_BYTES = 64 * 1024 * 1024;

interface StatsRow {
  id: string;
  state: LeaseStatsJson['state'];
  expires_at: Date | null;
  schema_name: string;
  connections: number;
  connection_limit: number | null;
  tables: string[];
  rows_estimate: string;
  size_bytes: string;
  template: string | null;
}

export async function leaseStatsRoutes(app: FastifyInstance, context: ServiceContext): Promise<void> {
  const routes = app.withTypeProvider<TypeBoxTypeProvider>();

  routes.get(
    '/v1/leases/:id/stats',
    {
      schema: {
        summary: 'Usage of a lease',
        description: 'Connections, tables, rows and size of a lease, as `pglease info` shows them.',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        response: { 200: LeaseStatsSchema, 401: ErrorSchema, 404: ErrorSchema },
      },
    },
    async (request) => {
      const { lease, at } = await authorizedLease(context, request, request.params.id);
      const host = at.host;

      const bounded = await readStatsBounded(host.pool, lease.id);
      const { stats } = bounded;
      let { sizeExact } = bounded;
      let sizeBytes = Number(stats.size_bytes);
      let rowCount = Number(stats.rows_estimate);
      let exact = false;
      if (lease.kind === 'database') {
        // its tables are in its own database, whose catalogs only the lease's sessions read
        const own = stats.state === 'active' ? await databaseLeaseStatsAsLease(host.databaseUrl, host.authenticatorKey, lease) : undefined;
        stats.tables = own?.tables.map((table) => `${table.schema}.${table.name}`) ?? [];
        [sizeBytes, sizeExact, rowCount] = [own?.sizeBytes ?? 0, own?.sizeExact ?? false, own?.rowsEstimate ?? 0];
        if (own && sizeExact && own.tables.length <= EXACT_COUNT_MAX_TABLES && sizeBytes <= EXACT_COUNT_MAX_BYTES) {
          const counted = await countRowsAsLease(host.databaseUrl, host.authenticatorKey, lease, own.tables);
          if (counted !== undefined) [rowCount, exact] = [counted, true];
        }
      } else if (stats.state === 'active' && sizeExact && stats.tables.length <= EXACT_COUNT_MAX_TABLES && sizeBytes <= EXACT_COUNT_MAX_BYTES) {
        // counted after the service's connection is back in its pool: the count logs in as the lease
        const tables = stats.tables.map((name) => ({ schema: stats.schema_name, name }));
        const counted = await countRowsAsLease(host.databaseUrl, host.authenticatorKey, lease, tables);
        if (counted !== undefined) [rowCount, exact] = [counted, true];
      }
      return {
        id: stats.id,
        state: stats.state,
        expires_at: stats.expires_at?.toISOString() ?? null,
        connections: stats.connections,
        connection_limit: stats.connection_limit,
        tables: stats.tables.length,
        rows: rowCount,
        rows_exact: exact,
        size_bytes: sizeBytes,
        size_exact: sizeExact,
        template: stats.template,
      };
    },
  );
}

/** How long the stats wait for a lock the lease holds on one of its tables. */
const LOCK_WAIT = '200ms';
/** SQLSTATEs of a statement given up on: lock_not_available (lock_timeout), query_canceled (statement_timeout). */
const GAVE_UP = new Set(['55P03', '57014']);

/**
 * The lease's size: exact (pg_total_relation_size opens each relation, so it waits for the
 * lease's locks), or from pg_class's page counts, which need no lock but are as of the last
 * VACUUM, ANALYZE or CREATE INDEX.
 */
const SIZE = {
  exact: `(SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
            WHERE c.relnamespace = to_regnamespace(quote_ident(l.schema_name)) AND c.relkind IN ('r', 'm'))`,
  estimated: `(SELECT (coalesce(sum(c.relpages + coalesce(t.relpages, 0)), 0) * current_setting('block_size')::bigint)
                 FROM pg_class c LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
                WHERE c.relnamespace = to_regnamespace(quote_ident(l.schema_name)) AND c.relkind IN ('r', 'm', 'i'))`,
};

/**
 * The catalogs' view of a lease, on a service connection, in one read-only transaction. A lease
 * may hold locks on its tables as long as it likes (a lock and a long query): the sizes never wait
 * for them, nor hold a service connection while they do; a locked table gives the estimate.
 */
async function readStatsBounded(pool: pg.Pool, leaseId: string): Promise<{ stats: StatsRow; sizeExact: boolean }> {
  const client = await pool.connect();
  // a connection cut between two statements reports it to the next one, and here
  const ignore = () => undefined;
  client.on('error', ignore);
  // a connection that failed here (its server stopped answering, say) may be inside the
  // transaction: it is closed, never handed out again
  let failed: Error | undefined;
  try {
    await client.query('BEGIN READ ONLY');
    await client.query(`SELECT set_config('lock_timeout', '${LOCK_WAIT}', true), set_config('statement_timeout', '2s', true)`);
    await client.query('SAVEPOINT sizes');
    let stats: StatsRow;
    let sizeExact = true;
    try {
      stats = await readStats(client, leaseId, 'exact');
    } catch (error) {
      if (!GAVE_UP.has((error as { code?: string }).code ?? '')) throw error;
      await client.query('ROLLBACK TO SAVEPOINT sizes');
      stats = await readStats(client, leaseId, 'estimated');
      sizeExact = false;
    }
    await client.query('ROLLBACK');
    return { stats, sizeExact };
  } catch (error) {
    failed = error as Error;
    throw error;
  } finally {
    client.off('error', ignore);
    client.release(failed);
  }
}

/** The lease's row and what the catalogs say of it, in one statement. */
async function readStats(client: pg.PoolClient, leaseId: string, size: keyof typeof SIZE): Promise<StatsRow> {
  const { rows } = await client.query<StatsRow>({
    name: `pglease.lease-stats-${size}`,
    text: `SELECT l.id, l.state, l.expires_at, l.schema_name,
                  (SELECT count(*)::int FROM pg_stat_activity a WHERE a.usename IN (l.role_name, l.auth_role)) AS connections,
                  (SELECT r.rolconnlimit FROM pg_roles r WHERE r.rolname = l.role_name) AS connection_limit,
                  coalesce((SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c
                             WHERE c.relnamespace = to_regnamespace(quote_ident(l.schema_name)) AND c.relkind IN ('r', 'p')), '{}') AS tables,
                  (SELECT coalesce(sum(s.n_live_tup), 0) FROM pg_stat_all_tables s WHERE s.schemaname = l.schema_name) AS rows_estimate,
                  ${SIZE[size]} AS size_bytes,
                  (SELECT e.detail ->> 'template' FROM pglease.lease_events e WHERE e.lease_id = l.id AND e.kind = 'created' LIMIT 1) AS template
             FROM pglease.leases l WHERE l.id = $1`,
    values: [leaseId],
  });
  return rows[0]!;
}

/**
 * Rows of all the lease's tables in one statement. Counting plans and runs queries on the lease's
 * tables, which can run the lease's own code (an IMMUTABLE function of an index expression is
 * evaluated by the planner; see src/leases/lease-session.ts), so it runs in a session of the lease's
 * authenticator, as its login role, never on the service's connections. Bounded to one second;
 * undefined when that is not possible (the lease at its connection limit, a table it keeps locked,
 * its own code failing), and the statistics' estimate is shown instead.
 */
async function countRowsAsLease(databaseUrl: string, authenticatorKey: Buffer, lease: LeaseRow, tables: LeaseTable[]): Promise<number | undefined> {
  if (tables.length === 0) return 0;
  try {
    return await withLeaseSession(leaseDatabaseUrl(databaseUrl, lease), authenticatorLogin(authenticatorKey, lease.auth_role), async (session) => {
      await session.query('BEGIN READ ONLY');
      await session.query(
        `SELECT set_config('role', $1, true), set_config('statement_timeout', '1s', true), set_config('lock_timeout', '${LOCK_WAIT}', true)`,
        [lease.role_name],
      );
      // one fixed statement for any number of tables: query_to_xml runs each count
      const { rows } = await session.query<{ total: string }>(
        `SELECT coalesce(sum((pg_catalog.xpath('/row/n/text()',
                  pg_catalog.query_to_xml(pg_catalog.format('SELECT count(*) AS n FROM %I.%I', s, t), false, true, '')))[1]::text::bigint), 0) AS total
           FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) AS x(s, t)`,
        [tables.map((table) => table.schema), tables.map((table) => table.name)],
      );
      return Number(rows[0]!.total);
    }, 'pglease-stats');
  } catch {
    return undefined;
  }
}

interface LeaseTable {
  schema: string;
  name: string;
}

/**
 * A database lease's tables (those of its schemas, not the system's), their size and the
 * statistics' row estimate, read from its own database's catalogs in a session of its
 * authenticator as its login role: the service has no session there. The size waits LOCK_WAIT at
 * most for a lock the lease holds (then the catalog's page counts). Undefined when the session
 * cannot be had (the lease at its connection limit).
 */
async function databaseLeaseStatsAsLease(
  databaseUrl: string,
  authenticatorKey: Buffer,
  lease: LeaseRow,
): Promise<{ tables: LeaseTable[]; sizeBytes: number; sizeExact: boolean; rowsEstimate: number } | undefined> {
  const userRelations = `FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg\\_%'
                           AND c.relkind IN ('r', 'p', 'm')`;
  try {
    return await withLeaseSession(leaseDatabaseUrl(databaseUrl, lease), authenticatorLogin(authenticatorKey, lease.auth_role), async (session) => {
      await session.query('BEGIN READ ONLY');
      await session.query(
        `SELECT set_config('role', $1, true), set_config('statement_timeout', '1s', true), set_config('lock_timeout', '${LOCK_WAIT}', true)`,
        [lease.role_name],
      );
      const listed = await session.query<{ schema: string; name: string; kind: string; estimate: string }>(
        `SELECT n.nspname::text AS schema, c.relname::text AS name, c.relkind::text AS kind, greatest(c.reltuples, 0)::bigint AS estimate ${userRelations} ORDER BY 1, 2`,
      );
      await session.query('SAVEPOINT sizes');
      let sizeBytes: number;
      let sizeExact = true;
      try {
        const { rows } = await session.query<{ size: string }>(`SELECT coalesce(sum(pg_catalog.pg_total_relation_size(c.oid)), 0) AS size ${userRelations}`);
        sizeBytes = Number(rows[0]!.size);
      } catch (error) {
        if (!GAVE_UP.has((error as { code?: string }).code ?? '')) throw error;
        await session.query('ROLLBACK TO SAVEPOINT sizes');
        const { rows } = await session.query<{ size: string }>(
          `SELECT coalesce(sum(c.relpages), 0) * pg_catalog.current_setting('block_size')::bigint AS size ${userRelations}`,
        );
        [sizeBytes, sizeExact] = [Number(rows[0]!.size), false];
      }
      await session.query('ROLLBACK');
      const tables = listed.rows.filter((row) => row.kind !== 'm');
      return {
        tables: tables.map(({ schema, name }) => ({ schema, name })),
        sizeBytes,
        sizeExact,
        rowsEstimate: tables.reduce((sum, row) => sum + Number(row.estimate), 0),
      };
    }, 'pglease-stats');
  } catch {
    return undefined;
  }
}
