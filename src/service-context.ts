/**
 * What every part of the running service shares: its configuration, the host it leases from, and
 * the lease store. Built once in service.ts and handed to each Fastify plugin.
 */
import type { Config } from './config.js';
import type { Host } from './db/host.js';
import type { Fleet } from './hosts/fleet.js';
import type { LeasePool } from './leases/lease-pool.js';
import type { LeaseStore } from './leases/lease-store.js';
import type { Metrics } from './metrics/metrics.js';
import type { TemplateStore } from './templates/template-store.js';

export interface ServiceContext {
  config: Config;
  /** The control host (DATABASE_URL's server, or the embedded one): pglease's own state lives here. */
  host: Host;
  /** Every lease host, the control one included: which one holds a lease, which one a create goes to. */
  fleet: Fleet;
  /** The control host's lease store and warm pools (a lease elsewhere: fleet.leaseHost). */
  leases: LeaseStore;
  /** Where creates come from: this process's warm pools, else provisioning. */
  leasePool: LeasePool;
  templates: TemplateStore;
  /** This process's Prometheus metrics (GET /metrics). */
  metrics: Metrics;
  /** Number of migrations this code expects to find applied (for /readyz). */
  expectedMigrations: number;
}
