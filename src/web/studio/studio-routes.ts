/**
 * The lease studio's server side: `POST /v1/leases/:id/sql` (its SQL box). The endpoint takes the
 * lease token (or the admin token) and runs the statement as the lease (./lease-sql.ts): the
 * service's own connections only look the lease up in pglease.leases.
 */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { ServiceContext } from '../../service-context.js';
import { identifyCaller } from '../../control/auth.js';
import { ControlError } from '../../control/errors.js';
import { ErrorSchema, LeaseParams } from '../../control/schemas.js';
import { templateSqlError, type TemplateSqlError } from '../../templates/template-sql-error.js';
import { MAX_ROWS, MAX_SQL_LENGTH, runLeaseSql, SqlRefusedError } from './lease-sql.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

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
  const { leases, config, host } = context;

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
      const caller = identifyCaller(request, config.adminToken);
      if (caller.kind === 'anonymous') throw new ControlError('PGLEASE_UNAUTHORIZED');
      const { id } = request.params;
      const lease = UUID.test(id) ? await leases.find(id.toLowerCase(), caller.kind === 'admin' ? null : caller.token) : undefined;
      if (!lease) throw new ControlError('PGLEASE_NOT_FOUND');
      if (lease.state !== 'active') throw new ControlError('PGLEASE_LEASE_NOT_ACTIVE', `The lease is ${lease.state}`);
      try {
        const result = await runLeaseSql(host.databaseUrl, host.authenticatorKey, lease, request.body.sql, { write: request.body.write === true });
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
