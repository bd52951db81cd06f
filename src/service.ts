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
import { LeasePool } from './leases/lease-pool.js';
import { LeaseStore } from './leases/lease-store.js';
import { LockGuard } from './leases/lock-guard.js';
import { TemplateStore } from './templates/template-store.js';
import { projectPath } from './paths.js';
import { builtinJobs } from './scheduler/jobs.js';
import { Scheduler } from './scheduler/scheduler.js';
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
  const leases = new LeaseStore(host, config.leaseLimits);
  const leasePool = new LeasePool(leases, {
    plainSize: config.leasePoolSize,
    templateSize: config.templatePoolSize,
    databaseSize: config.databasePoolSize,
    databaseFromStart: config.defaultKind === 'database',
    rehearseWith: config.createLimits,
    log,
  });
  const context: ServiceContext = {
    config,
    host,
    leases,
    leasePool,
    templates: new TemplateStore(host, leases, leasePool, log),
    metrics: new Metrics(),
    expectedMigrations: countMigrations(),
  };
  const app = await buildServer(context, options);
  let scheduler: Scheduler | undefined;
  if (config.jobs.schedulerEnabled) {
    scheduler = new Scheduler({
      databaseUrl: host.databaseUrl,
      jobs: builtinJobs({ ...config.jobs, observeDiskPath: config.jobs.observeDiskPath ?? (embedded ? config.dataDir : undefined) }, host.id, {
        onReaped: (lags) => context.metrics.leasesReaped(lags),
        onObservationPass: (seconds) => context.metrics.observationPass(seconds),
      }, host.databaseUrl),
      log,
      onRunEnd: (job, outcome) => context.metrics.jobRan(job, outcome),
    });
    try {
      await scheduler.start();
    } catch (error) {
      await scheduler.stop();
      await app.close();
      await host.close();
      await embedded?.stop();
      throw error;
    }
  }
  if (options.warmPools !== false) leasePool.start();
  context.metrics.history.start();
  const lockGuard = new LockGuard(host.databaseUrl, host.pool, log, config.maxLeaseLocks, embedded !== undefined);
  lockGuard.start();
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
        await lockGuard.stop();
        // no other process can hand out this one's pooled leases: release them while Postgres is up
        await leasePool.close();
        await scheduler?.stop();
        await host.close();
        await embedded?.stop();
      })()),
  };
}
