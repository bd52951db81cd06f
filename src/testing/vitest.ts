/**
 * vitest integration: one lease per worker, made once before the workers start.
 *
 *   // vitest.config.ts
 *   import { pglease } from 'pglease/testing/vitest';
 *   export default defineConfig({ test: { ...pglease({ template: { name: 'app', file: 'test/schema.sql' } }) } });
 *
 * pglease() adds a globalSetup (runs here, in vitest's main process) and a setup file (runs in each
 * worker before its test files). The global setup finds or starts pglease, registers the template,
 * creates one lease per worker (vitest's maxWorkers), and hands the URLs on through
 * `provide('pglease', ...)` and the environment; the setup file sets DATABASE_URL to the lease
 * of its worker (VITEST_POOL_ID). Everything is released when the run ends; the TTL catches
 * what a crashed run leaves behind.
 */
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
// loads vitest's types so that the ProvidedContext augmentation below has a module to extend
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { setupFailureLine, startWorkerLeases, type WorkerLeaseOptions } from './worker-leases.js';

/** Options of the vitest integration; serializable, since they travel through `provide`. */
export type PgleaseVitestOptions = WorkerLeaseOptions;

/** What the global setup provides to tests: `inject('pglease')`. */
export interface PgleaseProvided {
  /** One lease URL per worker: `urls[VITEST_POOL_ID - 1]`. */
  urls: string[];
  /** The pglease the leases came from (also in PGLEASE_URL), for tests that make their own. */
  server: string;
  /** The template the leases were seeded from, if any. */
  template: string | null;
  /** The token that creates more leases from that template (PGLEASE_TOKEN in the workers), if any. */
  token: string | null;
}

declare module 'vitest' {
  export interface ProvidedContext {
    pglease: PgleaseProvided;
    pgleaseOptions: PgleaseVitestOptions;
  }
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** .js when built, .ts when run from the sources. */
const extension = path.extname(fileURLToPath(import.meta.url));

/** The `test` config entries that wire pglease in: spread them into your `test` block. */
export function pglease(options: PgleaseVitestOptions = {}): { globalSetup: string[]; setupFiles: string[]; provide: { pgleaseOptions: PgleaseVitestOptions } } {
  return {
    globalSetup: [path.join(here, `vitest-global-setup${extension}`)],
    setupFiles: [path.join(here, `vitest-setup${extension}`)],
    provide: { pgleaseOptions: options },
  };
}

/** vitest's own rule for the number of workers (maxWorkers, else CPUs - 1). */
function workerCount(project: TestProject): number {
  const configured = project.config.maxWorkers || project.vitest.config.maxWorkers;
  if (configured) return Number(configured);
  return Math.max(availableParallelism() - 1, 1);
}

/** A globalSetup function, for suites that assemble their own global setup file. */
export function pgleaseGlobalSetup(options: PgleaseVitestOptions = {}): (project: TestProject) => Promise<() => Promise<void>> {
  return async (project) => {
    const provided = project.getProvidedContext() as Partial<{ pgleaseOptions: PgleaseVitestOptions }>;
    const run = await startWorkerLeases({ ...provided.pgleaseOptions, ...options }, { workers: workerCount(project), root: project.config.root, label: 'vitest' }).catch(
      (error: unknown) => {
        // vitest would report "No test files found" first and the cause below a stack trace: the
        // line is all there is to say, and nothing has started yet (startWorkerLeases undid its part)
        process.stderr.write(setupFailureLine(error) + '\n');
        process.exit(1);
      },
    );
    project.provide('pglease', { urls: run.urls, server: run.server, template: run.template, token: run.token });
    return run.teardown;
  };
}
