/**
 * Jobs in Postgres: the jobs API, exactly-once runs across several schedulers on one database,
 * take-over of a job whose process died, history pruning, and the configuration of it all.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { Scheduler } from '../src/scheduler/scheduler.js';
import { builtinJobs, type JobDefinition } from '../src/scheduler/jobs.js';
import { ADMIN_TOKEN, createLease, startTestService, type TestService } from './support/service.js';
import { sleep, waitFor } from './support/wait.js';

let service: TestService;

beforeAll(async () => {
  service = await startTestService();
});
afterAll(async () => {
  await service?.close();
});

async function call(method: string, path: string, options: { body?: unknown; token?: string } = {}): Promise<{ status: number; body: any }> {
  const response = await fetch(`${service.baseUrl}${path}`, {
    method,
    headers: {
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
    },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) };
}

const admin = { token: ADMIN_TOKEN };

describe('jobs API', () => {
  it('lists the built-in jobs to the admin only', async () => {
    expect((await call('GET', '/v1/jobs')).status).toBe(401);
    const lease = await createLease(service);
    const forbidden = await call('GET', '/v1/jobs', { token: lease.token });
    expect(forbidden).toMatchObject({ status: 403, body: { code: 'PGLEASE_FORBIDDEN' } });

    // cleanup-orphans runs once at every start
    await waitFor('the start-up cleanup', async () => {
      const job = await call('GET', '/v1/jobs/cleanup-orphans', admin);
      return job.body.last_outcome === 'succeeded' ? true : undefined;
    });
    const { status, body } = await call('GET', '/v1/jobs', admin);
    expect(status).toBe(200);
    expect(body.items.map((job: { name: string }) => job.name)).toEqual(['cleanup-orphans', 'observe', 'prune-history', 'reap-expired']);
    const reaper = body.items.find((job: { name: string }) => job.name === 'reap-expired');
    // running says whether a run is in progress at this moment, which for the reaper (every 10 s and
    // at each lease's expiry) it may be: a clean-clone run listed it mid-run
    expect(reaper).toMatchObject({ schedule: '*/10 * * * * *', enabled: true, running: expect.any(Boolean) });
    expect(Date.parse(reaper.next_run_at) - Date.now()).toBeLessThanOrEqual(10_000);
    const cleanup = body.items.find((job: { name: string }) => job.name === 'cleanup-orphans');
    expect(cleanup).toMatchObject({ last_error: null, last_result: { orphans_dropped: 0, leases_failed: 0, errors: 0 } });
  });

  it('is described in /openapi.json under the jobs tag', async () => {
    const document = (await (await fetch(`${service.baseUrl}/openapi.json`)).json()) as { paths: Record<string, Record<string, { tags?: string[] }>> };
    for (const [path, method] of [['/v1/jobs', 'get'], ['/v1/jobs/{name}', 'patch'], ['/v1/jobs/{name}/run', 'post'], ['/v1/jobs/{name}/runs', 'get']] as const) {
      expect(document.paths[path]?.[method]?.tags, `${method} ${path}`).toEqual(['jobs']);
    }
    expect(Object.keys(document.paths['/v1/leases']!.post as object)).toContain('responses');
    expect(Object.keys((document.paths['/v1/leases']!.post as { responses: object }).responses)).toEqual(expect.arrayContaining(['429', '503']));
  });

  it('rejects bad changes with 4xx naming the field', async () => {
    const bad = await call('PATCH', '/v1/jobs/reap-expired', { ...admin, body: { schedule: 'every 5 minutes' } });
    expect(bad).toMatchObject({ status: 400, body: { code: 'PGLEASE_INVALID_FIELD', field: 'schedule' } });
    expect(bad.body.message).toMatch(/invalid cron schedule/);
    const short = await call('PATCH', '/v1/jobs/reap-expired', { ...admin, body: { schedule: '* * *' } });
    expect(short).toMatchObject({ status: 400, body: { code: 'PGLEASE_INVALID_FIELD', field: 'schedule' } });
    expect(short.body.message).toMatch(/expected 5 fields .* or 6/);
    const outOfRange = await call('PATCH', '/v1/jobs/reap-expired', { ...admin, body: { schedule: '61 * * * *' } });
    expect(outOfRange.status).toBe(400);
    expect((await call('PATCH', '/v1/jobs/reap-expired', { ...admin, body: { enabled: 'no' } })).status).toBe(400);
    expect((await call('PATCH', '/v1/jobs/reap-expired', { ...admin, body: {} })).status).toBe(400);
    expect((await call('PATCH', '/v1/jobs/reap-expired', { ...admin, body: { cron: '* * * * *' } })).body.code).toBe('PGLEASE_UNKNOWN_FIELD');
    expect(await call('PATCH', '/v1/jobs/no-such-job', { ...admin, body: { enabled: false } })).toMatchObject({ status: 404, body: { code: 'PGLEASE_JOB_NOT_FOUND' } });
    expect((await call('POST', '/v1/jobs/no-such-job/run', admin)).status).toBe(404);
    expect((await call('GET', '/v1/jobs/reap-expired/runs?limit=0', admin)).status).toBe(400);
    expect((await call('PATCH', '/v1/jobs/reap-expired', { body: { enabled: false } })).status).toBe(401);
  });

  it('disabling the reaper keeps expired leases; enabling it reaps them at once', async () => {
    const off = await call('PATCH', '/v1/jobs/reap-expired', { ...admin, body: { enabled: false } });
    expect(off).toMatchObject({ status: 200, body: { enabled: false } });
    expect((await call('POST', '/v1/jobs/reap-expired/run', admin)).body.code).toBe('PGLEASE_JOB_DISABLED');
    const lease = await createLease(service, { ttl: 1 });
    await sleep(2500);
    expect((await call('GET', `/v1/leases/${lease.id}`, { token: lease.token })).body.state).toBe('active');

    const on = await call('PATCH', '/v1/jobs/reap-expired', { ...admin, body: { enabled: true } });
    expect(on.status).toBe(200);
    await waitFor('the lease to be reaped', async () => {
      const { body } = await call('GET', `/v1/leases/${lease.id}`, { token: lease.token });
      return body.state === 'expired' ? true : undefined;
    }, 3000);
  });

  it('a new schedule takes effect at once and is kept; runs are listed newest first', async () => {
    const changed = await call('PATCH', '/v1/jobs/prune-history', { ...admin, body: { schedule: '* * * * * *' } });
    expect(changed).toMatchObject({ status: 200, body: { schedule: '* * * * * *' } });
    expect(Date.parse(changed.body.next_run_at) - Date.now()).toBeLessThanOrEqual(1000);
    const runs = await waitFor('two runs of prune-history', async () => {
      const { body } = await call('GET', '/v1/jobs/prune-history/runs?limit=2', admin);
      return body.items.length === 2 && body.items.every((run: { outcome: string }) => run.outcome === 'succeeded') ? body.items : undefined;
    }, 5000);
    expect(Date.parse(runs[0].started_at)).toBeGreaterThan(Date.parse(runs[1].started_at));
    expect(runs[0]).toMatchObject({ result: { leases_deleted: 0, runs_deleted: 0 }, rows_affected: 0, error: null });
    expect(runs[0].worker).toBe(service.scheduler!.worker);

    // a restart with the same configuration keeps the schedule set through the API
    await service.scheduler!.stop();
    const restarted = new Scheduler({ databaseUrl: service.host.databaseUrl, jobs: builtinJobs(service.config.jobs), log: () => undefined });
    await restarted.start();
    await restarted.stop();
    const { rows } = await service.host.pool.query(`SELECT schedule FROM pglease.jobs WHERE name = 'prune-history'`);
    expect(rows[0].schedule).toBe('* * * * * *');
  });
});

describe('several schedulers on one database', () => {
  it('run each due run exactly once', async () => {
    const executions: string[] = [];
    const job = (worker: number): JobDefinition => ({
      name: 'test-tick',
      description: 'counts its runs',
      schedule: '* * * * * *',
      run: async () => {
        executions.push(`scheduler ${worker}`);
        await sleep(20);
        return { rowsAffected: 1, result: {} };
      },
    });
    const schedulers = [1, 2, 3].map((worker) => new Scheduler({ databaseUrl: service.host.databaseUrl, jobs: [job(worker)], log: () => undefined }));
    await Promise.all(schedulers.map((scheduler) => scheduler.start()));
    await sleep(4500);
    await Promise.all(schedulers.map((scheduler) => scheduler.stop()));

    const { rows } = await service.host.pool.query<{ scheduled_for: string; outcome: string }>(
      `SELECT scheduled_for::text, outcome FROM pglease.job_runs WHERE job_name = 'test-tick' ORDER BY id`,
    );
    expect(rows.length).toBeGreaterThanOrEqual(3);
    expect(rows.length).toBeLessThanOrEqual(6);
    expect(new Set(rows.map((row) => row.scheduled_for)).size).toBe(rows.length);
    expect(rows.every((row) => row.outcome === 'succeeded')).toBe(true);
    expect(executions).toHaveLength(rows.length);
  });

  it('take over at once a job held by a process that died, marking its run abandoned', async () => {
    // a process that claimed the job and was killed: a long hold, and no session of its own left
    await service.host.pool.query(
      `UPDATE pglease.jobs SET running_by = 'ghost:1:000000', running_until = now() + interval '1 hour', next_run_at = now()
        WHERE name = 'test-tick'`,
    );
    await service.host.pool.query(
      `INSERT INTO pglease.job_runs (job_name, scheduled_for, worker) VALUES ('test-tick', now() - interval '5 minutes', 'ghost:1:000000')`,
    );
    const scheduler = new Scheduler({
      databaseUrl: service.host.databaseUrl,
      jobs: [{ name: 'test-tick', description: 'counts its runs', schedule: '* * * * * *', run: async () => ({ rowsAffected: 0, result: {} }) }],
      log: () => undefined,
    });
    await scheduler.start();
    try {
      const ghost = await waitFor('the ghost run to be abandoned', async () => {
        const { rows } = await service.host.pool.query(`SELECT outcome, finished_at FROM pglease.job_runs WHERE worker = 'ghost:1:000000'`);
        return rows[0].outcome === 'abandoned' ? rows[0] : undefined;
      }, 5000);
      expect(ghost.finished_at).not.toBeNull();
    } finally {
      await scheduler.stop();
    }
  });
});

describe('quiet runs', () => {
  it('are folded into one row per stretch of quiet runs; a run that did something, or failed, keeps its own', async () => {
    // runs 1-3 quiet, 4 did something, 5 failed, 6 on quiet again
    let executions = 0;
    const job: JobDefinition = {
      name: 'test-quiet',
      description: 'mostly quiet',
      schedule: '* * * * * *',
      run: async () => {
        executions++;
        if (executions === 5) throw new Error('run 5 fails');
        return { rowsAffected: executions === 4 ? 1 : 2, result: { changed: executions === 4 ? 1 : 0, seen: 10 } };
      },
      quiet: ({ result }) => result.changed === 0,
    };
    const scheduler = new Scheduler({ databaseUrl: service.host.databaseUrl, jobs: [job], log: () => undefined });
    await scheduler.start();
    try {
      await waitFor('eight runs', async () => (executions >= 8 ? true : undefined), 30_000);
    } finally {
      await scheduler.stop();
    }
    const { rows } = await service.host.pool.query<{ outcome: string; rows_affected: number | null; result: Record<string, number> | null; error: string | null }>(
      `SELECT outcome, rows_affected::int, result, error FROM pglease.job_runs WHERE job_name = 'test-quiet' ORDER BY started_at, id`,
    );
    expect(rows.slice(0, 3)).toEqual([
      { outcome: 'succeeded', rows_affected: 6, result: { changed: 0, seen: 30, runs: 3 }, error: null },
      { outcome: 'succeeded', rows_affected: 1, result: { changed: 1, seen: 10 }, error: null },
      { outcome: 'failed', rows_affected: null, result: null, error: 'run 5 fails' },
    ]);
    // the runs from the sixth on: one row
    expect(rows).toHaveLength(4);
    expect(rows[3]).toMatchObject({ outcome: 'succeeded', result: { changed: 0, runs: executions - 5 } });
    expect(rows[3]!.rows_affected).toBe(2 * (executions - 5));

    // the jobs API lists them as stored, newest first
    const listed = await call('GET', '/v1/jobs/test-quiet/runs', admin);
    expect(listed.status).toBe(200);
    expect(listed.body.items.map((run: { result: { runs?: number } | null }) => run.result?.runs ?? null)).toEqual([executions - 5, null, null, 3]);
  });

  it('of the observer (a run every second) take one row, not one each', async () => {
    const folded = await waitFor('the observer to fold three quiet runs', async () => {
      const { rows } = await service.host.pool.query<{ runs: number }>(
        `SELECT (result ->> 'runs')::int AS runs FROM pglease.job_runs WHERE job_name = 'observe' AND result ? 'runs' ORDER BY started_at DESC LIMIT 1`,
      );
      return (rows[0]?.runs ?? 0) >= 3 ? rows[0] : undefined;
    }, 30_000);
    expect(folded.runs).toBeGreaterThanOrEqual(3);
    const { rows } = await service.host.pool.query<{ rows: number; runs: number }>(
      `SELECT count(*)::int AS rows, sum(coalesce((result ->> 'runs')::int, 1))::int AS runs FROM pglease.job_runs WHERE job_name = 'observe' AND outcome <> 'running'`,
    );
    expect(rows[0]!.rows).toBeLessThan(rows[0]!.runs);
  });
});

describe('prune-history', () => {
  it('forgets ended leases older than the retention, keeps recent ones', async () => {
    const old = await createLease(service);
    const recent = await createLease(service);
    for (const lease of [old, recent]) {
      expect((await call('DELETE', `/v1/leases/${lease.id}`, { token: lease.token })).status).toBe(204);
    }
    await service.host.pool.query(`UPDATE pglease.leases SET ended_at = now() - interval '8 days', created_at = now() - interval '9 days' WHERE id = $1`, [old.id]);
    const { rows } = await service.host.pool.query('SELECT leases_deleted::int FROM pglease.prune_history(make_interval(secs => $1))', [
      service.config.jobs.historyRetentionSeconds,
    ]);
    expect(rows[0].leases_deleted).toBe(1);
    expect((await call('GET', `/v1/leases/${old.id}`, { token: old.token })).status).toBe(404);
    expect((await call('GET', `/v1/leases/${recent.id}`, { token: recent.token })).body.state).toBe('released');
  });
});

describe('configuration', () => {
  const base = { PGLEASE_DATA_DIR: '/tmp/unused' };

  it('has the documented defaults', () => {
    const config = loadConfig(base);
    expect(config.jobs).toEqual({
      schedulerEnabled: true,
      reaperSchedule: '*/10 * * * * *',
      cleanupSchedule: '*/5 * * * *',
      pruneSchedule: '17 * * * *',
      reaperBatch: 50,
      historyRetentionSeconds: 7 * 86_400,
      observerSchedule: '* * * * * *',
      observeIntervalSeconds: 10,
      observeFastMs: 200,
      observationRetentionSeconds: 3600,
    });
    expect(config.createLimits).toEqual({ perHour: 100, activePerClient: 20, connectionsPerClient: 160, maxLeases: 1000, limitLocalDeveloper: false });
    expect(config.trustProxy).toBe(false);
    // creating a lease needs no login: only this machine reaches the service unless HOST says otherwise
    expect(config.httpHost).toBe('127.0.0.1');
  });

  it('refuses bad values naming the variable', () => {
    const bad: Record<string, string>[] = [
      { PGLEASE_REAPER_CRON: 'every minute' },
      { PGLEASE_REAPER_CRON: '* * *' },
      { PGLEASE_CLEANUP_CRON: '0 0 0 * * * *' },
      { PGLEASE_HISTORY_RETENTION: '30min' },
      { PGLEASE_HISTORY_RETENTION: 'a week' },
      { PGLEASE_REAPER_BATCH: '100' },
      { PGLEASE_SCHEDULER: 'maybe' },
      { PGLEASE_RATE_LIMIT: '-1' },
      { PGLEASE_CLIENT_CONNECTIONS: '1' },
    ];
    for (const env of bad) {
      const variable = Object.keys(env)[0]!;
      expect(() => loadConfig({ ...base, ...env }), variable).toThrow(ConfigError);
      expect(() => loadConfig({ ...base, ...env }), variable).toThrow(new RegExp(`^${variable}: `));
    }
  });

  it('reads spans, switches and proxy trust', () => {
    expect(loadConfig({ ...base, PGLEASE_HISTORY_RETENTION: '2d' }).jobs.historyRetentionSeconds).toBe(172_800);
    expect(loadConfig({ ...base, PGLEASE_HISTORY_RETENTION: '90min' }).jobs.historyRetentionSeconds).toBe(5400);
    expect(loadConfig({ ...base, PGLEASE_HISTORY_RETENTION: '90m' }).jobs.historyRetentionSeconds).toBe(5400);
  });

  it('reads every length of time in the one grammar of src/duration.ts (90, 90s, 10m, 2h, 1d)', () => {
    const config = loadConfig({ ...base, PGLEASE_MAX_TTL: '1d', PGLEASE_DEFAULT_TTL: '10m', PGLEASE_SHUTDOWN_GRACE: '15s', PGLEASE_DB_TIMEOUT: '1m' });
    expect([config.maxTtlSeconds, config.defaultTtlSeconds, config.shutdownGraceSeconds, config.databaseTimeoutSeconds]).toEqual([86_400, 600, 15, 60]);
    expect(loadConfig({ ...base, PGLEASE_MAX_TTL: '7200' }).maxTtlSeconds).toBe(7200);
    // Postgres interval settings take milliseconds too, and are written in units Postgres reads (it has no "m")
    const limits = loadConfig({ ...base, PGLEASE_LEASE_STATEMENT_TIMEOUT: '2m', PGLEASE_LEASE_IDLE_TX_TIMEOUT: '1500ms' }).leaseLimits;
    expect([limits.statementTimeout, limits.idleInTransactionTimeout]).toEqual(['120s', '1500ms']);
    expect(() => loadConfig({ ...base, PGLEASE_MAX_TTL: '1 day' })).toThrow('PGLEASE_MAX_TTL: "1 day" is not a duration: use e.g. 90 (seconds), 90s, 10m, 2h, 1d or 1h30m');
    expect(() => loadConfig({ ...base, PGLEASE_MAX_TTL: '500ms' })).toThrow('PGLEASE_MAX_TTL: "500ms": whole seconds here');
    expect(() => loadConfig({ ...base, PGLEASE_HISTORY_RETENTION: '30m' })).toThrow('PGLEASE_HISTORY_RETENTION: must be between 1h and');
    expect(loadConfig({ ...base, PGLEASE_SCHEDULER: 'off' }).jobs.schedulerEnabled).toBe(false);
    expect(loadConfig({ ...base, PGLEASE_RATE_LIMIT: '0' }).createLimits.perHour).toBe(0);
    expect(loadConfig({ ...base, PGLEASE_TRUST_PROXY: 'on' }).trustProxy).toBe(true);
    expect(loadConfig({ ...base, PGLEASE_TRUST_PROXY: '10.0.0.0/8, 127.0.0.1' }).trustProxy).toEqual(['10.0.0.0/8', '127.0.0.1']);
    const hops = loadConfig({ ...base, PGLEASE_TRUST_PROXY: '1' }).trustProxy as (address: string, hop: number) => boolean;
    expect([hops('10.0.0.1', 0), hops('10.0.0.2', 1)]).toEqual([true, false]);
  });
});
