/**
 * Starts pglease: the embedded Postgres when no DATABASE_URL is set, the host (database, migrations,
 * pool), and the HTTP server. Used by `npm start`, the CLI, the test helpers and the tests.
 */
import { readdirSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config.js';
import { OWN_CONNECTIONS, restConnectionBudget, serverConnectionLimits, SUPERUSER_RESERVED_CONNECTIONS } from './db/connection-shares.js';
import { MAX_CONNECTIONS, startEmbedded, type EmbeddedServer } from './db/embedded.js';
import { openHost, type Host } from './db/host.js';
import { Fleet } from './hosts/fleet.js';
import { openHostServices } from './hosts/host-services.js';
import { TemplateStore } from './templates/template-store.js';
import { projectPath } from './paths.js';
import type { Scheduler } from './scheduler/scheduler.js';
import { buildServer, type ServerOptions } from './server.js';
import type { ServiceContext } from './service-context.js';
import { Metrics } from './metrics/metrics.js';

export interface Service {
  app: FastifyInstance;
  context: ServiceContext;
  host: Host;
  /** Set when pglease runs its own Postgres. */
  embedded: EmbeddedServer | undefined;
  /** This process's job scheduler; undefined when PGLEASE_SCHEDULER=off. */
  scheduler: Scheduler | undefined;
  /** Stops taking requests, lets in-flight ones finish, closes pools, stops the embedded Postgres. */
  close: () => Promise<void>;
}

export interface StartOptions extends ServerOptions {
  log?: (message: string) => void;
  /** false: fill no warm pools (a process that only migrates and exits). */
  warmPools?: boolean;
  /** Stop the embedded Postgres if this process ends without close() (see EmbeddedOptions). */
  stopPostgresWithProcess?: boolean;
}

export function countMigrations(): number {
  return readdirSync(projectPath('migrations')).filter((name) => /^\d+.*\.(sql|js|ts)$/.test(name)).length;
}

export async function startService(givenConfig: Config, options: StartOptions = {}): Promise<Service> {
  const log = options.log ?? (() => undefined);
  let config = givenConfig;
  let embedded: EmbeddedServer | undefined;
  let serverUrl = config.databaseUrl;
  if (serverUrl === undefined) {
    // the REST budget the reserve is made for is the one the REST API keeps to (connection-shares.ts)
    const restTotal = config.restConnections.total ?? restConnectionBudget({ maxConnections: MAX_CONNECTIONS, superuserReservedConnections: SUPERUSER_RESERVED_CONNECTIONS });
    config = { ...config, restConnections: { ...config.restConnections, total: restTotal } };
    embedded = await startEmbedded({
      dataDir: config.dataDir,
      port: config.embeddedPgPort,
      listen: config.embeddedPgListen,
      log,
      stopWithProcess: options.stopPostgresWithProcess,
      reservedConnections: OWN_CONNECTIONS + restTotal,
      tls: config.embeddedPgTls,
      tlsHosts: config.publicPgHost === undefined ? [] : [config.publicPgHost],
    });
    serverUrl = embedded.url('postgres');
  }
  let host: Host;
  try {
    host = await openHost({
      serverUrl,
      leaseDatabase: config.leaseDatabase,
      publicHost: config.publicPgHost,
      publicPort: config.publicPgPort,
      timeoutMs: config.databaseTimeoutSeconds * 1000,
      log,
    });
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
  if (config.restConnections.total === undefined) {
    try {
      const limits = await serverConnectionLimits(host.pool);
      config = { ...config, restConnections: { ...config.restConnections, total: restConnectionBudget(limits) } };
    } catch (error) {
      await host.close();
      throw error;
    }
  }
  const metrics = new Metrics();
  const hostOptions = {
    config,
    metrics,
    log,
    observeDiskPath: embedded ? config.dataDir : undefined,
    localServer: embedded !== undefined,
  };
  let fleet: Fleet;
  try {
    // the control host's scheduler starts here, then each registered host's (src/hosts/)
    const controlServices = await openHostServices(host, hostOptions).catch(async (error: unknown) => {
      await host.close();
      throw error;
    });
    fleet = await Fleet.open(controlServices, {
      ...hostOptions,
      probeIntervalMs: config.hostProbeIntervalSeconds * 1000,
      warmPools: options.warmPools !== false,
    }).catch(async (error: unknown) => {
      await controlServices.close();
      throw error;
    });
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
  const control = fleet.control;
  const context: ServiceContext = {
    config,
    host,
    fleet,
    leases: control.leases,
    leasePool: control.leasePool,
    templates: new TemplateStore(host, control.leases, control.leasePool, log),
    metrics,
    expectedMigrations: countMigrations(),
  };
  let app: FastifyInstance;
  try {
    app = await buildServer(context, options);
  } catch (error) {
    await fleet.close();
    await embedded?.stop();
    throw error;
  }
  const scheduler: Scheduler | undefined = control.scheduler;
  fleet.start();
  context.metrics.history.start();
  let closing: Promise<void> | undefined;
  return {
    app,
    context,
    host,
    embedded,
    scheduler,
    close: () =>
      (closing ??= (async () => {
        await app.close();
        context.metrics.history.stop();
        // each host's lock guard, warm pools (released while Postgres is up), scheduler and pool
        await fleet.close();
        await embedded?.stop();
      })()),
  };
}
