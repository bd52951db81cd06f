/**
 * bench:fork-phases — where a fork of a database lease spends its time: forks a lease of 20 tables
 * and 1,000 rows `--rounds` times, with the embedded server logging every statement's duration
 * (log_min_duration_statement = 0), then reads the server's log back and puts each
 * fork's statements on its timeline (from the moment the client sent the POST). Prints, per phase,
 * the median and p90 of its own duration and of the moment it ended, and the HTTP request's and
 * the first query's times measured by the client; then the median fork statement by statement.
 * What no statement covers is pglease's own (Node, round trips, connecting to the new database).
 *
 *   npm run bench:fork-phases [-- --rounds 20 --from-snapshot]
 *
 * --from-snapshot: each fork comes right after a restore of the source (and once the copy for the
 * next restore is made): the first one takes that prepared copy (pglease.fork_from_prepared_copy),
 * and is not counted; each next one takes the fork made in advance after the one before
 * (sql/ready-forks.sql, pglease.take_ready_fork).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startBenchPglease } from './support/pglease-process.js';
import { TWENTY_TABLES_SQL } from './support/twenty-tables.js';

const rounds = Number(process.argv[process.argv.indexOf('--rounds') + 1]) || 20;
const FROM_SNAPSHOT = process.argv.includes('--from-snapshot');
const ADMIN = 'bench-admin-' + randomBytes(8).toString('hex');

const SEED = TWENTY_TABLES_SQL;

/** The phases a fork's statements fall into, by what their text starts with or holds. */
const PHASES: [string, RegExp][] = [
  ['roles: provision_parked', /pglease\.provision_parked/],
  ['route: source, plan', /^SELECT (id, label, host_id|name, description, max_size_bytes)/],
  ['roles: declared roles', /fork_declared_roles/],
  ['close source', /close_for_fork/],
  ['CREATE DATABASE', /^CREATE DATABASE/],
  ['prepared copy (or not)', /fork_from_prepared_copy/],
  ['ready fork: take', /take_ready_fork/],
  ['ddl text', /fork_database_ddl/],
  ['open fork, lend source', /open_lease_database|lend_source_database/],
  ['return source', /return_source_database/],
  ['handover (statement)', /pglease\.fork_roles/],
  ['reopen source', /reopen_after_fork/],
  ['activate', /q\.rate_limit/],
  ['note fork', /note_fork/],
];

/** The id of the fork made in advance for `sourceId`, once there is one (`superuser` is in the service's database). */
async function readyFork(superuser: pg.Client, sourceId: string): Promise<string> {
  for (let i = 0; i < 600; i++) {
    const { rows } = await superuser.query<{ lease_id: string }>('SELECT lease_id FROM pglease.ready_forks WHERE source_id = $1', [sourceId]);
    if (rows.length > 0) return rows[0]!.lease_id;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('no fork was made in advance within 30 s');
}

interface LogStatement {
  endMs: number;
  durationMs: number;
  app: string;
  text: string;
}

/** `2026-12-06 23:50:01.123 UTC [pid] app|user|db LOG:  duration: 1.234 ms  execute name: SELECT ...` */
function parseLog(log: string): LogStatement[] {
  const statements: LogStatement[] = [];
  for (const line of log.split('\n')) {
    const head = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC \[\d+\] ([^|]*)\|[^|]*\|[^ ]* LOG:  (.*)$/.exec(line);
    if (!head) continue;
    const atMs = Date.parse(head[1]!.replace(' ', 'T') + 'Z');
    const rest = head[3]!;
    const duration = /^duration: ([\d.]+) ms  (?:statement|execute [^:]*): (.*)$/.exec(rest);
    if (duration) {
      statements.push({ endMs: atMs, durationMs: Number(duration[1]), app: head[2]!, text: duration[2]! });
    }
  }
  return statements;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function main(): Promise<void> {
  const service = await startBenchPglease({ env: { PGLEASE_ADMIN_TOKEN: ADMIN, PGLEASE_DATABASE_LEASE_POOL: '0', PGLEASE_RATE_LIMIT: '0' } });
  const post = async (route: string, body: unknown) => {
    const response = await fetch(`${service.baseUrl}${route}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (response.status >= 300) throw new Error(`${route}: ${response.status} ${await response.text()}`);
    return (await response.json()) as { id: string; url: string };
  };
  const release = (id: string) => fetch(`${service.baseUrl}/v1/leases/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
  const query = async (url: string, sql: string) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return await client.query(sql);
    } finally {
      await client.end();
    }
  };
  const superuser = new pg.Client({ connectionString: await service.superuserUrl() });
  await superuser.connect();
  try {
    const source = await post('/v1/leases', { kind: 'database', ttl: 3600 });
    await query(source.url, SEED);
    await superuser.query(`ALTER SYSTEM SET log_min_duration_statement = 0`);
    await superuser.query(`ALTER SYSTEM SET log_line_prefix = '%m [%p] %a|%u|%d '`);
    await superuser.query('SELECT pg_reload_conf()');
    await new Promise((resolve) => setTimeout(resolve, 500));
    const windows: { startMs: number; responseMs: number; firstQueryMs: number }[] = [];
    const database = new URL(source.url).pathname.slice(1);
    if (FROM_SNAPSHOT) await post(`/v1/leases/${source.id}/snapshots`, { name: 'phases' });
    for (let round = 0; round < rounds; round++) {
      if (FROM_SNAPSHOT) {
        await post(`/v1/leases/${source.id}/restore`, { name: 'phases' });
        for (let i = 0; i < 600; i++) {
          const { rows } = await superuser.query(`SELECT 1 FROM pg_database WHERE datname LIKE $1 AND NOT datallowconn`, [`${database}_p_phases_%`]);
          if (rows.length > 0) break;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
      // after the first fork as of the snapshot, the next one is made in advance (sql/ready-forks.sql)
      const ready = FROM_SNAPSHOT && round > 0 ? await readyFork(superuser, source.id) : undefined;
      const startMs = performance.timeOrigin + performance.now();
      const forked = (await post(`/v1/leases/${source.id}/fork`, { ttl: 600 })) as { id: string; url: string; copied_from_snapshot?: string | null };
      if (FROM_SNAPSHOT && forked.copied_from_snapshot !== 'phases') throw new Error('the fork did not take the prepared copy');
      if (ready !== undefined && forked.id !== ready) throw new Error('the fork did not take the fork made in advance');
      const responseMs = performance.timeOrigin + performance.now();
      await query(forked.url, 'SELECT count(*) FROM t19');
      const firstQueryMs = performance.timeOrigin + performance.now();
      // with --from-snapshot the first round (the snapshot's prepared copy) is not counted
      if (!FROM_SNAPSHOT || round > 0) windows.push({ startMs, responseMs, firstQueryMs });
      await release(forked.id);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await superuser.query('ALTER SYSTEM RESET ALL');
    await superuser.query('SELECT pg_reload_conf()');
    const statements = parseLog(await readFile(path.join(service.dataDir, 'postgres.log'), 'utf8'));

    const durations = new Map<string, number[]>();
    const ends = new Map<string, number[]>();
    const add = (phase: string, duration: number, end: number) => {
      durations.set(phase, [...(durations.get(phase) ?? []), duration]);
      ends.set(phase, [...(ends.get(phase) ?? []), end]);
    };
    const unmatched = new Map<string, number>();
    for (const window of windows) {
      const inWindow = statements.filter((s) => s.endMs >= window.startMs - 1 && s.endMs <= window.responseMs + 1 && s.app !== 'pglease-rest' && !s.app.startsWith('pglease-scheduler'));
      const perPhase = new Map<string, { duration: number; end: number }>();
      for (const statement of inWindow) {
        const phase = PHASES.find(([, pattern]) => pattern.test(statement.text))?.[0];
        if (!phase) {
          const key = statement.text.slice(0, 60);
          unmatched.set(key, (unmatched.get(key) ?? 0) + 1);
          continue;
        }
        const sofar = perPhase.get(phase) ?? { duration: 0, end: 0 };
        perPhase.set(phase, { duration: sofar.duration + statement.durationMs, end: Math.max(sofar.end, statement.endMs - window.startMs) });
      }
      for (const [phase, { duration, end }] of perPhase) add(phase, duration, end);
      add('HTTP response', NaN, window.responseMs - window.startMs);
      add('first query on the fork', window.firstQueryMs - window.responseMs, window.firstQueryMs - window.startMs);
    }
    console.log(`fork of a database lease with 20 tables and 1,000 rows, ${rounds} rounds; ms from the POST`);
    console.log(`  ${'phase'.padEnd(26)} ${'own p50'.padStart(8)} ${'own p90'.padStart(8)} ${'ends p50'.padStart(9)} ${'ends p90'.padStart(9)}`);
    const order = [...ends.keys()].sort((a, b) => percentile(ends.get(a)!, 50) - percentile(ends.get(b)!, 50));
    for (const phase of order) {
      const own = durations.get(phase)!.filter((d) => !Number.isNaN(d));
      const fmt = (v: number) => (Number.isNaN(v) ? '' : v.toFixed(1)).padStart(8);
      console.log(`  ${phase.padEnd(26)} ${fmt(percentile(own, 50))} ${fmt(percentile(own, 90))} ${fmt(percentile(ends.get(phase)!, 50)).padStart(9)} ${fmt(percentile(ends.get(phase)!, 90)).padStart(9)}`);
    }
    // the timeline of the fork whose response came at the median: every statement of the service's
    const median = [...windows].sort((a, b) => (a.responseMs - a.startMs) - (b.responseMs - b.startMs))[Math.floor(windows.length / 2)]!;
    console.log(`  the median fork (${(median.responseMs - median.startMs).toFixed(1)} ms), statement by statement (start-end, ms from the POST):`);
    for (const s of statements.filter((s) => s.endMs >= median.startMs - 1 && s.endMs <= median.responseMs + 1 && s.app !== 'pglease-rest' && !s.app.startsWith('pglease-scheduler'))) {
      console.log(`    ${(s.endMs - s.durationMs - median.startMs).toFixed(1).padStart(6)}-${(s.endMs - median.startMs).toFixed(1).padEnd(6)} ${s.app.padEnd(14)} ${s.text.slice(0, 70)}`);
    }
    if (unmatched.size > 0) {
      console.log('  other statements in the forks\' windows:');
      for (const [text, count] of unmatched) console.log(`    ${count}x ${text}`);
    }
    await release(source.id);
  } finally {
    await superuser.end();
    await service.stop();
  }
}

await main();
