/**
 * The setup file that pglease() (./vitest.ts) adds to a vitest config: runs in each worker before
 * its test files and points DATABASE_URL at the worker's own lease.
 *
 * The leases come from `inject('pglease')`, what this test project's global setup provided, not
 * from the environment the workers inherit: with several vitest projects, each has its own global
 * setup (its own template and leases), and the environment holds only the last one's.
 */
import { inject } from 'vitest';
import type {} from './vitest.js';
import { workerDatabaseUrl } from './worker-url.js';

const provided = inject('pglease');
if (provided !== undefined) {
  process.env.PGLEASE_DATABASE_URLS = JSON.stringify(provided.urls);
  process.env.PGLEASE_URL = provided.server;
  if (provided.token !== null) process.env.PGLEASE_TOKEN = provided.token;
}
const url = workerDatabaseUrl();
if (url !== undefined) process.env.DATABASE_URL = url;
