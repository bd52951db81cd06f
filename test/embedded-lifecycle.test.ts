/**
 * `npm start`'s process as a user runs it: embedded Postgres by default, a banner, leases that
 * survive a restart, and a SIGTERM that lets a request finish and stops Postgres cleanly.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../src/paths.js';
import { freePort } from './support/free-port.js';

let dataDir: string;
let pgPort: number;
let httpPort: number;
/** Every process a test started: one a failed test leaves running is stopped before the next. */
const started: ChildProcess[] = [];

/** Starts `src/main.ts` (what `npm start` runs, without the build step) and waits for the banner. */
async function startProcess(env: Record<string, string> = {}): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: projectRoot,
    env: { ...process.env, DATABASE_URL: '', PGLEASE_DATA_DIR: dataDir, PGLEASE_PG_PORT: String(pgPort), PORT: String(httpPort), HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(child);
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner within 60 s:\n${output}`)), 60_000);
    const check = () => {
      // stderr is a pipe here: the banner is the "ready" record of the JSON log
      if (output.includes('"msg":"ready"')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stderr!.on('data', check);
    child.on('exit', (code) => reject(new Error(`exited with ${code}:\n${output}`)));
  });
  return { child, output: () => output };
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (code) => resolve(code))));
}

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-lifecycle-'));
  pgPort = await freePort();
  httpPort = await freePort();
});

afterEach(async () => {
  for (const child of started.splice(0)) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    child.kill('SIGTERM');
    await exited(child);
  }
});

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe('the service process', () => {
  it('starts embedded Postgres, keeps leases across a clean restart, and stops cleanly on SIGTERM', async () => {
    // a pid file left by a crash whose pid now belongs to another live process (this one, with
    // another start time) does not lock the directory
    await writeFile(path.join(dataDir, 'pglease.pid'), `${process.pid} 1\n`);
    const first = await startProcess();
    // one logger: every line is a JSON record on stderr (none on stdout); its texts read as the banner did
    const records = first.output().trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    const banner = records.map((record) => Object.values(record).filter((value) => typeof value === 'string').join(' ')).join('\n');
    expect(banner).toContain(`http://127.0.0.1:${httpPort}/v1/leases`);
    expect(banner).toContain(`data in ${dataDir}`);
    expect(banner).toContain('reachable from this machine only (HOST=127.0.0.1');
    // and the service says once that it listens
    expect(records.filter((record) => /pglease is serving on|Server listening/.test(String(record.msg)))).toHaveLength(1);
    expect(banner).toMatch(/curl -s -X POST -H 'Accept: text\/plain' .*\/v1\/leases/);
    expect(banner).toMatch(/revoked CONNECT on database "postgres"/);

    const created = await fetch(`http://127.0.0.1:${httpPort}/v1/leases`, { method: 'POST' });
    expect(created.status).toBe(201);
    const lease = (await created.json()) as { id: string; url: string; token: string };
    const client = new pg.Client({ connectionString: lease.url });
    await client.connect();
    await client.query('CREATE TABLE kept (note text); INSERT INTO kept VALUES ($$still here$$)');
    await client.end();

    // A request in flight when SIGTERM arrives still gets its answer.
    const inFlight = fetch(`http://127.0.0.1:${httpPort}/v1/leases`, { method: 'POST' });
    await new Promise((resolve) => setTimeout(resolve, 5));
    first.child.kill('SIGTERM');
    expect((await inFlight).status).toBe(201);
    expect(await exited(first.child)).toBe(0);
    const log = await readFile(path.join(dataDir, 'postgres.log'), 'utf8');
    expect(log).toMatch(/database system is shut down/);

    const second = await startProcess();
    try {
      const startLog = (await readFile(path.join(dataDir, 'postgres.log'), 'utf8')).slice(log.length);
      expect(startLog).not.toMatch(/not properly shut down|automatic recovery/);
      const again = await fetch(`http://127.0.0.1:${httpPort}/v1/leases/${lease.id}`, { headers: { authorization: `Bearer ${lease.token}` } });
      expect(again.status).toBe(200);
      expect(((await again.json()) as { state: string }).state).toBe('active');
      const reconnected = new pg.Client({ connectionString: lease.url });
      await reconnected.connect();
      expect((await reconnected.query('SELECT note FROM kept')).rows).toEqual([{ note: 'still here' }]);
      await reconnected.end();

      // a second pglease on the same data directory is refused, and the running one is untouched
      // (it used to adopt this Postgres and stop it when it exited)
      const intruder = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        cwd: projectRoot,
        env: { ...process.env, DATABASE_URL: '', PGLEASE_DATA_DIR: dataDir, PGLEASE_PG_PORT: String(pgPort), PORT: String(await freePort()), HOST: '127.0.0.1', LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let refusal = '';
      intruder.stderr!.on('data', (chunk) => (refusal += chunk));
      expect(await exited(intruder)).toBe(1);
      expect(refusal).toContain(`the data directory ${dataDir} is in use by another pglease (pid ${second.child.pid})`);
      expect(refusal).not.toMatch(/\n\s+at /);
      expect((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status).toBe(200);
    } finally {
      second.child.kill('SIGINT');
      expect(await exited(second.child)).toBe(0);
    }
  }, 240_000);

  it('stops promptly on SIGTERM while a warm pool is seeding a slow template', async () => {
    const service = await startProcess({ PGLEASE_ADMIN_TOKEN: 'lifecycle-admin', PGLEASE_TEMPLATE_POOL: '1' });
    const registered = await fetch(`http://127.0.0.1:${httpPort}/v1/templates`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer lifecycle-admin' },
      // quick at the registration check (the service's session), slow in the lease's own: the
      // warm pool's first seed, which registration starts, takes 30 s
      body: JSON.stringify({
        name: 'slow-seed',
        sql: 'CREATE TABLE s (x int); DO $$ BEGIN IF session_user = current_user THEN PERFORM pg_sleep(30); END IF; END $$',
      }),
    });
    expect(registered.status).toBe(201);
    const superuser = new pg.Client({ connectionString: `postgresql://postgres:${encodeURIComponent((await readFile(path.join(dataDir, 'superuser-password'), 'utf8')).trim())}@127.0.0.1:${pgPort}/pglease` });
    await superuser.connect();
    // the seed, in the new lease's own session (not this query, whose text says the same)
    const seeding = async () =>
      (await superuser.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND state = 'active' AND pid <> pg_backend_pid()`)).rows[0].n > 0;
    await expect.poll(seeding, { timeout: 15_000 }).toBe(true);
    await superuser.end();
    const stopping = Date.now();
    service.child.kill('SIGTERM');
    expect(await exited(service.child)).toBe(0);
    expect(Date.now() - stopping).toBeLessThan(10_000);
    // (a process and its cluster started from nothing: over a minute in all beside a second suite
    // on a slower 2-core machine; the stop itself is what is timed above)
  }, 120_000);

  it('closes a request that runs on past PGLEASE_SHUTDOWN_GRACE, and stops', async () => {
    const service = await startProcess({ PGLEASE_SHUTDOWN_GRACE: '1' });
    const lease = (await (await fetch(`http://127.0.0.1:${httpPort}/v1/leases`, { method: 'POST' })).json()) as { url: string; token: string; rest_url: string };
    const client = new pg.Client({ connectionString: lease.url });
    await client.connect();
    await client.query('CREATE FUNCTION slow() RETURNS int LANGUAGE sql AS $$ SELECT 1 FROM pg_sleep(30) $$');
    await client.end();
    const inFlight = fetch(`${lease.rest_url}/rpc/slow`, { method: 'POST', headers: { authorization: `Bearer ${lease.token}` } }).then(
      (response) => response.status,
      () => 'closed',
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    const stopping = Date.now();
    service.child.kill('SIGTERM');
    expect(await exited(service.child)).toBe(0);
    expect(Date.now() - stopping).toBeLessThan(15_000);
    expect(await inFlight).toBe('closed');
    expect(service.output()).toContain('requests still running after 1 s (PGLEASE_SHUTDOWN_GRACE): closing their connections');
  }, 60_000);

  it('refuses a bad configuration with a message naming the variable', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: projectRoot,
      env: { ...process.env, PORT: 'eighty', PGLEASE_DATA_DIR: dataDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stderr!.on('data', (chunk) => (output += chunk));
    expect(await exited(child)).toBe(1);
    expect(output).toContain('PORT: expected a whole number');
    expect(output).not.toMatch(/\n\s+at /); // no stack trace
  }, 90_000);

  it('refuses a taken HTTP port at once, before it starts Postgres', async () => {
    const taken = createNetServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const fresh = await mkdtemp(path.join(tmpdir(), 'pglease-port-taken-'));
    try {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        cwd: projectRoot,
        env: { ...process.env, DATABASE_URL: '', HOST: '127.0.0.1', PORT: String((taken.address() as AddressInfo).port), PGLEASE_DATA_DIR: fresh },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stderr!.on('data', (chunk) => (output += chunk));
      expect(await exited(child)).toBe(1);
      expect(output).toMatch(/port \d+ on 127\.0\.0\.1 is in use/);
      // no cluster was made for nothing
      expect(existsSync(path.join(fresh, 'pg'))).toBe(false);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
      await rm(fresh, { recursive: true, force: true });
    }
  });
});
