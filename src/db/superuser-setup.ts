/**
 * pglease never serves as a superuser. Given one (the embedded server's, or a superuser
 * DATABASE_URL), it uses it at start only, on two short-lived sessions, for what needs it:
 *
 *   - the service role `<lease database>_service` (LOGIN CREATEROLE CREATEDB, nothing more), with
 *     pg_signal_backend and pg_read_all_stats (ending lease sessions: releases, the lock guard, and
 *     stragglers whose role is gone, which only these let a role see and signal) and, on Postgres 16
 *     and later, pg_use_reserved_connections (the server's reserve, which lease roles cannot use,
 *     so pglease still logs in when leases hold every other slot);
 *   - the lease database, owned by that role, and an install made by a superuser handed over to it
 *     (sql/admin/superuser.sql, pglease_admin.adopt);
 *   - the secrets only a superuser can read (pglease_admin.secrets): the service role's password and
 *     the key every lease authenticator's password derives from. The service keeps them in memory:
 *     no SQL the service role runs can read them;
 *   - CONNECT revoked from PUBLIC on every database, and the DDL event triggers of the REST schema
 *     cache, whose function only a superuser may change (in the lease database, and in the
 *     template database every database lease is cloned from: src/db/lease-template.ts, whose
 *     catalogs are rewritten without free space and visibility maps, so that clones make fewer files);
 *   - sixteen roles through which lease authenticators (the REST API's logins) may use the
 *     reserved connections too (pglease_admin.ensure_rest_reserve);
 *   - SET on temp_file_limit (bounding leases' temporary files) and SELECT on pg_largeobject
 *     (sizing their large objects) for the service role (pglease_admin.grant_quota_needs);
 *   - pglease_admin.make_lease_roles (sql/lease-roles.sql, installed here a second time, SECURITY
 *     DEFINER), one of the superuser functions the service may call: it makes a new lease's roles,
 *     grants and schema, which as the service cost a recomputation of its memberships in every
 *     lease's roles per statement (creates 22 ms with no live lease, 219 ms with 600). It can make
 *     nothing but what the service's own CREATE ROLE would, and touches no existing object. Its
 *     mirrors in sql/admin/superuser.sql end a lease: pglease_admin.close_lease_logins (NOLOGIN) and
 *     pglease_admin.drop_lease_roles, for one lease's roles only; set_lease_group_inherit changes
 *     the lease-group membership it granted (a quota's restriction of large objects); and
 *     end_lease_backend ends a lease's session for the lock guard while the lock table is full.
 *
 * Everything after that (migrations, the control API, jobs, the REST API's lookups) runs as the
 * service role. Should a lease ever run code as that role, it could reach the pglease schema and,
 * through the role's membership, leases' data; not the superuser, not COPY ... PROGRAM, not server
 * files, not the authenticator key.
 *
 * These sessions touch nothing the service role owns (the schema pglease, the public schema of the
 * lease database): only catalogs and pglease_admin, with search_path pinned to pg_catalog.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { newPassword, scramVerifier } from '../leases/credentials.js';
import { projectPath } from '../paths.js';
import { compactTemplate, ensureLeaseTemplate, installTemplateEventTriggers, restrictTemplateLargeObjects } from './lease-template.js';
import { lockAgainstSquatters, retryConcurrentCatalogUpdates } from './migrate.js';
import { SERVICE_SESSION_OPTIONS } from './service-session.js';

/** Advisory lock key of the superuser setup of a lease database ("pgl-su" in ASCII). */
const SETUP_LOCK = '112103108045115117';

export interface ServiceLogin {
  /** The server URL with the service role's credentials (the database part is the caller's to set). */
  serverUrl: string;
  role: string;
  /** The key lease authenticators' passwords derive from, read from pglease_admin.secrets. */
  authenticatorKey: Buffer;
}

/** The service role of a lease database: one per database, as the lease groups are. */
export function serviceRoleName(leaseDatabase: string): string {
  return `${leaseDatabase.slice(0, 55)}_service`;
}

/** A session on `url` that resolves names in pg_catalog only (see the module comment). */
function pinnedClient(url: string): pg.Client {
  const client = new pg.Client({ connectionString: url, application_name: 'pglease-setup', options: SERVICE_SESSION_OPTIONS });
  client.on('error', () => undefined);
  return client;
}

function withDatabaseName(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = '/' + encodeURIComponent(database);
  return parsed.toString();
}

/**
 * Whether `serverUrl` logs in as a superuser. Asked on the lease database first: on a restart it
 * exists, and the database `serverUrl` names may since have been closed to PUBLIC (by a pglease
 * on the same host), which a role that is not a superuser would no longer be let into.
 */
export async function isSuperuserUrl(serverUrl: string, leaseDatabase: string): Promise<boolean> {
  for (const url of [withDatabaseName(serverUrl, leaseDatabase), serverUrl]) {
    const client = pinnedClient(url);
    try {
      await client.connect();
      const { rows } = await client.query<{ rolsuper: boolean }>('SELECT rolsuper FROM pg_roles WHERE rolname = current_user');
      return rows[0]?.rolsuper === true;
    } catch (error) {
      // 3D000: no such database (a first start); 42501: no CONNECT on it
      const code = (error as { code?: string }).code;
      if (url === serverUrl || (code !== '3D000' && code !== '42501')) throw error;
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  return false;
}

/** Ignores the error of a CREATE that another process won (same object created at the same moment). */
function createdConcurrently(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  return code === '42710' || code === '42P04' || code === '23505';
}

/**
 * Sets up the service role and the lease database with the superuser `superuserUrl`, and returns
 * how the service logs in. Safe with several processes starting at once.
 */
export async function setUpServiceRole(superuserUrl: string, leaseDatabase: string, log: (message: string) => void): Promise<ServiceLogin> {
  const role = serviceRoleName(leaseDatabase);
  const server = pinnedClient(superuserUrl);
  await server.connect();
  let createdDatabase = false;
  try {
    await retryConcurrentCatalogUpdates(async () => {
      const existing = await server.query<{ ok: boolean }>(
        `SELECT NOT rolsuper AND rolcanlogin AND rolcreaterole AND rolcreatedb AND NOT rolreplication AND NOT rolbypassrls AS ok
           FROM pg_roles WHERE rolname = $1`,
        [role],
      );
      if (existing.rows.length === 0) {
        await server.query(`CREATE ROLE ${server.escapeIdentifier(role)} LOGIN NOSUPERUSER CREATEROLE CREATEDB NOREPLICATION NOBYPASSRLS`).catch((error) => {
          if (!createdConcurrently(error)) throw error;
        });
      } else if (!existing.rows[0]!.ok) {
        await server.query(`ALTER ROLE ${server.escapeIdentifier(role)} LOGIN NOSUPERUSER CREATEROLE CREATEDB NOREPLICATION NOBYPASSRLS`);
      }
      const version = Number((await server.query<{ v: string }>('SHOW server_version_num')).rows[0]!.v);
      const grants = ['pg_signal_backend', 'pg_read_all_stats', ...(version >= 160_000 ? ['pg_use_reserved_connections'] : [])];
      for (const granted of grants) {
        const member = await server.query('SELECT 1 FROM pg_auth_members WHERE roleid = to_regrole($1) AND member = to_regrole($2)', [granted, role]);
        if (member.rows.length === 0) await server.query(`GRANT ${granted} TO ${server.escapeIdentifier(role)}`);
      }

      const database = await server.query<{ owner: string }>('SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = $1', [leaseDatabase]);
      if (database.rows.length === 0) {
        try {
          await server.query(`CREATE DATABASE ${server.escapeIdentifier(leaseDatabase)} OWNER ${server.escapeIdentifier(role)}`);
          createdDatabase = true;
        } catch (error) {
          if (!createdConcurrently(error)) throw error;
        }
      } else if (database.rows[0]!.owner !== role) {
        await server.query(`ALTER DATABASE ${server.escapeIdentifier(leaseDatabase)} OWNER TO ${server.escapeIdentifier(role)}`);
        log(`database "${leaseDatabase}" now belongs to the service role "${role}"`);
      }
    });
  } finally {
    await server.end().catch(() => undefined);
  }
  if (createdDatabase) log(`created lease database "${leaseDatabase}", owned by the service role "${role}"`);

  const session = pinnedClient(withDatabaseName(superuserUrl, leaseDatabase));
  await session.connect();
  try {
    await lockAgainstSquatters(session, SETUP_LOCK, log);
    const admin = await session.query<{ trusted: boolean }>(
      `SELECT r.rolsuper AS trusted FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE n.nspname = 'pglease_admin'`,
    );
    if (admin.rows[0] && !admin.rows[0].trusted) {
      throw new Error(`the schema pglease_admin of database "${leaseDatabase}" does not belong to a superuser: pglease will not trust it (drop it as a superuser)`);
    }
    const setupSql = await readFile(projectPath('sql', 'admin', 'superuser.sql'), 'utf8');
    const eventTriggerSql = await readFile(projectPath('sql', 'admin', 'event-triggers.sql'), 'utf8');
    await retryConcurrentCatalogUpdates(() => session.query(setupSql));
    await retryConcurrentCatalogUpdates(() => session.query(eventTriggerSql));
    const adopted = await session.query<{ changed: number }>('SELECT pglease_admin.adopt($1) AS changed', [role]);
    if (adopted.rows[0]!.changed > 0) log(`handed ${adopted.rows[0]!.changed} objects of the pglease schema and its leases over to the service role "${role}"`);

    const password = await servicePassword(session, role);
    const authenticatorKey = await authenticatorKeyFor(session);

    const closed = await retryConcurrentCatalogUpdates(() => session.query<{ name: string }>('SELECT pglease_admin.restrict_other_databases() AS name'));
    for (const { name } of closed.rows) log(`revoked CONNECT on database "${name}" from PUBLIC, so lease roles can open only "${leaseDatabase}"`);
    await retryConcurrentCatalogUpdates(() =>
      session.query('SELECT pglease_admin.install_event_triggers(), pglease_admin.ensure_rest_reserve($1), pglease_admin.grant_quota_needs($1)', [role]),
    );
    await installSuperuserLeaseRoles(session, role);

    // the template database leases of kind database are cloned from, the service's, with the
    // event triggers in it too (src/db/lease-template.ts)
    await ensureLeaseTemplate(superuserUrl, leaseDatabase, role, log);
    await installTemplateEventTriggers(superuserUrl, leaseDatabase);
    await restrictTemplateLargeObjects(superuserUrl, leaseDatabase, role);
    // an optimisation only: a failure leaves database leases as they were, and pglease starts
    const compacted = await compactTemplate(superuserUrl, leaseDatabase).catch((error: Error) => {
      log(`could not rewrite the catalogs of the lease template database (database leases are cloned as before): ${error.message}`);
      return 0;
    });
    if (compacted > 0) log(`rewrote ${compacted} catalogs of the lease template database without free space and visibility maps (fewer files per database lease)`);

    const serverUrl = new URL(superuserUrl);
    serverUrl.username = encodeURIComponent(role);
    serverUrl.password = encodeURIComponent(password);
    return { serverUrl: serverUrl.toString(), role, authenticatorKey };
  } finally {
    await session.end().catch(() => undefined);
  }
}

/**
 * The superuser's copy of sql/lease-roles.sql: the same text, as pglease_admin.make_lease_roles,
 * SECURITY DEFINER, executable by the service role `serviceRole` alone. Its code must call nothing
 * in the schema pglease (the service's, which a superuser must never run): checked here, so that a
 * later edit of the file cannot slip such a call into a superuser's function.
 */
export function superuserLeaseRolesSql(text: string): string {
  const code = text.replace(/--.*$/gm, '');
  const called = code.match(/\bpglease\.(?!make_lease_roles\b)[a-z_]+/);
  if (called) throw new Error(`sql/lease-roles.sql refers to ${called[0]}: a superuser's copy must not run the service's code`);
  const header = 'CREATE OR REPLACE FUNCTION pglease.make_lease_roles(';
  const body = 'LANGUAGE plpgsql\nSET search_path = pg_catalog, pg_temp\nAS $$';
  if (!text.includes(header) || !text.includes(body)) throw new Error('sql/lease-roles.sql: its function header is not the one this copy expects');
  // (replacer functions: in a replacement string, $$ would mean one $)
  return text
    .replace(header, () => 'CREATE OR REPLACE FUNCTION pglease_admin.make_lease_roles(')
    .replace(body, () => 'LANGUAGE plpgsql\nSECURITY DEFINER\nSET search_path = pg_catalog, pg_temp\nAS $$')
    .replace('REVOKE ALL ON FUNCTION pglease.make_lease_roles(', () => 'REVOKE ALL ON FUNCTION pglease_admin.make_lease_roles(');
}

const LEASE_ROLES_SIGNATURE = 'pglease_admin.make_lease_roles(text, text, text, int, int, text, text, text, text)';

async function installSuperuserLeaseRoles(session: pg.Client, serviceRole: string): Promise<void> {
  const sql = superuserLeaseRolesSql(await readFile(projectPath('sql', 'lease-roles.sql'), 'utf8'));
  const service = session.escapeIdentifier(serviceRole);
  await retryConcurrentCatalogUpdates(() =>
    session.query(`${sql}
      GRANT USAGE ON SCHEMA pglease_admin TO ${service};
      GRANT EXECUTE ON FUNCTION ${LEASE_ROLES_SIGNATURE}, pglease_admin.drop_lease_roles(text[]), pglease_admin.close_lease_logins(text[]), pglease_admin.set_lease_group_inherit(text, text, boolean), pglease_admin.end_lease_backend(int) TO ${service};`),
  );
}

/**
 * Iterations of the service role's SCRAM verifier. Its password is 256 random bits that only
 * pglease knows: iterations protect nothing there, and each login of the service computes them
 * (4,096 took ~5 ms of pglease's CPU per connection at load 5, and a fork logs in to its new
 * database on its critical path). The lease authenticators' verifiers have one for the same reason.
 */
const SERVICE_SCRAM_ITERATIONS = 1;

/**
 * The service role's password, from pglease_admin.secrets; made (and set on the role) the first
 * time, and set again when the role has none (made by hand, or its password was removed) or a
 * verifier of another iteration count (SERVICE_SCRAM_ITERATIONS).
 */
async function servicePassword(session: pg.Client, role: string): Promise<string> {
  const stored = await session.query<{ value: Buffer }>(`SELECT value FROM pglease_admin.secrets WHERE name = 'service_password'`);
  let password = stored.rows[0]?.value.toString('utf8');
  if (password === undefined) {
    const inserted = await session.query<{ value: Buffer }>(
      `INSERT INTO pglease_admin.secrets (name, value) VALUES ('service_password', $1) ON CONFLICT (name) DO NOTHING RETURNING value`,
      [Buffer.from(newPassword(), 'utf8')],
    );
    // another process stored one at the same moment: use that one
    password = (inserted.rows[0] ?? (await session.query<{ value: Buffer }>(`SELECT value FROM pglease_admin.secrets WHERE name = 'service_password'`)).rows[0]!).value.toString('utf8');
  }
  const { rows } = await session.query<{ iterations: string | null }>(
    `SELECT split_part(split_part(rolpassword, '$', 2), ':', 1) AS iterations FROM pg_authid WHERE rolname = $1`,
    [role],
  );
  if (stored.rows.length === 0 || rows[0]?.iterations !== String(SERVICE_SCRAM_ITERATIONS)) {
    const verifier = await scramVerifier(password, SERVICE_SCRAM_ITERATIONS);
    await retryConcurrentCatalogUpdates(() => session.query(`ALTER ROLE ${session.escapeIdentifier(role)} PASSWORD ${session.escapeLiteral(verifier)}`));
  }
  return password;
}

/**
 * The authenticator key from pglease_admin.secrets. An install that ran as a superuser had it in
 * pglease.secrets: pglease_admin.adopt moved it. One that ran as a non-superuser service role
 * keeps it in pglease.secrets, which that role owns: it is read only while locked and only when
 * it is a plain table (a view there would run the role's code here). Otherwise a new key.
 */
async function authenticatorKeyFor(session: pg.Client): Promise<Buffer> {
  const stored = await session.query<{ value: Buffer }>(`SELECT value FROM pglease_admin.secrets WHERE name = 'authenticator_key'`);
  if (stored.rows[0]) return stored.rows[0].value;
  let key: Buffer = randomBytes(32);
  await session.query('BEGIN');
  try {
    const legacy = await session.query<{ plain: boolean }>(`SELECT relkind = 'r' AS plain FROM pg_class WHERE oid = to_regclass('pglease.secrets')`);
    if (legacy.rows[0]) {
      await session.query('LOCK TABLE pglease.secrets IN SHARE MODE');
      const plain = await session.query<{ plain: boolean }>(`SELECT relkind = 'r' AND NOT relhasrules AND NOT relhastriggers AND NOT relrowsecurity AS plain FROM pg_class WHERE oid = to_regclass('pglease.secrets')`);
      if (plain.rows[0]?.plain) {
        const found = await session.query<{ value: Buffer }>(`SELECT value FROM pglease.secrets WHERE name = 'authenticator_key'`);
        if (found.rows[0]) key = found.rows[0].value;
      }
    }
    await session.query(`INSERT INTO pglease_admin.secrets (name, value) VALUES ('authenticator_key', $1) ON CONFLICT (name) DO NOTHING`, [key]);
    await session.query('COMMIT');
  } catch (error) {
    await session.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
  return (await session.query<{ value: Buffer }>(`SELECT value FROM pglease_admin.secrets WHERE name = 'authenticator_key'`)).rows[0]!.value;
}
