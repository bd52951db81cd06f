/**
 * The ceiling for bench:rest-many (`--ceiling`): the smallest hand-written Fastify + pg server that
 * serves many leases, one pg.Pool per lease logged in as that lease's own role, each request one
 * named prepared statement (the very SQL pglease compiles for it). Postgres needs at least one
 * backend per lease here too, as it does for pglease's per-lease authenticators; so how its
 * throughput falls as traffic spreads over more leases is what any server that keeps leases apart
 * by their own logins can reach on this machine, and what pglease's ratios are read against.
 *
 * Configured by the environment: PORT, POOL_SIZE (connections per lease, 5 unless told), and
 * LEASES_FILE, a file holding a JSON array of `{ url, text, values, param }`, where `param` is the index of the value
 * taken from the URL. `GET /<index of the lease>/<value>` answers the statement's body.
 */
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';
import pg from 'pg';
import { answerRead, type CeilingStatement } from './support/ceiling-read.js';

interface LeaseStatement extends CeilingStatement {
  url: string;
}

const leases = JSON.parse(readFileSync(process.env.LEASES_FILE!, 'utf8')) as LeaseStatement[];
const poolSize = Number(process.env.POOL_SIZE ?? 5);
const pools = leases.map((lease) => new pg.Pool({ connectionString: lease.url, max: poolSize, application_name: 'ceiling-many' }));
const app = Fastify({ logger: false });
let reported = 0;
app.setErrorHandler((error, _request, reply) => {
  // the first few failures on stderr, which bench:rest-many prints when a step had any
  if (reported++ < 3) process.stderr.write(`ceiling: ${error.message}\n`);
  return reply.code(500).send({ message: error.message });
});

app.get<{ Params: { lease: string; value: string } }>('/:lease/:value', async (request, reply) => {
  const index = Number(request.params.lease);
  const lease = leases[index];
  if (lease === undefined) return reply.code(404).send();
  return answerRead(pools[index]!, 'read', lease, request.params.value, reply);
});

const address = await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
process.stdout.write(`listening ${address}\n`);
process.on('SIGTERM', () => {
  void app
    .close()
    .then(() => Promise.all(pools.map((pool) => pool.end())))
    .then(() => process.exit(0));
});
