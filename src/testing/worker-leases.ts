/**
 * The part the vitest and jest global setups share: find or start pglease, register the template,
 * make one lease per worker, publish their URLs in the environment the workers inherit, and
 * undo all of it at the end.
 */
import path from 'node:path';
import { PgleaseApiError, PgleaseUnreachableError, type CreatedLeaseJson } from './client.js';
import { connectPglease, prepareTemplate, releaseQuietly, type TemplateSpec } from './lease.js';

/** Options of a test runner integration; serializable, since runners pass them through config. */
export interface WorkerLeaseOptions {
  /** Seed every worker's lease from this template (a file path is relative to the runner's root). */
  template?: TemplateSpec | string;
  /**
   * Seconds the leases live if the run never ends cleanly (default 3600). While the run goes on
   * they are renewed every third of it, so a long run (watch mode) keeps them.
   */
  ttl?: number;
  /** Number of leases; default the runner's maximum number of workers. */
  workers?: number;
  /** pglease base URL; default $PGLEASE_URL, else http://localhost:8080, else one in-process. */
  server?: string;
  adminToken?: string;
  local?: 'auto' | 'never' | 'always';
  /** Data directory of an in-process pglease. */
  dataDir?: string;
}

export interface WorkerLeases {
  /** One URL per worker: worker n (counting from 1) uses urls[n - 1]. */
  urls: string[];
  /** The pglease they came from. */
  server: string;
  template: string | null;
  /** The token that creates more leases from the template (admin, or its owner lease's), if any. */
  token: string | null;
  /** Releases the leases and the template's owner, stops an in-process pglease, restores the environment. */
  teardown: () => Promise<void>;
}

/** Environment the workers inherit: PGLEASE_DATABASE_URLS, DATABASE_URL (worker 1's), PGLEASE_URL, PGLEASE_TOKEN. */
const PUBLISHED = ['PGLEASE_DATABASE_URLS', 'DATABASE_URL', 'PGLEASE_URL', 'PGLEASE_TOKEN'] as const;

export async function startWorkerLeases(
  options: WorkerLeaseOptions,
  runner: { workers: number; root: string; label: string },
): Promise<WorkerLeases> {
  const ttl = options.ttl ?? 3600;
  const connection = await connectPglease({
    server: options.server,
    adminToken: options.adminToken,
    local: options.local,
    localOptions: { dataDir: options.dataDir },
  });
  const savedEnv = Object.fromEntries(PUBLISHED.map((name) => [name, process.env[name]]));
  const leases: CreatedLeaseJson[] = [];
  let disposeTemplate = async (): Promise<void> => undefined;
  let renewTemplate = async (_ttl: number): Promise<void> => undefined;
  let renewal: NodeJS.Timeout | undefined;
  const teardown = async () => {
    clearInterval(renewal);
    try {
      await Promise.all(leases.map((lease) => releaseQuietly(connection.client.withToken(lease.token), lease.id)));
      await disposeTemplate();
    } finally {
      await connection.close();
      for (const [name, value] of Object.entries(savedEnv)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  };
  try {
    let templateName: string | undefined;
    let token = connection.adminToken;
    if (typeof options.template === 'object') {
      const spec = 'file' in options.template ? { ...options.template, file: path.resolve(runner.root, options.template.file) } : options.template;
      const prepared = await prepareTemplate(connection, spec, ttl);
      [templateName, token, disposeTemplate, renewTemplate] = [prepared.name, prepared.token, prepared.dispose, prepared.renew];
    } else {
      templateName = options.template;
    }
    // renewed from now on, the template's owner first: a run whose workers' creates took longer
    // than the TTL (a short one, on a slow machine under load) lost its private template before
    // the first renewal (the test suite saw it beside a second suite on a slower 2-core machine)
    renewal = renewEvery(ttl, async () => {
      await Promise.all([renewTemplate(ttl), ...leases.map((lease) => connection.client.withToken(lease.token).renewLease(lease.id, ttl))]);
    });
    const creator = connection.client.withToken(token);
    const count = Math.max(1, options.workers ?? runner.workers);
    // allSettled: when one create fails, the others are still released by the teardown
    const results = await Promise.allSettled(
      Array.from({ length: count }, (_, index) => creator.createLease({ ttl, name: `${runner.label} worker ${index + 1}`, template: templateName })),
    );
    for (const result of results) if (result.status === 'fulfilled') leases.push(result.value);
    const failure = results.find((result) => result.status === 'rejected');
    if (failure) throw failure.reason;
    const urls = leases.map((lease) => lease.url);
    process.env.PGLEASE_DATABASE_URLS = JSON.stringify(urls);
    process.env.DATABASE_URL = urls[0];
    process.env.PGLEASE_URL = connection.client.server;
    // lets tests lease more from the same (possibly private) template with lease()/withLease()
    if (token !== undefined) process.env.PGLEASE_TOKEN = token;
    return { urls, server: connection.client.server, template: templateName ?? null, token: token ?? null, teardown };
  } catch (error) {
    await teardown();
    throw error;
  }
}

/**
 * Renews the run's leases every third of their TTL (at least every second), so that they outlive
 * the TTL only while the run does. A failed renewal is said once; the next one may still succeed.
 */
function renewEvery(ttl: number, renew: () => Promise<void>): NodeJS.Timeout {
  let warned = false;
  const timer = setInterval(() => {
    renew().then(
      () => (warned = false),
      (error: unknown) => {
        if (warned) return;
        warned = true;
        process.stderr.write(`pglease: could not renew this run's leases (${(error as Error).message}); they expire ${ttl} s after their last renewal\n`);
      },
    );
  }, Math.max(1000, (ttl * 1000) / 3));
  // the run's own end decides when the process exits, not this timer
  timer.unref();
  return timer;
}

/** What to do about a failed setup, by what failed. */
function remedy(error: unknown): string {
  if (error instanceof PgleaseApiError) {
    if (error.code === 'PGLEASE_TEMPLATE_INVALID') return "fix the template's SQL and run again";
    if (error.code === 'PGLEASE_RATE_LIMITED') return 'release leases you no longer need (pglease release --all-mine) or wait, then run again';
    if (error.code === 'PGLEASE_CAPACITY') return 'the pglease server is full: release leases or ask its operator (PGLEASE_MAX_LEASES)';
  }
  if (error instanceof PgleaseUnreachableError) return 'start one with `pglease serve`, or set PGLEASE_URL to one that runs';
  return 'fix this and run again';
}

/**
 * The one line a failed setup is told with: what failed (this run's setup, before any test), why
 * (the server's message and code), and what to do. A test runner shows a global setup's error under
 * its own report ("No test files found", a stack trace), where it is read last if at all.
 */
export function setupFailureLine(error: unknown): string {
  const message = ((error as Error)?.message ?? String(error)).replace(/^pglease: /, '').split('\n')[0];
  const code = error instanceof PgleaseApiError ? ` (${error.code})` : '';
  return `pglease: could not set up this test run: ${message}${code}; ${remedy(error)}`;
}
