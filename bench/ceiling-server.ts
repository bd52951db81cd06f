/**
 * The ceiling for bench:rest: the smallest hand-written Fastify + pg server that answers the
 * benchmark's requests, running the very SQL pglease generates for them, as named prepared
 * statements, on the same lease as the same role (it logs in as the lease's own role). What
 * pglease adds on top (query-string parsing, planning, the role switch, PostgREST headers) is what
 * the comparison measures.
 *
 * Configured by the environment: PORT, LEASE_URL, and SCENARIOS, a JSON object
 * `{ name: { text, values, param } }` where `param` is the index of the value taken from the URL.
 */
import Fastify from 'fastify';
import pg from 'pg';
import { answerRead, type CeilingStatement } from './support/ceiling-read.js';

const scenarios = JSON.parse(process.env.SCENARIOS ?? '{}') as Record<string, CeilingStatement>;
const pool = new pg.Pool({ connectionString: process.env.LEASE_URL, max: Number(process.env.POOL_SIZE ?? 5) });
const app = Fastify({ logger: false });

for (const [name, scenario] of Object.entries(scenarios)) {
  app.get<{ Params: { value: string } }>(`/${name}/:value`, (request, reply) => answerRead(pool, name, scenario, request.params.value, reply));
}

const address = await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
process.stdout.write(`listening ${address}\n`);
process.on('SIGTERM', () => {
  void app.close().then(() => pool.end()).then(() => process.exit(0));
});
