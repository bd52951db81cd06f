/**
 * A lease's schema cache → its OpenAPI 3.1 document, as seen by one role: the lease role when the
 * request carries the lease token, its anonymous role otherwise (PostgREST's root does the same
 * with its JWT role). Pure: the same cache, role and URL give the same document.
 */
import type { SchemaCache } from '../schema/types.js';
import { componentName, restPath } from './names.js';
import { ERROR_SCHEMA, FILTER_GRAMMAR, SHARED_HEADERS, SHARED_PARAMETERS, SHARED_RESPONSES } from './parameters.js';
import { relationComponents, relationPathItem, splitComment } from './relation-paths.js';
import { routinePathItem } from './routine-paths.js';
import type { OpenApiDocument, PathItem, Tag } from './types.js';

export interface LeaseDocumentOptions {
  cache: SchemaCache;
  /** The role whose privileges decide which operations are listed. */
  role: string;
  /** Whether `role` is not the anonymous role (a token or a JWT naming a role was given). */
  authenticated: boolean;
  /** Whether `role` is the lease's own role (the lease token, or a JWT naming it); default: as `authenticated`. */
  roleIsOwner?: boolean;
  /** The roles the lease declared for its JWTs: the JWT security scheme lists them. */
  declaredRoles?: { name: string; role: string }[];
  /** openapi-mode ignore-privileges: every relation and function, whatever the role may do. */
  ignorePrivileges?: boolean;
  /** The lease's REST base URL: the document's server. */
  restUrl: string;
  /** info.title, e.g. the lease's name or id. */
  title: string;
  /** info.version: pglease's version. */
  version: string;
}

export const LEASE_SECURITY_SCHEME = 'leaseToken';
export const USER_JWT_SECURITY_SCHEME = 'userJwt';

export function leaseOpenApiDocument(options: LeaseDocumentOptions): OpenApiDocument {
  const { cache, role } = options;
  const paths: Record<string, PathItem> = {
    '/': {
      get: {
        operationId: 'openapi',
        summary: 'This OpenAPI document',
        description: 'PostgREST’s root: the API as the caller’s role sees it.',
        tags: ['introspection'],
        responses: {
          '200': {
            description: 'An OpenAPI 3.1 document.',
            content: { 'application/openapi+json': { schema: { type: 'object' } }, 'application/json': { schema: { type: 'object' } } },
          },
        },
      },
    },
  };
  const document: OpenApiDocument = {
    openapi: '3.1.0',
    info: {
      title: options.title,
      version: options.version,
      description:
        `The PostgREST-compatible REST API of a pglease lease (schema \`${cache.schema}\`), as ` +
        (options.authenticated
          ? (options.roleIsOwner ?? true)
            ? 'the lease role sees it (the request carried the lease token).'
            : `the role \`${role}\` sees it (the request carried a JWT naming it).`
          : 'its anonymous role sees it: requests without a token run as that role, which may do only what the lease owner GRANTs it. ' +
            'Send the lease token (`Authorization: Bearer pgl_…`) to see and use everything.') +
        `\n\n**Filters.** Each column is a query parameter. ${FILTER_GRAMMAR}`,
    },
    servers: [{ url: options.restUrl, description: 'This lease' }],
    security: [{ [LEASE_SECURITY_SCHEME]: [] }, { [USER_JWT_SECURITY_SCHEME]: [] }, {}],
    tags: [],
    paths,
    components: {
      schemas: { Error: ERROR_SCHEMA },
      parameters: { ...SHARED_PARAMETERS },
      headers: { ...SHARED_HEADERS },
      responses: { ...SHARED_RESPONSES },
      securitySchemes: {
        [LEASE_SECURITY_SCHEME]: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'pgl_…',
          description: 'The lease token from `POST /v1/leases`. Without it, requests run as the lease’s anonymous role.',
        },
        [USER_JWT_SECURITY_SCHEME]: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description:
            'A user’s JWT, signed with the lease’s `jwt_secret` (HS256) or a key of its `jwt_jwks`; the request runs as the role its `role` claim names: ' +
            (options.declaredRoles && options.declaredRoles.length > 0
              ? options.declaredRoles.map((declared) => `\`${declared.name}\` (\`${declared.role}\`)`).join(', ') + ', or `anon`'
              : '`anon` (the lease has declared no roles yet: `POST /v1/leases/:id/roles`)') +
            '. Without a role claim it runs as the anonymous role.',
        },
      },
    },
  };
  const tags: Tag[] = [];

  for (const relation of [...cache.relations.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const item = relationPathItem(relation, role, options.ignorePrivileges);
    if (!item) continue;
    const components = relationComponents(relation, cache);
    Object.assign(document.components.schemas, components.schemas);
    Object.assign(document.components.parameters, components.parameters);
    paths[restPath(relation.name)] = item;
    const { summary, description } = splitComment(relation.description);
    const text = [summary, description].filter(Boolean).join('\n\n');
    tags.push({ name: relation.name, ...(text ? { description: text } : {}) });
  }

  for (const [name, overloads] of [...cache.routines.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const item = routinePathItem(overloads, role, cache, options.ignorePrivileges);
    if (item) paths[restPath(name, true)] = item;
  }
  // a function's arguments or result, or a column, may have the row type of a relation the role cannot use directly
  const relationsByKey = new Map([...cache.relations.values()].map((relation) => [componentName(relation.name), relation]));
  for (let missing = unresolved(document, relationsByKey); missing.length > 0; missing = unresolved(document, relationsByKey)) {
    for (const key of missing) Object.assign(document.components.schemas, relationComponents(relationsByKey.get(key)!, cache).schemas);
  }
  const tagNames = new Set(tags.map((tag) => tag.name));
  if (!tagNames.has('rpc') && Object.keys(paths).some((path) => path.startsWith('/rpc/'))) {
    tags.push({ name: 'rpc', description: 'Functions, called with POST (any) or GET (stable and immutable ones).' });
  }
  if (!tagNames.has('introspection')) tags.push({ name: 'introspection', description: 'The document itself.' });
  document.tags = tags;
  return document;
}

function unresolved(document: OpenApiDocument, relationsByKey: Map<string, unknown>): string[] {
  return [...schemaRefs(document)].filter((key) => document.components.schemas[key] === undefined && relationsByKey.has(key));
}

/** Keys of the component schemas a part of the document refers to. */
function schemaRefs(value: unknown, found = new Set<string>()): Set<string> {
  if (Array.isArray(value)) for (const item of value) schemaRefs(item, found);
  else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      if (key === '$ref' && typeof item === 'string' && item.startsWith('#/components/schemas/')) found.add(item.slice('#/components/schemas/'.length));
      else schemaRefs(item, found);
    }
  }
  return found;
}
