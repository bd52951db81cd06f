/**
 * The setup file that pglease() (./vitest.ts) adds to a vitest config: runs in each worker before
 * its test files and points DATABASE_URL at the worker's own lease.
 */
import { workerDatabaseUrl } from './worker-url.js';

const url = workerDatabaseUrl();
if (url !== undefined) process.env.DATABASE_URL = url;
