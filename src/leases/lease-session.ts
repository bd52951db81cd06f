/**
 * Sessions that log in as one of a lease's own roles, for the service's work that must touch the
 * lease's objects: counting its rows (GET /v1/leases/:id/stats), seeding it from a template, and
 * checking a template at registration.
 *
 * The rule they exist for: no statement pglease runs with its own privileges may plan or execute
 * anything a lease owns. Planning a `count(*)` of a lease table pre-evaluates the IMMUTABLE
 * functions of its index expressions; reading a view runs its query; a write fires triggers,
 * defaults and RLS policies; a cast runs a domain's CHECK. Run as the service (a superuser, once)
 * any of these ran the lease's code with the service's rights, `COPY ... TO PROGRAM` included.
 * `SET ROLE` in a privileged session is no sandbox (the lease's code can RESET ROLE), and
 * SECURITY DEFINER is none either for what runs at commit. A session that *logged in* as the
 * lease can become nothing but the lease: whatever its code does, it does with the lease's rights.
 *
 * Each session is opened for one piece of work and closed after it (a connect is 3 to 6 ms here,
 * nothing next to the work these do), so nothing the lease's code leaves in it (settings, locks,
 * temporary objects, prepared statements) reaches anything else.
 */
import pg from 'pg';
import { authenticatorPassword } from './credentials.js';

/** How long a session waits to log in (a lease at its connection limit, a busy server). */
const CONNECT_TIMEOUT_MS = 5_000;

export interface LeaseLogin {
  role: string;
  password: string;
}

/** The login of a lease's REST authenticator (`<lease>_auth`), whose password derives from the host key. */
export function authenticatorLogin(authenticatorKey: Buffer, authRole: string): LeaseLogin {
  return { role: authRole, password: authenticatorPassword(authenticatorKey, authRole) };
}

/** `databaseUrl` (the service's URL of the lease database) logging in as `login` instead. */
export function leaseLoginUrl(databaseUrl: string, login: LeaseLogin): string {
  const url = new URL(databaseUrl);
  url.username = encodeURIComponent(login.role);
  url.password = encodeURIComponent(login.password);
  return url.toString();
}

/**
 * The URL of the database a lease lives in: the lease database itself for a schema lease, its own
 * database (named as the lease) for a database lease. `databaseUrl` is the service's URL of the
 * lease database; only its host, port and options are kept.
 */
export function leaseDatabaseUrl(databaseUrl: string, lease: { kind: string; schema_name: string }): string {
  if (lease.kind !== 'database') return databaseUrl;
  const url = new URL(databaseUrl);
  url.pathname = '/' + encodeURIComponent(lease.schema_name);
  return url.toString();
}

/**
 * What a database lease's own first session sets in its new database, as the lease (it owns the
 * database, and so its public schema): its anonymous role may use public, so that one GRANT on a
 * table publishes it over REST; and functions it makes start private, as a schema lease's do
 * (default privileges belong to a database, so pglease.provision cannot set them there).
 */
export function databaseLeaseSetup(anonRole: string): string {
  const anon = '"' + anonRole.replace(/"/g, '""') + '"';
  return `GRANT USAGE ON SCHEMA public TO ${anon}; ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC`;
}

/**
 * Runs `work` on a new session logged in as `login`, then closes it, whatever happened. A session
 * the server cuts (the lease released meanwhile) reports through the query that was running.
 */
export async function withLeaseSession<T>(databaseUrl: string, login: LeaseLogin, work: (session: pg.Client) => Promise<T>, applicationName = 'pglease'): Promise<T> {
  const session = new pg.Client({
    connectionString: leaseLoginUrl(databaseUrl, login),
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    application_name: applicationName,
  });
  session.on('error', () => undefined);
  try {
    await session.connect();
    return await work(session);
  } finally {
    await session.end().catch(() => undefined);
  }
}
