/**
 * pglease as a real child process (`node --import tsx src/main.ts`), for tests that kill it with
 * SIGKILL or run several processes against one lease database.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { inject } from 'vitest';
import { projectPath } from '../../src/paths.js';
import { freePort } from './free-port.js';
import { ADMIN_TOKEN } from './service.js';

export interface ServiceProcess {
  baseUrl: string;
  child: ChildProcess;
  /** Everything the process wrote to stderr so far (its log). */
  log: () => string;
  /** Resolves with the exit code (or the signal's name). */
  exited: Promise<number | string>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts pglease on `database` of the shared test cluster and waits until /readyz answers 200. */
export async function startServiceProcess(database: string, env: Record<string, string> = {}): Promise<ServiceProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', projectPath('src/main.ts')], {
    cwd: projectPath(),
    env: {
      ...process.env,
      DATABASE_URL: inject('serverUrl'),
      PGLEASE_DATABASE: database,
      PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN,
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 45_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`pglease exited during start:\n${stderr}`);
    const ready = await fetch(`${baseUrl}/readyz`).then((response) => response.status === 200, () => false);
    if (ready) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`pglease did not become ready within 45 s:\n${stderr}`);
    }
    await sleep(100);
  }
  return { baseUrl, child, log: () => stderr, exited };
}

/** SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
export async function stopServiceProcess(service: ServiceProcess, graceMs = 10_000): Promise<number | string> {
  if (service.child.exitCode !== null || service.child.signalCode !== null) return service.exited;
  service.child.kill('SIGTERM');
  const timer = setTimeout(() => service.child.kill('SIGKILL'), graceMs);
  try {
    return await service.exited;
  } finally {
    clearTimeout(timer);
  }
}
