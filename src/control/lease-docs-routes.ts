/**
 * Each lease's API description: `GET /v1/leases/:id/openapi.json` (OpenAPI 3.1, from the REST
 * API's schema cache, see src/rest/openapi) and `GET /v1/leases/:id/docs` (Swagger UI on it).
 * With the lease token the document is the lease role's; without one, the anonymous role's.
 * Both read the lease's own host (its REST service's lease directory and schema cache): an
 * unreachable host is 503 PGLEASE_HOST_UNAVAILABLE naming it, as on the rest of the control API.
 */
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { ServiceContext } from '../service-context.js';
import type { RestService } from '../rest/rest-service.js';
import type { RestServices } from '../rest/routes.js';
import { hostOfLease } from './lease-access.js';
import { leaseDocument } from '../rest/openapi/lease-document.js';
import { RestError } from '../rest/response/errors.js';
import { bearerToken } from '../auth/caller.js';
import { ControlError } from './errors.js';
import { LEASE_DOCS_SCRIPT, leaseDocsHtml, leaseGoneHtml } from './lease-docs-page.js';
import { publicBaseUrl } from './lease-routes.js';
import { serviceVersion } from './openapi.js';
import { ErrorSchema, LeaseParams } from './schemas.js';

/** Whether the request is a browser's (it asks for HTML before JSON). */
function prefersHtml(request: FastifyRequest): boolean {
  const accept = request.headers.accept ?? '';
  return /text\/html/.test(accept) && !/^\s*application\/json/.test(accept);
}

/** Whether an If-None-Match header names `etag` (or is `*`); weak comparison, as RFC 9110 asks for GET. */
function matchesEtag(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  const opaque = (tag: string) => tag.trim().replace(/^W\//, '');
  return header.split(',').some((tag) => tag.trim() === '*' || opaque(tag) === opaque(etag));
}

/** The REST API's lease errors, in the control API's words. */
function toControlError(error: unknown): unknown {
  if (!(error instanceof RestError)) return error;
  if (error.code === 'PGLEASE_NOT_FOUND') return new ControlError('PGLEASE_NOT_FOUND', error.message);
  if (error.code === 'PGRST301') return new ControlError('PGLEASE_UNAUTHORIZED', 'The token is not this lease’s: send its own token, or none for the anonymous role’s document');
  return error;
}

export async function leaseDocsRoutes(app: FastifyInstance, context: ServiceContext, rest: RestServices): Promise<void> {
  const routes = app.withTypeProvider<TypeBoxTypeProvider>();
  /** The REST service of the lease's host: 404 for an unregistered host, 503 for an unreachable one. */
  const restOfLease = (id: string): Promise<RestService> => rest.ofHost(hostOfLease(context, id).host);
  const restUrl = (request: FastifyRequest, id: string) => `${publicBaseUrl(context, request)}/v1/leases/${id}/rest`;

  routes.get(
    '/v1/leases/:id/openapi.json',
    {
      schema: {
        summary: 'OpenAPI document of a lease’s REST API',
        description:
          'OpenAPI 3.1 for the lease’s tables, views and functions, generated from its schema as it is now. ' +
          'With the lease token: the operations the lease role may perform; without: those of its anonymous role. ' +
          'The same document as `GET {rest_url}/`.',
        tags: ['leases'],
        security: [{ bearer: [] }, {}],
        params: LeaseParams,
        response: {
          200: Type.Object({}, { additionalProperties: true, description: 'An OpenAPI 3.1 document (with an ETag: send it back in If-None-Match for a 304 while it is unchanged)' }),
          304: Type.Null({ description: 'Unchanged since the ETag sent in If-None-Match' }),
          401: ErrorSchema,
          404: ErrorSchema,
        },
      },
    },
    async (request, reply) => {
      try {
        const document = await leaseDocument(await restOfLease(request.params.id), {
          leaseId: request.params.id,
          token: bearerToken(request),
          restUrl: restUrl(request, request.params.id.toLowerCase()),
          version: serviceVersion,
        });
        // already JSON: a string is sent as is, not through the response schema's serializer
        const body = JSON.stringify(document);
        // the studio asks again after each change its feed tells, or every few seconds without
        // a feed: an unchanged document is a 304 of no body rather than the whole document again
        const etag = `W/"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
        reply.header('etag', etag).header('cache-control', 'no-cache');
        if (matchesEtag(request.headers['if-none-match'], etag)) return reply.code(304).send(null);
        return reply.type('application/json; charset=utf-8').send(body);
      } catch (error) {
        throw toControlError(error);
      }
    },
  );

  routes.get('/v1/leases/:id/docs', { schema: { hide: true, params: LeaseParams } }, async (request, reply) => {
    const at = context.fleet.leaseHost(request.params.id);
    const lease = at.kind === 'unknown' ? undefined : await (await restOfLease(request.params.id)).directory.find(request.params.id);
    if (!lease) {
      // a browser gets a page that says so; a script, the control API's error
      if (prefersHtml(request)) return reply.code(404).type('text/html; charset=utf-8').send(leaseGoneHtml(request.params.id));
      throw new ControlError('PGLEASE_NOT_FOUND', `No live lease ${request.params.id}`);
    }
    return reply.type('text/html; charset=utf-8').send(
      leaseDocsHtml({ leaseId: lease.id, documentUrl: `/v1/leases/${lease.id}/openapi.json`, scriptUrl: `/v1/leases/${lease.id}/docs/docs.js` }),
    );
  });

  routes.get('/v1/leases/:id/docs/docs.js', { schema: { hide: true, params: LeaseParams } }, async (_request, reply) =>
    reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(LEASE_DOCS_SCRIPT),
  );
}
