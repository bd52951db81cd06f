/**
 * The lease API (/v1/leases): validates input, calls the lease store, shapes the answer.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { ServiceContext } from '../service-context.js';
import type { CreatedLease, CreateLeaseInput, LeaseRow } from '../leases/lease-store.js';
import { durationSeconds, formatSeconds } from '../duration.js';
import { identifyCaller, type Caller } from '../auth/caller.js';
import { choosePlan, DEFAULT_PLAN } from './plan-choice.js';
import { readLeaseUsage } from '../leases/lease-usage.js';
import { PlanStore, type Plan } from '../leases/plan-store.js';
import { ControlError } from './errors.js';
import { leaseJson, leaseUrl } from './lease-json.js';
import { limitErrorAcrossHosts, limitsAcrossHosts } from '../hosts/client-limits.js';
import { createLimitsFor, isLocalDeveloper, limitError, rateLimitHeaders } from './rate-limit.js';
import { callerLease, leaseTemplate, templateLeaseError } from './template-routes.js';
import {
  CreateLeaseBody,
  CreateLeaseQuery,
  ErrorSchema,
  LeaseListSchema,
  LeaseParams,
  LeaseSchema,
  ListLeasesQuery,
  RenewLeaseBody,
  ResetCredentialsBody,
  DeclareRoleBody,
  DeclaredRoleSchema,
  JwtSecretSchema,
  MintJwtBody,
  MintedJwtSchema,
  ForkLeaseBody,
  ForkedLeaseSchema,
} from './schemas.js';
import { CopySourceGone } from '../leases/copy-bracket.js';
import { NoHostWithRoom } from '../hosts/fleet.js';
import type { HostServices } from '../hosts/host-services.js';
import { authorizedLease as sharedAuthorizedLease, hostOfLease } from './lease-access.js';
import { mintJwt } from '../auth/mint.js';
import { ApiSettingsPatchSchema, apiSettingsProblem } from '../leases/api-settings.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema };

/** The scheme and host clients reach us at, for rest_url. */
export function publicBaseUrl(context: ServiceContext, request: FastifyRequest): string {
  return context.config.publicUrl ?? `${request.protocol}://${request.host}`;
}

/**
 * Accepts a TTL (seconds, or a duration the schema has checked the form of: src/duration.ts) for
 * this caller and the lease's plan (when it has a TTL maximum), in seconds, or explains, naming the
 * field, why not.
 */
function checkTtl(context: ServiceContext, requested: number | string | null, isAdmin: boolean, plan?: Pick<Plan, 'name' | 'max_ttl_seconds'>): number | null {
  const planMax = plan?.max_ttl_seconds ?? null;
  if (requested === null) {
    if (!isAdmin) throw new ControlError('PGLEASE_FORBIDDEN', 'ttl: null (a lease that never expires) needs the admin token', 'ttl');
    if (planMax !== null) throw new ControlError('PGLEASE_INVALID_FIELD', `ttl: plan "${plan!.name}" allows at most ${planMax} seconds, so a lease on it must expire`, 'ttl');
    return null;
  }
  const ttl = typeof requested === 'string' ? durationSeconds(requested) : requested;
  if (ttl < 1) throw new ControlError('PGLEASE_INVALID_FIELD', `ttl must be at least 1 second, got ${JSON.stringify(requested)}`, 'ttl');
  const max = context.config.maxTtlSeconds;
  if (ttl > max) throw new ControlError('PGLEASE_INVALID_FIELD', `ttl must be at most ${formatSeconds(max)} (PGLEASE_MAX_TTL), got ${formatSeconds(ttl)}`, 'ttl');
  if (planMax !== null && ttl > planMax) throw new ControlError('PGLEASE_INVALID_FIELD', `ttl must be at most ${formatSeconds(planMax)} on plan "${plan!.name}", got ${formatSeconds(ttl)}`, 'ttl');
  return ttl;
}

/** The plan a create gets (src/control/plan-choice.ts), checked against pglease.plans. */
async function planOfCreate(plans: PlanStore, requested: string | undefined, caller: Caller, localDeveloper: boolean): Promise<Plan> {
  const choice = choosePlan(requested, caller, localDeveloper);
  if ('refused' in choice) throw new ControlError('PGLEASE_FORBIDDEN', choice.refused, 'plan');
  const plan = (await plans.find(choice.plan)) ?? (requested === undefined ? await plans.find(DEFAULT_PLAN) : undefined);
  if (!plan) throw new ControlError('PGLEASE_INVALID_FIELD', `no plan named "${choice.plan}" (GET /v1/plans lists them)`, 'plan');
  if (choice.needsTokenChoice && !plan.token_may_choose) {
    throw new ControlError('PGLEASE_FORBIDDEN', `plan "${plan.name}" may be chosen only with the admin token`, 'plan');
  }
  return plan;
}

/**
 * Plans are defined on the control database (PUT /v1/plans); a lease on another host is put on
 * the host's copy, which is written from the control's when it is missing or differs.
 */
async function planOnHost(at: HostServices, plan: Plan, defaultStatementTimeout: string): Promise<void> {
  const { name, created_at: _created, updated_at: _updated, ...limits } = plan;
  const there = await at.plans.find(name);
  const same = there && Object.entries(limits).every(([key, value]) => there[key as keyof Plan] === value);
  if (!same) await at.plans.put(name, limits, defaultStatementTimeout);
}

/** Whether a plan changes anything a lease does not already have from its create. */
function planNeedsApplying(plan: Plan): boolean {
  return plan.name !== DEFAULT_PLAN || plan.max_connections !== null || plan.statement_timeout !== null || plan.max_ttl_seconds !== null;
}

export async function leaseRoutes(app: FastifyInstance, context: ServiceContext): Promise<void> {
  const routes = app.withTypeProvider<TypeBoxTypeProvider>();
  const { leases, host, config } = context;
  const plans = new PlanStore(host.pool);

  /** The lease at :id if the caller may act on it; 401/404 otherwise (never revealing existence). */
  async function authorizedLease(request: FastifyRequest, id: string): Promise<{ lease: LeaseRow; isAdmin: boolean; at: HostServices }> {
    return sharedAuthorizedLease(context, request, id);
  }

  /**
   * The lease of a create, from a template if one is named. A caller without a lease token sees
   * only global templates: when this process knows the name's current version, its pooled lease
   * is claimed at once (the claim checks the version is still current); otherwise, or when none
   * can be claimed, the name is resolved (the caller's lease's private template comes first) and
   * the lease claimed or provisioned.
   */
  async function createLease(callerLeaseId: string | null, templateName: string | undefined, input: CreateLeaseInput): Promise<{ result: CreatedLease; services: HostServices }> {
    // per-client limits count the client's leases on every host (src/hosts/client-limits.ts)
    const placed = (create: (at: HostServices, input: CreateLeaseInput) => Promise<CreatedLease>) =>
      context.fleet.place(async (at) => {
        const limits = await limitsAcrossHosts(context.fleet.reachableServices(at), input.clientIp, input.limits);
        const created = await create(at, limits === input.limits ? input : { ...input, limits }).catch((error: unknown) =>
          Promise.reject(limitErrorAcrossHosts(error, input.clientIp, input.limits, limits)),
        );
        // the hourly quota the client has, not what was left of it for this host
        if (created.quota && limits !== input.limits && input.limits) created.quota = { ...created.quota, rate_limit: input.limits.perHour };
        return created;
      }).catch((error: unknown) => {
        if (error instanceof NoHostWithRoom) throw new ControlError('PGLEASE_CAPACITY', `No lease host can take a lease now: ${error.message}`, undefined, { 'Retry-After': 5 });
        throw error;
      });
    // a plain lease goes where placement puts it
    if (templateName === undefined) return placed((at, limited) => at.leasePool.create(limited));
    const control = context.fleet.control;
    if (!context.fleet.spread) return { result: await createFromTemplate(callerLeaseId, templateName, input), services: control };
    // a global template's lease too, its version copied to the chosen host (the control host
    // claims from its warm pools as before); a private template's stays with its owner's templates,
    // on the control host
    const template = await leaseTemplate(context, templateName, callerLeaseId);
    if (template.owner_lease_id !== null) return { result: await createFromTemplate(callerLeaseId, templateName, input), services: control };
    return placed(async (at, limited) =>
      at === control
        ? createFromTemplate(callerLeaseId, templateName, limited)
        : at.leasePool.create({ ...limited, template: { id: await context.templates.copyTo(at.host, template), pooled: false } }),
    );
  }

  async function createFromTemplate(callerLeaseId: string | null, templateName: string, input: CreateLeaseInput): Promise<CreatedLease> {
    const remembered = callerLeaseId === null ? context.templates.rememberedGlobal(templateName) : undefined;
    const claimed = remembered && (await context.leasePool.claim({ ...input, template: { id: remembered.id, pooled: true } }));
    if (claimed) return claimed;
    const fromResolved = async () => {
      const template = await leaseTemplate(context, templateName, callerLeaseId);
      return context.leasePool.create({ ...input, template: { id: template.id, pooled: template.owner_lease_id === null } });
    };
    try {
      return await fromResolved();
    } catch (error) {
      if ((error as { code?: string }).code !== 'PGLTS') throw error;
      // removed while this create seeded from it (the lease made for it is dropped): the name is
      // resolved once more, as for a create that came a moment later
      return fromResolved();
    }
  }

  routes.post(
    '/v1/leases',
    {
      schema: {
        summary: 'Create a lease',
        description:
          'Creates a schema (kind schema, the default) or a database (kind database), a login role and an anonymous role on the host and answers with a connection URL. ' +
          'With `Accept: text/plain` or `?format=url` the body is only the URL and a newline; the lease id and token ' +
          'are then in the `Pglease-Lease-Id` and `Pglease-Token` headers (and `Location`).',
        tags: ['leases'],
        body: CreateLeaseBody,
        querystring: CreateLeaseQuery,
        response: { 201: LeaseSchema, ...errors, 429: ErrorSchema, 503: ErrorSchema },
      },
      // `curl -X POST .../v1/leases` sends no body at all: that means "all defaults"
      preValidation: async (request) => {
        if (request.body === undefined) request.body = {};
      },
    },
    async (request, reply) => {
      const caller = identifyCaller(request, config.adminToken);
      // the lease whose token was sent (its private templates come first); an unknown token is
      // refused, since its caller most likely expects the admin's rights (ttl null, no throttling)
      const callerLeaseId = await callerLease(context, caller);
      const body = request.body;
      const localDeveloper = isLocalDeveloper(request, config.httpHost);
      const plan = await planOfCreate(plans, body.plan, caller, localDeveloper);
      const requestedTtl = body.ttl === undefined ? Math.min(config.defaultTtlSeconds, plan.max_ttl_seconds ?? Infinity) : body.ttl;
      const ttl = checkTtl(context, requestedTtl, caller.kind === 'admin', plan);
      const input: CreateLeaseInput = {
        kind: body.kind ?? config.defaultKind,
        ttlSeconds: ttl,
        label: body.name ?? null,
        clientIp: request.ip,
        limits: createLimitsFor(config.createLimits, caller, localDeveloper),
      };
      if (body.settings) checkSettings(body.settings, 'settings.');
      const { result: created, services: at } = await createLease(callerLeaseId, body.template, input).catch((error: unknown) =>
        Promise.reject(limitError(error) ?? templateLeaseError(error) ?? error),
      );
      // the JWT secret is in the create's answer only: the rows read again below lack it
      const jwtSecret = created.lease.jwt_secret ?? null;
      if (planNeedsApplying(plan)) {
        // a lease whose plan cannot be put on it is not handed out: it is released
        try {
          if (at.host !== host) await planOnHost(at, plan, config.leaseLimits.statementTimeout);
          await at.plans.apply(created.lease.id, plan.name);
        } catch (error) {
          await at.leases.release(created.lease.id, request.ip).catch(() => undefined);
          throw error;
        }
        created.lease = { ...((await at.leases.find(created.lease.id, null)) ?? created.lease), jwt_secret: jwtSecret };
      }
      if (body.settings && Object.keys(body.settings).length > 0) {
        const configured = await at.leases.setApiSettings(created.lease.id, body.settings);
        if (configured) created.lease = { ...configured, jwt_secret: jwtSecret };
      }
      const json = leaseJson(at.host, created.lease, publicBaseUrl(context, request), created);
      reply.code(201).header('Location', `/v1/leases/${created.lease.id}`).headers(rateLimitHeaders(created.quota));
      if (request.query.format === 'url' || prefersPlainText(request)) {
        // the body holds only the URL, for psql "$(curl ...)": the id and token, without which the
        // lease could not be released before it expires, travel in headers
        reply.header('Pglease-Lease-Id', created.lease.id).header('Pglease-Token', json.token);
        // a string body with a text type is sent as is; the 201 schema describes the JSON form
        return reply.type('text/plain; charset=utf-8').send((json.url + '\n') as unknown as typeof json);
      }
      return json;
    },
  );

  routes.get(
    '/v1/leases',
    {
      schema: {
        summary: 'List leases (admin)',
        tags: ['leases'],
        security: [{ bearer: [] }],
        querystring: ListLeasesQuery,
        response: { 200: LeaseListSchema, ...errors },
      },
    },
    async (request) => {
      const caller = identifyCaller(request, config.adminToken);
      if (caller.kind === 'anonymous') throw new ControlError('PGLEASE_UNAUTHORIZED', 'Listing leases needs the admin token (PGLEASE_ADMIN_TOKEN): send "Authorization: Bearer <admin token>"');
      if (caller.kind !== 'admin') throw new ControlError('PGLEASE_FORBIDDEN', 'Listing leases needs the admin token (PGLEASE_ADMIN_TOKEN), and this token is not it');
      const limit = request.query.limit === undefined ? 100 : Number(request.query.limit);
      if (!(limit >= 1 && limit <= 1000)) throw new ControlError('PGLEASE_INVALID_PARAMETER', 'limit must be between 1 and 1000', 'limit');
      const cursor = request.query.cursor ?? null;
      if (cursor !== null && !UUID.test(cursor)) throw new ControlError('PGLEASE_INVALID_PARAMETER', 'cursor must be the `next` value of a previous page', 'cursor');
      const base = publicBaseUrl(context, request);
      const state = request.query.state ?? null;
      if (!context.fleet.spread) {
        const page = await leases.list({ limit, cursor, state });
        return { items: page.items.map((lease) => leaseJson(host, lease, base)), next: page.next };
      }
      // many hosts: each host's page after the cursor (placed in time by its own host), merged
      const cursorCreatedAt = cursor === null ? undefined : (await hostOfLease(context, cursor).leases.find(cursor, null))?.created_at;
      if (cursor !== null && cursorCreatedAt === undefined) return { items: [], next: null };
      const pages = await Promise.all(
        context.fleet.openServices().map(async (at) => {
          const page = await at.leases.list({ limit, cursor, cursorCreatedAt, state });
          return { items: page.items.map((lease) => leaseJson(at.host, lease, base)), more: page.next !== null };
        }),
      );
      const merged = pages.flatMap((page) => page.items).sort((a, b) => b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id));
      const items = merged.slice(0, limit);
      return { items, next: merged.length > limit || pages.some((page) => page.more) ? items[items.length - 1]!.id : null };
    },
  );

  routes.get(
    '/v1/leases/:id',
    {
      schema: {
        summary: 'Get a lease',
        description: 'The lease with its state and expiry, and while it is live its usage against its plan (from its latest observation); never its password.',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        response: { 200: LeaseSchema, ...errors },
      },
    },
    async (request) => {
      const { lease, at } = await authorizedLease(request, request.params.id);
      const json = leaseJson(at.host, lease, publicBaseUrl(context, request));
      if (lease.state !== 'active') return json;
      const usage = await readLeaseUsage(at.host.pool, lease.id, config.jobs.observeIntervalSeconds);
      return {
        ...json,
        usage: {
          status: usage.status,
          size_bytes: usage.size_bytes,
          size_limit_bytes: usage.size_limit,
          rows: usage.rows_estimate,
          rows_limit: usage.max_rows,
          connections: usage.connections,
          observed_at: usage.observed_at?.toISOString() ?? null,
        },
      };
    },
  );

  routes.post(
    '/v1/leases/:id/renew',
    {
      schema: {
        summary: 'Renew a lease',
        description: 'Moves expires_at to now + ttl (bounded by PGLEASE_MAX_TTL).',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        body: RenewLeaseBody,
        response: { 200: LeaseSchema, 409: ErrorSchema, ...errors },
      },
    },
    async (request) => {
      const { lease, isAdmin, at } = await authorizedLease(request, request.params.id);
      const ttl = checkTtl(context, request.body.ttl, isAdmin, await plans.find(lease.plan));
      const renewed = await at.leases.renew(lease.id, ttl, request.ip);
      if (!renewed) throw new ControlError('PGLEASE_LEASE_NOT_ACTIVE', `The lease is ${lease.state}; only an active lease can be renewed`);
      return leaseJson(at.host, renewed, publicBaseUrl(context, request));
    },
  );

  routes.post(
    '/v1/leases/:id/fork',
    {
      schema: {
        summary: 'Fork a database lease',
        description:
          'Makes a new database lease holding a copy of this one\'s objects and data at this moment, owned by its own roles, ' +
          'with its own URL, token and TTL. The source\'s open sessions are ended for the copy (a database cannot be copied ' +
          'with sessions on it; `source_sessions_ended` says how many) and it is closed to new ones for the tens of ms the ' +
          'copy takes. Counts as a create for throttling. A schema lease cannot be forked (409).',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        body: ForkLeaseBody,
        response: { 201: ForkedLeaseSchema, 409: ErrorSchema, 429: ErrorSchema, 503: ErrorSchema, ...errors },
      },
      preValidation: async (request) => {
        if (request.body === undefined) request.body = {};
      },
    },
    async (request, reply) => {
      const { lease: source, isAdmin, at } = await authorizedLease(request, request.params.id);
      if (source.state !== 'active') throw new ControlError('PGLEASE_LEASE_NOT_ACTIVE', `The lease is ${source.state}; only an active lease can be forked`);
      if (source.kind !== 'database') {
        throw new ControlError('PGLEASE_FORK_NEEDS_DATABASE', 'Only a database lease can be forked (its copy is CREATE DATABASE ... TEMPLATE); create leases with "kind": "database" to fork them');
      }
      const caller = identifyCaller(request, config.adminToken);
      const localDeveloper = isLocalDeveloper(request, config.httpHost);
      const plan = await plans.find(source.plan);
      const requested = request.body.ttl === undefined ? Math.min(config.defaultTtlSeconds, plan?.max_ttl_seconds ?? Infinity) : request.body.ttl;
      const ttl = checkTtl(context, requested, isAdmin, plan);
      const input: CreateLeaseInput = {
        kind: 'database',
        ttlSeconds: ttl,
        label: request.body.name ?? null,
        clientIp: request.ip,
        limits: createLimitsFor(config.createLimits, caller, localDeveloper),
      };
      const forked = await at.leases.fork(source.id, input).catch((error: unknown) => {
        if (error instanceof CopySourceGone || (error as { code?: string }).code === 'PGLTG') {
          throw new ControlError('PGLEASE_LEASE_NOT_ACTIVE', 'The lease ended while it was being forked');
        }
        if ((error as { code?: string }).code === '55006') {
          throw new ControlError('PGLEASE_LEASE_BUSY', 'The lease\'s database could not be copied now: another copy of it (fork, snapshot or restore) is under way, or a session of the lease outlived the 5 s it was given to end; try again');
        }
        throw limitError(error) ?? error;
      });
      const jwtSecret = forked.lease.jwt_secret ?? null;
      if (plan && planNeedsApplying(plan)) {
        try {
          if (at.host !== host) await planOnHost(at, plan, config.leaseLimits.statementTimeout);
          await at.plans.apply(forked.lease.id, plan.name);
        } catch (error) {
          await at.leases.release(forked.lease.id, request.ip).catch(() => undefined);
          throw error;
        }
        forked.lease = { ...((await at.leases.find(forked.lease.id, null)) ?? forked.lease), jwt_secret: jwtSecret };
      }
      const json = leaseJson(at.host, forked.lease, publicBaseUrl(context, request), forked);
      reply.code(201).header('Location', `/v1/leases/${forked.lease.id}`).headers(rateLimitHeaders(forked.quota));
      return { ...json, forked_from: source.id, source_sessions_ended: forked.sourceSessionsEnded, copied_from_snapshot: forked.fromSnapshot };
    },
  );

  routes.post(
    '/v1/leases/:id/credentials',
    {
      schema: {
        summary: 'Reset a lease’s password',
        description:
          'Gives the lease’s login role a new password and answers with the lease and its new `url` (the only place it is shown), ' +
          'for a holder who lost the URL. The token is unchanged. `cut_sessions: true` also ends the sessions opened with the old one. ' +
          'With `Accept: text/plain` the body is only the URL and a newline.',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        body: ResetCredentialsBody,
        response: { 200: LeaseSchema, 409: ErrorSchema, ...errors },
      },
      preValidation: async (request) => {
        if (request.body === undefined) request.body = {};
      },
    },
    async (request, reply) => {
      const { lease, at } = await authorizedLease(request, request.params.id);
      const reset = await at.leases.resetPassword(lease.id, request.body.cut_sessions === true);
      if (!reset) throw new ControlError('PGLEASE_LEASE_NOT_ACTIVE', `The lease is ${lease.state}; only an active lease gets a new password`);
      const json = leaseJson(at.host, reset.lease, publicBaseUrl(context, request));
      json.url = leaseUrl(at.host, reset.lease, reset.password);
      if (prefersPlainText(request)) return reply.type('text/plain; charset=utf-8').send((json.url + '\n') as unknown as typeof json);
      return json;
    },
  );

  routes.post(
    '/v1/leases/:id/roles',
    {
      schema: {
        summary: 'Declare a role for the lease\'s JWTs',
        description:
          'Makes the NOLOGIN role `<role>_<name>`, which REST requests with a JWT naming `name` (in its role claim) run as. ' +
          'It has USAGE on the lease\'s schema and nothing else: GRANT to it and name it in row-level security policies. ' +
          'Dropped with the lease. Declaring a role twice is harmless; at most 32 per lease.',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        body: DeclareRoleBody,
        response: { 201: DeclaredRoleSchema, 409: ErrorSchema, ...errors },
      },
    },
    async (request, reply) => {
      const { lease, at } = await authorizedLease(request, request.params.id);
      const name = request.body.name;
      const role = await at.leases.declareRole(lease.id, name).catch((error: unknown) => {
        const code = (error as { code?: string }).code;
        if (code === '22023' || code === '54000') throw new ControlError('PGLEASE_INVALID_FIELD', (error as Error).message, 'name');
        throw error;
      });
      if (role === undefined) throw new ControlError('PGLEASE_LEASE_NOT_ACTIVE', `The lease is ${lease.state}; only an active lease can declare roles`);
      return reply.code(201).send({ name, role });
    },
  );

  routes.post(
    '/v1/leases/:id/jwt-secret',
    {
      schema: {
        summary: 'Rotate the lease\'s JWT secret',
        description: 'A new HMAC secret for the JWTs of the lease\'s users, returned this once; JWTs signed with the old one are refused from now on.',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        response: { 200: JwtSecretSchema, 409: ErrorSchema, ...errors },
      },
    },
    async (request) => {
      const { lease, at } = await authorizedLease(request, request.params.id);
      const secret = await at.leases.rotateJwtSecret(lease.id);
      if (secret === undefined) throw new ControlError('PGLEASE_LEASE_NOT_ACTIVE', `The lease is ${lease.state}; only an active lease has a JWT secret`);
      return { jwt_secret: secret };
    },
  );

  routes.post(
    '/v1/leases/:id/jwt',
    {
      schema: {
        summary: 'Mint a JWT for one of the lease\'s users',
        description:
          'A JWT with the given claims, signed (HS256) with the lease\'s secret, for `pglease jwt` and scripts: ' +
          'send it as `Authorization: Bearer <jwt>` to rest_url. An app\'s identity provider does the same with the secret.',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        body: MintJwtBody,
        response: { 200: MintedJwtSchema, 409: ErrorSchema, ...errors },
      },
    },
    async (request) => {
      const { lease, at } = await authorizedLease(request, request.params.id);
      const secret = await at.leases.jwtSecret(lease.id);
      if (secret === undefined) throw new ControlError('PGLEASE_LEASE_NOT_ACTIVE', `The lease is ${lease.state}; only an active lease has a JWT secret`);
      return { token: await mintJwt(secret, request.body.claims, { expiresInSeconds: request.body.expires_in }) };
    },
  );

  routes.patch(
    '/v1/leases/:id/settings',
    {
      schema: {
        summary: 'Change the lease\'s REST API settings',
        description: 'PostgREST\'s settings for this lease (jwt-aud as `jwt_aud`, ...); a setting given null goes back to its default.',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        body: ApiSettingsPatchSchema,
        response: { 200: LeaseSchema, 409: ErrorSchema, ...errors },
      },
    },
    async (request) => {
      const { lease, at } = await authorizedLease(request, request.params.id);
      checkSettings(request.body);
      const changed = await at.leases.setApiSettings(lease.id, request.body);
      if (!changed) throw new ControlError('PGLEASE_LEASE_NOT_ACTIVE', `The lease is ${lease.state}; only an active lease's settings can change`);
      return leaseJson(at.host, changed, publicBaseUrl(context, request));
    },
  );

  routes.delete(
    '/v1/leases/:id',
    {
      schema: {
        summary: 'Release a lease',
        description: 'Terminates the lease’s sessions and drops its schema and roles.',
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        response: { 204: Type.Null({ description: 'Released' }), ...errors },
      },
    },
    async (request, reply) => {
      const { lease, at } = await authorizedLease(request, request.params.id);
      const released = await at.leases.release(lease.id, request.ip);
      if (!released) throw new ControlError('PGLEASE_NOT_FOUND', `No live lease ${lease.id}: it is ${lease.state === 'active' ? 'already being released' : lease.state}`);
      return reply.code(204).send(null);
    },
  );
}

/** Refuses settings the schema cannot judge (a claim path that does not parse, a JWKS URL that is no URL). */
function checkSettings(settings: Record<string, unknown>, fieldPrefix = ''): void {
  const problem = apiSettingsProblem(settings);
  if (problem) throw new ControlError('PGLEASE_INVALID_FIELD', problem.message, fieldPrefix + problem.field);
}

/** True when the client asked for text/plain over JSON (curl -H 'Accept: text/plain'). */
function prefersPlainText(request: FastifyRequest): boolean {
  const accept = request.headers.accept;
  if (!accept) return false;
  const types = accept.split(',').map((part) => part.split(';')[0]!.trim().toLowerCase());
  const plain = types.indexOf('text/plain');
  const json = types.findIndex((type) => type === 'application/json' || type === '*/*');
  return plain !== -1 && (json === -1 || plain < json);
}
