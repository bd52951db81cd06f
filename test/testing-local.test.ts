/**
 * The in-process pglease of pglease/testing (src/testing/local.ts), as test runs meet it: two runs
 * starting at the same moment on one cached cluster, and runs that end without stopping it (a
 * test runner's Ctrl-C calls process.exit; a plain script dies of SIGINT). Nothing may be left
 * running or on disk, and no run may fail for another's sake.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../src/paths.js';
import { startLocalPglease } from '../src/testing/local.js';

let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'pglease-local-test-'));
  // as root, Postgres runs as the postgres user, which must reach the clusters inside
  await chmod(scratch, 0o755);
});
afterAll(async () => {
  if (!scratch) return;
  // a failed test may have left a cluster running
  for (const entry of await readdir(scratch)) {
    const pid = await postmaster(path.join(scratch, entry));
    if (pid !== undefined) process.kill(pid, 'SIGINT');
  }
  await rm(scratch, { recursive: true, force: true });
});

/** The postmaster of the cluster under `dataDir`, if one is running. */
async function postmaster(dataDir: string): Promise<number | undefined> {
  const text = await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').catch(() => undefined);
  const pid = Number(text?.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

/**
 * Runs a script that starts `count` in-process pgleases on one data directory (all but the first
 * get throwaway clusters) and then ends as `ending` says, without stopping them. Returns their
 * data directories and Postgres pids.
 */
async function runAndEnd(dataDir: string, ending: 'exit' | 'SIGINT' | 'SIGKILL', count = 2): Promise<{ dirs: string[]; pids: number[] }> {
  const script = path.join(scratch, `ends-by-${ending}.mts`);
  const start = `startLocalPglease({ dataDir: ${JSON.stringify(dataDir)} })`;
  await writeFile(
    script,
    `import { startLocalPglease } from ${JSON.stringify(path.join(projectRoot, 'src/testing/local.ts'))};
const started = await Promise.all([${Array(count).fill(start).join(', ')}]);
console.log(JSON.stringify(started.map((local) => local.dataDir)));
${ending === 'exit' ? 'process.exit(0);' : 'setInterval(() => undefined, 1000);'}
`,
  );
  const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const dirs = await new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start within 90 s:\n${output}`)), 90_000);
    child.stdout.on('data', () => {
      const line = output.split('\n').find((text) => text.startsWith('['));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as string[]);
      }
    });
    child.on('exit', () => setTimeout(() => reject(new Error(`exited before starting:\n${output}`)), 100));
  });
  const pids = (await Promise.all(dirs.map(postmaster))).filter((pid): pid is number => pid !== undefined);
  expect(pids).toHaveLength(count);
  if (ending !== 'exit') child.kill(ending);
  await new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(undefined) : child.once('exit', resolve)));
  return { dirs, pids };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(process.platform === 'win32')('an in-process pglease', () => {
  it('gives the second of two runs starting at once a throwaway cluster, and both work', async () => {
    const dataDir = path.join(scratch, 'shared');
    const [first, second] = await Promise.all([startLocalPglease({ dataDir }), startLocalPglease({ dataDir })]);
    try {
      expect(new Set([first.dataDir, second.dataDir]).size).toBe(2);
      expect([first.dataDir, second.dataDir]).toContain(dataDir);
      for (const local of [first, second]) {
        const created = await fetch(`${local.server}/v1/leases`, { method: 'POST' });
        expect(created.status).toBe(201);
      }
    } finally {
      await Promise.all([first.stop(), second.stop()]);
    }
    const throwaway = [first.dataDir, second.dataDir].find((dir) => dir !== dataDir)!;
    expect(existsSync(throwaway)).toBe(false);
  }, 120_000);

  for (const ending of ['exit', 'SIGINT'] as const) {
    it(`stops its Postgres and removes a throwaway cluster when the process ends by ${ending === 'exit' ? 'process.exit' : 'SIGINT'}`, async () => {
      const dataDir = path.join(scratch, `ends-by-${ending}`);
      const { dirs, pids } = await runAndEnd(dataDir, ending);
      await expect.poll(() => pids.filter(alive), { timeout: 30_000, interval: 100 }).toEqual([]);
      const throwaway = dirs.find((dir) => dir !== dataDir)!;
      await expect.poll(() => existsSync(throwaway), { timeout: 30_000, interval: 100 }).toBe(false);
      // the cached cluster stays, stopped cleanly, for the next run
      expect(existsSync(path.join(dataDir, 'pg', 'PG_VERSION'))).toBe(true);
      expect(existsSync(path.join(dataDir, 'pg', 'postmaster.pid'))).toBe(false);
    }, 120_000);
  }

  it('adopts the Postgres that a killed run (kill -9) left running on the cached cluster', async () => {
    const dataDir = path.join(scratch, 'adopted');
    const { pids: [orphan] } = await runAndEnd(dataDir, 'SIGKILL', 1);
    expect(alive(orphan!)).toBe(true);
    const next = await startLocalPglease({ dataDir });
    try {
      expect(next.dataDir).toBe(dataDir);
      expect(await postmaster(dataDir)).toBe(orphan);
      expect((await fetch(`${next.server}/v1/leases`, { method: 'POST' })).status).toBe(201);
    } finally {
      await next.stop();
    }
    expect(alive(orphan!)).toBe(false);
  }, 120_000);
});
