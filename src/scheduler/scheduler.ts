/**
 * Runs the jobs of pglease.jobs in this process. Every process of a database runs one; they agree
 * through Postgres alone:
 *   - a due run is claimed with a conditional UPDATE (pglease.claim_job), so it happens once;
 *   - the next run is computed with cron-parser from Postgres's clock, never the local one;
 *   - a NOTIFY on pglease_jobs wakes every scheduler when a job changes or a short lease pulls the
 *     reaper forward; without one, a scheduler still re-reads the table every POLL_MS. Any session
 *     may NOTIFY that channel, as often as it likes: a payload that names no job here is dropped,
 *     and the rest only mark what to do (re-read the schedule, help a job), which happens at most
 *     once per NOTIFICATION_INTERVAL_MS, so a flood costs a few queries a second, not one each.
 * Database errors (a restart, a lost connection) are logged and retried with a backoff; they never
 * end the process.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { endPool } from '../db/end-pool.js';
import { nextRun } from './cron.js';
import { JobStore, workerApplicationName, type ScheduleEntry } from './job-store.js';
import type { JobDefinition, JobRunContext } from './jobs.js';
import { JOBS_CHANNEL, listenForJobs, type JobListener } from './listener.js';
import { SERVICE_SESSION_OPTIONS } from '../db/service-session.js';

export interface SchedulerOptions {
  /** The service's URL of the lease database. */
  databaseUrl: string;
  jobs: JobDefinition[];
  log: (message: string) => void;
  /** Told when a run of a job ends here (for /metrics). */
  onRunEnd?: (job: string, outcome: 'succeeded' | 'failed') => void;
}

/** Upper bound on sleeping between looks at the table, in case a notification was missed. */
const POLL_MS = 30_000;
/** How long a claimed run holds its job without a heartbeat; heartbeats come every third of it. */
const HOLD_SECONDS = 60;
const HELP_PREFIX = 'help:';
/**
 * Notifications are acted on at most this often: a wake-up or a helper starts at most 10 times a
 * second however many notifications arrive, and a real change waits at most this long.
 */
const NOTIFICATION_INTERVAL_MS = 100;

export class Scheduler {
  /** Names this process in job_runs.worker and in its sessions' application_name. */
  readonly worker = `${hostname().slice(0, 24)}:${process.pid}:${randomBytes(3).toString('hex')}`;
  private readonly pool: pg.Pool;
  private readonly store: JobStore;
  private readonly definitions: Map<string, JobDefinition>;
  private listener: JobListener | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly running = new Map<string, Promise<void>>();
  private readonly helping = new Map<string, Promise<void>>();
  private ticking = false;
  private tickAgain = false;
  private failures = 0;
  private stopped = false;
  private stopping: Promise<void> | undefined;
  /** What notifications asked for since they were last acted on. */
  private notifiedWake = false;
  private readonly notifiedHelp = new Set<JobDefinition>();
  private notificationTimer: NodeJS.Timeout | undefined;
  private lastNotificationsActedOn = 0;

  constructor(private readonly options: SchedulerOptions) {
    // Its own small pool: jobs keep running while the API's pool is saturated, and the sessions
    // carry the worker's name.
    this.pool = new pg.Pool({
      connectionString: options.databaseUrl,
      options: SERVICE_SESSION_OPTIONS,
      application_name: workerApplicationName(this.worker),
      // two reaper loops, a heartbeat, and another job's query
      max: 4,
      idleTimeoutMillis: 60_000,
    });
    this.pool.on('error', (error) => options.log(`scheduler pool: idle connection lost (${error.message})`));
    this.store = new JobStore(this.pool);
    this.definitions = new Map(options.jobs.map((job) => [job.name, job]));
  }

  /** Declares the jobs, listens for changes, and runs what is due. */
  async start(): Promise<void> {
    for (const job of this.definitions.values()) await this.store.ensure(job.name, job.description, job.schedule);
    // After a start (perhaps after a crash) the host is checked against the lease rows at once.
    if (this.definitions.has('cleanup-orphans')) await this.store.runSoon('cleanup-orphans');
    this.listener = listenForJobs({
      connectionString: this.options.databaseUrl,
      applicationName: workerApplicationName(this.worker),
      onWake: (payload) => this.onNotification(payload),
      log: this.options.log,
    });
    this.wake();
  }

  /** Re-reads the schedule now. */
  wake(): void {
    if (this.stopped) return;
    if (this.ticking) {
      // the tick under way may have read the table before the change: look again after it
      this.tickAgain = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), 0);
  }

  /** Lets running jobs finish their current batch, then closes connections. */
  stop(): Promise<void> {
    return (this.stopping ??= (async () => {
      this.stopped = true;
      clearTimeout(this.timer);
      clearTimeout(this.notificationTimer);
      await this.listener?.close();
      await Promise.allSettled([...this.running.values(), ...this.helping.values()]);
      await endPool(this.pool);
    })());
  }

  /** A notification on pglease_jobs: a job's name, `help:` and a job's name, or 'connected'. */
  private onNotification(payload: string): void {
    if (payload.startsWith(HELP_PREFIX)) {
      const job = this.definitions.get(payload.slice(HELP_PREFIX.length));
      if (!job?.help || this.notifiedHelp.has(job)) return;
      this.notifiedHelp.add(job);
    } else if (payload === 'connected' || this.definitions.has(payload)) {
      this.notifiedWake = true;
    } else {
      return;
    }
    if (this.notificationTimer !== undefined) return;
    const wait = Math.max(0, this.lastNotificationsActedOn + NOTIFICATION_INTERVAL_MS - Date.now());
    this.notificationTimer = setTimeout(() => this.actOnNotifications(), wait);
  }

  private actOnNotifications(): void {
    this.notificationTimer = undefined;
    this.lastNotificationsActedOn = Date.now();
    for (const job of this.notifiedHelp) this.help(job);
    this.notifiedHelp.clear();
    if (this.notifiedWake) {
      this.notifiedWake = false;
      this.wake();
    }
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    if (this.ticking) {
      this.tickAgain = true;
      return;
    }
    this.ticking = true;
    let sleepMs = POLL_MS;
    try {
      const { now, entries } = await this.store.schedule();
      for (const entry of entries) {
        const job = this.definitions.get(entry.name);
        // jobs of another version of pglease, or already running here, are not ours to start
        if (!job || !entry.enabled || this.running.has(entry.name)) continue;
        // held by this worker but not running here: a run whose end could not be recorded
        const heldElsewhere = entry.runningBy !== this.worker && entry.runningUntil !== null && entry.runningUntil > now && !entry.holderGone;
        if (entry.nextRunAt <= now && !heldElsewhere) {
          this.launch(job, entry, now);
        } else {
          const at = heldElsewhere ? Math.max(entry.nextRunAt.getTime(), entry.runningUntil!.getTime()) : entry.nextRunAt.getTime();
          sleepMs = Math.min(sleepMs, Math.max(0, at - now.getTime()));
        }
      }
      this.failures = 0;
    } catch (error) {
      this.failures++;
      sleepMs = Math.min(500 * 2 ** this.failures, POLL_MS);
      if (this.failures === 1 || this.failures % 10 === 0) this.options.log(`scheduler: cannot read jobs (${(error as Error).message}); retrying`);
    } finally {
      this.ticking = false;
    }
    if (this.stopped) return;
    if (this.tickAgain) {
      this.tickAgain = false;
      sleepMs = 0;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), sleepMs);
  }

  private launch(job: JobDefinition, entry: ScheduleEntry, now: Date): void {
    const run = this.claimAndRun(job, entry, now)
      .catch((error: Error) => this.options.log(`job ${job.name}: ${error.message}`))
      .finally(() => {
        this.running.delete(job.name);
        this.wake();
      });
    this.running.set(job.name, run);
  }

  private async claimAndRun(job: JobDefinition, entry: ScheduleEntry, now: Date): Promise<void> {
    const runId = await this.store.claim(entry, nextRun(entry.schedule, now), this.worker, HOLD_SECONDS);
    if (runId === null) return; // another process was first
    let takenOver = false;
    const heartbeat = setInterval(() => {
      this.store.heartbeat(job.name, this.worker, HOLD_SECONDS).then(
        (held) => (takenOver ||= !held),
        () => undefined, // a lost connection: the next heartbeat tries again
      );
    }, (HOLD_SECONDS * 1000) / 3);
    const context: JobRunContext = {
      pool: this.pool,
      cancelled: () => this.stopped || takenOver,
      askForHelp: () => void this.pool.query('SELECT pg_notify($1, $2)', [JOBS_CHANNEL, HELP_PREFIX + job.name]).catch(() => undefined),
    };
    try {
      const outcome = await job.run(context);
      await this.store.finish(runId, 'succeeded', outcome.rowsAffected, outcome.result, null, job.quiet?.(outcome) ?? false);
      this.options.onRunEnd?.(job.name, 'succeeded');
    } catch (error) {
      this.options.onRunEnd?.(job.name, 'failed');
      const message = (error as Error).message;
      this.options.log(`job ${job.name} failed: ${message}`);
      // if the database is gone the run stays 'running' and the next claim marks it abandoned
      await this.store.finish(runId, 'failed', null, null, message).catch(() => undefined);
    } finally {
      clearInterval(heartbeat);
    }
  }

  /** Joins another process's run on its backlog (once at a time per job, and not while running it here). */
  private help(job: JobDefinition): void {
    if (!job.help || this.stopped || this.running.has(job.name) || this.helping.has(job.name)) return;
    const context: JobRunContext = { pool: this.pool, cancelled: () => this.stopped, askForHelp: () => undefined };
    const helping = job
      .help(context)
      .then(() => undefined, (error: Error) => this.options.log(`job ${job.name} (helping): ${error.message}`))
      .finally(() => this.helping.delete(job.name));
    this.helping.set(job.name, helping);
  }
}
