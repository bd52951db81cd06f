/**
 * The built-in jobs. Each is a thin loop around a SQL function (sql/reaper.sql, sql/jobs.sql):
 * the scheduler decides when, Postgres does the work.
 */
import { statfs } from 'node:fs/promises';
import type pg from 'pg';
import type { JobsConfig } from '../config.js';
import { applyDatabaseQuotas } from '../leases/database-quota.js';
import { countDatabaseLeases } from '../leases/database-counts.js';
import { dropQueuedDatabases } from '../leases/database-drops.js';

export interface JobRunContext {
  pool: pg.Pool;
  /** True once the run should stop early: the service is stopping, or another process took the job over. */
  cancelled: () => boolean;
  /** Tells the other schedulers there is a backlog they can help with (see JobDefinition.help). */
  askForHelp: () => void;
}

export interface JobOutcome {
  rowsAffected: number;
  result: Record<string, unknown>;
}

export interface JobDefinition {
  name: string;
  description: string;
  /** The configured cron schedule (the API may change the stored one). */
  schedule: string;
  run: (context: JobRunContext) => Promise<JobOutcome>;
  /**
   * Work another process may do alongside a run that asked for help, without claiming the job:
   * safe in parallel by construction (the reaper's batches lock disjoint leases).
   */
  help?: (context: JobRunContext) => Promise<number>;
  /**
   * Whether a successful run did nothing worth a row of its own in job_runs: such runs are folded
   * into one row (sql/jobs.sql, pglease.finish_job_run). Absent: every run has its row.
   */
  quiet?: (outcome: JobOutcome) => boolean;
}

/** What the built-in jobs tell the service as they work (for /metrics); every hook optional. */
export interface JobHooks {
  /** Leases a reaper batch ended, each by how long past its expires_at (seconds). */
  onReaped?: (lagSeconds: number[]) => void;
  /** An observer pass over every lease due, and its time (seconds); quick passes are not told. */
  onObservationPass?: (seconds: number) => void;
}

interface ReapBatch {
  reaped: number;
  failed: number;
}

/**
 * One batch, and how late each lease it ended was. Two statements in one simple-protocol query
 * run in one implicit transaction, so now() is the same in both and `ended_at = now()` (the
 * leases_ended index) finds exactly the leases this batch ended, not another process's.
 */
async function reapBatch(pool: pg.Pool, batch: number, hooks: JobHooks): Promise<ReapBatch> {
  const results = (await pool.query(
    `SELECT reaped, failed FROM pglease.reap_expired(${Math.trunc(batch)});
     SELECT extract(epoch FROM ended_at - expires_at)::float8 AS lag FROM pglease.leases WHERE ended_at = now() AND state = 'expired'`,
  )) as unknown as [pg.QueryResult<ReapBatch>, pg.QueryResult<{ lag: number }>];
  const lags = results[1].rows.map((row) => row.lag);
  if (lags.length > 0) hooks.onReaped?.(lags);
  return results[0].rows[0]!;
}

/**
 * Batches in flight at once per process. Dropping a lease is CPU work in one backend (about 2.5 ms
 * on a 2-core machine); a second loop uses a second core, and SKIP LOCKED keeps their batches
 * disjoint.
 */
const REAP_LOOPS = 2;

/** Reaps batch after batch until a batch comes back short (no backlog left for us). */
async function reapUntilDone(context: JobRunContext, batch: number, hooks: JobHooks, onFullBatch: () => void): Promise<ReapBatch> {
  const total = { reaped: 0, failed: 0 };
  const loop = async () => {
    while (!context.cancelled()) {
      const done = await reapBatch(context.pool, batch, hooks);
      total.reaped += done.reaped;
      total.failed += done.failed;
      // a client could log in between the drop's termination of sessions and its commit
      if (done.reaped > 0) await context.pool.query({ name: 'pglease.terminate-orphan-sessions', text: 'SELECT pglease.terminate_orphan_sessions()' });
      if (done.reaped + done.failed < batch) break;
      onFullBatch();
    }
  };
  await Promise.all(Array.from({ length: REAP_LOOPS }, loop));
  return total;
}

interface ObservePass {
  taken: number;
  observed: number;
  /** Leases whose size the batch measured. */
  measured: number;
  /** Due leases left for the next batch: their sizes must be measured, and the batch measured as many as its lock budget allows. */
  deferred: number;
  changed: number;
  errors: number;
  took_ms: string;
}

/**
 * Leases observed per transaction, at most. One statement reads the catalogs (pg_class, the
 * statistics) once for all of them: batches of 500 read them ten times over 5,000 leases, and a
 * pass over 5,000 idle leases took 360-440 ms of CPU against 170-280 ms in one batch (scratch
 * measurements at load 8-18). Leases whose size is unchanged take no lock; those whose size is
 * measured lock their relations until the transaction ends, so each batch measures as many as a
 * eighth of the server's lock table allows (pglease.observe_leases), and leaves the others due
 * for the batches that follow, each taking as many as the one before measured.
 */
const OBSERVE_BATCH = 10_000;

/** Bytes free on the file system of `dir`; undefined when it cannot be read (not this machine's server). */
async function diskFree(dir: string | undefined): Promise<number | undefined> {
  if (dir === undefined) return undefined;
  try {
    const stats = await statfs(dir);
    return stats.bavail * stats.bsize;
  } catch {
    return undefined;
  }
}

/**
 * Observations past their retention, and the health rows of ended leases, are pruned at most this
 * often by a process (ms), not at every run (a second): at 5,000 leases a prune scans every health
 * row, 7.5 ms of CPU, 0.75% of a core when run each second.
 */
const PRUNE_EVERY_MS = 10_000;
let lastPruneAt = 0;

/** A run's quick passes end this long before the next run is due (ms), so runs do not overlap. */
const QUICK_PASSES_MARGIN_MS = 150;

/**
 * One run of the observer: the host, then every lease that is due, batch after batch
 * (sql/observe.sql), then observations past their retention. With `quickPassesForMs`, then passes
 * over the leases due again (those near a limit or growing, every PGLEASE_OBSERVE_FAST_MS) until
 * that much time has gone by since the run began.
 */
export async function observeOnce(
  pool: pg.Pool,
  config: JobsConfig,
  hostId: number | undefined,
  cancelled: () => boolean = () => false,
  quickPassesForMs = 0,
  hooks: JobHooks = {},
  /** The service's URL of the lease database: database leases are restricted in their own databases through it (src/leases/database-quota.ts). */
  serviceUrl?: string,
): Promise<JobOutcome> {
  const began = Date.now();
  if (hostId !== undefined) {
    await pool.query({ name: 'pglease.observe-host', text: 'SELECT 1 FROM pglease.observe_host($1, $2)', values: [hostId, (await diskFree(config.observeDiskPath)) ?? null] });
  }
  const total = { observed: 0, changed: 0, errors: 0, took_ms: 0, quick_passes: 0 };
  // database leases' tables and rows, counted in their databases for the passes below to read; a
  // database that refuses the count (its owner's doing) is no error of the observer's
  if (serviceUrl !== undefined) await countDatabaseLeases(pool, serviceUrl);
  /** What the passes decided for database leases, made in their databases. */
  const databaseQuotas = async (): Promise<void> => {
    if (serviceUrl === undefined) return;
    total.errors += (await applyDatabaseQuotas(pool, serviceUrl)).failed;
  };
  /** One batch of at most `limit` due leases; resolves to the limit of the batch that must follow, if one must. */
  const pass = async (dueOnly: boolean, dueBy: Date, limit = OBSERVE_BATCH): Promise<number | undefined> => {
    const { rows } = await pool.query<ObservePass>({
      name: 'pglease.observe-leases',
      text: 'SELECT taken, observed, measured, deferred, changed, errors, took_ms FROM pglease.observe_leases($1, make_interval(secs => $2), make_interval(secs => $3 / 1000.0), $4, $5)',
      values: [limit, config.observeIntervalSeconds, config.observeFastMs, dueOnly, dueBy],
    });
    const done = rows[0]!;
    total.observed += done.observed;
    total.changed += done.changed;
    total.errors += done.errors;
    total.took_ms += Number(done.took_ms);
    // left some to measure: the next batches take just those, as many as this one measured (a
    // batch of every lease due would read the catalogs for all of them again each time); took a
    // full share of due rows (some may have been of leases no longer live): another
    if (done.deferred > 0) return Math.max(done.measured, 1);
    return done.taken >= limit ? OBSERVE_BATCH : undefined;
  };
  // the batches of a run take the leases due when it began (by the database's clock): one observed
  // by a batch and due again soon after (a new lease, one growing) waits for the next pass
  const runBegan = (await pool.query<{ now: Date }>('SELECT now() AS now')).rows[0]!.now;
  const passBegan = performance.now();
  // the first batch also takes in new leases and those that wrote much (sql/observe.sql)
  let next = cancelled() ? undefined : await pass(false, runBegan);
  while (next !== undefined && !cancelled()) next = await pass(true, runBegan, next);
  hooks.onObservationPass?.((performance.now() - passBegan) / 1000);
  await databaseQuotas();
  const overdue = await pool.query<{ n: number }>({
    name: 'pglease.mark-overdue',
    text: 'SELECT pglease.mark_overdue(make_interval(secs => $1)) AS n',
    values: [config.observeIntervalSeconds],
  });
  total.changed += overdue.rows[0]!.n;
  while (!cancelled() && Date.now() - began + config.observeFastMs < quickPassesForMs - QUICK_PASSES_MARGIN_MS) {
    await new Promise((resolve) => setTimeout(resolve, config.observeFastMs));
    const quickBegan = (await pool.query<{ now: Date }>('SELECT now() AS now')).rows[0]!.now;
    const changedBefore = total.changed;
    let quickNext: number | undefined = OBSERVE_BATCH;
    while (quickNext !== undefined && !cancelled()) quickNext = await pass(true, quickBegan, quickNext);
    // a restriction decided now is made now; one that failed is tried again after the next full pass
    // (the look for pending ones reads every health row: about 1 ms at 5,000 leases)
    if (total.changed > changedBefore) await databaseQuotas();
    total.quick_passes++;
  }
  let pruned = 0;
  if (Date.now() - lastPruneAt >= PRUNE_EVERY_MS) {
    lastPruneAt = Date.now();
    const { rows } = await pool.query<{ n: string }>({
      name: 'pglease.prune-observations',
      text: 'SELECT pglease.prune_observations(make_interval(secs => $1)) AS n',
      values: [config.observationRetentionSeconds],
    });
    pruned = Number(rows[0]!.n);
  }
  return {
    rowsAffected: total.observed,
    result: { ...total, took_ms: Math.round(total.took_ms * 1000) / 1000, pruned },
  };
}

export function builtinJobs(config: JobsConfig, hostId?: number, hooks: JobHooks = {}, serviceUrl?: string): JobDefinition[] {
  return [
    {
      name: 'observe',
      description: 'Observes the host and each live lease that is due (catalogs only), moves their status, restricts leases over their plan and restores them',
      schedule: config.observerSchedule,
      // quick passes fill the second until the next run (the default schedule runs every second)
      run: ({ pool, cancelled }) => observeOnce(pool, config, hostId, cancelled, 1000, hooks, serviceUrl),
      // a run every second: one that moved no status and failed no restriction is folded
      quiet: ({ result }) => result.changed === 0 && result.errors === 0,
    },
    {
      name: 'reap-expired',
      description: 'Ends leases whose expires_at has passed: terminates their sessions, drops schema and roles, marks them expired',
      schedule: config.reaperSchedule,
      run: async (context) => {
        let asked = false;
        const total = await reapUntilDone(context, config.reaperBatch, hooks, () => {
          if (!asked) context.askForHelp();
          asked = true;
        });
        // the databases of the database leases it ended (and any an interrupted release left)
        const databases = await dropQueuedDatabases(context.pool);
        // database leases a crashed fork, snapshot or restore left closed (src/leases/copy-bracket.ts)
        const { rows: reopened } = await context.pool.query<{ n: number }>({ name: 'pglease.reopen-abandoned-closes', text: 'SELECT pglease.reopen_abandoned_closes() AS n' });
        await context.pool.query({ name: 'pglease.plan-next-reap', text: 'SELECT pglease.plan_next_reap()' });
        return { rowsAffected: total.reaped, result: { reaped: total.reaped, failed: total.failed, databases_dropped: databases.dropped, databases_reopened: reopened[0]!.n } };
      },
      help: async (context) => {
        const { reaped } = await reapUntilDone(context, config.reaperBatch, hooks, () => undefined);
        await dropQueuedDatabases(context.pool);
        return reaped;
      },
    },
    {
      name: 'cleanup-orphans',
      description: 'Drops lease schemas and roles no live lease owns, ends active leases whose objects are gone, terminates sessions of dropped roles',
      schedule: config.cleanupSchedule,
      run: async ({ pool }) => {
        const { rows } = await pool.query<{ orphans_dropped: number; leases_failed: number; sessions_terminated: number; errors: number }>(
          'SELECT orphans_dropped, leases_failed, sessions_terminated, errors FROM pglease.cleanup_orphans()',
        );
        // orphan lease databases were queued above (sql/reaper.sql); their roles go once they are
        const databases = await dropQueuedDatabases(pool);
        const result = { ...rows[0]!, databases_dropped: databases.dropped };
        result.errors += databases.failed;
        if (result.errors > 0) throw new Error(`${result.errors} repairs failed (dropped ${result.orphans_dropped} orphans, ended ${result.leases_failed} broken leases); they are retried on the next run`);
        return { rowsAffected: result.orphans_dropped + result.leases_failed + result.sessions_terminated, result };
      },
    },
    {
      name: 'prune-history',
      description: 'Deletes ended leases (with their events) and job runs older than PGLEASE_HISTORY_RETENTION',
      schedule: config.pruneSchedule,
      run: async ({ pool }) => {
        const { rows } = await pool.query<{ leases_deleted: string; runs_deleted: string }>(
          'SELECT leases_deleted, runs_deleted FROM pglease.prune_history(make_interval(secs => $1))',
          [config.historyRetentionSeconds],
        );
        const leasesDeleted = Number(rows[0]!.leases_deleted);
        const runsDeleted = Number(rows[0]!.runs_deleted);
        return { rowsAffected: leasesDeleted + runsDeleted, result: { leases_deleted: leasesDeleted, runs_deleted: runsDeleted } };
      },
    },
  ];
}
