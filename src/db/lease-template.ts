/**
 * The lease template database: what every database lease (issue 14) is cloned from, with
 * `CREATE DATABASE lease_<hex> TEMPLATE <lease database>_lease_template`.
 *
 * What it guarantees:
 *   - it belongs to the service role and PUBLIC has no CONNECT on it: a lease (NOCREATEDB, not its
 *     owner, not a superuser) can neither connect to it, clone it, alter nor drop it;
 *   - it holds what every lease database needs from the start: the DDL event triggers of the REST
 *     schema cache (sql/admin/event-triggers.sql), when pglease is given a superuser (event
 *     triggers need one to be made). Without one it is an empty database, and the REST API of a
 *     database lease falls back to reloading its schema when a request names something it has not
 *     cached, as for schema leases;
 *   - the REST API's introspection function, pglease.rest_schema (sql/rest.sql), copied from the
 *     lease database at each start into a schema pglease of the service's, executable by PUBLIC:
 *     a database lease's schema cache is read by its own authenticator, in its own database, where
 *     the service has no session (src/rest/rest-service.ts). It reads catalogs only;
 *   - nothing else: a clone costs what the template weighs (about 6.6 MB of catalog on disk on
 *     Postgres 17), and CREATE DATABASE refuses while any session is connected to the template, so
 *     sessions on it are short and made only here, at start;
 *   - with a superuser, its catalogs rewritten without free space maps and visibility maps
 *     (compactTemplate): a clone is made file by file, and on this project's machines creating
 *     the files is most of CREATE DATABASE's time, not the bytes (see compactTemplate).
 * A database lease can later serve as a template itself (fork): CREATE DATABASE ... TEMPLATE
 * lease_<hex> needs no session on it either.
 */
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { projectPath } from '../paths.js';
import { retryConcurrentCatalogUpdates } from './migrate.js';
import { SERVICE_SESSION_OPTIONS } from './service-session.js';

/** The template database of lease database `leaseDatabase` (pglease.lease_template_database in SQL). */
export function leaseTemplateName(leaseDatabase: string): string {
  return `${leaseDatabase.slice(0, 48)}_lease_template`;
}

function withDatabaseName(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = '/' + encodeURIComponent(database);
  return parsed.toString();
}

/** A session on `url` that resolves names in pg_catalog only (nothing of anyone else's is found first). */
function pinnedClient(url: string): pg.Client {
  const client = new pg.Client({ connectionString: url, application_name: 'pglease-setup', options: SERVICE_SESSION_OPTIONS });
  client.on('error', () => undefined);
  return client;
}

/**
 * Creates the template database unless it exists, owned by `owner` (NULL: the role of `serverUrl`),
 * and closes it to PUBLIC. `serverUrl` must be able to create databases (the service role, or a
 * superuser at setup). Tolerates another process doing the same at once. Returns whether it made it.
 */
export async function ensureLeaseTemplate(serverUrl: string, leaseDatabase: string, owner: string | null, log: (message: string) => void): Promise<boolean> {
  const template = leaseTemplateName(leaseDatabase);
  const client = pinnedClient(serverUrl);
  await client.connect();
  try {
    const { rows } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [template]);
    if (rows.length > 0) return false;
    try {
      // template0: nothing a site added to template1 (extensions, tables) reaches every lease
      await client.query(
        `CREATE DATABASE ${client.escapeIdentifier(template)} TEMPLATE template0${owner === null ? '' : ` OWNER ${client.escapeIdentifier(owner)}`}`,
      );
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === '42P04' || code === '23505') return false; // made by another process at this moment
      throw error;
    }
    // another pglease on this server may be revoking CONNECT on every database at this moment
    // (pglease_admin.restrict_other_databases): the same pg_database row, "tuple concurrently updated"
    await retryConcurrentCatalogUpdates(() => client.query(`REVOKE ALL ON DATABASE ${client.escapeIdentifier(template)} FROM PUBLIC`));
    log(`created the lease template database "${template}" (database leases are cloned from it)`);
    return true;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Installs the DDL event triggers in the template database, as the superuser of `superuserUrl`
 * (idempotent). A session of it is open for a few milliseconds: a lease created meanwhile waits
 * for it (CREATE DATABASE waits up to 5 s for the template's sessions to end).
 */
export async function installTemplateEventTriggers(superuserUrl: string, leaseDatabase: string): Promise<void> {
  const session = pinnedClient(withDatabaseName(superuserUrl, leaseTemplateName(leaseDatabase)));
  await session.connect();
  try {
    const sql = await readFile(projectPath('sql', 'admin', 'event-triggers.sql'), 'utf8');
    // the functions are replaced every time (their text may have changed); the triggers made once
    await retryConcurrentCatalogUpdates(() => session.query(sql));
    await retryConcurrentCatalogUpdates(() => session.query('SELECT pglease_admin.install_event_triggers()'));
  } finally {
    await session.end().catch(() => undefined);
  }
}

/** The functions that make or grow large objects: a lease over its plan loses them (sql/quota-schema.sql). */
const LARGE_OBJECT_WRITERS =
  'pg_catalog.lo_create(oid), pg_catalog.lo_creat(integer), pg_catalog.lo_from_bytea(oid, bytea), pg_catalog.lowrite(integer, bytea), pg_catalog.lo_put(oid, bigint, bytea)';

/**
 * As a superuser, in the template database: the large-object functions are no longer PUBLIC's but
 * the service's, with GRANT OPTION (as in the lease database: pglease_admin.grant_quota_needs), so
 * that the service can give them to the database leases' group and a database lease over its plan
 * can lose them. Database leases cloned from now on start so.
 */
export async function restrictTemplateLargeObjects(superuserUrl: string, leaseDatabase: string, serviceRole: string): Promise<void> {
  const session = pinnedClient(withDatabaseName(superuserUrl, leaseTemplateName(leaseDatabase)));
  await session.connect();
  try {
    await retryConcurrentCatalogUpdates(() =>
      session.query(`GRANT EXECUTE ON FUNCTION ${LARGE_OBJECT_WRITERS} TO ${session.escapeIdentifier(serviceRole)} WITH GRANT OPTION;
                     REVOKE EXECUTE ON FUNCTION ${LARGE_OBJECT_WRITERS} FROM PUBLIC`),
    );
  } finally {
    await session.end().catch(() => undefined);
  }
}

/**
 * Copies the lease database's pglease.rest_schema into the template database (see the module
 * comment), as the service role of `serviceUrl` (its owner): `definition` is the function's
 * pg_get_functiondef. Leases made from now on get this version.
 */
export async function refreshTemplateIntrospection(serviceUrl: string, leaseDatabase: string, definition: string): Promise<void> {
  const session = pinnedClient(withDatabaseName(serviceUrl, leaseTemplateName(leaseDatabase)));
  await session.connect();
  try {
    // the large-object functions a superuser took from PUBLIC here (restrictTemplateLargeObjects),
    // to the group every database lease's roles are in (migration 0011), so that they work as before
    const group = `${leaseDatabase.slice(0, 53)}_dbleases`;
    const { rows: grantable } = await session.query<{ grant: boolean }>(
      `SELECT has_function_privilege(current_user, 'pg_catalog.lo_from_bytea(oid, bytea)', 'EXECUTE WITH GRANT OPTION')
              AND to_regrole(quote_ident($1)) IS NOT NULL AND NOT has_function_privilege($1, 'pg_catalog.lo_from_bytea(oid, bytea)', 'EXECUTE') AS grant`,
      [group],
    );
    if (grantable[0]?.grant) {
      await retryConcurrentCatalogUpdates(() => session.query(`GRANT EXECUTE ON FUNCTION ${LARGE_OBJECT_WRITERS} TO ${session.escapeIdentifier(group)}`));
    }
    const current = await session.query<{ definition: string }>(
      `SELECT pg_get_functiondef(p.oid) AS definition FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'pglease' AND p.proname = 'rest_schema'`,
    );
    if (current.rows.length === 1 && current.rows[0]!.definition === definition) return;
    await retryConcurrentCatalogUpdates(() =>
      session.query(
        `CREATE SCHEMA IF NOT EXISTS pglease;
         REVOKE ALL ON SCHEMA pglease FROM PUBLIC;
         GRANT USAGE ON SCHEMA pglease TO PUBLIC;
         ${definition};
         REVOKE ALL ON FUNCTION pglease.rest_schema(name, text[]) FROM PUBLIC;
         GRANT EXECUTE ON FUNCTION pglease.rest_schema(name, text[]) TO PUBLIC;`,
      ),
    );
  } finally {
    await session.end().catch(() => undefined);
  }
}

/** Template tables with a free space or visibility map that compactTemplate leaves alone (see there). */
export const MAPS_LEFT_ALONE = 4;

/**
 * As a superuser, in the template database: rewrites (VACUUM FULL, FREEZE) the tables of pg_catalog
 * and information_schema that have a free space map or a visibility map, and answers how many.
 * template0's catalogs have both (initdb vacuums them): 74 of the 298 files of a fresh database on
 * Postgres 17, and ~0.8 MB of its 7.3. A rewritten table has its main fork only until a vacuum
 * or a full page makes the others again, which in the template, where nobody works, does not
 * happen. CREATE DATABASE (WAL_LOG) copies relation by relation, each a file made: on the shared
 * machines of session 9 the kernel's inode allocation was ~60% of its CPU time (perf), and a
 * compacted template's clones took 0.6x the time of template0's (15 interleaved pairs, load 6).
 * Their catalogs start frozen too. Only tables of the bootstrap superuser's schemas are touched:
 * no code of anyone else's runs (VACUUM FULL rebuilds indexes, which on these are plain columns).
 * A catalog change after a rewrite (the rewrite's own updates of pg_class, a start's event trigger
 * functions) that finds its page full makes that table's free space map again: up to
 * MAPS_LEFT_ALONE such tables are left, or every start would rewrite them and make them again.
 * Cheap when there is nothing to do (one catalog query); a rewrite holds a session on the template
 * for about half a second (0.56 s at load 7), which creates of database leases wait for.
 */
export async function compactTemplate(superuserUrl: string, leaseDatabase: string): Promise<number> {
  const session = pinnedClient(withDatabaseName(superuserUrl, leaseTemplateName(leaseDatabase)));
  await session.connect();
  try {
    const { rows } = await session.query<{ relation: string }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS relation
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('pg_catalog', 'information_schema') AND c.relkind = 'r' AND NOT c.relisshared
          AND c.relowner = 10
          AND (pg_relation_size(c.oid, 'fsm') > 0 OR pg_relation_size(c.oid, 'vm') > 0
               OR (c.reltoastrelid <> 0 AND (pg_relation_size(c.reltoastrelid, 'fsm') > 0 OR pg_relation_size(c.reltoastrelid, 'vm') > 0)))`,
    );
    if (rows.length <= MAPS_LEFT_ALONE) return 0;
    await session.query(`VACUUM (FULL, FREEZE) ${rows.map((row) => row.relation).join(', ')}`);
    return rows.length;
  } finally {
    await session.end().catch(() => undefined);
  }
}
