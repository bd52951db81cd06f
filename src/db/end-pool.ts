/**
 * Ends a node-postgres pool and waits until its connections are closed, for at most `timeoutMs`.
 * pg-pool's end() resolves once it has asked its idle connections to close, before they have: a
 * Postgres stopped right after (pglease's embedded one, at shutdown) then terminates them itself,
 * and each becomes an "idle connection lost (terminating connection due to administrator
 * command)" error. A connection still in use (a long statement) is not waited for beyond the
 * timeout: stopping Postgres, or the process exiting, cuts it.
 */
import type pg from 'pg';

export async function endPool(pool: pg.Pool, timeoutMs = 5_000): Promise<void> {
  let open = pool.totalCount;
  const closed = new Promise<void>((resolve) => {
    if (open === 0) return resolve();
    // 'remove' comes when a connection has ended (a connection in use ends when it is released)
    pool.on('remove', () => {
      if (--open === 0) resolve();
    });
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
  const ended = pool.end().catch(() => undefined);
  await Promise.race([Promise.all([ended, closed]), timeout]);
  clearTimeout(timer);
}
