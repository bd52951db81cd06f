/**
 * GET /metrics: this process's metrics in Prometheus's text format (src/metrics/metrics.ts).
 *
 * On the service's own port, behind a bearer token (PGLEASE_METRICS_TOKEN, or the admin token),
 * rather than on a separate admin port as PostgREST does: pglease is often the only port an
 * operator opens, and the token keeps lease holders (who reach that port) from reading the
 * service's figures. A scraper sends `Authorization: Bearer <token>` (Prometheus: `authorization`
 * in its scrape config).
 */
import type { FastifyInstance } from 'fastify';
import type { ServiceContext } from '../service-context.js';
import { bearerToken, isAdminToken } from './auth.js';
import { ControlError } from './errors.js';

export async function metricsRoutes(app: FastifyInstance, context: ServiceContext): Promise<void> {
  const { config, metrics } = context;
  app.get('/metrics', { schema: { summary: 'Prometheus metrics of this process', tags: ['health'], security: [{ bearer: [] }] } }, async (request, reply) => {
    const token = bearerToken(request);
    if (token === null) throw new ControlError('PGLEASE_UNAUTHORIZED', 'Metrics need the metrics token (PGLEASE_METRICS_TOKEN) or the admin token: send "Authorization: Bearer <token>"');
    if (!isAdminToken(token, config.metricsToken) && !isAdminToken(token, config.adminToken)) {
      throw new ControlError('PGLEASE_FORBIDDEN', 'Metrics need the metrics token (PGLEASE_METRICS_TOKEN) or the admin token');
    }
    const text = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(text);
  });
}
