/**
 * A session of the service role in a database lease's own database, for what must be done there
 * (the lease's catalog is in it): its restriction over a plan (src/leases/database-quota.ts) and
 * the count of its tables and rows (src/leases/database-counts.ts).
 *
 * The lease owns that database, so it may have set defaults there (ALTER DATABASE ... SET) that
 * every session takes. The startup options, which win over a database's defaults, pin search_path
 * to pg_catalog (names resolve in pg_catalog, and in pglease where a statement names it; nothing
 * the lease made is found first), the role (a default `role` would make the session the lease),
 * read-write transactions, and a statement timeout.
 */
import pg from 'pg';
import { SERVICE_SESSION_OPTIONS } from '../db/service-session.js';

const PINNED_OPTIONS = `${SERVICE_SESSION_OPTIONS} -c role=none -c default_transaction_read_only=off -c statement_timeout=30s`;

/**
 * A connected session on `url` (a lease database's, as the service role) with the options above;
 * `lockTimeout`: how long its statements wait for a lock (Postgres interval text), else forever.
 */
export async function openLeaseDatabaseSession(url: string, applicationName: string, lockTimeout?: string): Promise<pg.Client> {
  const options = lockTimeout === undefined ? PINNED_OPTIONS : `${PINNED_OPTIONS} -c lock_timeout=${lockTimeout}`;
  const session = new pg.Client({ connectionString: url, application_name: applicationName, options });
  session.on('error', () => undefined);
  try {
    await session.connect();
  } catch (error) {
    await session.end().catch(() => undefined);
    throw error;
  }
  return session;
}
