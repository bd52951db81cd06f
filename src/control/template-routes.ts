/**
 * The template API (/v1/templates): register seed SQL once, then create leases with
 * `{"template": name}`. The admin token registers global templates; a lease token registers
 * templates private to that lease (usable with its token while it is active).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type, type Static } from '@sinclair/typebox';
import type { ServiceContext } from '../service-context.js';
import { leaseSeedError, TEMPLATE_NAME, TemplateChecksBusyError, TemplateSqlError, type TemplateRow, type TemplateScope } from '../templates/template-store.js';
import { identifyCaller, type Caller } from '../auth/caller.js';
import { ControlError } from './errors.js';
import { ErrorSchema } from './schemas.js';

const TemplateName = Type.String({
  pattern: TEMPLATE_NAME.source,
  description: 'Letters, digits, "_", "." and "-", at most 63 characters, starting with a letter or digit',
});

export const RegisterTemplateBody = Type.Object(
  {
    name: TemplateName,
    sql: Type.String({ minLength: 1, description: 'Seed SQL (schema and data), run as the lease role in the lease schema (a database lease: in its database)' }),
    kind: Type.Optional(
      Type.Union([Type.Literal('schema'), Type.Literal('database')], {
        description: 'The kind of scratch lease the SQL is checked on (default schema): database for a seed that needs what only a database lease may do (extensions, schemas)',
      }),
    ),
  },
  { additionalProperties: false },
);
export type RegisterTemplateBody = Static<typeof RegisterTemplateBody>;

export const TemplateSchema = Type.Object({
  name: Type.String(),
  sha256: Type.String({ description: 'SHA-256 of the SQL: identifies this version' }),
  scope: Type.Union([Type.Literal('global'), Type.Literal('private')]),
  lease_id: Type.Union([Type.String({ format: 'uuid' }), Type.Null()], { description: 'Owner of a private template' }),
  bytes: Type.Integer(),
  created_at: Type.String({ format: 'date-time' }),
  registered_at: Type.String({ format: 'date-time', description: 'When this version last became current' }),
  sql: Type.Optional(Type.String()),
});
export type TemplateJson = Static<typeof TemplateSchema>;

const TemplateParams = Type.Object({ name: Type.String() });

/** PGLEASE_TEMPLATE_INVALID with the Postgres error in its body. */
export class TemplateInvalidError extends ControlError {
  /** `field`: sql when registering, template when leasing from a template whose seed failed. */
  constructor(
    readonly sqlError: TemplateSqlError,
    field: 'sql' | 'template' = 'sql',
  ) {
    const { line, column } = sqlError.postgres;
    super('PGLEASE_TEMPLATE_INVALID', `${field}: ${sqlError.message}${line ? ` (line ${line}, column ${column})` : ''}`, field);
  }

  override toJSON() {
    return { ...super.toJSON(), postgres: this.sqlError.postgres };
  }
}

function templateJson(template: TemplateRow): TemplateJson {
  return {
    name: template.name,
    sha256: template.sha256,
    scope: template.owner_lease_id === null ? 'global' : 'private',
    lease_id: template.owner_lease_id,
    bytes: template.bytes,
    created_at: template.created_at.toISOString(),
    registered_at: template.registered_at.toISOString(),
    ...(template.sql === undefined ? {} : { sql: template.sql }),
  };
}

/**
 * The active lease whose token the caller sent; null for the admin and for no token. A token that
 * opens nothing is refused (401), not taken for no token: it is most likely a mistyped admin token.
 */
export async function callerLease(context: ServiceContext, caller: Caller): Promise<string | null> {
  if (caller.kind !== 'token') return null;
  const leaseId = await context.templates.leaseOfToken(caller.token);
  if (leaseId === undefined) throw new ControlError('PGLEASE_UNAUTHORIZED', 'This token is neither the admin token nor the token of an active lease');
  return leaseId;
}

/** The admin's scope is global; a lease token's is its lease. */
async function requireScope(context: ServiceContext, request: FastifyRequest): Promise<TemplateScope> {
  const caller = identifyCaller(request, context.config.adminToken);
  if (caller.kind === 'anonymous') {
    throw new ControlError('PGLEASE_UNAUTHORIZED', 'Templates need the admin token, or the token of an active lease for a private template');
  }
  const leaseId = await callerLease(context, caller);
  return leaseId === null ? { kind: 'global' } : { kind: 'lease', leaseId };
}

/**
 * For POST /v1/leases {"template": name}: the version the caller gets (with `callerLeaseId`, the
 * lease whose token it sent, that lease's private template of the name first; then the global
 * one), or a 400 naming the field.
 */
export async function leaseTemplate(context: ServiceContext, name: string, callerLeaseId: string | null): Promise<TemplateRow> {
  const template = TEMPLATE_NAME.test(name) ? await context.templates.resolve(name, callerLeaseId) : undefined;
  if (!template) {
    throw new ControlError('PGLEASE_INVALID_FIELD', `template: no template named "${name}" (register it with POST /v1/templates)`, 'template');
  }
  return template;
}

/** A seed that failed while leasing, as the 400 it is; undefined for any other error. */
export function templateLeaseError(error: unknown): TemplateInvalidError | undefined {
  const sqlError = leaseSeedError(error);
  return sqlError && new TemplateInvalidError(sqlError, 'template');
}

export async function templateRoutes(app: FastifyInstance, context: ServiceContext): Promise<void> {
  const routes = app.withTypeProvider<TypeBoxTypeProvider>();
  const { templates } = context;
  const errors = { 401: ErrorSchema, 404: ErrorSchema };

  routes.post(
    '/v1/templates',
    {
      schema: {
        summary: 'Register a template',
        description:
          'Stores seed SQL after applying it to a scratch lease, in that lease\'s own session, which is then dropped; SQL that fails is rejected with ' +
          'Postgres\'s error (code, message, position). The SQL\'s SHA-256 identifies a version: 201 when the name\'s ' +
          'current version is now this SQL (new, or an earlier version registered again), 200 when it already was (nothing ' +
          'changes). Admin token: a global template. Lease token: a template private to that lease, which is removed when that ' +
          'lease ends (renew the lease to keep it).',
        tags: ['templates'],
        security: [{ bearer: [] }],
        body: RegisterTemplateBody,
        response: { 200: TemplateSchema, 201: TemplateSchema, 400: ErrorSchema, 429: ErrorSchema, ...errors },
      },
    },
    async (request, reply) => {
      const scope = await requireScope(context, request);
      // whitespace (or nothing) would register a template that seeds nothing: surely a mistake
      if (request.body.sql.trim() === '') throw new ControlError('PGLEASE_INVALID_FIELD', 'sql: the template has no SQL, only white space', 'sql');
      try {
        // a byte order mark (editors on Windows write one) is no SQL: Postgres would call the first
        // statement a syntax error at a character nobody can see
        const sql = request.body.sql.replace(/^\uFEFF/, '');
        const { template, created } = await templates.register({ ...request.body, sql, scope, clientIp: request.ip });
        return reply.code(created ? 201 : 200).send(templateJson(template));
      } catch (error) {
        if (error instanceof TemplateSqlError) throw new TemplateInvalidError(error);
        if (error instanceof TemplateChecksBusyError) throw new ControlError('PGLEASE_RATE_LIMITED', error.message, undefined, { 'Retry-After': 5 });
        throw error;
      }
    },
  );

  routes.get(
    '/v1/templates',
    {
      schema: {
        summary: 'List templates',
        description: 'Current versions of the global templates, and of the caller\'s private ones.',
        tags: ['templates'],
        security: [{ bearer: [] }],
        response: { 200: Type.Object({ items: Type.Array(TemplateSchema) }), ...errors },
      },
    },
    async (request) => {
      const scope = await requireScope(context, request);
      const rows = await templates.list(scope.kind === 'lease' ? scope.leaseId : null);
      return { items: rows.map(templateJson) };
    },
  );

  routes.get(
    '/v1/templates/:name',
    {
      schema: {
        summary: 'Get a template with its SQL',
        tags: ['templates'],
        security: [{ bearer: [] }],
        params: TemplateParams,
        response: { 200: TemplateSchema, ...errors },
      },
    },
    async (request) => {
      const scope = await requireScope(context, request);
      const { name } = request.params;
      const template = TEMPLATE_NAME.test(name) ? await templates.resolve(name, scope.kind === 'lease' ? scope.leaseId : null, true) : undefined;
      if (!template) throw new ControlError('PGLEASE_TEMPLATE_NOT_FOUND', `No template named "${name}" visible to this token`);
      return templateJson(template);
    },
  );

  routes.delete(
    '/v1/templates/:name',
    {
      schema: {
        summary: 'Remove a template (every version)',
        description: 'The admin removes global templates; a lease token removes its private ones. Leases made from it are unaffected.',
        tags: ['templates'],
        security: [{ bearer: [] }],
        params: TemplateParams,
        response: { 204: Type.Null({ description: 'Removed' }), ...errors },
      },
    },
    async (request, reply) => {
      const scope = await requireScope(context, request);
      const { name } = request.params;
      if (!TEMPLATE_NAME.test(name) || !(await templates.remove(name, scope))) {
        throw new ControlError('PGLEASE_TEMPLATE_NOT_FOUND', `No ${scope.kind === 'global' ? 'global' : 'private'} template named "${name}"`);
      }
      return reply.code(204).send(null);
    },
  );
}
