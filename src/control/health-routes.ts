/**
 * /healthz: the process is up. /readyz: the lease database answers and carries every migration
 * this code knows (so a replica started on an unmigrated database reports not ready).
 */
import type { FastifyInstance } from 'fastify';
import type { ServiceContext } from '../service-context.js';
import { ControlError } from './errors.js';

export async function healthRoutes(app: FastifyInstance, context: ServiceContext): Promise<void> {
  app.get('/healthz', { schema: { summary: 'Liveness', tags: ['health'] } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { summary: 'Readiness: lease database reachable and migrated', tags: ['health'] } }, async () => {
    let applied: number;
    try {
      const { rows } = await context.host.pool.query<{ count: number }>({
        name: 'pglease.readyz',
        text: 'SELECT count(*)::int AS count FROM pglease.migrations',
      });
      applied = rows[0]!.count;
    } catch (error) {
      throw new ControlError('PGLEASE_NOT_READY', `The lease database is not reachable: ${(error as Error).message}`);
    }
    if (applied < context.expectedMigrations) {
      throw new ControlError('PGLEASE_NOT_READY', `The lease database has ${applied} of ${context.expectedMigrations} migrations applied`);
    }
    return { status: 'ready', database: context.host.database, migrations: applied };
  });
}
