/**
 * pglease in-process, for test suites on a machine with no pglease running: the service and its
 * embedded Postgres start inside the calling process, listen on free localhost ports, and stop
 * with stop().
 *
 * The cluster is kept between runs (initdb happens once) in `node_modules/.cache/pglease` of the
 * working directory, or in the temporary directory when there is no node_modules. If another
 * process is already running that cluster, this run gets a throwaway one of its own instead, so
 * two test runs never share (and stop) one Postgres. A Postgres left running by a run that was
 * killed (kill -9) is adopted by the next run. A run that ends without stop() (Ctrl-C: test
 * runners call process.exit) still stops its Postgres, and removes a throwaway cluster.
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../config.js';
import { DATA_DIR_IN_USE } from '../db/embedded.js';
import { onProcessEnd } from '../exit-hooks.js';
import { startService } from '../service.js';

export interface LocalPglease {
  /** Base URL of the in-process service, e.g. http://127.0.0.1:39211 */
  server: string;
  /** The admin token of this service (random per start). */
  adminToken: string;
  dataDir: string;
  stop: () => Promise<void>;
}

export interface LocalOptions {
  /** Where the embedded cluster lives; see the module comment for the default. */
  dataDir?: string;
  log?: (message: string) => void;
}

export function defaultDataDir(cwd = process.cwd()): string {
  const modules = path.join(cwd, 'node_modules');
  return existsSync(modules) ? path.join(modules, '.cache', 'pglease') : path.join(tmpdir(), `pglease-local-${userInfo().uid}`);
}

/**
 * Starts the service on `dataDir`. Its Postgres stops with this process too (a test runner's
 * Ctrl-C ends it with process.exit), since no later run would know it is there.
 */
async function startOn(dataDir: string, adminToken: string, log: LocalOptions['log']) {
  const config = loadConfig({
    PGLEASE_DATA_DIR: dataDir,
    // chosen by startEmbedded just before Postgres binds it, after initdb (seconds under load)
    PGLEASE_PG_PORT: '0',
    PGLEASE_ADMIN_TOKEN: adminToken,
    HOST: '127.0.0.1',
    PORT: '0',
  });
  return startService(config, { logger: false, log, stopPostgresWithProcess: true });
}

/**
 * Removes a throwaway cluster's directory once its Postgres has shut down, from a small process
 * of its own: this one is ending and can wait for nothing.
 */
function removeWhenStopped(dataDir: string): void {
  if (process.platform === 'win32') return;
  const script = 'i=0; while [ -e "$1/pg/postmaster.pid" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; rm -rf "$1"';
  spawn('/bin/sh', ['-c', script, 'sh', dataDir], { detached: true, stdio: 'ignore' }).unref();
}

export async function startLocalPglease(options: LocalOptions = {}): Promise<LocalPglease> {
  const adminToken = 'pgl_admin_' + randomBytes(24).toString('base64url');
  let dataDir = options.dataDir ?? defaultDataDir();
  let throwaway = false;
  let service: Awaited<ReturnType<typeof startOn>>;
  try {
    service = await startOn(dataDir, adminToken, options.log);
  } catch (error) {
    // another run's pglease holds the cluster (it may be starting this very moment): this run
    // gets one of its own rather than sharing, and stopping, that one's Postgres
    if ((error as { code?: string }).code !== DATA_DIR_IN_USE) throw error;
    dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-local-'));
    throwaway = true;
    try {
      service = await startOn(dataDir, adminToken, options.log);
    } catch (second) {
      await rm(dataDir, { recursive: true, force: true });
      throw second;
    }
  }
  const forgetProcessEnd = throwaway ? onProcessEnd(() => removeWhenStopped(dataDir)) : () => undefined;
  let server: string;
  try {
    server = await service.app.listen({ host: '127.0.0.1', port: 0 });
  } catch (error) {
    await service.close();
    forgetProcessEnd();
    if (throwaway) await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  let stopping: Promise<void> | undefined;
  return {
    server,
    adminToken,
    dataDir,
    stop: () =>
      (stopping ??= (async () => {
        await service.close();
        forgetProcessEnd();
        if (throwaway) await rm(dataDir, { recursive: true, force: true });
      })()),
  };
}
