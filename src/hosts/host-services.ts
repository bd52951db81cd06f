/**
 * What pglease runs for one lease host, whichever host it is (the control database's server or an
 * extra one): the lease store on its lease database, its warm pools, its job scheduler (its own
 * pglease.jobs: several processes claim each host's jobs there, so each host's reaper and
 * cleanup-orphans run once however many processes serve it) and its lock guard. Every connection
 * here is the host's service role (src/db/host.ts): never a lease's code with those rights.
 */
import type { Config } from '../config.js';
import type { Host } from '../db/host.js';
import { LeasePool } from '../leases/lease-pool.js';
import { LeaseStore } from '../leases/lease-store.js';
import { LockGuard } from '../leases/lock-guard.js';
import { PlanStore } from '../leases/plan-store.js';
import type { Metrics } from '../metrics/metrics.js';
import { builtinJobs } from '../scheduler/jobs.js';
import { Scheduler } from '../scheduler/scheduler.js';

export interface HostServices {
  host: Host;
  leases: LeaseStore;
  /** Where creates on this host come from: its warm pools, else provisioning. */
  leasePool: LeasePool;
  plans: PlanStore;
  /** undefined when PGLEASE_SCHEDULER=off. */
  scheduler: Scheduler | undefined;
  /** Begins filling warm pools and guarding locks (after the HTTP server is up). */
  start: (options: { warmPools: boolean }) => void;
  /** Stops the jobs, the guard and the pools (releasing pooled leases), then closes the host. */
  close: () => Promise<void>;
}

export interface HostServicesOptions {
  config: Config;
  metrics: Metrics;
  log: (message: string) => void;
  /** Where the observer measures free disk (the embedded server's data directory). */
  observeDiskPath: string | undefined;
  /** The server runs on this machine as a process this one may signal (see LockGuard). */
  localServer: boolean;
}

/** Starts the scheduler of `host` (its jobs are declared and run from here on); the rest waits for start(). */
export async function openHostServices(host: Host, options: HostServicesOptions): Promise<HostServices> {
  const { config, metrics, log } = options;
  const leases = new LeaseStore(host, config.leaseLimits);
  const leasePool = new LeasePool(leases, {
    plainSize: config.leasePoolSize,
    templateSize: config.templatePoolSize,
    databaseSize: config.databasePoolSize,
    databaseFromStart: config.defaultKind === 'database',
    rehearseWith: config.createLimits,
    log,
  });
  let scheduler: Scheduler | undefined;
  if (config.jobs.schedulerEnabled) {
    scheduler = new Scheduler({
      databaseUrl: host.databaseUrl,
      jobs: builtinJobs({ ...config.jobs, observeDiskPath: config.jobs.observeDiskPath ?? options.observeDiskPath }, host.id, {
        onReaped: (lags) => metrics.leasesReaped(lags),
        onObservationPass: (seconds) => metrics.observationPass(seconds),
      }, host.databaseUrl),
      log,
      onRunEnd: (job, outcome) => metrics.jobRan(job, outcome),
    });
    try {
      await scheduler.start();
    } catch (error) {
      await scheduler.stop();
      throw error;
    }
  }
  const lockGuard = new LockGuard(host.databaseUrl, host.pool, log, config.maxLeaseLocks, options.localServer);
  let started = false;
  return {
    host,
    leases,
    leasePool,
    plans: new PlanStore(host.pool),
    scheduler,
    start: ({ warmPools }) => {
      if (started) return;
      started = true;
      if (warmPools) leasePool.start();
      lockGuard.start();
    },
    close: async () => {
      await lockGuard.stop();
      // no other process can hand out this one's pooled leases: release them while Postgres is up
      await leasePool.close();
      await leases.dropReadyForks();
      await scheduler?.stop();
      await host.close();
    },
  };
}
