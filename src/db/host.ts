/**
 * The Postgres host pglease leases from: makes sure its lease database exists and is migrated,
 * locks the other databases away from lease roles, registers the host, and opens the service pool.
 * Given a superuser, it first sets up the service role with it (superuser-setup.ts), and every
 * connection opened here logs in as that role: pglease never serves as a superuser.
 */
import pg from 'pg';
import { endPool } from './end-pool.js';
import { ensureLeaseTemplate, refreshTemplateIntrospection } from './lease-template.js';
import { migrate } from './migrate.js';
import { isSuperuserUrl, setUpServiceRole } from './superuser-setup.js';
import { hostTls, type HostTls } from '../tls/host-tls.js';
import { libpqCompatibleUrl } from '../tls/libpq-url.js';
import { SERVICE_SESSION_OPTIONS } from './service-session.js';

export interface HostOptions {
  /** A URL on the server whose role may create roles and databases (a superuser: used for setup only). */
  serverUrl: string;
  leaseDatabase: string;
  publicHost: string | undefined;
  publicPort: number | undefined;
  poolSize?: number;
  /**
   * How long the service pool waits for a connection, and then for each answer, before the query
   * fails (ms; default 30 s). A stopped server (SIGSTOP, a frozen VM, a dropped network) never
   * answers: without it every control request would wait as long.
   */
  timeoutMs?: number;
  log: (message: string) => void;
}

export interface Host {
  id: number;
  name: string;
  /** Host and port written into lease URLs. */
  publicHost: string;
  publicPort: number;
  database: string;
  /** The service's own URL of the lease database (the service role). */
  databaseUrl: string;
  /**
   * Pool of the service role on the lease database: control API, jobs, SQL functions. The rule for
   * every statement on it (docs/security.md): it never plans or executes anything a lease owns
   * (a query on a lease's table or view, a call of its function, a cast to its type: these run the
   * lease's code with the service's rights). Read catalogs only, or use a session that logged in as
   * the lease (src/leases/lease-session.ts).
   */
  pool: pg.Pool;
  /** How long the service waits for a connection or an answer (PGLEASE_DB_TIMEOUT, ms): for pools of its own. */
  timeoutMs: number;
  /** Key from which each lease authenticator's password is derived (pglease.secrets). */
  authenticatorKey: Buffer;
  /** TLS as lease URLs and GET /v1/ca.pem tell it (src/tls/host-tls.ts); undefined: no TLS. */
  tls: HostTls | undefined;
  close: () => Promise<void>;
}

export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = '/' + encodeURIComponent(database);
  return parsed.toString();
}

/**
 * CREATE DATABASE unless it exists; tolerates another process creating it at the same moment.
 * The lease database is tried first: on a restart it exists, and the database named in
 * DATABASE_URL may since have been closed to PUBLIC (by pglease itself, on a shared host).
 */
async function ensureDatabase(serverUrl: string, database: string): Promise<boolean> {
  const direct = new pg.Client({ connectionString: withDatabase(serverUrl, database) });
  // errors reach the calls below; one between them (a server restarting) is no process error
  direct.on('error', () => undefined);
  try {
    await direct.connect();
    await direct.end();
    return false;
  } catch (error) {
    await direct.end().catch(() => undefined);
    if ((error as { code?: string }).code !== '3D000') throw error; // 3D000: no such database
  }
  const client = new pg.Client({ connectionString: serverUrl });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`);
    return true;
  } catch (error) {
    // created concurrently: 42P04, or 23505 when both reached the catalog insert at once
    const code = (error as { code?: string }).code;
    if (code === '42P04' || code === '23505') return false;
    throw error;
  } finally {
    await client.end();
  }
}

/** pg_get_functiondef of pglease.rest_schema, for the lease template (src/db/lease-template.ts). */
async function restSchemaDefinition(databaseUrl: string): Promise<string> {
  const client = new pg.Client({ connectionString: databaseUrl });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{ definition: string }>(`SELECT pg_get_functiondef('pglease.rest_schema(name, text[])'::regprocedure) AS definition`);
    return rows[0]!.definition;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Runs pglease.restrict_other_databases. Two services starting at once on one host may both
 * revoke on the same database; Postgres then fails one with "tuple concurrently updated"
 * (XX000), which a retry resolves (the second pass finds nothing left to revoke).
 */
async function restrictOtherDatabases(pool: pg.Pool): Promise<{ database_name: string; revoked: boolean }[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      const { rows } = await pool.query<{ database_name: string; revoked: boolean }>('SELECT * FROM pglease.restrict_other_databases()');
      return rows;
    } catch (error) {
      const concurrent = (error as { code?: string }).code === 'XX000' && /concurrently/.test((error as Error).message);
      if (!concurrent || attempt >= 10) throw error;
      await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * 40 * attempt));
    }
  }
}

/**
 * The host lease URLs name by default: the one the service itself connects to, as given. For the
 * embedded server that is 127.0.0.1, which spares each client a name lookup (about 0.25 ms of a
 * connect here) and cannot resolve to an address the server does not listen on (localhost as
 * ::1). A URL's IPv6 host keeps its brackets in `hostname`; lease URLs add their own.
 */
export function connectHost(serverUrl: URL): string {
  return serverUrl.hostname.replace(/^\[(.*)\]$/, '$1');
}

export async function openHost(options: HostOptions): Promise<Host> {
  // sslmode and sslrootcert as libpq reads them; every URL below keeps them (they change user,
  // password or database only), so every connection to this host uses the same TLS settings.
  // PGSSLMODE applied to DATABASE_URL in the configuration; a URL pglease made (the embedded
  // server's) says its own mode.
  const givenUrl = libpqCompatibleUrl(options.serverUrl, { ...process.env, PGSSLMODE: undefined });
  const tls = await hostTls(givenUrl);
  // given a superuser, pglease sets itself up with it and serves as its service role (superuser-setup.ts)
  const service = (await isSuperuserUrl(givenUrl, options.leaseDatabase)) ? await setUpServiceRole(givenUrl, options.leaseDatabase, options.log) : undefined;
  const serverUrl = service?.serverUrl ?? givenUrl;
  const created = await ensureDatabase(serverUrl, options.leaseDatabase);
  if (created) options.log(`created lease database "${options.leaseDatabase}"`);
  // without a superuser, the service makes the template of database leases itself (no event triggers)
  if (!service) await ensureLeaseTemplate(serverUrl, options.leaseDatabase, null, options.log);
  const databaseUrl = withDatabase(serverUrl, options.leaseDatabase);
  const applied = await migrate(databaseUrl, options.log);
  for (const name of applied.migrations) options.log(`applied migration ${name}`);
  for (const file of applied.sqlFiles) options.log(`applied sql/${file}`);
  await refreshTemplateIntrospection(serverUrl, options.leaseDatabase, await restSchemaDefinition(databaseUrl));

  const timeoutMs = options.timeoutMs ?? 30_000;
  // A query that times out here fails and its connection is closed (pool.query releases it with
  // the error), so nothing waits behind it; Postgres may still finish it if it wakes up.
  const pool = new pg.Pool({ connectionString: databaseUrl, options: SERVICE_SESSION_OPTIONS, max: options.poolSize ?? 10, idleTimeoutMillis: 30_000, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
  // A pool client that dies while idle (server restart) must not crash the process.
  pool.on('error', (error) => options.log(`service pool: idle connection lost (${error.message})`));
  try {
    for (const { database_name: name, revoked } of await restrictOtherDatabases(pool)) {
      options.log(
        revoked
          ? `revoked CONNECT on database "${name}" from PUBLIC, so lease roles can open only "${options.leaseDatabase}"`
          : `WARNING: lease roles can connect to database "${name}": this role does not own it, so run as its owner: REVOKE CONNECT ON DATABASE "${name}" FROM PUBLIC;`,
      );
    }
    const parsed = new URL(databaseUrl);
    const publicHost = options.publicHost ?? connectHost(parsed);
    const publicPort = options.publicPort ?? Number(parsed.port || 5432);
    const name = `${publicHost}:${publicPort}/${options.leaseDatabase}`;
    const hostRow = await pool.query<{ id: number }>('SELECT pglease.register_host($1, $2, $3) AS id', [name, publicHost, publicPort]);
    let id = hostRow.rows[0]?.id;
    if (id === undefined || id === null) {
      // unchanged row: the upsert's WHERE skipped the update, so look it up
      id = (await pool.query<{ id: number }>('SELECT id FROM pglease.hosts WHERE name = $1', [name])).rows[0]!.id;
    }
    let authenticatorKey = service?.authenticatorKey;
    if (authenticatorKey) {
      // the key is the superuser's (pglease_admin.secrets): the first migration's copy, readable
      // by the service role, must not outlive its first start
      await pool.query(`DELETE FROM pglease.secrets WHERE name = 'authenticator_key'`);
    } else {
      const secret = await pool.query<{ value: Buffer }>(`SELECT value FROM pglease.secrets WHERE name = 'authenticator_key'`);
      authenticatorKey = secret.rows[0]?.value;
      if (!authenticatorKey) {
        throw new Error(
          'the authenticator key of this lease database is kept by a superuser (pglease_admin.secrets): start pglease with a superuser DATABASE_URL, as it was set up',
        );
      }
    }
    return {
      id,
      name,
      publicHost,
      publicPort,
      database: options.leaseDatabase,
      databaseUrl,
      pool,
      timeoutMs,
      authenticatorKey,
      tls,
      close: async () => {
        await endPool(pool);
      },
    };
  } catch (error) {
    await endPool(pool);
    throw error;
  }
}
