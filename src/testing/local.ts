/**
 * pglease in-process, for test suites on a machine with no pglease running: the service and its
 * embedded Postgres start inside the calling process, listen on free localhost ports, and stop
 * with stop().
 *
 * The cluster is kept between runs (initdb happens once) in `node_modules/.cache/pglease` of the
 * working directory, or in the temporary directory when there is no node_modules. If another
 * process is already running that cluster, this run gets a throwaway one of its own instead, so
 * two test runs never share (and stop) one Postgres.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../config.js';
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

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no free port'))));
    });
  });
}

export function defaultDataDir(cwd = process.cwd()): string {
  const modules = path.join(cwd, 'node_modules');
  return existsSync(modules) ? path.join(modules, '.cache', 'pglease') : path.join(tmpdir(), `pglease-local-${userInfo().uid}`);
}

/** True when a live postmaster holds the cluster in `dataDir` (see src/db/embedded.ts). */
async function clusterInUse(dataDir: string): Promise<boolean> {
  const pidFile = path.join(dataDir, 'pg', 'postmaster.pid');
  if (!existsSync(pidFile)) return false;
  const pid = Number((await readFile(pidFile, 'utf8')).split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function startLocalPglease(options: LocalOptions = {}): Promise<LocalPglease> {
  let dataDir = options.dataDir ?? defaultDataDir();
  let throwaway = false;
  if (await clusterInUse(dataDir)) {
    dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-local-'));
    throwaway = true;
  }
  const adminToken = 'pgl_admin_' + randomBytes(24).toString('base64url');
  const config = loadConfig({
    PGLEASE_DATA_DIR: dataDir,
    PGLEASE_PG_PORT: String(await freePort()),
    PGLEASE_ADMIN_TOKEN: adminToken,
    HOST: '127.0.0.1',
    PORT: '0',
  });
  const service = await startService(config, { logger: false, log: options.log });
  let server: string;
  try {
    server = await service.app.listen({ host: '127.0.0.1', port: 0 });
  } catch (error) {
    await service.close();
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
        if (throwaway) await rm(dataDir, { recursive: true, force: true });
      })()),
  };
}
