/**
 * jest integration, the counterpart of ./vitest.ts: one lease per jest worker.
 *
 *   // jest.config.cjs
 *   module.exports = {
 *     globalSetup: 'pglease/testing/jest-global-setup',
 *     globalTeardown: 'pglease/testing/jest-global-teardown',
 *     setupFiles: ['pglease/testing/jest-setup'],
 *     globals: { pglease: { template: { name: 'app', file: 'test/schema.sql' } } },
 *   };
 *
 * globalSetup runs in jest's main process before the workers exist: it makes the leases and puts
 * their URLs in the environment the workers inherit; jest-setup (CommonJS, so no ESM flags are
 * needed) sets DATABASE_URL per JEST_WORKER_ID; globalTeardown releases everything.
 */
import { setupFailureLine, startWorkerLeases, type WorkerLeaseOptions, type WorkerLeases } from './worker-leases.js';

/** `globals.pglease` of the jest config. */
export type PgleaseJestOptions = WorkerLeaseOptions;

/** The parts of jest's GlobalConfig and ProjectConfig used here. */
export interface JestGlobalConfig {
  maxWorkers: number;
}
export interface JestProjectConfig {
  rootDir: string;
  globals?: Record<string, unknown>;
}

/** jest runs globalTeardown in globalSetup's context: the run's leases wait here until then. */
const RUN = Symbol.for('pglease.jest');
type Holder = { [RUN]?: WorkerLeases };

export async function jestGlobalSetup(globalConfig: JestGlobalConfig, projectConfig: JestProjectConfig): Promise<void> {
  const options = (projectConfig.globals?.pglease ?? {}) as PgleaseJestOptions;
  try {
    (globalThis as Holder)[RUN] = await startWorkerLeases(options, { workers: globalConfig.maxWorkers || 1, root: projectConfig.rootDir, label: 'jest' });
  } catch (error) {
    // jest prints a global setup's error as its stack: the one line, without our frames below it
    const failure = new Error(setupFailureLine(error));
    failure.stack = failure.message;
    throw failure;
  }
}

export async function jestGlobalTeardown(): Promise<void> {
  const holder = globalThis as Holder;
  const run = holder[RUN];
  delete holder[RUN];
  await run?.teardown();
}
