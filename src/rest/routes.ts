/**
 * The REST API as an encapsulated Fastify plugin: every method on `{rest_url}` and below
 * (`/v1/leases/:id/rest/...`) goes to RestService, with request bodies kept as raw text (issue 5
 * parses them) and every error answered in PostgREST's `{ code, message, details, hint }` format.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { bearerToken } from '../auth/caller.js';
import type { ServiceContext } from '../service-context.js';
import type { Host } from '../db/host.js';
import { listenForChanges, type CacheListener } from './notifications.js';
import { RestError, toErrorResponse } from './response/errors.js';
import { ServerTiming } from './response/server-timing.js';
import { RestService } from './rest-service.js';
import { rootResponse } from './openapi/lease-document.js';
import { publicBaseUrl } from '../control/lease-routes.js';
import { serviceVersion } from '../control/openapi.js';

const METHODS = ['GET', 'HEAD', 'POST', 'PATCH', 'PUT', 'DELETE', 'OPTIONS'] as const;
const PREFIX = /^\/v1\/leases\/[^/?]*\/rest/;
/** `{rest_url}` itself or anything below it. */
const REST_PATH = /^\/v1\/leases\/[^/?]*\/rest(?:[/?]|$)/;

/** Whether a request URL is in the REST API, whose errors have PostgREST's shape. */
export function isRestUrl(url: string): boolean {
  return REST_PATH.test(url);
}

/**
 * The REST API's answer to a request Fastify refused before routing it (a path that is not valid
 * percent-encoding, a lease id over the router's length limit), whose method no route has (TRACE,
 * say), or that arrives while the server closes: PostgREST's format, as for every other REST error.
 */
export function sendUnroutedRestError(request: FastifyRequest, reply: FastifyReply, kind: 'bad-url' | 'method' | 'closing'): FastifyReply {
  const error =
    kind === 'method'
      ? new RestError('PGRST117', `Unsupported HTTP method: ${request.method}`)
      : kind === 'closing'
        ? new RestError('PGRST000', undefined, 'pglease is shutting down', 'Retry shortly', { headers: { 'Retry-After': '5' } })
        : new RestError('PGRST125');
  return sendError(request, reply, error, false);
}

function sendError(request: FastifyRequest, reply: FastifyReply, error: unknown, authenticated: boolean, timing?: ServerTiming): FastifyReply {
  const response = toErrorResponse(error, authenticated);
  if (timing) {
    timing.mark('response');
    reply.header('server-timing', timing.header());
  }
  if (response.status >= 500 && response.body.code === 'PGLEASE_INTERNAL') request.log.error({ err: error, method: request.method, url: request.url }, 'REST API error');
  return reply.code(response.status).headers(response.headers).type('application/json; charset=utf-8').send(JSON.stringify(response.body));
}

export interface RestRoutesOptions {
  log?: (message: string) => void;
}

/**
 * The REST services of every lease host (each its connection pools, schema caches and LISTEN for
 * DDL notifications): the control host's made at start, another host's on the first request
 * for one of its leases. The OpenAPI routes and the studio's feed take a lease's from here too.
 */
export interface RestServices {
  /** The control host's. */
  control: RestService;
  /** The REST service of `host` (made now if this is its first use). */
  ofHost: (host: Host) => Promise<RestService>;
  /** The REST service of lease `id`'s host; PostgREST's 503 (PGRST000) when that host is unreachable. */
  ofLease: (id: string) => Promise<RestService>;
}

export async function restRoutes(app: FastifyInstance, context: ServiceContext, options: RestRoutesOptions = {}): Promise<RestServices> {
  const log = options.log ?? ((message: string) => app.log.info(message));
  const connections = context.config.restConnections;
  const serviceOptions = {
    adminToken: context.config.adminToken,
    jwt: { allowHttpJwks: context.config.jwksAllowHttp },
    onSchemaLoad: (seconds: number) => context.metrics.schemaLoaded(seconds),
    schemaCacheBytes: context.config.restSchemaCacheBytes,
    log,
    pools: {
      maxConnections: connections.perLease,
      maxTotalConnections: connections.total === undefined ? undefined : Math.max(connections.total, connections.perLease),
      maxActiveStatements: connections.activeStatements,
    },
  };
  const service = new RestService(context.host, serviceOptions);
  // one REST service per lease host (its connection pools, schema caches and DDL notifications),
  // made on the first request for a lease there; the control host's is made at once
  const services = new Map<Host, Promise<{ service: RestService; listener: CacheListener }>>();
  services.set(context.host, listenForChanges(context.host, service, log).then((listener) => ({ service, listener })));
  await services.get(context.host);
  const serviceOfHost = async (host: Host): Promise<RestService> => {
    let made = services.get(host);
    if (!made) {
      const hostService = new RestService(host, serviceOptions);
      made = listenForChanges(host, hostService, log).then((listener) => ({ service: hostService, listener }));
      made.catch(() => services.delete(host));
      services.set(host, made);
    }
    return (await made).service;
  };
  const serviceOfLease = async (id: string): Promise<RestService> => {
    const at = context.fleet.leaseHost(id);
    if (at.kind === 'ready') return at.services.host === context.host ? service : serviceOfHost(at.services.host);
    if (at.kind === 'unknown') return service;
    throw new RestError('PGRST000', undefined, `the lease's host "${at.name}" is ${at.state} since ${at.since.toISOString()}`, 'Retry shortly', { headers: { 'Retry-After': '5' } });
  };
  app.addHook('onClose', async () => {
    for (const made of services.values()) {
      const opened = await made.catch(() => undefined);
      if (!opened) continue;
      await opened.listener.close();
      await opened.service.close();
    }
  });

  app.removeAllContentTypeParsers();
  // bodies stay text (request/body.ts reads them); the common types are named so that Fastify
  // finds their parser by a map lookup instead of parsing the Content-Type for the catch-all
  const asText = (_request: FastifyRequest, body: string, done: (error: Error | null, body?: string) => void) => done(null, body);
  app.addContentTypeParser(['application/json', 'text/csv', 'application/x-www-form-urlencoded', 'text/plain'], { parseAs: 'string' }, asText);
  app.addContentTypeParser('*', { parseAs: 'string' }, asText);
  app.setErrorHandler((error, request, reply) => sendError(request, reply, error, false));

  const serverTiming = context.config.serverTiming;
  const handler = async (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply) => {
    const timing = serverTiming ? new ServerTiming() : undefined;
    const [pathWithPrefix, query = ''] = splitUrl(request.url);
    const token = bearerToken(request);
    try {
      const service = await serviceOfLease(request.params.id);
      const path = pathWithPrefix.replace(PREFIX, '');
      // PostgREST's root is the lease's OpenAPI document (src/rest/openapi)
      const response = (path === '' || path === '/') && request.method !== 'OPTIONS'
        ? await rootResponse(service, {
            leaseId: request.params.id,
            token,
            restUrl: `${publicBaseUrl(context, request)}/v1/leases/${request.params.id.toLowerCase()}/rest`,
            version: serviceVersion,
            method: request.method,
            accept: request.headers.accept,
            headers: request.headers,
          })
        : await service.handle({
            leaseId: request.params.id,
            token,
            method: request.method,
            path,
            query,
            headers: request.headers,
            ...(typeof request.body === 'string' ? { body: request.body } : {}),
            timing,
          });
      reply.code(response.status).headers(response.headers);
      if (timing) {
        if (path === '' || path === '/') timing.mark('document');
        reply.header('server-timing', timing.header());
      }
      // no payload at all: Fastify would label an empty string text/plain
      return response.body === null ? reply.send() : reply.send(response.body);
    } catch (error) {
      return sendError(request, reply, error, token !== null, timing);
    }
  };

  for (const url of ['/v1/leases/:id/rest', '/v1/leases/:id/rest/*']) {
    app.route({ method: [...METHODS], url, schema: { hide: true }, handler });
  }
  return { control: service, ofHost: serviceOfHost, ofLease: serviceOfLease };
}

function splitUrl(url: string): [string, string] {
  const question = url.indexOf('?');
  return question === -1 ? [url, ''] : [url.slice(0, question), url.slice(question + 1)];
}
