/**
 * The copy bracket of a database lease: what a fork (src/leases/lease-fork.ts), a snapshot and a
 * restore (src/leases/lease-snapshots.ts) run their copy in. CREATE DATABASE ... TEMPLATE refuses
 * while any session is on the template, so there is no consistent copy of a lease's database
 * without closing it to new sessions and ending its open ones (sql/fork.sql, pglease.close_for_fork).
 *
 * What it guarantees:
 *   - the lease is closed for `work` only (tens of ms for a small lease), and reopened whatever
 *     `work` does, unless the lease ended meanwhile (its database is then being dropped);
 *   - a crash of this process inside the bracket (kill -9, a lost connection) does not leave the
 *     lease closed for good: the close is recorded with the backend of the session that holds the
 *     bracket, in the transaction that closes it; that session is this function's own for the
 *     whole bracket, and when it is gone with the row still there, the reaper reopens the lease
 *     (pglease.reopen_abandoned_closes, at its next run: every 10 s by default);
 *   - one bracket per lease across processes: a second one meanwhile is refused with 55006 (the
 *     lease is busy), which the routes answer as PGLEASE_LEASE_BUSY.
 * `work` gets the bracket's session, so that a copy costs no second pool connection.
 */
import type pg from 'pg';

/**
 * The lock a copy bracket holds on its lease from before it reads anything until it has reopened
 * the lease, and the observer's count of a database lease's rows for its own length
 * (src/leases/database-counts.ts): that count is a session in the lease's database, counted in the
 * database's sessions until the observer moves the lease's copy mark past it
 * (pglease.advance_copy_mark). A fork whose bracket read the mark in between found it voided and
 * copied the live database (a test beside a second suite saw it). An advisory lock in the service's
 * database, keyed by the lease; the bracket waits for a count (tens of ms), the observer skips a
 * lease in a bracket and counts it at a later run.
 */
const COPY_LOCK_CLASS = 7101;
const COPY_LOCK_SQL = `SELECT pg_catalog.pg_advisory_lock(${COPY_LOCK_CLASS}, pg_catalog.hashtext($1::text))`;
export const TRY_COPY_LOCK_SQL = `SELECT pg_catalog.pg_try_advisory_lock(${COPY_LOCK_CLASS}, pg_catalog.hashtext($1::text)) AS locked`;
export const COPY_UNLOCK_SQL = `SELECT pg_catalog.pg_advisory_unlock(${COPY_LOCK_CLASS}, pg_catalog.hashtext($1::text))`;

/** Sessions whose bracket could not reopen its lease: released as broken, the lock going with them. */
const lostSessions = new WeakSet<pg.PoolClient>();

/**
 * Runs `work` on a session of the service's database holding lease `leaseId`'s copy lock: after any
 * copy bracket on the lease, in any pglease process, and with none starting until `work` is done. A
 * bracket runs in it (whileClosed); so does a handover that gives the lease's database back in its
 * own transaction without a bracket (a fork made in advance, a copy of a snapshot after the
 * bracket): within this process that one already waits for brackets (oneAtATime), but another
 * process's restore renames and re-owns the same database row, and the two updates would meet as
 * "tuple concurrently updated". The observer skips a lease while its lock is held.
 */
export async function withCopyLock<T>(pool: pg.Pool, leaseId: string, work: (session: pg.PoolClient) => Promise<T>): Promise<T> {
  const session = await pool.connect();
  let sessionBroken = false;
  try {
    await session.query({ name: 'pglease.copy-lock', text: COPY_LOCK_SQL, values: [leaseId] }).catch((error: unknown) => {
      sessionBroken = true;
      throw error;
    });
    try {
      return await work(session);
    } finally {
      if (lostSessions.has(session)) {
        sessionBroken = true;
      } else {
        await session.query({ name: 'pglease.copy-unlock', text: COPY_UNLOCK_SQL, values: [leaseId] }).catch(() => {
          sessionBroken = true; // released as broken: the lock goes with the session
        });
      }
    }
  } finally {
    session.release(sessionBroken || undefined);
  }
}

/** Thrown when the lease is no active database lease (any more). */
export class CopySourceGone extends Error {}

/** Closes lease `leaseId`, ends its sessions, runs `work`, and reopens the lease whatever happened. */
export async function whileClosed<T>(
  pool: pg.Pool,
  leaseId: string,
  work: (session: pg.PoolClient) => Promise<T>,
): Promise<{ result: T; sessionsEnded: number }> {
  return withCopyLock(pool, leaseId, async (session) => {
    const { rows } = await session.query<{ ended: number | null }>({ name: 'pglease.close-for-fork', text: 'SELECT pglease.close_for_fork($1) AS ended', values: [leaseId] });
    const sessionsEnded = rows[0]!.ended;
    if (sessionsEnded === null) throw new CopySourceGone(`lease ${leaseId} is not an active database lease`);
    try {
      return { result: await work(session), sessionsEnded };
    } finally {
      await session.query({ name: 'pglease.reopen-after-fork', text: 'SELECT pglease.reopen_after_fork($1)', values: [leaseId] }).catch((error: unknown) => {
        // the bracket's session is lost: the reaper reopens the lease once its backend is gone
        lostSessions.add(session);
        throw error;
      });
    }
  });
}
