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

/** Thrown when the lease is no active database lease (any more). */
export class CopySourceGone extends Error {}

/** Closes lease `leaseId`, ends its sessions, runs `work`, and reopens the lease whatever happened. */
export async function whileClosed<T>(
  pool: pg.Pool,
  leaseId: string,
  work: (session: pg.PoolClient) => Promise<T>,
): Promise<{ result: T; sessionsEnded: number }> {
  const session = await pool.connect();
  let sessionBroken = false;
  try {
    const { rows } = await session.query<{ ended: number | null }>({ name: 'pglease.close-for-fork', text: 'SELECT pglease.close_for_fork($1) AS ended', values: [leaseId] });
    const sessionsEnded = rows[0]!.ended;
    if (sessionsEnded === null) throw new CopySourceGone(`lease ${leaseId} is not an active database lease`);
    try {
      return { result: await work(session), sessionsEnded };
    } finally {
      await session.query({ name: 'pglease.reopen-after-fork', text: 'SELECT pglease.reopen_after_fork($1)', values: [leaseId] }).catch((error: unknown) => {
        // the bracket's session is lost: the reaper reopens the lease once its backend is gone
        sessionBroken = true;
        throw error;
      });
    }
  } finally {
    session.release(sessionBroken || undefined);
  }
}
