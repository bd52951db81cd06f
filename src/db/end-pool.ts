/**
 * Ends a node-postgres pool and waits until its connections are closed. pg-pool's end() resolves
 * once it has asked its idle connections to close, before they have: a Postgres stopped right
 * after (pglease's embedded one, at shutdown) then terminates them itself, and each becomes an
 * "idle connection lost (terminating connection due to administrator command)" error.
 */
import type pg from 'pg';

export async function endPool(pool: pg.Pool, timeoutMs = 5_000): Promise<void> {
  let open = pool.totalCount;
  let timer: NodeJS.Timeout | undefined;
  const closed = new Promise<void>((resolve) => {
    if (open === 0) return resolve();
    // 'remove' comes when a connection has ended (a connection in use ends when it is released)
    pool.on('remove', () => {
      if (--open === 0) resolve();
    });
    timer = setTimeout(resolve, timeoutMs);
  });
  await pool.end();
  await closed;
  clearTimeout(timer);
}
