/**
 * pglease as its own process for a benchmark: embedded Postgres in a temporary directory, free
 * ports, the environment a benchmark asks for, and a stop that cleans everything up. Benchmarks
 * measure the service across a real socket, never in the process that drives the load.
 */
import { createWriteStream } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../src/paths.js';
import { freePort } from '../../test/support/free-port.js';

export interface BenchPglease {
  baseUrl: string;
  dataDir: string;
  pgPort: number;
  child: ChildProcess;
  /** The embedded cluster's superuser URL of `database` (the lease database by default). */
  superuserUrl: (database?: string) => Promise<string>;
  stop: () => Promise<void>;
}

export interface BenchPgleaseOptions {
  /** PGLEASE_* and other variables on top of the defaults below. */
  env?: Record<string, string>;
  /** Flags for node itself (e.g. --cpu-prof). */
  nodeFlags?: string[];
  /** The entry point and its arguments; default `src/main.ts` (what `npm start` serves). */
  entry?: string[];
  /** Open an IPC channel to the child (child.send / 'message'), for an entry that answers on one. */
  ipc?: boolean;
}

/** Polls `check` every 100 ms until it is true; fails when `child` exits or after 60 s. */
export async function waitFor(check: () => Promise<boolean>, child: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; ; i++) {
    if (await check().catch(() => false)) return;
    if (i > 600 || child.exitCode !== null) throw new Error(`a server did not start:\n${log()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Node flags for the pglease process from BENCH_NODE_FLAGS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/p`,
 * which NODE_OPTIONS refuses): to profile the service a benchmark drives.
 */
function benchNodeFlags(): string[] {
  return (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter((flag) => flag !== '');
}

export async function startBenchPglease(options: BenchPgleaseOptions = {}): Promise<BenchPglease> {
  // BENCH_SERVICE_LOG=<file>: the service's log (its standard error, at LOG_LEVEL) is appended there
  const serviceLog = process.env.BENCH_SERVICE_LOG;
  const dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-bench-'));
  const [httpPort, pgPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, [...(options.nodeFlags ?? benchNodeFlags()), '--import', 'tsx', ...(options.entry ?? ['src/main.ts'])], {
    cwd: projectRoot,
    env: {
      ...process.env,
      DATABASE_URL: '',
      PGLEASE_DATA_DIR: dataDir,
      PGLEASE_PG_PORT: String(pgPort),
      PORT: String(httpPort),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      ...options.env,
    },
    stdio: options.ipc ? ['ignore', 'ignore', 'pipe', 'ipc'] : ['ignore', 'ignore', 'pipe'],
  });
  if (serviceLog) child.stderr!.pipe(createWriteStream(serviceLog, { flags: 'a' }));
  let log = '';
  child.stderr!.on('data', (chunk) => (log += chunk));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    await rm(dataDir, { recursive: true, force: true });
  };
  const baseUrl = `http://127.0.0.1:${httpPort}`;
  try {
    await waitFor(async () => (await fetch(`${baseUrl}/readyz`)).status === 200, child, () => log);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    baseUrl,
    dataDir,
    pgPort,
    child,
    superuserUrl: async (database = 'pglease') => {
      const password = (await readFile(path.join(dataDir, 'superuser-password'), 'utf8')).trim();
      return `postgresql://postgres:${encodeURIComponent(password)}@127.0.0.1:${pgPort}/${database}`;
    },
    stop,
  };
}
