/**
 * The hosts API (/v1/hosts, admin only): the Postgres servers pglease leases from
 * (src/hosts/fleet.ts); GET /v1/hosts, which adds each host's latest observation, is in
 * observation-routes.ts. Adding a host connects to it and installs pglease's lease database there
 * before it is registered; a host is removed only when it holds no lease. Host URLs carry
 * passwords: they are never answered (the password is cut from `url`).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type, type Static } from '@sinclair/typebox';
import type { ServiceContext } from '../service-context.js';
import { identifyCaller } from '../auth/caller.js';
import { HostRefused } from '../hosts/fleet.js';
import { defaultTls, HOST_NAME_PATTERN as HOST_NAME, type HostEntry } from '../hosts/host-registry.js';
import { libpqCompatibleUrl, TlsUrlError } from '../tls/libpq-url.js';
import { ControlError } from './errors.js';
import { ErrorSchema } from './schemas.js';

const TlsMode = Type.Union([Type.Literal('disable'), Type.Literal('require'), Type.Literal('verify-full')]);

/** A host as the registry knows it (part of each item of GET /v1/hosts, src/control/observation-routes.ts). */
export const HostSchema = Type.Object({
  name: Type.String({ description: 'The name the hosts API knows the host by' }),
  url: Type.Union([Type.String(), Type.Null()], { description: 'The host\'s URL without its password; null for the control database\'s own server' }),
  capacity: Type.Integer({ description: 'Live leases the host may hold' }),
  weight: Type.Number(),
  draining: Type.Boolean({ description: 'A draining host gets no new leases; its leases live on' }),
  public_host: Type.Union([Type.String(), Type.Null()]),
  public_port: Type.Union([Type.Integer(), Type.Null()]),
  tls: TlsMode,
  state: Type.Union([Type.Literal('available'), Type.Literal('uncertain'), Type.Literal('down')]),
  state_since: Type.String({ format: 'date-time' }),
  last_error: Type.Union([Type.String(), Type.Null()]),
  live_leases: Type.Integer({ description: 'Active leases at the last probe' }),
  placed: Type.Integer({ description: 'Creates placed on the host since its last probe' }),
  probed_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  created_at: Type.String({ format: 'date-time' }),
});
export type HostJson = Static<typeof HostSchema>;

const AddHostBody = Type.Object(
  {
    url: Type.String({ minLength: 1, maxLength: 2000, description: 'postgresql:// URL of a role with CREATEROLE and CREATEDB (or a superuser)' }),
    name: Type.String({ pattern: HOST_NAME, description: '1 to 63 lower-case letters, digits, _ and -' }),
    capacity: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000_000, description: 'Default 1000' })),
    weight: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1000, description: 'Default 1' })),
    public_host: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: 'Host written into lease URLs (default: the URL\'s)' })),
    public_port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    tls: Type.Optional(TlsMode),
    ca_pem: Type.Optional(Type.String({ maxLength: 100_000, description: 'The CA that signs the host\'s certificate (PEM), for tls verify-full' })),
  },
  { additionalProperties: false },
);
const PatchHostBody = Type.Object(
  {
    capacity: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000_000 })),
    weight: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1000 })),
    draining: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
const HostParams = Type.Object({ name: Type.String() });
const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema };

/** The URL without its password. */
function redacted(url: string | null): string | null {
  if (url === null) return null;
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '';
  return parsed.toString();
}

export function hostJson(entry: HostEntry): HostJson {
  return {
    name: entry.name,
    url: redacted(entry.url),
    capacity: entry.capacity,
    weight: entry.weight,
    draining: entry.draining,
    public_host: entry.public_host,
    public_port: entry.public_port,
    tls: entry.tls,
    state: entry.state,
    state_since: entry.state_since.toISOString(),
    last_error: entry.last_error,
    live_leases: entry.live_leases,
    placed: entry.placed,
    probed_at: entry.probed_at?.toISOString() ?? null,
    created_at: entry.created_at.toISOString(),
  };
}

/** A host's failure to install as a message that says what to fix. */
function installProblem(error: HostRefused): string {
  const message = error.message;
  if (/ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|no answer within/.test(message)) return `${message}: no Postgres answers at that address`;
  if (/permission denied to create (database|role)/.test(message)) return `${message}: the URL's role needs CREATEROLE and CREATEDB (or to be a superuser)`;
  return message;
}

export async function hostRoutes(app: FastifyInstance, context: ServiceContext): Promise<void> {
  const routes = app.withTypeProvider<TypeBoxTypeProvider>();
  const requireAdmin = (request: FastifyRequest) => {
    const caller = identifyCaller(request, context.config.adminToken);
    if (caller.kind === 'anonymous') throw new ControlError('PGLEASE_UNAUTHORIZED');
    if (caller.kind !== 'admin') throw new ControlError('PGLEASE_FORBIDDEN', 'The hosts API needs the admin token (PGLEASE_ADMIN_TOKEN)');
  };
  const checkName = (name: string) => {
    if (!new RegExp(HOST_NAME).test(name)) throw new ControlError('PGLEASE_INVALID_PARAMETER', 'a host name is 1 to 63 lower-case letters, digits, _ and -', 'name');
  };

  routes.post(
    '/v1/hosts',
    {
      schema: {
        summary: 'Add a lease host (admin)',
        description:
          'Connects to the server, installs pglease\'s lease database there (migrations and functions, as on the control database) and ' +
          'registers it: new leases may be placed there at once. The URL\'s role needs CREATEROLE and CREATEDB (or to be a superuser).',
        tags: ['hosts'],
        security: [{ bearer: [] }],
        body: AddHostBody,
        response: { 201: HostSchema, ...errors, 409: ErrorSchema },
      },
    },
    async (request, reply) => {
      requireAdmin(request);
      const body = request.body;
      let url: URL;
      try {
        url = new URL(body.url);
      } catch {
        throw new ControlError('PGLEASE_INVALID_FIELD', 'url is not a URL: give postgresql://user:password@host:port/database', 'url');
      }
      if (!['postgres:', 'postgresql:'].includes(url.protocol) || url.hostname === '') {
        throw new ControlError('PGLEASE_INVALID_FIELD', `url must be postgresql://user:password@host:port/database, got a ${url.protocol} URL`, 'url');
      }
      const tls = body.tls ?? defaultTls(url);
      if (tls === 'disable' && body.ca_pem !== undefined) throw new ControlError('PGLEASE_INVALID_FIELD', 'ca_pem is for tls require or verify-full', 'ca_pem');
      if (body.ca_pem !== undefined && !/-----BEGIN CERTIFICATE-----/.test(body.ca_pem)) throw new ControlError('PGLEASE_INVALID_FIELD', 'ca_pem is not a PEM certificate', 'ca_pem');
      try {
        libpqCompatibleUrl(body.url, {});
      } catch (error) {
        if (error instanceof TlsUrlError) throw new ControlError('PGLEASE_INVALID_FIELD', error.message, 'url');
        throw error;
      }
      try {
        const entry = await context.fleet.add({
          name: body.name,
          url: body.url,
          capacity: body.capacity,
          weight: body.weight,
          publicHost: body.public_host,
          publicPort: body.public_port,
          tls,
          caPem: body.ca_pem,
        });
        return reply.code(201).send(hostJson(entry));
      } catch (error) {
        if (!(error instanceof HostRefused)) throw error;
        if (error.conflict) throw new ControlError('PGLEASE_HOST_CONFLICT', error.message, error.field);
        throw new ControlError('PGLEASE_INVALID_FIELD', installProblem(error), error.field);
      }
    },
  );

  routes.patch(
    '/v1/hosts/:name',
    {
      schema: {
        summary: 'Change a lease host (admin)',
        description: 'Capacity, weight, or draining (a draining host gets no new leases; its leases live on).',
        tags: ['hosts'],
        security: [{ bearer: [] }],
        params: HostParams,
        body: PatchHostBody,
        response: { 200: HostSchema, ...errors },
      },
    },
    async (request) => {
      requireAdmin(request);
      checkName(request.params.name);
      const entry = await context.fleet.update(request.params.name, request.body);
      if (!entry) throw new ControlError('PGLEASE_HOST_NOT_FOUND', `No host named "${request.params.name}" (GET /v1/hosts lists them)`);
      return hostJson(entry);
    },
  );

  routes.delete(
    '/v1/hosts/:name',
    {
      schema: {
        summary: 'Remove a lease host (admin)',
        description: 'Only a host that holds no live lease (drain it first, and wait for its leases to end): 409 otherwise. Its lease database is left in place.',
        tags: ['hosts'],
        security: [{ bearer: [] }],
        params: HostParams,
        response: { 204: Type.Null({ description: 'Removed' }), ...errors, 409: ErrorSchema },
      },
    },
    async (request, reply) => {
      requireAdmin(request);
      checkName(request.params.name);
      const outcome = await context.fleet.remove(request.params.name);
      if (outcome === 'unknown') throw new ControlError('PGLEASE_HOST_NOT_FOUND', `No host named "${request.params.name}" (GET /v1/hosts lists them)`);
      if (outcome === 'control') throw new ControlError('PGLEASE_HOST_CONFLICT', 'The control database\'s own server cannot be removed (drain it instead: PATCH {"draining": true})');
      if (outcome !== 'removed') {
        throw new ControlError(
          'PGLEASE_HOST_CONFLICT',
          outcome.busy < 0
            ? `Host "${request.params.name}" is not reachable from here, so whether it holds leases is unknown: remove it once it answers`
            : `Host "${request.params.name}" holds ${outcome.busy} live lease(s): drain it (PATCH {"draining": true}) and remove it once they have ended`,
        );
      }
      return reply.code(204).send(null);
    },
  );
}
