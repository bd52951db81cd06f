/**
 * How one Postgres server's connections are shared between pglease's own sessions, the REST API's
 * sessions (one or more per lease with traffic, each logged in as that lease's authenticator) and
 * the leases' own clients.
 *
 * - pglease's own: OWN_CONNECTIONS (below), always.
 * - the REST API, unless PGLEASE_REST_MAX_CONNECTIONS says otherwise: half of what is left once
 *   Postgres has kept its superuser_reserved_connections and pglease its own, i.e. 236 of the
 *   embedded server's 500 (pglease serves each lease with traffic from a connection of its own, and
 *   a lease without one pays a connect, ~5 ms, on a request: a fixed 64 made every request pay it
 *   from 50 leases with traffic on, bench/rest-many.ts). The other half is the leases' clients'.
 * - the embedded server reserves OWN_CONNECTIONS + the REST budget (reserved_connections, which
 *   pglease's roles and the authenticators may use and the leases' login roles may not), so that
 *   leases opening every connection they may keep neither the service nor the REST API out; and
 *   adds those slots to its 500 (760 in all), since Postgres reserves the last free slots rather
 *   than a share: carved out of the 500, pglease's sessions and the REST API's took the leases'
 *   share too, and REST traffic over ~215 leases refused every lease login (src/db/embedded.ts).
 */
import type pg from 'pg';

/**
 * Connections one pglease process opens as its service role, besides the REST API's: the service
 * pool (10), schema introspection (4), the scheduler's pool (4) and listener, the cache listener,
 * the lock guard, and a few to spare.
 */
export const OWN_CONNECTIONS = 24;

/** Postgres's default superuser_reserved_connections. */
export const SUPERUSER_RESERVED_CONNECTIONS = 3;

export interface ServerConnectionLimits {
  maxConnections: number;
  superuserReservedConnections: number;
}

/** The REST API's default budget on a server with these limits: half of what pglease's own leave. */
export function restConnectionBudget(server: ServerConnectionLimits): number {
  return Math.max(1, Math.floor((server.maxConnections - server.superuserReservedConnections - OWN_CONNECTIONS) / 2));
}

/** max_connections and superuser_reserved_connections of the server `pool` is on. */
export async function serverConnectionLimits(pool: pg.Pool): Promise<ServerConnectionLimits> {
  const { rows } = await pool.query<{ max: number; superuser: number }>(
    `SELECT current_setting('max_connections')::int AS max, current_setting('superuser_reserved_connections')::int AS superuser`,
  );
  return { maxConnections: rows[0]!.max, superuserReservedConnections: rows[0]!.superuser };
}
