/**
 * `pglease migrate` on the embedded Postgres: it brings the database up to date and exits, and
 * says nothing alarming on the way out. Its service pool used to be ended without waiting for the
 * connections to close, so stopping Postgres right after terminated them and every other run
 * printed "idle connection lost (terminating connection due to administrator command)".
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { endPool } from '../src/db/end-pool.js';
import { projectRoot } from '../src/paths.js';
import { freePort } from './support/free-port.js';

let dataDir: string;
let pgPort: number;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-migrate-'));
  pgPort = await freePort();
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

function migrate(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'migrate', '--data-dir', dataDir], {
      cwd: projectRoot,
      env: { ...process.env, DATABASE_URL: '', PGLEASE_PG_PORT: String(pgPort) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('endPool', () => {
  it('resolves once every connection of the pool has closed (pool.end() alone resolves before)', async () => {
    const pool = new pg.Pool({ connectionString: inject('serverUrl'), max: 4 });
    const ended: boolean[] = [];
    pool.on('connect', (client) => {
      const index = ended.push(false) - 1;
      client.on('end', () => (ended[index] = true));
    });
    const clients = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
    for (const client of clients) client.release();
    await endPool(pool);
    expect(ended).toEqual([true, true, true]);
  });
});

describe('pglease migrate', () => {
  it('migrates, stops its Postgres and exits 0 without reporting lost connections, run after run', async () => {
    for (let run = 0; run < 4; run++) {
      const { code, stdout, stderr } = await migrate();
      expect(code, `run ${run + 1} exited with ${code}: ${stderr}`).toBe(0);
      expect(stdout).toContain('is up to date');
      expect(stderr).not.toMatch(/connection lost|terminating connection/);
    }
    // four starts and stops of a cluster, each run compiled by tsx: 33-82 s in session 15's runs,
    // over 120 s once beside a second suite
  }, 300_000);
});
