/**
 * bench:observer — the cost of observing leases (sql/observe.sql): one full observation pass over
 * 1,000 and 5,000 live leases (wall time, and CPU of the Postgres backend that ran it), and the
 * observer job as it runs in service (a run every second: the due leases, every lease every 10 s,
 * then quick passes every 200 ms) over 20 s, as a share of one core.
 *
 * Starts an embedded Postgres in a temporary directory (or uses DATABASE_URL, a superuser's), makes
 * the leases in bulk (provisionUpTo), each with a table of 10 rows and an index, and calls the
 * observer the way the job does (observeOnce). Goals (issue 21): a pass over 5,000
 * leases under 1 s, and under 5% of one core at the default interval.
 *
 * With --before REF, each count is measured twice on the same leases, in the same run: first with
 * the observer of git revision REF (its sql/observe.sql, lease_health's index on
 * next_observation_at, and its job loop: every batch a full one, no pglease.mark_overdue), then
 * with this one; a loaded machine moves every figure between runs, the ratio less.
 *
 *   npm run bench:observer [-- --counts 1000,5000] [--before a703c77]
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { startEmbedded, type EmbeddedServer } from '../src/db/embedded.js';
import { openHost, withDatabase, type Host } from '../src/db/host.js';
import { observeOnce, type JobOutcome } from '../src/scheduler/jobs.js';
import { projectPath } from '../src/paths.js';
import { freePort } from '../test/support/free-port.js';

const countsArg = process.argv[process.argv.indexOf('--counts') + 1];
const counts = (process.argv.includes('--counts') ? countsArg! : '1000,5000').split(',').map(Number);
const jobs = loadConfig({}).jobs;
const beforeRef = process.argv.includes('--before') ? process.argv[process.argv.indexOf('--before') + 1]! : undefined;

type Observer = (pool: pg.Pool, hostId: number, quickPassesForMs?: number) => Promise<JobOutcome>;

/** The job loop of revisions before pglease.mark_overdue: every batch of a run a full one (the host, batches, quick passes, prune). */
const legacyObserver: Observer = async (pool, hostId, quickPassesForMs = 0) => {
  const began = Date.now();
  await pool.query('SELECT 1 FROM pglease.observe_host($1, $2)', [hostId, null]);
  let observed = 0;
  const pass = async (dueOnly: boolean, dueBy: Date): Promise<number> => {
    const { rows } = await pool.query<{ observed: number }>(
      'SELECT observed FROM pglease.observe_leases($1, make_interval(secs => $2), make_interval(secs => $3 / 1000.0), $4, $5)',
      [500, jobs.observeIntervalSeconds, jobs.observeFastMs, dueOnly, dueBy],
    );
    observed += rows[0]!.observed;
    return rows[0]!.observed;
  };
  const now = async () => (await pool.query<{ now: Date }>('SELECT now() AS now')).rows[0]!.now;
  const runBegan = await now();
  while ((await pass(false, runBegan)) >= 500);
  while (Date.now() - began + jobs.observeFastMs < quickPassesForMs - 150) {
    await new Promise((resolve) => setTimeout(resolve, jobs.observeFastMs));
    const quickBegan = await now();
    while ((await pass(true, quickBegan)) >= 500);
  }
  await pool.query('SELECT pglease.prune_observations(make_interval(secs => $1))', [jobs.observationRetentionSeconds]);
  return { rowsAffected: observed, result: { observed } };
};
const currentObserver: Observer = (pool, hostId, quickPassesForMs = 0) => observeOnce(pool, jobs, hostId, () => false, quickPassesForMs);

/**
 * Puts the observer of git revision `ref` (undefined: this checkout's) on the database: its
 * functions, and lease_health as its migrations left it (the index on next_observation_at until
 * migration 0012 dropped it for HOT updates).
 */
async function installObserver(superuserUrl: string, ref: string | undefined): Promise<Observer> {
  const text = ref === undefined ? undefined : execFileSync('git', ['show', `${ref}:sql/observe.sql`], { cwd: projectPath('.'), encoding: 'utf8' });
  const superuser = new pg.Client({ connectionString: superuserUrl });
  await superuser.connect();
  try {
    if (text !== undefined) {
      // OUT parameters differ between revisions: CREATE OR REPLACE cannot change them
      await superuser.query('DROP FUNCTION IF EXISTS pglease.observe_leases(int, interval, interval, boolean, timestamptz)');
      await superuser.query('DROP FUNCTION IF EXISTS pglease.observe_leases(int, interval, interval, boolean, timestamptz, int)');
      await superuser.query(text);
      await superuser.query('CREATE INDEX IF NOT EXISTS lease_health_due ON pglease.lease_health (next_observation_at)');
      await superuser.query('ALTER TABLE pglease.lease_health RESET (fillfactor)');
    } else {
      await superuser.query(await readFile(projectPath('sql', 'observe.sql'), 'utf8'));
      await superuser.query('DROP INDEX IF EXISTS pglease.lease_health_due');
      await superuser.query('ALTER TABLE pglease.lease_health SET (fillfactor = 50)');
    }
    await superuser.query('VACUUM FULL pglease.lease_health');
  } finally {
    await superuser.end();
  }
  return ref === undefined ? currentObserver : legacyObserver;
}

/** CPU seconds a backend has used so far (/proc: user + system, in clock ticks of 10 ms). */
async function backendCpu(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * Leases until there are `total`, made in bulk by a superuser as pglease.provision would leave them
 * for the observer (a login role in a lease group, a schema with a 10-row table and its primary key,
 * a row of pglease.leases): provisioning 5,000 through pglease.provision takes longer than the
 * bench itself on a loaded machine, and the observer reads only these catalogs.
 */
async function provisionUpTo(superuserUrl: string, host: Host, total: number): Promise<void> {
  const superuser = new pg.Client({ connectionString: withDatabase(superuserUrl, host.database) });
  await superuser.connect();
  try {
    const existing = Number((await superuser.query<{ n: string }>(`SELECT count(*) AS n FROM pglease.leases WHERE state = 'active'`)).rows[0]!.n);
    for (let from = existing + 1; from <= total; from += 250) {
      const to = Math.min(total, from + 249);
      await superuser.query(`DO $$ DECLARE n text; BEGIN
        FOR i IN ${from}..${to} LOOP
          n := 'lease_b0' || lpad(to_hex(i), 14, '0');
          EXECUTE format('CREATE ROLE %I LOGIN CONNECTION LIMIT 20', n);
          EXECUTE format('GRANT %I TO %I', pglease.lease_group_for(n), n);
          EXECUTE format('CREATE SCHEMA %I AUTHORIZATION %I', n, n);
          EXECUTE format('CREATE TABLE %I.t (id int PRIMARY KEY, v text); INSERT INTO %1$I.t SELECT g, md5(g::text) FROM generate_series(1, 10) g', n);
          INSERT INTO pglease.leases (host_id, schema_name, role_name, anon_role, auth_role, token_hash, state, expires_at)
          VALUES (${host.id}, n, n, n || '_anon', n || '_auth', sha256(n::bytea), 'active', now() + interval '1 day');
        END LOOP; END $$`);
    }
  } finally {
    await superuser.end();
  }
}

async function main(): Promise<void> {
  let embedded: EmbeddedServer | undefined;
  let dataDir: string | undefined;
  let serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) {
    dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-bench-'));
    embedded = await startEmbedded({ dataDir, port: await freePort(), listen: 'localhost' });
    serverUrl = embedded.url('postgres');
  }
  const host = await openHost({ serverUrl, leaseDatabase: `pglease_bench_${randomBytes(4).toString('hex')}`, publicHost: undefined, publicPort: undefined, log: () => undefined });
  // one connection that stays open (no idle timeout), whose backend's CPU is read from /proc
  const pool = new pg.Pool({ connectionString: host.databaseUrl, max: 1, idleTimeoutMillis: 0 });
  try {
    const pid = (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    console.log('one pass over every lease, wall / Postgres backend CPU: idle leases (sizes kept), and as if all had been written (sizes measured)');
    console.log(`${'leases'.padStart(6)}  ${'observer'.padEnd(12)}  ${'idle'.padStart(19)}  ${'all written'.padStart(19)}  job over 20 s, CPU share of a core`);
    const databaseSuperuserUrl = withDatabase(serverUrl, host.database);
    for (const count of counts) {
      await provisionUpTo(serverUrl, host, count);
      const phases: (string | undefined)[] = beforeRef === undefined ? [undefined] : [beforeRef, undefined];
      const figures: { idleCpu: number; writtenCpu: number; share: number }[] = [];
      for (const ref of phases) {
        const observe = await installObserver(databaseSuperuserUrl, ref);
        await observe(pool, host.id); // warm caches, an observation of every lease
        const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
        /** Five passes over every lease; `measureAll`: as if every lease had been written since (sizes measured again). */
        const passes = async (measureAll: boolean): Promise<{ wall: number; cpu: number }> => {
          const runs: { wall: number; cpu: number }[] = [];
          for (let i = 0; i < 5; i++) {
            await pool.query(`UPDATE pglease.lease_health SET next_observation_at = now()${measureAll ? ', measured_at = NULL' : ''}`);
            const cpuBefore = await backendCpu(pid);
            const started = performance.now();
            const outcome = await observe(pool, host.id);
            runs.push({ wall: performance.now() - started, cpu: (await backendCpu(pid)) - cpuBefore });
            if ((outcome.result.observed as number) !== count) throw new Error(`observed ${String(outcome.result.observed)} of ${count} leases`);
          }
          return { wall: median(runs.map((run) => run.wall)), cpu: median(runs.map((run) => run.cpu)) };
        };
        const idle = await passes(false);
        const written = await passes(true);
        // the job as it runs in service: a run each second, for 20 s
        const cpuBefore = await backendCpu(pid);
        const started = performance.now();
        while (performance.now() - started < 20_000) {
          const runStarted = performance.now();
          await observe(pool, host.id, 1000);
          await new Promise((resolve) => setTimeout(resolve, Math.max(0, 1000 - (performance.now() - runStarted))));
        }
        const share = ((await backendCpu(pid)) - cpuBefore) / ((performance.now() - started) / 1000);
        figures.push({ idleCpu: idle.cpu, writtenCpu: written.cpu, share });
        const ms = (seconds: number) => `${(seconds * 1000).toFixed(0)} ms`;
        console.log(`${String(count).padStart(6)}  ${(ref ?? 'this one').padEnd(12)}  ${ms(idle.wall / 1000).padStart(9)} / ${ms(idle.cpu).padStart(7)}  ${ms(written.wall / 1000).padStart(9)} / ${ms(written.cpu).padStart(7)}  ${(share * 100).toFixed(1)}%`);
      }
      if (figures.length === 2) {
        const [old, now] = figures as [(typeof figures)[0], (typeof figures)[0]];
        const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}x` : 'n/a');
        console.log(`${String(count).padStart(6)}  ${'this/before'.padEnd(12)}  CPU idle ${ratio(now.idleCpu, old.idleCpu)}, all written ${ratio(now.writtenCpu, old.writtenCpu)}, job ${ratio(now.share, old.share)}`);
      }
    }
  } finally {
    await pool.end();
    await host.close();
    await embedded?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
