/**
 * The jest integration of pglease/testing, run for real: jest (CommonJS, no ESM flags) on the
 * fixture project test/fixtures/jest-project (a package.json as `npm init -y` makes it: no "type",
 * so CommonJS) against this file's service.
 */
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestService, type TestService } from './support/service.js';
import { childEnv, fixtureProject, repoRoot } from './fixtures/install-package.js';

const run = promisify(execFile);
let service: TestService;
let project: string;

beforeAll(async () => {
  [service, project] = await Promise.all([startTestService(), fixtureProject('jest-project', ['jest', 'pg'])]);
}, 300_000);
afterAll(async () => {
  await service?.close();
  if (project) await rm(project, { recursive: true, force: true });
});

it('gives every jest worker a seeded lease through globalSetup/setupFiles, and globalTeardown releases them', async () => {
  let output: string;
  try {
    const result = await run(process.execPath, [path.join(repoRoot, 'node_modules/jest/bin/jest.js'), '--ci', '--maxWorkers=2'], {
      cwd: project,
      env: childEnv({ PGLEASE_URL: service.baseUrl }),
      timeout: 90_000,
    });
    output = result.stdout + result.stderr;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`the fixture's jest run failed:\n${stdout ?? ''}\n${stderr ?? ''}`);
  }
  // more-leases.test.js requires pglease/testing: its CommonJS build (scripts/build-cjs.mjs)
  expect(output).toMatch(/Tests:\s+3 passed, 3 total/);

  const client = new pg.Client({ connectionString: service.host.databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ label: string; state: string }>(
      `SELECT label, state FROM pglease.leases WHERE label LIKE 'jest worker %' OR label = 'template owner: todo-app' ORDER BY label`,
    );
    expect(rows).toEqual([
      { label: 'jest worker 1', state: 'released' },
      { label: 'jest worker 2', state: 'released' },
      { label: 'template owner: todo-app', state: 'released' },
    ]);
  } finally {
    await client.end();
  }
}, 120_000);
