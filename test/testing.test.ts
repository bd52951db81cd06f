/**
 * pglease/testing: lease()/withLease(), and the vitest integration run for real on the README's
 * example project (test/fixtures/vitest-project), against this file's service and in-process.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lease, withLease, workerDatabaseUrl, PgleaseApiError, PgleaseClient } from '../src/testing/index.js';
import { ADMIN_TOKEN, startTestService, type TestService } from './support/service.js';
import { freePort } from './support/free-port.js';
import { childEnv, fixtureProject, repoRoot } from './fixtures/install-package.js';
import { setupFailureLine, startWorkerLeases } from '../src/testing/worker-leases.js';

const run = promisify(execFile);
let service: TestService;

beforeAll(async () => {
  service = await startTestService();
});
afterAll(async () => {
  await service?.close();
});

async function stateOf(id: string): Promise<string> {
  return (await new PgleaseClient({ server: service.baseUrl, token: ADMIN_TOKEN }).getLease(id)).state;
}

async function queryLeaseDb<T extends pg.QueryResultRow>(sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: service.host.databaseUrl });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

describe('lease() and withLease()', () => {
  it('hands out a working lease and releases it', async () => {
    const leased = await lease({ server: service.baseUrl, local: 'never', name: 'helper', ttl: 60 });
    const client = new pg.Client({ connectionString: leased.url });
    await client.connect();
    expect((await client.query('SELECT current_schema() AS s')).rows[0].s).toBe(leased.schema);
    await client.end();
    await leased.release();
    await leased.release(); // twice is harmless
    expect(await stateOf(leased.id)).toBe('released');
  });

  it('withLease releases the lease when the function throws', async () => {
    let id = '';
    await expect(
      withLease(
        async (leased) => {
          id = leased.id;
          throw new Error('test failed inside');
        },
        { server: service.baseUrl, local: 'never' },
      ),
    ).rejects.toThrow('test failed inside');
    expect(await stateOf(id)).toBe('released');
  });

  it('registers inline seed SQL privately when there is no admin token, and cleans up its owner lease', async () => {
    const before = await queryLeaseDb<{ n: number }>(`SELECT count(*)::int AS n FROM pglease.leases WHERE state = 'active'`);
    const titles = await withLease(
      async ({ url }) => {
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        const { rows } = await client.query<{ title: string }>('SELECT title FROM notes');
        await client.end();
        return rows.map((row) => row.title);
      },
      { server: service.baseUrl, local: 'never', adminToken: '', template: { name: 'notes', sql: `CREATE TABLE notes (title text); INSERT INTO notes VALUES ('hi')` } },
    );
    expect(titles).toEqual(['hi']);
    const [owner] = await queryLeaseDb<{ state: string }>(`SELECT state FROM pglease.leases WHERE label = 'template owner: notes'`);
    expect(owner?.state).toBe('released');
    expect(await queryLeaseDb(`SELECT count(*)::int AS n FROM pglease.leases WHERE state = 'active'`)).toEqual(before);
  });

  it('reports the server\'s error for an unknown template, and fails clearly when no pglease answers', async () => {
    await expect(lease({ server: service.baseUrl, local: 'never', template: 'no-such-template' })).rejects.toMatchObject({
      constructor: PgleaseApiError,
      status: 400,
      field: 'template',
    });
    const deadServer = `http://127.0.0.1:${await freePort()}`;
    await expect(lease({ server: deadServer, local: 'never' })).rejects.toThrow(`no pglease answers at ${deadServer}`);
  });

  it('refuses a server that is not an http(s) URL, and does not take another service for pglease', async () => {
    await expect(lease({ server: 'localhost:8080' })).rejects.toThrow('server option "localhost:8080" is not an http(s) URL');
    // something else on the port that answers 200 with JSON to any request
    const impostor = createServer((_request, response) => response.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
    try {
      const address = impostor.address() as AddressInfo;
      const server = `http://127.0.0.1:${address.port}`;
      expect(await new PgleaseClient({ server }).ready()).toBe(false);
      await expect(lease({ server, local: 'never' })).rejects.toThrow(`no pglease answers at ${server}`);
    } finally {
      await new Promise((resolve) => impostor.close(resolve));
    }
  });

  it("withLease throws the function's own error when the release fails too", async () => {
    // a pglease that is gone by the time the lease is released
    const doomed = await startTestService({ PGLEASE_LEASE_POOL: '0' });
    let id = '';
    await expect(
      withLease(
        async (leased) => {
          id = leased.id;
          await doomed.close();
          throw new Error('the test failed');
        },
        { server: doomed.baseUrl, local: 'never' },
      ),
    ).rejects.toThrow('the test failed');
    expect(id).not.toBe('');
  });

  it('names the template and its file, line and column when its seed SQL fails', async () => {
    const directory = await mkdtemp(path.join(tmpdir(), 'pglease-seed-'));
    const file = path.join(directory, 'broken.sql');
    await writeFile(file, 'CREATE TABLE ok (id int);\nINSERT INTO missing VALUES (1);\n');
    try {
      for (const adminToken of [ADMIN_TOKEN, '']) {
        await expect(lease({ server: service.baseUrl, local: 'never', adminToken, template: { name: 'broken', file } })).rejects.toMatchObject({
          constructor: PgleaseApiError,
          code: 'PGLEASE_TEMPLATE_INVALID',
          message: `template "broken" (${file}:2:13) failed to apply: relation "missing" does not exist (SQLSTATE 42P01)`,
        });
      }
      // a file that is not there is named with the option, before any lease is made
      const missing = path.join(directory, 'missing.sql');
      await expect(lease({ server: service.baseUrl, local: 'never', adminToken: '', template: { name: 'absent', file: missing } })).rejects.toThrow(
        `pglease: template "absent": cannot read its file (template.file: ${JSON.stringify(missing)}, ${missing}): no such file`,
      );
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  it("keeps a run's worker leases and private template alive past their TTL while the run goes on", async () => {
    const saved = { ...process.env };
    const run = await startWorkerLeases(
      { server: service.baseUrl, local: 'never', adminToken: '', ttl: 3, template: { name: 'renewed', sql: 'CREATE TABLE kept (id int)' } },
      { workers: 1, root: process.cwd(), label: 'renewal' },
    );
    try {
      // twice the TTL, renewed every second (a third of it)
      await new Promise((resolve) => setTimeout(resolve, 6000));
      const client = new pg.Client({ connectionString: run.urls[0] });
      await client.connect();
      expect((await client.query('SELECT count(*)::int AS n FROM kept')).rows).toEqual([{ n: 0 }]);
      await client.end();
      // the private template's owner too: more leases from it still work
      const more = await lease({ server: service.baseUrl, local: 'never', template: 'renewed' });
      await more.release();
    } finally {
      await run.teardown();
      process.env = saved;
    }
    const states = await queryLeaseDb<{ label: string; state: string }>(
      `SELECT label, state::text FROM pglease.leases WHERE label IN ('renewal worker 1', 'template owner: renewed') ORDER BY label`,
    );
    expect(states).toEqual([
      { label: 'renewal worker 1', state: 'released' },
      { label: 'template owner: renewed', state: 'released' },
    ]);
  }, 30_000);

  it('tells a refused setup (429) in one line with what to do', async () => {
    const strict = await startTestService({ PGLEASE_MAX_ACTIVE: '1', PGLEASE_LIMIT_LOCAL: 'on', PGLEASE_LEASE_POOL: '0' });
    try {
      const error = await startWorkerLeases({ server: strict.baseUrl, local: 'never', adminToken: '' }, { workers: 3, root: '.', label: 'vitest' }).catch((failure: unknown) => failure);
      expect(setupFailureLine(error)).toMatch(
        /^pglease: could not set up this test run: client 127\.0\.0\.1 has 1 live lease.*\(PGLEASE_RATE_LIMITED\); release leases you no longer need \(pglease release --all-mine\) or wait, then run again$/,
      );
      // the leases it did make were released with the failure
      const { rows } = await strict.host.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM pglease.leases WHERE state = 'active' AND label LIKE 'vitest worker %'`);
      expect(rows[0]!.n).toBe(0);
    } finally {
      await strict.close();
    }
  });

  it('workerDatabaseUrl picks the lease of the vitest or jest worker', () => {
    const env = { PGLEASE_DATABASE_URLS: JSON.stringify(['postgresql://a', 'postgresql://b']) };
    expect(workerDatabaseUrl({ ...env, VITEST_POOL_ID: '2' })).toBe('postgresql://b');
    expect(workerDatabaseUrl({ ...env, JEST_WORKER_ID: '1' })).toBe('postgresql://a');
    expect(workerDatabaseUrl({ ...env })).toBe('postgresql://a');
    expect(workerDatabaseUrl({})).toBeUndefined();
  });
});

describe('vitest projects', () => {
  let project: string;
  beforeAll(async () => {
    // the package build it waits for took over 120 s once beside a second suite
    project = await fixtureProject('vitest-projects', ['vitest', 'pg']);
  }, 300_000);
  afterAll(async () => {
    if (project) await rm(project, { recursive: true, force: true });
  });

  it("give each project's workers that project's own leases and template", async () => {
    try {
      const { stdout, stderr } = await run(process.execPath, [path.join(repoRoot, 'node_modules/vitest/vitest.mjs'), 'run', '--maxWorkers=2'], {
        cwd: project,
        env: childEnv({ PGLEASE_URL: service.baseUrl }),
        timeout: 90_000,
      });
      expect(stdout + stderr).toMatch(/2 passed/);
    } catch (error) {
      const { stdout, stderr } = error as { stdout?: string; stderr?: string };
      throw new Error(`the fixture's vitest run failed:\n${stdout ?? ''}\n${stderr ?? ''}`);
    }
  }, 120_000);
});

describe('the README\'s vitest example', () => {
  let project: string;

  beforeAll(async () => {
    project = await fixtureProject('vitest-project', ['vitest', 'pg']);
  }, 300_000);
  afterAll(async () => {
    if (project) await rm(project, { recursive: true, force: true });
  });

  async function runVitest(env: Record<string, string>): Promise<string> {
    try {
      const { stdout, stderr } = await run(process.execPath, [path.join(repoRoot, 'node_modules/vitest/vitest.mjs'), 'run', '--maxWorkers=2'], {
        cwd: project,
        env: childEnv(env),
        timeout: 90_000,
      });
      return stdout + stderr;
    } catch (error) {
      const { stdout, stderr } = error as { stdout?: string; stderr?: string };
      throw new Error(`the fixture's vitest run failed:\n${stdout ?? ''}\n${stderr ?? ''}`);
    }
  }

  it('is the code the README shows', async () => {
    const readme = await readFile(path.join(repoRoot, 'README.md'), 'utf8');
    for (const file of ['vitest.config.ts', 'schema.sql', 'todos.spec.ts']) {
      const source = await readFile(path.join(repoRoot, 'test/fixtures/vitest-project', file), 'utf8');
      expect(readme, `README shows ${file}`).toContain(source.trim());
    }
  });

  it('passes against a running pglease, one lease per worker, all released at the end', async () => {
    const [{ started }] = await queryLeaseDb<{ started: string }>(`SELECT now()::text AS started`);
    const output = await runVitest({ PGLEASE_URL: service.baseUrl });
    expect(output).toMatch(/3 passed/);
    // this run's leases (other runs of this file's service name their workers the same)
    const leases = await queryLeaseDb<{ label: string; state: string }>(
      `SELECT label, state FROM pglease.leases WHERE (label LIKE 'vitest worker %' OR label = 'template owner: todo-app') AND created_at >= '${started}' ORDER BY label`,
    );
    expect(leases.map((row) => row.label)).toEqual(['template owner: todo-app', 'vitest worker 1', 'vitest worker 2']);
    expect(leases.every((row) => row.state === 'released')).toBe(true);
  }, 120_000);

  it('fails with one clear line first when its setup fails (a broken schema.sql), not under "No test files found"', async () => {
    const broken = await mkdtemp(path.join(tmpdir(), 'pglease-broken-project-'));
    await cp(project, broken, { recursive: true, verbatimSymlinks: true });
    await writeFile(path.join(broken, 'schema.sql'), 'CREATE TABLE todos (id int);\nINSERT INTO nowhere VALUES (1);\n');
    try {
      // stdout and stderr on one pipe, in the order a terminal shows them
      const failed = await run('sh', ['-c', `"${process.execPath}" "${path.join(repoRoot, 'node_modules/vitest/vitest.mjs')}" run --maxWorkers=2 2>&1`], {
        cwd: broken,
        env: childEnv({ PGLEASE_URL: service.baseUrl }),
        timeout: 90_000,
      }).then(
        () => undefined,
        (error: { code?: number; stdout?: string }) => error,
      );
      expect(failed?.code).toBe(1);
      const lines = (failed?.stdout ?? '').split('\n').filter((line) => line.trim() !== '');
      // after vitest's " RUN  v4 <root>" header, the first line says what failed, why, and what to do
      expect(lines[0]).toMatch(/^\s*RUN\s/);
      expect(lines.slice(1)).toHaveLength(1);
      expect(lines[1]).toMatch(
        /^pglease: could not set up this test run: template "todo-app" \(.*schema\.sql:2:13\) failed to apply: relation "nowhere" does not exist \(SQLSTATE 42P01\) \(PGLEASE_TEMPLATE_INVALID\); fix the template's SQL and run again$/,
      );
      expect(failed?.stdout).not.toContain('No test files found');
    } finally {
      await rm(broken, { recursive: true, force: true });
    }
  }, 120_000);

  it('passes with no pglease running: it starts one in-process, with its own embedded Postgres', async () => {
    const output = await runVitest({ PGLEASE_URL: `http://127.0.0.1:${await freePort()}` });
    expect(output).toMatch(/3 passed/);
    expect(output).toContain('starting pglease in this process instead');
    const cluster = path.join(project, 'node_modules/.cache/pglease/pg');
    expect(existsSync(path.join(cluster, 'PG_VERSION'))).toBe(true);
    // stopped cleanly at the end of the run
    expect(existsSync(path.join(cluster, 'postmaster.pid'))).toBe(false);
  }, 120_000);
});
