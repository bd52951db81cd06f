/**
 * Assembles the HTTP service from its plugins. Each plugin is encapsulated with its own body
 * parsing and error format: the control API answers `{ code, message }`, the REST API (src/rest)
 * answers in PostgREST's format.
 */
import { DURATION_EXAMPLES, DURATION_PATTERN } from './duration.js';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { ServiceContext } from './service-context.js';
import { ControlError } from './control/errors.js';
import { NO_CONTROL_CHARACTERS } from './control/schemas.js';
import { healthRoutes } from './control/health-routes.js';
import { jobRoutes } from './control/job-routes.js';
import { leaseRoutes } from './control/lease-routes.js';
import { leaseStatsRoutes } from './control/lease-stats-routes.js';
import { snapshotRoutes } from './control/snapshot-routes.js';
import { templateRoutes } from './control/template-routes.js';
import { planRoutes } from './control/plan-routes.js';
import { hostRoutes } from './control/host-routes.js';
import { observationRoutes } from './control/observation-routes.js';
import { registerServiceOpenApi } from './control/openapi.js';
import { registerCors } from './cors.js';
import { isRestUrl, restRoutes, sendUnroutedRestError } from './rest/routes.js';
import type { RestServices } from './rest/routes.js';
import { leaseDocsRoutes } from './control/lease-docs-routes.js';
import { studioFeedRoutes } from './web/studio/change-feed.js';
import { studioRoutes } from './web/studio/studio-routes.js';
import { dashboardRoutes } from './web/dashboard/dashboard-routes.js';
import { metricsRoutes } from './control/metrics-routes.js';
import { caRoutes } from './control/ca-routes.js';
import { createOutcome } from './metrics/metrics.js';

export interface ServerOptions {
  /** Fastify logger setting; false in tests. */
  logger?: boolean | { level: string; stream?: { write: (line: string) => void } };
  /** A logger made beforehand (src/log.ts), shared with what runs before the server exists; wins over `logger`. */
  loggerInstance?: FastifyBaseLogger;
}

/** How long a closing server keeps answering (503) requests that reach it before idle connections close. */
const CLOSE_GRACE_MS = 250;

/** Postgres and network error codes that mean "the database is unavailable", not "we have a bug". */
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', '57P01', '57P02', '57P03', '53300', '08000', '08003', '08006']);

function isUnavailable(error: { code?: unknown; message?: string }): boolean {
  return (typeof error.code === 'string' && UNAVAILABLE_CODES.has(error.code)) || /Connection terminated|timeout exceeded when trying to connect/i.test(error.message ?? '');
}

type ValidationIssue = { keyword: string; instancePath: string; params: Record<string, unknown>; message?: string };

/**
 * What is wrong with a value, in words a client can act on. Ajv's own messages name no allowed
 * value ("must be equal to constant") and repeat the field ("must have required property 'ttl'").
 * A choice between constants (a TypeBox union of literals) fails once per alternative: all of
 * them are listed.
 */
function validationProblem(first: ValidationIssue, all: ValidationIssue[]): string {
  const allowed = all
    .filter((issue) => issue.instancePath === first.instancePath && (issue.keyword === 'const' || issue.keyword === 'enum'))
    .flatMap((issue) => (issue.keyword === 'const' ? [issue.params.allowedValue] : ((issue.params.allowedValues as unknown[]) ?? [])));
  if (allowed.length > 0) return `must be ${allowed.length === 1 ? '' : 'one of '}${allowed.map((value) => JSON.stringify(value)).join(', ')}`;
  if (all.some((issue) => issue.instancePath === first.instancePath && issue.keyword === 'pattern' && issue.params.pattern === DURATION_PATTERN)) {
    return `must be a whole number of seconds or a duration: ${DURATION_EXAMPLES}`;
  }
  if (first.keyword === 'required') return 'is required';
  if (first.keyword === 'pattern' && first.params.pattern === NO_CONTROL_CHARACTERS) return 'must not contain control characters (line breaks, tabs, escapes)';
  if (first.keyword === 'type') {
    const type = String(first.params.type);
    return `must be ${type === 'object' ? 'a JSON object' : type === 'integer' ? 'a whole number' : `a ${type}`}`;
  }
  return first.message ?? 'is invalid';
}

/** Turns anything thrown in the control API into `{ code, message[, field] }` with the right status. */
export function toControlError(error: FastifyError | ControlError | Error): ControlError {
  if (error instanceof ControlError) return error;
  const fastifyError = error as FastifyError & { validation?: ValidationIssue[] };
  if (fastifyError.validation && fastifyError.validation.length > 0) {
    const first = fastifyError.validation[0]!;
    const context = fastifyError.validationContext ?? 'body';
    if (first.keyword === 'additionalProperty' || first.keyword === 'additionalProperties') {
      const name = String(first.params.additionalProperty);
      return context === 'querystring'
        ? new ControlError('PGLEASE_INVALID_PARAMETER', `Unknown query parameter "${name}"`, name)
        : new ControlError('PGLEASE_UNKNOWN_FIELD', `Unknown field "${name}"`, name);
    }
    const field = first.instancePath.replace(/^\//, '').replace(/\//g, '.') || (first.keyword === 'required' ? String(first.params.missingProperty) : '');
    const where = field === '' ? `the ${context}` : `"${field}"`;
    const message = `${where} ${validationProblem(first, fastifyError.validation)}`;
    return context === 'querystring' || context === 'params'
      ? new ControlError('PGLEASE_INVALID_PARAMETER', message, field || undefined)
      : new ControlError('PGLEASE_INVALID_FIELD', message, field || undefined);
  }
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ControlError('PGLEASE_BODY_TOO_LARGE', fastifyError.message);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ControlError('PGLEASE_UNSUPPORTED_MEDIA_TYPE', 'Send the request body as application/json');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ControlError('PGLEASE_INVALID_JSON', fastifyError.message);
  }
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return new ControlError(fastifyError.statusCode === 415 ? 'PGLEASE_UNSUPPORTED_MEDIA_TYPE' : 'PGLEASE_INVALID_FIELD', fastifyError.message);
  }
  // node-postgres's query_timeout (src/db/host.ts): the server took no answer back in time
  if (error.message === 'Query read timeout') {
    return new ControlError('PGLEASE_NOT_READY', 'The lease database did not answer in time (PGLEASE_DB_TIMEOUT); retry shortly', undefined, { 'Retry-After': 5 });
  }
  if (isUnavailable(error as { code?: unknown })) {
    return new ControlError('PGLEASE_NOT_READY', 'The lease database is not reachable right now; retry shortly', undefined, { 'Retry-After': 5 });
  }
  // insufficient resources (53xxx: out of memory, of shared memory for locks, of disk): the
  // request was fine, Postgres could not do it now
  // and lock_not_available (a drop's lock_timeout: something held the lease's objects)
  const sqlState = (error as { code?: unknown }).code;
  if (typeof sqlState === 'string' && (sqlState.startsWith('53') || sqlState === '55P03')) {
    return new ControlError('PGLEASE_NOT_READY', `Postgres could not do this now: ${error.message}; retry later`, undefined, { 'Retry-After': 30 });
  }
  return new ControlError('PGLEASE_INTERNAL');
}

export function sendControlError(request: FastifyRequest, reply: FastifyReply, error: FastifyError | Error): FastifyReply {
  const controlError = toControlError(error);
  // 503s are expected conditions (the database full or restarting): a line each, no stack
  if (controlError.status === 503) request.log.warn({ code: controlError.code, method: request.method, url: request.url }, controlError.message);
  else if (controlError.status >= 500) request.log.error({ err: error, method: request.method, url: request.url }, 'control API error');
  return reply.code(controlError.status).headers(controlError.headers).type('application/json; charset=utf-8').send(controlError.toJSON());
}

/** The control API's JSON body parser: an empty body counts as no body; bad JSON is PGLEASE_INVALID_JSON. */
function controlJsonParser(_request: FastifyRequest, body: string, done: (error: Error | null, value?: unknown) => void): void {
  if (body.trim() === '') return done(null, undefined);
  try {
    done(null, JSON.parse(body));
  } catch (error) {
    done(new ControlError('PGLEASE_INVALID_JSON', `The request body is not valid JSON: ${(error as Error).message}`));
  }
}

export async function buildServer(context: ServiceContext, options: ServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    ...(options.loggerInstance ? { loggerInstance: options.loggerInstance } : { logger: options.logger ?? false }),
    // Per-request logging is opt-in, as in PostgREST: a per-request child logger and two log calls
    // cost about 7% of a small REST request's throughput even when the level drops the lines.
    // Without it, errors are logged by the server's logger, with the request's method and URL.
    logController: new LogController({ disableRequestLogging: !context.config.logRequests }),
    ...(context.config.logRequests ? {} : { childLoggerFactory: (logger: FastifyBaseLogger) => logger }),
    bodyLimit: context.config.bodyLimit,
    // Our schemas say exactly what is accepted: no silent removal of unknown fields, no "60" → 60.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    // while closing, requests still arriving on open connections get our 503 (the hook below),
    // not Fastify's own body; idle connections are closed by our sweep, after a grace period
    return503OnClosing: false,
    forceCloseConnections: false,
    // request.ip names the client for throttling: X-Forwarded-For counts only behind a trusted proxy
    trustProxy: context.config.trustProxy,
    // a URL the router cannot take (bad percent-encoding, an over-long lease id) gets our error
    // format, not Fastify's
    frameworkErrors: (error, request, reply) => {
      if (isRestUrl(request.url)) return sendUnroutedRestError(request, reply, 'bad-url');
      if (error.code !== 'FST_ERR_MAX_PARAM_LENGTH') return sendControlError(request, reply, new ControlError('PGLEASE_BAD_URL'));
      // an id or name longer than any that exists: what the route would answer for an unknown one
      const kind = request.url.startsWith('/v1/templates/') ? 'PGLEASE_TEMPLATE_NOT_FOUND' : request.url.startsWith('/v1/jobs/') ? 'PGLEASE_JOB_NOT_FOUND' : request.url.startsWith('/v1/plans/') ? 'PGLEASE_PLAN_NOT_FOUND' : 'PGLEASE_NOT_FOUND';
      return sendControlError(request, reply, new ControlError(kind));
    },
  });

  // Keep-alive connections would hold a graceful close open for the keep-alive timeout (72 s):
  // once closing, every response says `Connection: close` and idle sockets are closed as they free up.
  // For CLOSE_GRACE_MS after the close begins the server still listens and answers every new
  // request 503 with Retry-After: a request already on its way (on a connection accepted just
  // before, or a keep-alive one) gets that answer instead of a reset connection. Then Node stops
  // listening and closes idle connections; the sweep closes the others as they free up.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
    await new Promise((resolve) => setTimeout(resolve, CLOSE_GRACE_MS));
    const sweep = setInterval(() => app.server.closeIdleConnections(), 50);
    app.server.once('close', () => clearInterval(sweep));
  });
  app.addHook('onRequest', (request, reply, done) => {
    if (!closing) return done();
    const retry = { 'Retry-After': 5 };
    if (isRestUrl(request.url)) sendUnroutedRestError(request, reply, 'closing');
    else sendControlError(request, reply, new ControlError('PGLEASE_NOT_READY', 'pglease is shutting down; retry shortly', undefined, retry));
  });
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });

  // metrics: a counter and a histogram per request, nothing else on the hot path (src/metrics)
  const { metrics } = context;
  app.addHook('onResponse', (request, reply, done) => {
    const seconds = reply.elapsedTime / 1000;
    if (isRestUrl(request.url)) metrics.restRequest(request.method, reply.statusCode, seconds);
    else if (request.method === 'POST' && request.routeOptions.url === '/v1/leases') metrics.leaseCreated(createOutcome(reply.statusCode), seconds);
    done();
  });

  // Server-Timing (PGLEASE_SERVER_TIMING): the REST API marks its phases itself (src/rest/response/server-timing.ts);
  // other answers carry the time to their serialization. Off, no hook is added.
  if (context.config.serverTiming) {
    app.addHook('onSend', (request, reply, payload, done) => {
      if (!reply.hasHeader('server-timing') && !isRestUrl(request.url)) reply.header('server-timing', `app;dur=${reply.elapsedTime.toFixed(3)}`);
      done(null, payload);
    });
  }

  // the control API's routes by path, so that a known path asked with another method answers 405
  // with Allow (RFC 9110) rather than "no endpoint"
  const controlRoutes: { path: RegExp; methods: string[] }[] = [];
  app.addHook('onRoute', (route) => {
    if (isRestUrl(route.url) || route.url.includes('*')) return;
    const methods = ([] as string[]).concat(route.method).filter((method) => method !== 'HEAD' && method !== 'OPTIONS');
    const pattern = route.url.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/:[A-Za-z_]\w*/g, '[^/]+');
    controlRoutes.push({ path: new RegExp(`^${pattern}/?$`), methods });
  });
  const allowedMethods = (url: string): string[] => {
    const path = url.split('?')[0]!;
    return [...new Set(controlRoutes.filter((route) => route.path.test(path)).flatMap((route) => route.methods))];
  };

  registerCors(app);
  await registerServiceOpenApi(app);
  await app.register(async (control) => {
    control.removeAllContentTypeParsers();
    control.addContentTypeParser('application/json', { parseAs: 'string' }, controlJsonParser);
    control.setErrorHandler((error, request, reply) => sendControlError(request, reply, error as Error));
    await healthRoutes(control, context);
    await leaseRoutes(control, context);
    await leaseStatsRoutes(control, context);
    await snapshotRoutes(control, context);
    await templateRoutes(control, context);
    await planRoutes(control, context);
    await hostRoutes(control, context);
    await observationRoutes(control, context);
    await jobRoutes(control, context);
    await studioRoutes(control, context);
    await metricsRoutes(control, context);
    await dashboardRoutes(control, context);
    await caRoutes(control, context);
  });
  // the PostgREST-compatible API under /v1/leases/:id/rest: its own body parsing and error format
  let restServices: RestServices | undefined;
  await app.register(async (rest) => {
    restServices = await restRoutes(rest, context);
  });
  // each lease's OpenAPI document and Swagger UI: control API errors, the REST API's schema caches
  // (of the lease's own host)
  await app.register(async (docs) => {
    docs.setErrorHandler((error, request, reply) => sendControlError(request, reply, error as Error));
    await leaseDocsRoutes(docs, context, restServices!);
    await studioFeedRoutes(docs, context, restServices!);
  });

  const rest = restServices!.control;
  context.metrics.attach({
    pool: context.host.pool,
    restConnections: () => ({ inUse: rest.pools.budget.inUse, idle: rest.pools.idleConnections, waiting: rest.pools.budget.waiting, budget: rest.pools.budget.max }),
    restStatements: () => ({ running: rest.pools.gate.inFlight, waiting: rest.pools.gate.waiting, limit: rest.pools.gate.limit, slowReleased: rest.pools.gate.slowReleased }),
    warmPools: () => context.leasePool.readyCounts(),
    warmPoolCreates: () => context.leasePool.creates,
  });

  app.setNotFoundHandler((request, reply) => {
    // every path under a rest_url has a route for each method PostgREST serves: others end here
    if (isRestUrl(request.url)) return sendUnroutedRestError(request, reply, 'method');
    const path = request.url.split('?')[0];
    const allowed = allowedMethods(request.url);
    if (allowed.length > 0) {
      const allow = allowed.join(', ');
      return sendControlError(request, reply, new ControlError('PGLEASE_METHOD_NOT_ALLOWED', `${path} answers ${allow}, not ${request.method}`, undefined, { Allow: allow }));
    }
    return sendControlError(request, reply, new ControlError('PGLEASE_ROUTE_NOT_FOUND', `No endpoint ${request.method} ${path}`));
  });
  app.setErrorHandler((error, request, reply) => sendControlError(request, reply, error as Error));
  return app;
}
