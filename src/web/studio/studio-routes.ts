/**
 * The lease studio: `GET /v1/leases/:id/studio` (the page), `GET /studio/static/*` (its script and
 * style, and Tabulator's, from the package: no CDN) and `POST /v1/leases/:id/sql` (its SQL box).
 *
 * The page itself holds no data and needs no token: the browser reads and writes the lease through
 * the lease's REST API and the control API with the token the person pasted (kept in the tab's
 * sessionStorage under the same key as the Swagger page's, so one paste serves both). The SQL
 * endpoint takes the lease token (or the admin token) and runs the statement as the lease
 * (./lease-sql.ts): the service's own connections only look the lease up in pglease.leases.
 */
import { authorizedLease, hostOfLease } from '../../control/lease-access.js';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { ServiceContext } from '../../service-context.js';
import { ControlError } from '../../control/errors.js';
import { ErrorSchema, LeaseParams } from '../../control/schemas.js';
import { projectPath } from '../../paths.js';
import { templateSqlError, type TemplateSqlError } from '../../templates/template-sql-error.js';
import { MAX_ROWS, MAX_SQL_LENGTH, runLeaseSql, SqlRefusedError } from './lease-sql.js';
import { STUDIO_STATIC, studioHtml } from './studio-page.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface StaticFile {
  file: string;
  type: string;
  /** Tabulator's files change only with the package; ours with every release of pglease. */
  cacheControl: string;
}

const tabulatorDist = path.dirname(path.dirname(createRequire(import.meta.url).resolve('tabulator-tables/dist/js/tabulator.min.js')));
const STATIC_FILES: Record<string, StaticFile> = {
  'studio.js': { file: projectPath('src/web/studio/assets/studio.js'), type: 'text/javascript; charset=utf-8', cacheControl: 'no-cache' },
  'studio.css': { file: projectPath('src/web/studio/assets/studio.css'), type: 'text/css; charset=utf-8', cacheControl: 'no-cache' },
  'tabulator.min.js': { file: path.join(tabulatorDist, 'js/tabulator.min.js'), type: 'text/javascript; charset=utf-8', cacheControl: 'public, max-age=86400' },
  'tabulator.min.css': { file: path.join(tabulatorDist, 'css/tabulator_simple.min.css'), type: 'text/css; charset=utf-8', cacheControl: 'public, max-age=86400' },
};

/** A PGLEASE_SQL_FAILED answer with Postgres's own error (SQLSTATE, detail, hint, position). */
class SqlFailedError extends ControlError {
  constructor(readonly sqlError: TemplateSqlError) {
    const { line, column } = sqlError.postgres;
    super('PGLEASE_SQL_FAILED', `${sqlError.message}${line ? ` (line ${line}, column ${column})` : ''}`, 'sql');
  }

  override toJSON() {
    return { ...super.toJSON(), postgres: this.sqlError.postgres };
  }
}

const SqlBody = Type.Object(
  {
    sql: Type.String({ minLength: 1, maxLength: MAX_SQL_LENGTH, description: 'One SQL statement' }),
    write: Type.Optional(Type.Boolean({ description: 'Run it in a read-write transaction (default: read-only)' })),
  },
  { additionalProperties: false },
);

const SqlResultSchema = Type.Object({
  command: Type.Union([Type.String(), Type.Null()], { description: 'The command tag’s verb: SELECT, INSERT, …' }),
  columns: Type.Array(Type.Object({ name: Type.String(), type: Type.String() })),
  rows: Type.Array(Type.Array(Type.Unknown()), { description: `Rows as arrays in column order, at most ${MAX_ROWS}` }),
  row_count: Type.Union([Type.Integer(), Type.Null()]),
  truncated: Type.Boolean({ description: `More than ${MAX_ROWS} rows: only the first ones are here` }),
});

export async function studioRoutes(app: FastifyInstance, context: ServiceContext): Promise<void> {
  const routes = app.withTypeProvider<TypeBoxTypeProvider>();

  routes.get('/v1/leases/:id/studio', { schema: { hide: true, params: LeaseParams } }, async (request, reply) => {
    const { id } = request.params;
    const lease = UUID.test(id) ? await hostOfLease(context, id).leases.find(id.toLowerCase(), null) : undefined;
    if (!lease || lease.state !== 'active') throw new ControlError('PGLEASE_NOT_FOUND', `No live lease ${id}`);
    return reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(studioHtml({ leaseId: lease.id }));
  });

  routes.get(`${STUDIO_STATIC}/:file`, { schema: { hide: true, params: Type.Object({ file: Type.String() }) } }, async (request, reply) => {
    const asset = Object.hasOwn(STATIC_FILES, request.params.file) ? STATIC_FILES[request.params.file] : undefined;
    if (!asset) throw new ControlError('PGLEASE_ROUTE_NOT_FOUND', `No studio file ${request.params.file}`);
    return reply.type(asset.type).header('cache-control', asset.cacheControl).send(readFileSync(asset.file));
  });

  routes.post(
    '/v1/leases/:id/sql',
    {
      schema: {
        summary: 'Run one SQL statement as the lease',
        description:
          'The studio’s SQL box: one statement, run on a session logged in as the lease’s authenticator acting as the lease role, ' +
          `read-only unless \`write\` is true, within 10 s, at most ${MAX_ROWS} rows back. ` +
          'SET, RESET, DISCARD and transaction control are refused (PGLEASE_SQL_REFUSED); Postgres’s errors come back as PGLEASE_SQL_FAILED with its SQLSTATE.',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        body: SqlBody,
        response: { 200: SqlResultSchema, 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (request) => {
      const { lease, at } = await authorizedLease(context, request, request.params.id);
      if (lease.state !== 'active') throw new ControlError('PGLEASE_LEASE_NOT_ACTIVE', `The lease is ${lease.state}`);
      try {
        const result = await runLeaseSql(at.host.databaseUrl, at.host.authenticatorKey, lease, request.body.sql, { write: request.body.write === true });
        return { command: result.command, columns: result.columns, rows: result.rows, row_count: result.rowCount, truncated: result.truncated };
      } catch (error) {
        if (error instanceof SqlRefusedError) throw new ControlError('PGLEASE_SQL_REFUSED', error.message, 'sql');
        const sqlError = templateSqlError(error, request.body.sql);
        // connection failures (the lease at its connection limit, the database down) keep their own codes
        if (sqlError && !/^(08|53|57P)/.test(sqlError.postgres.code)) throw new SqlFailedError(sqlError);
        throw error;
      }
    },
  );
}
