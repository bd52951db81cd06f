/**
 * The jobs tables as the scheduler and the jobs API use them: each method is one query or one call
 * of a function of sql/jobs.sql.
 */
import type pg from 'pg';
import { nextRun } from './cron.js';

/** A row of pglease.jobs as the API shows it. */
export interface JobRow {
  name: string;
  description: string;
  schedule: string;
  enabled: boolean;
  next_run_at: Date;
  running_by: string | null;
  running_until: Date | null;
  last_run_at: Date | null;
  last_finished_at: Date | null;
  last_outcome: 'succeeded' | 'failed' | null;
  last_result: Record<string, unknown> | null;
  last_error: string | null;
}

export interface JobRunRow {
  id: string;
  job_name: string;
  scheduled_for: Date;
  started_at: Date;
  finished_at: Date | null;
  outcome: 'running' | 'succeeded' | 'failed' | 'abandoned';
  rows_affected: string | null;
  result: Record<string, unknown> | null;
  error: string | null;
  worker: string;
}

/** What the scheduler needs to decide what to run and when to wake up. */
export interface ScheduleEntry {
  name: string;
  schedule: string;
  enabled: boolean;
  /** next_run_at as Postgres prints it: microseconds survive, so a claim can compare it exactly. */
  nextRunAtText: string;
  nextRunAt: Date;
  runningBy: string | null;
  runningUntil: Date | null;
  /** The process that holds the job has no session left: it died, so the job is free. */
  holderGone: boolean;
}

const JOB_COLUMNS =
  'name, description, schedule, enabled, next_run_at, running_by, running_until, last_run_at, last_finished_at, last_outcome, last_result, last_error';

/** application_name of a scheduler's sessions: pglease.job_holder_alive looks for it. */
export function workerApplicationName(worker: string): string {
  return 'pglease-jobs ' + worker;
}

export class JobStore {
  constructor(private readonly pool: pg.Pool) {}

  /** Postgres's clock: every process computes cron times from the same one. */
  async now(): Promise<Date> {
    const { rows } = await this.pool.query<{ now: Date }>({ name: 'pglease.jobs-now', text: 'SELECT now() AS now' });
    return rows[0]!.now;
  }

  async ensure(name: string, description: string, schedule: string): Promise<void> {
    const now = await this.now();
    await this.pool.query('SELECT pglease.ensure_job($1, $2, $3, $4)', [name, description, schedule, nextRun(schedule, now)]);
  }

  /** Asks for a run as soon as possible (wakes every scheduler through the jobs trigger). */
  async runSoon(name: string): Promise<JobRow | undefined> {
    const { rows } = await this.pool.query<JobRow>(
      `UPDATE pglease.jobs SET next_run_at = least(next_run_at, now()), updated_at = now() WHERE name = $1 RETURNING ${JOB_COLUMNS}`,
      [name],
    );
    return rows[0];
  }

  async schedule(): Promise<{ now: Date; entries: ScheduleEntry[] }> {
    const { rows } = await this.pool.query<{
      now: Date;
      name: string;
      schedule: string;
      enabled: boolean;
      next_run_at_text: string;
      next_run_at: Date;
      running_by: string | null;
      running_until: Date | null;
      holder_gone: boolean;
    }>({
      name: 'pglease.jobs-schedule',
      text: `SELECT now() AS now, j.name, j.schedule, j.enabled, j.next_run_at::text AS next_run_at_text, j.next_run_at, j.running_by, j.running_until,
                    j.running_by IS NOT NULL AND NOT pglease.job_holder_alive(j.running_by) AS holder_gone
               FROM pglease.jobs j`,
    });
    const now = rows[0]?.now ?? (await this.now());
    return {
      now,
      entries: rows.map((row) => ({
        name: row.name,
        schedule: row.schedule,
        enabled: row.enabled,
        nextRunAtText: row.next_run_at_text,
        nextRunAt: row.next_run_at,
        runningBy: row.running_by,
        runningUntil: row.running_until,
        holderGone: row.holder_gone,
      })),
    };
  }

  /** Claims the run due at the next_run_at read in `entry` (compared exactly); null when another process was first. */
  async claim(entry: ScheduleEntry, next: Date, worker: string, holdSeconds: number): Promise<string | null> {
    const { rows } = await this.pool.query<{ run: string | null }>({
      name: 'pglease.claim-job',
      text: 'SELECT pglease.claim_job($1, $2::timestamptz, $3, $4, make_interval(secs => $5)) AS run',
      values: [entry.name, entry.nextRunAtText, next, worker, holdSeconds],
    });
    return rows[0]?.run ?? null;
  }

  async heartbeat(name: string, worker: string, holdSeconds: number): Promise<boolean> {
    const { rows } = await this.pool.query<{ held: boolean }>({
      name: 'pglease.heartbeat-job',
      text: 'SELECT pglease.heartbeat_job($1, $2, make_interval(secs => $3)) AS held',
      values: [name, worker, holdSeconds],
    });
    return rows[0]?.held ?? false;
  }

  /** `fold`: a quiet run, folded into the job's latest row of quiet runs (sql/jobs.sql). */
  async finish(
    run: string,
    outcome: 'succeeded' | 'failed',
    rowsAffected: number | null,
    result: Record<string, unknown> | null,
    error: string | null,
    fold = false,
  ): Promise<void> {
    await this.pool.query({
      name: 'pglease.finish-job-run',
      text: 'SELECT pglease.finish_job_run($1, $2, $3, $4, $5, $6)',
      values: [run, outcome, rowsAffected, result === null ? null : JSON.stringify(result), error, fold],
    });
  }

  async list(): Promise<JobRow[]> {
    const { rows } = await this.pool.query<JobRow>(`SELECT ${JOB_COLUMNS} FROM pglease.jobs ORDER BY name`);
    return rows;
  }

  async find(name: string): Promise<JobRow | undefined> {
    const { rows } = await this.pool.query<JobRow>(`SELECT ${JOB_COLUMNS} FROM pglease.jobs WHERE name = $1`, [name]);
    return rows[0];
  }

  /**
   * Changes a job's schedule and/or enabled flag. Enabling runs the job at once (it may have work
   * waiting, such as leases that expired meanwhile); a new schedule plans the next run from now;
   * disabling keeps next_run_at for the record.
   */
  async update(name: string, change: { schedule?: string; enabled?: boolean }): Promise<JobRow | undefined> {
    const client = await this.pool.connect();
    // a connection cut between two statements reports it to the next one, and here
    const ignore = () => undefined;
    client.on('error', ignore);
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<{ schedule: string; enabled: boolean; now: Date }>(
        'SELECT schedule, enabled, now() AS now FROM pglease.jobs WHERE name = $1 FOR UPDATE',
        [name],
      );
      const current = rows[0];
      if (!current) {
        await client.query('ROLLBACK');
        return undefined;
      }
      const schedule = change.schedule ?? current.schedule;
      const enabled = change.enabled ?? current.enabled;
      const nextRunAt = enabled && !current.enabled ? current.now : schedule !== current.schedule ? nextRun(schedule, current.now) : null;
      const updated = await client.query<JobRow>(
        `UPDATE pglease.jobs
            SET schedule = $2, enabled = $3, next_run_at = coalesce($4, next_run_at), updated_at = now()
          WHERE name = $1
          RETURNING ${JOB_COLUMNS}`,
        [name, schedule, enabled, nextRunAt],
      );
      await client.query('COMMIT');
      return updated.rows[0];
    } catch (error) {
      // a connection that cannot roll back may still be inside the transaction: closed, not reused
      broken = await client.query('ROLLBACK').then(() => undefined, (rollbackError: Error) => rollbackError);
      throw error;
    } finally {
      client.off('error', ignore);
      client.release(broken);
    }
  }

  /** Newest first. */
  async runs(name: string, limit: number): Promise<JobRunRow[]> {
    const { rows } = await this.pool.query<JobRunRow>(
      `SELECT id::text, job_name, scheduled_for, started_at, finished_at, outcome, rows_affected::text, result, error, worker
         FROM pglease.job_runs WHERE job_name = $1 ORDER BY started_at DESC, id DESC LIMIT $2`,
      [name, limit],
    );
    return rows;
  }
}
