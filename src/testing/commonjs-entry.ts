/**
 * `require('pglease/testing')`: the CommonJS build (scripts/build-cjs.mjs turns this module and
 * what it imports into dist/cjs), for a default jest project, which loads no ES modules without
 * --experimental-vm-modules. It has what talks to a running pglease (the one jest's globalSetup
 * found or started, in PGLEASE_URL); starting one in-process needs the ES module build.
 */
export { lease, withLease, connectPglease, prepareTemplate, workerDatabaseUrl } from './lease.js';
export type { Lease, LeaseOptions, ConnectOptions, PgleaseConnection, TemplateSpec, PreparedTemplate } from './lease.js';
export { PgleaseClient, PgleaseApiError, PgleaseUnreachableError, DEFAULT_SERVER } from './client.js';
export type { CreatedLeaseJson, LeaseJson, LeaseStatsJson, TemplateJson, CreateLeaseOptions, ListLeasesOptions } from './client.js';
