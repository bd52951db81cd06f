/**
 * A kill -9 of pglease in the middle of a fork (between closing the source's database to new
 * sessions and reopening it) does not leave the source closed for good: the bracket is recorded
 * with the backend holding it (src/leases/copy-bracket.ts), and once that backend is gone a
 * pglease's reaper gives the database back to the lease's role and reopens it.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { withDatabase } from '../src/db/host.js';
import { ADMIN_TOKEN, queryUrl } from './support/service.js';
import { startServiceProcess, stopServiceProcess, type ServiceProcess } from './support/service-process.js';

const database = `pglease_test_${randomBytes(4).toString('hex')}`;
const env = { PGLEASE_REAPER_CRON: '* * * * * *', PGLEASE_RATE_LIMIT: '0', PGLEASE_DATABASE_LEASE_POOL: '0', PGLEASE_LEASE_POOL: '0' };
const processes: ServiceProcess[] = [];
let superuser: pg.Client | undefined;

afterAll(async () => {
  await superuser?.end();
  for (const service of processes) {
    if (service.child.exitCode === null && service.child.signalCode === null) service.child.kill('SIGKILL');
  }
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const admin = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };

interface SourceState {
  open: boolean;
  owned: boolean;
  bracket: boolean;
}

/** Whether the source's database accepts connections, is owned by the lease's login role, and is in a bracket. */
async function sourceState(client: pg.Client, lease: { id: string; database: string; role: string }): Promise<SourceState> {
  const { rows } = await client.query<SourceState>(
    `SELECT d.datallowconn AS open, d.datdba::regrole::text = $2 AS owned,
            EXISTS (SELECT 1 FROM pglease.closed_lease_databases c WHERE c.lease_id = $3) AS bracket
       FROM pg_database d WHERE d.datname = $1`,
    [lease.database, lease.role, lease.id],
  );
  return rows[0]!;
}

/** Forks `sourceId` (and releases each fork) until the process stops answering. */
async function forkLoop(baseUrl: string, sourceId: string, unexpected: string[]): Promise<void> {
  for (;;) {
    try {
      const response = await fetch(`${baseUrl}/v1/leases/${sourceId}/fork`, { method: 'POST', headers: admin, body: '{}' });
      if (response.status !== 201) {
        unexpected.push(`fork: ${response.status} ${await response.text()}`);
        return;
      }
      const forked = (await response.json()) as { id: string };
      await fetch(`${baseUrl}/v1/leases/${forked.id}`, { method: 'DELETE', headers: { authorization: admin.authorization } });
    } catch {
      return; // the process is gone
    }
  }
}

describe('kill -9 in the middle of a fork', () => {
  it('leaves the source closed only until a reaper run reopens it', async () => {
    let service = await startServiceProcess(database, env);
    processes.push(service);
    superuser = new pg.Client({ connectionString: withDatabase(inject('serverUrl'), database) });
    await superuser.connect();
    const created = await fetch(`${service.baseUrl}/v1/leases`, { method: 'POST', headers: admin, body: JSON.stringify({ kind: 'database', ttl: 600 }) });
    expect(created.status).toBe(201);
    const source = (await created.json()) as { id: string; url: string; database: string; role: string };
    await queryUrl(source.url, `CREATE TABLE kept (n int); INSERT INTO kept SELECT generate_series(1, 10)`);

    // fork after fork, and the kill as soon as the source is seen closed; a kill that lands just
    // after the reopen is tried again on a new process (each try takes one fork, ~0.2-2 s)
    let caught: SourceState | undefined;
    for (let attempt = 0; attempt < 5 && caught === undefined; attempt++) {
      if (attempt > 0) {
        service = await startServiceProcess(database, env);
        processes.push(service);
      }
      const unexpected: string[] = [];
      const loop = forkLoop(service.baseUrl, source.id, unexpected);
      const started = Date.now();
      while (Date.now() - started < 60_000 && unexpected.length === 0) {
        if (!(await sourceState(superuser, source)).open) break;
        await sleep(1);
      }
      service.child.kill('SIGKILL');
      expect(await service.exited).toBe('SIGKILL');
      await loop;
      expect(unexpected).toEqual([]);
      const after = await sourceState(superuser, source);
      if (!after.open) caught = after;
    }
    // the crash left what it used to leave for good: the source closed, its bracket recorded
    expect(caught).toMatchObject({ open: false, bracket: true });

    const restarted = await startServiceProcess(database, env);
    processes.push(restarted);
    const deadline = Date.now() + 60_000;
    let state = await sourceState(superuser, source);
    while (!(state.open && state.owned && !state.bracket)) {
      if (Date.now() > deadline) throw new Error(`the source was not reopened within 60 s: ${JSON.stringify(state)}\n${restarted.log()}`);
      await sleep(200);
      state = await sourceState(superuser, source);
    }
    // the lease works as before: its own session, and a fork of it
    expect(await queryUrl<{ n: number }>(source.url, 'SELECT count(*)::int AS n FROM kept')).toEqual([{ n: 10 }]);
    const forked = await fetch(`${restarted.baseUrl}/v1/leases/${source.id}/fork`, { method: 'POST', headers: admin, body: '{}' });
    expect(forked.status).toBe(201);
    const fork = (await forked.json()) as { url: string };
    expect(await queryUrl<{ n: number }>(fork.url, 'SELECT count(*)::int AS n FROM kept')).toEqual([{ n: 10 }]);
    const { rows: runs } = await superuser.query<{ reopened: number }>(
      `SELECT sum((result ->> 'databases_reopened')::int)::int AS reopened FROM pglease.job_runs WHERE job_name = 'reap-expired' AND worker LIKE '%:' || $1 || ':%'`,
      [restarted.child.pid],
    );
    expect(runs[0]!.reopened).toBeGreaterThanOrEqual(1);
    expect(await stopServiceProcess(restarted)).toBe(0);
  }, 180_000);
});
