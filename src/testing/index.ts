/**
 * `pglease/testing`: throwaway Postgres for test suites.
 *
 *   import { withLease } from 'pglease/testing';
 *   await withLease(async ({ url }) => { ... }, { template: 'app' });
 *
 * vitest: see `pglease/testing/vitest`; jest: `pglease/testing/jest`.
 */
export { lease, withLease, connectPglease, prepareTemplate, workerDatabaseUrl } from './lease.js';
export type { Lease, LeaseOptions, ConnectOptions, PgleaseConnection, TemplateSpec, PreparedTemplate } from './lease.js';
export { startLocalPglease, defaultDataDir } from './local.js';
export { mintJwt } from '../auth/mint.js';
export type { MintOptions } from '../auth/mint.js';
export type { LocalPglease, LocalOptions } from './local.js';
export { PgleaseClient, PgleaseApiError, PgleaseUnreachableError, DEFAULT_SERVER } from './client.js';
export type { CreatedLeaseJson, LeaseJson, LeaseStatsJson, TemplateJson, CreateLeaseOptions, ListLeasesOptions } from './client.js';
