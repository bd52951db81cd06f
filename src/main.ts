/**
 * `npm start`: runs the service until SIGTERM/SIGINT, then shuts down cleanly.
 */
import { createServer } from 'node:net';
import { ConfigError, loadConfig, type Config } from './config.js';
import { isLoopback } from './control/rate-limit.js';
import { createLogger } from './log.js';
import { startService, type Service } from './service.js';

/**
 * Fails at once when the HTTP port is taken, before Postgres starts and migrations run (seconds
 * of work, and a first initdb, for nothing). The real listen comes later and may still fail.
 */
async function checkPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (error: NodeJS.ErrnoException) =>
      reject(error.code === 'EADDRINUSE' ? new Error(`port ${port} on ${host} is in use: stop what listens there, or set PORT to another`) : error),
    );
    probe.listen(port, host, () => probe.close(() => resolve()));
  });
}

/** Where the service answers, for the log line Fastify writes when it listens (once). */
function listening(config: Config, address: string): string {
  const reach = isLoopback(config.httpHost)
    ? `this machine only (HOST=${config.httpHost}; HOST=0.0.0.0 serves the network)`
    : `the network (HOST=${config.httpHost}): anyone who reaches it can create leases`;
  return `pglease is serving on ${address}, reachable from ${reach}`;
}

/** What a person starting pglease wants next: where things are, and the one command to try. */
function banner(config: Config, service: Service, address: string): { fields: Record<string, string>; text: string } {
  const local = address.replace('0.0.0.0', 'localhost').replace('[::]', 'localhost');
  const data = service.embedded
    ? `embedded Postgres on port ${service.embedded.port}, data in ${config.dataDir}`
    : `Postgres at ${service.host.publicHost}:${service.host.publicPort} (DATABASE_URL)`;
  const tryIt = `psql "$(curl -s -X POST -H 'Accept: text/plain' ${local}/v1/leases)"`;
  const fields = { api: `${local}/v1/leases`, docs: `${local}/docs`, data: `${data}, lease database "${service.host.database}"` };
  const text = ['', `    API       ${fields.api}`, `    docs      ${fields.docs}`, `    data      ${fields.data}`, '', '  Get a database:', `    ${tryIt}`, ''].join('\n');
  return { fields: { ...fields, try: tryIt }, text };
}

export async function serve(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel);
  const log = (message: string) => logger.info(message);
  await checkPortFree(config.httpHost, config.httpPort);
  const service = await startService(config, { loggerInstance: logger, log });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: finishing in-flight requests and stopping`);
    // a request that runs on (a lease's slow function) would hold the shutdown as long as it runs,
    // past an orchestrator's patience (Docker sends SIGKILL after 10 s): its connection is closed
    const grace = setTimeout(() => {
      logger.warn(`requests still running after ${config.shutdownGraceSeconds} s (PGLEASE_SHUTDOWN_GRACE): closing their connections`);
      service.app.server.closeAllConnections();
    }, config.shutdownGraceSeconds * 1000);
    grace.unref();
    try {
      await service.close();
      process.exit(0);
    } catch (error) {
      logger.error({ err: error }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
  try {
    // Fastify's own "Server listening" line, said once, with what a person must know about it
    const address = await service.app.listen({ host: config.httpHost, port: config.httpPort, listenTextResolver: (address) => listening(config, address) });
    const { fields, text } = banner(config, service, address);
    // a terminal gets the banner as text; a log collector one record of the same
    if (process.stderr.isTTY) process.stderr.write(text + '\n');
    else logger.info(fields, 'ready');
  } catch (error) {
    await service.close();
    throw error;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    await serve(loadConfig());
  } catch (error) {
    const message = error instanceof ConfigError ? `configuration error: ${error.message}` : (error as Error).message;
    process.stderr.write(`pglease: ${message}\n`);
    process.exit(1);
  }
}
