/**
 * The operator dashboard: `GET /dashboard` (the page), `GET /dashboard/static/*` (its script and
 * style, and uPlot's, from the npm package: no CDN), and the JSON it reads, which scripts may read too:
 * `GET /v1/dashboard` (./dashboard-data.ts) and `GET /v1/dashboard/leases?q=` (lease search),
 * beside `GET /v1/hosts`, `GET /v1/jobs` and `GET /v1/leases/:id/info` that already exist.
 *
 * The page holds no data and needs no token; the JSON needs the admin token (it names clients'
 * addresses and every lease), which the person pastes once and the tab keeps in sessionStorage,
 * as the studio and the docs pages do. The metrics token is not enough: a Prometheus scraper
 * sees counts, never addresses or lease ids.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { ServiceContext } from '../../service-context.js';
import { identifyCaller } from '../../auth/caller.js';
import { ControlError } from '../../control/errors.js';
import { ErrorSchema } from '../../control/schemas.js';
import { projectPath } from '../../paths.js';
import { dashboardSnapshot, searchLeases, type DashboardSnapshot } from './dashboard-data.js';
import { DASHBOARD_STATIC, dashboardHtml } from './dashboard-page.js';

interface StaticFile {
  file: string;
  type: string;
  /** uPlot's files change only with the package; ours with every release of pglease. */
  cacheControl: string;
}

const uplotDist = path.dirname(createRequire(import.meta.url).resolve('uplot/dist/uPlot.iife.min.js'));
const STATIC_FILES: Record<string, StaticFile> = {
  'dashboard.js': { file: projectPath('src/web/dashboard/assets/dashboard.js'), type: 'text/javascript; charset=utf-8', cacheControl: 'no-cache' },
  'dashboard.css': { file: projectPath('src/web/dashboard/assets/dashboard.css'), type: 'text/css; charset=utf-8', cacheControl: 'no-cache' },
  'uplot.min.js': { file: path.join(uplotDist, 'uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8', cacheControl: 'public, max-age=86400' },
  'uplot.min.css': { file: path.join(uplotDist, 'uPlot.min.css'), type: 'text/css; charset=utf-8', cacheControl: 'public, max-age=86400' },
};

const SearchQuery = Type.Object(
  {
    q: Type.Optional(Type.String({ maxLength: 200, description: 'The start of a lease id, or part of its name or client address; empty: the newest' })),
    limit: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'At most this many, 1 to 200 (default 50)' })),
  },
  { additionalProperties: false },
);

const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema };

/** Its fields are described in docs/metrics.md; serialized as they are (one object, a few KB). */
const DashboardSchema = Type.Unsafe<DashboardSnapshot>({ type: 'object', additionalProperties: true });

const Nullable = <T extends ReturnType<typeof Type.String>>(schema: T) => Type.Union([schema, Type.Null()]);
const LeaseSearchSchema = Type.Object({
  items: Type.Array(
    Type.Object({
      id: Type.String(),
      label: Nullable(Type.String()),
      plan: Type.String(),
      status: Type.String(),
      client: Nullable(Type.String()),
      created_at: Type.String({ format: 'date-time' }),
      expires_at: Nullable(Type.String({ format: 'date-time' })),
    }),
  ),
});

export async function dashboardRoutes(app: FastifyInstance, context: ServiceContext): Promise<void> {
  const routes = app.withTypeProvider<TypeBoxTypeProvider>();
  const { config, host } = context;

  function requireAdmin(request: FastifyRequest): void {
    const caller = identifyCaller(request, config.adminToken);
    if (caller.kind === 'anonymous') throw new ControlError('PGLEASE_UNAUTHORIZED', 'The dashboard needs the admin token (PGLEASE_ADMIN_TOKEN): send "Authorization: Bearer <admin token>"');
    if (caller.kind !== 'admin') throw new ControlError('PGLEASE_FORBIDDEN', 'The dashboard needs the admin token (PGLEASE_ADMIN_TOKEN), and this token is not it');
  }

  routes.get('/dashboard', { schema: { hide: true } }, async (_request, reply) =>
    reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(dashboardHtml()),
  );

  routes.get(`${DASHBOARD_STATIC}/:file`, { schema: { hide: true, params: Type.Object({ file: Type.String() }) } }, async (request, reply) => {
    const asset = Object.hasOwn(STATIC_FILES, request.params.file) ? STATIC_FILES[request.params.file] : undefined;
    if (!asset) throw new ControlError('PGLEASE_ROUTE_NOT_FOUND', `No dashboard file ${request.params.file}`);
    return reply.type(asset.type).header('cache-control', asset.cacheControl).send(readFileSync(asset.file));
  });

  routes.get(
    '/v1/dashboard',
    {
      schema: {
        summary: 'The operator dashboard’s figures (admin)',
        description:
          'Live leases by status, kind and plan, creates in the last hour and their top clients, the reaper’s backlog and lag, leases over quota or uncertain, ' +
          'recent events and job failures, and charts over the last 6 hours, from the catalog in one snapshot; this process’s REST traffic, 429s, warm pools ' +
          'and REST connections under `process`. docs/metrics.md describes every field.',
        tags: ['health'],
        security: [{ bearer: [] }],
        response: { 200: DashboardSchema, ...errors },
      },
    },
    async (request) => {
      requireAdmin(request);
      return dashboardSnapshot(host.pool, context);
    },
  );

  routes.get(
    '/v1/dashboard/leases',
    {
      schema: {
        summary: 'Search live leases (admin)',
        description: 'Live leases whose id starts with `q`, or whose name or client address contains it; newest first.',
        tags: ['health'],
        security: [{ bearer: [] }],
        querystring: SearchQuery,
        response: { 200: LeaseSearchSchema, ...errors },
      },
    },
    async (request) => {
      requireAdmin(request);
      const limit = request.query.limit === undefined ? 50 : Number(request.query.limit);
      if (!(limit >= 1 && limit <= 200)) throw new ControlError('PGLEASE_INVALID_PARAMETER', 'limit must be between 1 and 200', 'limit');
      return { items: await searchLeases(host.pool, (request.query.q ?? '').trim(), limit) };
    },
  );
}
