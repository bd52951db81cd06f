/**
 * pglease as a library: run the service inside another program (`startService`), or use leases
 * from code (the same helpers as `pglease/testing`).
 */
export { loadConfig, ConfigError } from './config.js';
export type { Config } from './config.js';
export { startService } from './service.js';
export type { Service, StartOptions } from './service.js';
export * from './testing/index.js';
