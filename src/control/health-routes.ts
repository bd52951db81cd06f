/**
 * /healthz: the process is up. /readyz: the lease database answers and carries every migration
 * this code knows (so a replica started on an unmigrated database reports not ready).
 */
import type { FastifyInstance } from 'fastify';
import type { ServiceContext } from '../service-context.js';
import { ControlError } from './errors.js';

/** How long /readyz waits for the lease database. */
const READY_TIMEOUT_MS = 2_000;

export async function healthRoutes(app: FastifyInstance, context: ServiceContext): Promise<void> {
  app.get('/healthz', { schema: { summary: 'Liveness', tags: ['health'] } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { summary: 'Readiness: lease database reachable and migrated', tags: ['health'] } }, async () => {
    let applied: number;
    let timer: NodeJS.Timeout | undefined;
    try {
      const query = context.host.pool.query<{ count: number }>({
        name: 'pglease.readyz',
        text: 'SELECT count(*)::int AS count FROM pglease.migrations',
      });
      // a probe must answer: a database that is up but stuck (stopped, overloaded) is not ready
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${READY_TIMEOUT_MS / 1000} s`)), READY_TIMEOUT_MS);
      });
      query.catch(() => undefined);
      const { rows } = await Promise.race([query, late]);
      applied = rows[0]!.count;
    } catch (error) {
      throw new ControlError('PGLEASE_NOT_READY', `The lease database is not reachable: ${(error as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
    if (applied < context.expectedMigrations) {
      throw new ControlError('PGLEASE_NOT_READY', `The lease database has ${applied} of ${context.expectedMigrations} migrations applied`);
    }
    return { status: 'ready', database: context.host.database, migrations: applied };
  });
}
