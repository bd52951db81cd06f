/**
 * One lease's document for one caller, from the REST API's own lease directory and schema
 * caches: the lease role's view with the lease token (or the admin token), the anonymous role's
 * without one, and PostgREST's errors for a lease that is not live (404) or a wrong token (401).
 *
 * The schema is introspected no earlier than the request: a document is requested rarely next to
 * reads (PostgREST also reads the catalog for its root on every request), and so it is exact even
 * in the instant between a DDL commit and its notification, or when the service is not a superuser
 * and has no DDL event trigger. The load goes through the shared cache, so REST reads see it too.
 * Measured on the OpenAPI test fixture (9 relations, 9 functions, a 176 kB document): 11.7 ms per
 * document over HTTP, of which 6.2 ms introspection and 2.4 ms generation; a one-row read is 1.7 ms.
 */
import type { RestService } from '../rest-service.js';
import { negotiate, parseAccept, CONTENT_TYPE } from '../request/headers.js';
import type { RestResponse } from '../response/read-response.js';
import { RestError } from '../response/errors.js';
import { leaseOpenApiDocument } from './document.js';
import { declaredRoleName, leaseRequestRoles } from '../../auth/roles.js';
import type { OpenApiDocument } from './types.js';

export interface LeaseDocumentRequest {
  leaseId: string;
  /** The bearer token or apikey; null when none was sent. */
  token: string | null;
  /** The lease's REST base URL as the client reaches it: the document's server. */
  restUrl: string;
  /** pglease's version, for info.version. */
  version: string;
}

export async function leaseDocument(rest: RestService, request: LeaseDocumentRequest): Promise<OpenApiDocument> {
  const startedAt = Date.now();
  const caller = await rest.caller(request.leaseId, request.token);
  const { lease } = caller;
  const cache = await rest.schemas.reload(rest.schemaKey(caller), leaseRequestRoles(lease), startedAt);
  return leaseOpenApiDocument({
    cache,
    role: caller.role,
    authenticated: caller.authenticated,
    roleIsOwner: caller.role === lease.role,
    declaredRoles: lease.userRoles.map((name) => ({ name, role: declaredRoleName(lease.role, name) })),
    ignorePrivileges: lease.apiSettings.openapi_mode === 'ignore-privileges',
    restUrl: request.restUrl,
    title: `pglease lease ${lease.id}`,
    version: request.version,
  });
}

/**
 * `GET {rest_url}/`: the document as `application/openapi+json` (also for `*\/*`) or
 * `application/json`; any other Accept is 406 PGRST107, as PostgREST answers.
 */
export async function rootResponse(rest: RestService, request: LeaseDocumentRequest & { method: string; accept: string | string[] | undefined }): Promise<RestResponse> {
  if (request.method !== 'GET' && request.method !== 'HEAD') throw new RestError('PGRST117', `Unsupported HTTP method: ${request.method}`);
  // openapi-mode disabled: PostgREST's root answers 404 PGRST126
  const lease = (await rest.caller(request.leaseId, request.token)).lease;
  if (lease.apiSettings.openapi_mode === 'disabled') throw new RestError('PGRST126');
  const mediaType = negotiate(parseAccept(request.accept), ['openapi', 'json']);
  const body = JSON.stringify(await leaseDocument(rest, request));
  return { status: 200, headers: { 'content-type': CONTENT_TYPE[mediaType.kind] }, body: request.method === 'HEAD' ? null : body };
}
