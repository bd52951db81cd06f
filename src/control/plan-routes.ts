/**
 * The plans API (/v1/plans): anyone may list the plans and their limits; creating, changing and
 * deleting one needs the admin token. The limits themselves are enforced by the observer
 * (size, rows: sql/observe.sql, sql/quota.sql) and by the lease's roles (connections, statement
 * timeout: sql/plans.sql); a create chooses one (src/control/plan-choice.ts).
 */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type, type Static } from '@sinclair/typebox';
import type { ServiceContext } from '../service-context.js';
import { PlanStore, type Plan } from '../leases/plan-store.js';
import { identifyCaller } from '../auth/caller.js';
import { ControlError } from './errors.js';
import { ErrorSchema } from './schemas.js';
import { DEFAULT_PLAN } from './plan-choice.js';

const PLAN_NAME = '^[a-z][a-z0-9-]{0,62}$';
const MaybeInteger = (minimum: number, maximum: number, description: string) =>
  Type.Union([Type.Integer({ minimum, maximum }), Type.Null()], { description });

export const PlanSchema = Type.Object({
  name: Type.String(),
  description: Type.String(),
  max_size_bytes: Type.Integer({ description: 'Tables, indexes and TOAST of the lease schema; over it, writes are refused' }),
  max_rows: Type.Union([Type.Integer(), Type.Null()], { description: 'Rows (the statistics\' estimate); null: no row limit' }),
  max_connections: Type.Union([Type.Integer(), Type.Null()]),
  max_ttl_seconds: Type.Union([Type.Integer(), Type.Null()]),
  statement_timeout: Type.Union([Type.String(), Type.Null()]),
  token_may_choose: Type.Boolean({ description: 'A caller with a lease token may choose it at create (else only the admin)' }),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});
export type PlanJson = Static<typeof PlanSchema>;

export const PutPlanBody = Type.Object(
  {
    description: Type.Optional(Type.String({ maxLength: 500 })),
    max_size_bytes: Type.Integer({ minimum: 65_536, maximum: 2 ** 50, description: 'At least 64 kB' }),
    max_rows: Type.Optional(MaybeInteger(1, 2 ** 50, 'null or absent: no row limit')),
    max_connections: Type.Optional(MaybeInteger(2, 10_000, 'null or absent: PGLEASE_LEASE_CONNECTIONS')),
    max_ttl_seconds: Type.Optional(MaybeInteger(1, 10 * 365 * 86_400, 'null or absent: PGLEASE_MAX_TTL')),
    statement_timeout: Type.Optional(Type.Union([Type.String({ pattern: '^\\d+(ms|s|min|h)?$' }), Type.Null()], { description: 'e.g. 30s; null or absent: PGLEASE_LEASE_STATEMENT_TIMEOUT' })),
    token_may_choose: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
const PlanParams = Type.Object({ name: Type.String() });

export function planJson(plan: Plan): PlanJson {
  return { ...plan, created_at: plan.created_at.toISOString(), updated_at: plan.updated_at.toISOString() };
}

export async function planRoutes(app: FastifyInstance, context: ServiceContext): Promise<void> {
  const routes = app.withTypeProvider<TypeBoxTypeProvider>();
  const plans = new PlanStore(context.host.pool);

  /**
   * A changed plan on every other host that has a copy of it (written at a create placed there,
   * src/control/lease-routes.ts): the copy is replaced and its live leases there changed, as on
   * the control database, each host in its own transaction. A host without a copy has no lease on
   * the plan (its next create on it writes the copy). A host that cannot be reached is 503 naming
   * it once the others are done: the PUT is idempotent, so sending it again once the host is back
   * finishes the change. Returns the leases updated.
   */
  async function changeOnOtherHosts(name: string, input: Parameters<PlanStore['put']>[1]): Promise<number> {
    if (!context.fleet.spread) return 0;
    const hosts = (await context.fleet.list()).filter(({ entry }) => entry.url !== null);
    const outcomes = await Promise.allSettled(
      hosts.map(async ({ entry, services }) => {
        if (!services) throw new Error(`host "${entry.name}" is ${entry.state}`);
        if (!(await services.plans.find(name))) return 0;
        return (await services.plans.put(name, input, context.config.leaseLimits.statementTimeout)).leasesUpdated;
      }),
    );
    const unreached = hosts.filter((_host, index) => outcomes[index]!.status === 'rejected').map(({ entry }) => `"${entry.name}"`);
    if (unreached.length > 0) {
      throw new ControlError(
        'PGLEASE_HOST_UNAVAILABLE',
        `Plan "${name}" changed on the control database and the reachable hosts, not on ${unreached.join(', ')}: send the same PUT again once ${unreached.length === 1 ? 'it is' : 'they are'} back`,
        undefined,
        { 'Retry-After': 5 },
      );
    }
    return outcomes.reduce((sum, outcome) => sum + (outcome.status === 'fulfilled' ? outcome.value : 0), 0);
  }
  const requireAdmin = (request: Parameters<typeof identifyCaller>[0]) => {
    const caller = identifyCaller(request, context.config.adminToken);
    if (caller.kind === 'anonymous') throw new ControlError('PGLEASE_UNAUTHORIZED');
    if (caller.kind !== 'admin') throw new ControlError('PGLEASE_FORBIDDEN', 'Changing plans needs the admin token (PGLEASE_ADMIN_TOKEN)');
  };
  const checkName = (name: string) => {
    if (!new RegExp(PLAN_NAME).test(name)) throw new ControlError('PGLEASE_INVALID_PARAMETER', 'a plan name is 1 to 63 lower-case letters, digits and dashes, starting with a letter', 'name');
  };

  routes.get(
    '/v1/plans',
    { schema: { summary: 'List plans', tags: ['plans'], response: { 200: Type.Object({ items: Type.Array(PlanSchema) }) } } },
    async () => ({ items: (await plans.list()).map(planJson) }),
  );

  routes.get(
    '/v1/plans/:name',
    { schema: { summary: 'Get a plan', tags: ['plans'], params: PlanParams, response: { 200: PlanSchema, 400: ErrorSchema, 404: ErrorSchema } } },
    async (request) => {
      checkName(request.params.name);
      const plan = await plans.find(request.params.name);
      if (!plan) throw new ControlError('PGLEASE_PLAN_NOT_FOUND', `No plan named "${request.params.name}"`);
      return planJson(plan);
    },
  );

  routes.put(
    '/v1/plans/:name',
    {
      schema: {
        summary: 'Create or change a plan (admin)',
        description:
          'Changed limits apply to the live leases on the plan at once: size and rows at their next observation (within a second), a shorter TTL maximum to their expiry, a lower connection limit and the statement timeout to their roles (new sessions). A higher connection limit applies to leases created from then on (their client\'s connection budget was counted with the old one). The number of live leases updated is in the Pglease-Leases-Updated header.',
        tags: ['plans'],
        security: [{ bearer: [] }],
        params: PlanParams,
        body: PutPlanBody,
        response: { 200: PlanSchema, 201: PlanSchema, 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema },
      },
    },
    async (request, reply) => {
      requireAdmin(request);
      checkName(request.params.name);
      const body = request.body;
      const input = {
        description: body.description ?? '',
        max_size_bytes: body.max_size_bytes,
        max_rows: body.max_rows ?? null,
        max_connections: body.max_connections ?? null,
        max_ttl_seconds: body.max_ttl_seconds ?? null,
        statement_timeout: body.statement_timeout ?? null,
        token_may_choose: body.token_may_choose ?? false,
      };
      const { plan, created, leasesUpdated } = await plans.put(request.params.name, input, context.config.leaseLimits.statementTimeout);
      const elsewhere = created ? 0 : await changeOnOtherHosts(request.params.name, input);
      return reply.code(created ? 201 : 200).header('pglease-leases-updated', String(leasesUpdated + elsewhere)).send(planJson(plan));
    },
  );

  routes.delete(
    '/v1/plans/:name',
    {
      schema: {
        summary: 'Delete a plan (admin)',
        tags: ['plans'],
        security: [{ bearer: [] }],
        params: PlanParams,
        response: { 204: Type.Null(), 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (request, reply) => {
      requireAdmin(request);
      checkName(request.params.name);
      // every lease row defaults to it (leases.plan): without it no lease could be made
      if (request.params.name === DEFAULT_PLAN) throw new ControlError('PGLEASE_PLAN_IN_USE', `Plan "${DEFAULT_PLAN}" is every lease's unless another is chosen: change its limits instead`);
      const outcome = await plans.remove(request.params.name);
      if (outcome === 'missing') throw new ControlError('PGLEASE_PLAN_NOT_FOUND', `No plan named "${request.params.name}"`);
      if (outcome === 'in-use') throw new ControlError('PGLEASE_PLAN_IN_USE', `Leases are on plan "${request.params.name}" (live, or in the history until PGLEASE_HISTORY_RETENTION prunes them)`);
      return reply.code(204).send(null);
    },
  );
}
