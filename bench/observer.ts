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
 *   npm run bench:observer [-- --counts 1000,5000]
 */
import { randomBytes } from 'node:crypto';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { startEmbedded, type EmbeddedServer } from '../src/db/embedded.js';
import { openHost, withDatabase, type Host } from '../src/db/host.js';
import { observeOnce } from '../src/scheduler/jobs.js';
import { freePort } from '../test/support/free-port.js';

const countsArg = process.argv[process.argv.indexOf('--counts') + 1];
const counts = (process.argv.includes('--counts') ? countsArg! : '1000,5000').split(',').map(Number);
const jobs = loadConfig({}).jobs;

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
    console.log(`${'leases'.padStart(6)}  ${'idle'.padStart(19)}  ${'all written'.padStart(19)}  job over 20 s, CPU share of a core`);
    for (const count of counts) {
      await provisionUpTo(serverUrl, host, count);
      await observeOnce(pool, jobs, host.id); // warm caches, first observation of every lease
      const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
      /** Five passes over every lease; `measureAll`: as if every lease had been written since (sizes measured again). */
      const passes = async (measureAll: boolean): Promise<{ wall: number; cpu: number }> => {
        const runs: { wall: number; cpu: number }[] = [];
        for (let i = 0; i < 5; i++) {
          await pool.query(`UPDATE pglease.lease_health SET next_observation_at = now()${measureAll ? ', measured_at = NULL' : ''}`);
          const cpuBefore = await backendCpu(pid);
          const started = performance.now();
          const outcome = await observeOnce(pool, jobs, host.id);
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
        await observeOnce(pool, jobs, host.id, () => false, 1000);
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, 1000 - (performance.now() - runStarted))));
      }
      const share = ((await backendCpu(pid)) - cpuBefore) / ((performance.now() - started) / 1000);
      const ms = (seconds: number) => `${(seconds * 1000).toFixed(0)} ms`;
      console.log(`${String(count).padStart(6)}  ${ms(idle.wall / 1000).padStart(9)} / ${ms(idle.cpu).padStart(7)}  ${ms(written.wall / 1000).padStart(9)} / ${ms(written.cpu).padStart(7)}  ${(share * 100).toFixed(1)}%`);
    }
  } finally {
    await pool.end();
    await host.close();
    await embedded?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
