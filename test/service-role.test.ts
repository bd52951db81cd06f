/**
 * pglease never serves as a superuser: given one (here the test cluster's), it sets up the service
 * role `<lease database>_service` and runs every connection as that role (src/db/superuser-setup.ts).
 * What that role could reach, were a lease ever to run code as it, is kept small: no superuser
 * power, no authenticator key.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { withDatabase } from '../src/db/host.js';
import { migrate } from '../src/db/migrate.js';
import { authenticatorPassword, hashToken, newToken, scramVerifier } from '../src/leases/credentials.js';
import { startService } from '../src/service.js';
import { projectPath } from '../src/paths.js';
import { superuserLeaseRolesSql } from '../src/db/superuser-setup.js';
import { ADMIN_TOKEN, createLease, queryUrl, startTestService, superuserDatabaseUrl, type TestService } from './support/service.js';
import { waitFor } from './support/wait.js';

let service: TestService;
beforeAll(async () => {
  service = await startTestService();
});
afterAll(async () => {
  await service?.close();
});

/** The SQLSTATE a statement fails with on `url`, or 'ok'. */
async function outcome(url: string, sql: string): Promise<string> {
  try {
    await queryUrl(url, sql);
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? (error as Error).message;
  }
}

describe('the service role', () => {
  it('is no superuser, and all of the service runs as it', async () => {
    const [role] = await queryUrl<{ name: string; rolsuper: boolean; rolcreaterole: boolean; rolcreatedb: boolean; rolbypassrls: boolean }>(
      service.host.databaseUrl,
      'SELECT rolname AS name, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = current_user',
    );
    expect(role).toEqual({ name: `${service.config.leaseDatabase}_service`, rolsuper: false, rolcreaterole: true, rolcreatedb: true, rolbypassrls: false });
    const { rows } = await service.host.pool.query<{ superusers: number }>(
      `SELECT count(*)::int AS superusers FROM pg_stat_activity a JOIN pg_roles r ON r.rolname = a.usename
        WHERE a.datname = current_database() AND r.rolsuper AND a.pid <> pg_backend_pid()`,
    );
    expect(rows).toEqual([{ superusers: 0 }]);
  });

  it('searches pg_catalog only in its own sessions, so no name resolves into public and no search path walks its memberships', async () => {
    // `public` on the path made Postgres check the service's USAGE on it through every lease's
    // roles after each create and release (src/db/service-session.ts)
    const { rows } = await service.host.pool.query<{ search_path: string }>('SHOW search_path');
    expect(rows).toEqual([{ search_path: 'pg_catalog,pg_temp' }]);
  });

  it('never JIT-compiles its statements: their cost grows with the catalogs past jit_above_cost on servers that have JIT', async () => {
    // src/db/service-session.ts: the REST introspection of a one-table lease took 112 ms with JIT,
    // 4 ms without, on Postgres 15 with 1,000 leases (the embedded server has no JIT to show it)
    const { rows } = await service.host.pool.query<{ jit: string }>('SHOW jit');
    expect(rows).toEqual([{ jit: 'off' }]);
    // the introspection runs as a database lease's authenticator too, whose session is not the service's
    const [introspection] = await queryUrl<{ settings: string[] }>(
      service.host.databaseUrl,
      `SELECT proconfig AS settings FROM pg_proc WHERE oid = 'pglease.rest_schema(name, text[])'::regprocedure`,
    );
    expect(introspection!.settings).toContain('jit=off');
  });

  it('logs in with a verifier of one iteration: its password is 256 random bits, and every service connection computes them', async () => {
    const [verifier] = await queryUrl<{ rolpassword: string }>(superuserDatabaseUrl(service), 'SELECT rolpassword FROM pg_authid WHERE rolname = $1', [`${service.config.leaseDatabase}_service`]);
    expect(verifier!.rolpassword).toMatch(/^SCRAM-SHA-256\$1:/);
  });

  it('cannot run programs, read server files, or read the authenticator key', async () => {
    const url = service.host.databaseUrl;
    expect(await outcome(url, `COPY (SELECT 1) TO PROGRAM 'true'`)).toBe('42501');
    expect(await outcome(url, `SELECT pg_read_file('postgresql.conf')`)).toBe('42501');
    expect(await outcome(url, `SELECT * FROM pglease_admin.secrets`)).toBe('42501');
    expect(await queryUrl(url, `SELECT name FROM pglease.secrets WHERE name = 'authenticator_key'`)).toEqual([]);
    // nor change the function the DDL event triggers run in every session, a superuser's included
    expect(await outcome(url, `CREATE OR REPLACE FUNCTION pglease_admin.rest_notify_ddl() RETURNS event_trigger LANGUAGE plpgsql AS 'BEGIN END'`)).toBe('42501');
    expect(await outcome(url, 'DROP EVENT TRIGGER pglease_rest_ddl_end')).toBe('42501');
    expect(await queryUrl(url, `SELECT evtname, evtfoid::regproc::text AS fn FROM pg_event_trigger ORDER BY evtname`)).toEqual([
      { evtname: 'pglease_rest_ddl_end', fn: 'pglease_admin.rest_notify_ddl' },
      { evtname: 'pglease_rest_sql_drop', fn: 'pglease_admin.rest_notify_ddl' },
      { evtname: 'pglease_schema_lease_hint', fn: 'pglease_admin.schema_lease_ddl_hint' },
    ]);
  });

  it("lets a lease's REST authenticator use the reserved connections, and no lease login", async () => {
    const lease = await createLease(service);
    const [roles] = await queryUrl<{ auth: boolean; login: boolean; anon: boolean }>(
      service.host.databaseUrl,
      `SELECT pg_has_role($1, 'pg_use_reserved_connections', 'USAGE') AS auth,
              pg_has_role($2, 'pg_use_reserved_connections', 'USAGE') AS login,
              pg_has_role($3, 'pg_use_reserved_connections', 'USAGE') AS anon`,
      [`${lease.role}_auth`, lease.role, lease.anon_role],
    );
    expect(roles).toEqual({ auth: true, login: false, anon: false });
    // a lease cannot borrow it either: it cannot become its authenticator
    expect(await outcome(lease.url, `SET ROLE ${lease.role}_auth`)).toBe('42501');
  });

  it("makes leases' roles through a superuser's function that makes nothing else, and that no lease may call", async () => {
    const url = service.host.databaseUrl;
    const serviceRole = `${service.config.leaseDatabase}_service`;
    const [fn] = await queryUrl<{ definer: boolean; owner_super: boolean; grantees: string[] }>(
      url,
      `SELECT p.prosecdef AS definer, r.rolsuper AS owner_super,
              ARRAY(SELECT coalesce(pg_get_userbyid(a.grantee)::text, 'PUBLIC') FROM aclexplode(p.proacl) a
                     WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner ORDER BY 1) AS grantees
         FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
        WHERE p.oid = 'pglease_admin.make_lease_roles'::regproc`,
    );
    expect(fn).toEqual({ definer: true, owner_super: true, grantees: [serviceRole] });

    // a create goes through it: the service administers the new roles; the lease group's membership
    // is the superuser's grant (a grant GRANTED BY the service cost a walk of the service's
    // memberships), which quota-schema.sql's restriction changes in place through
    // pglease_admin.set_lease_group_inherit (test/quota-elsewhere.test.ts)
    const lease = await createLease(service);
    const grants = await queryUrl<{ role: string; member: string; grantor_super: boolean; admin: boolean }>(
      url,
      `SELECT pg_get_userbyid(m.roleid) AS role, pg_get_userbyid(m.member) AS member, g.rolsuper AS grantor_super, m.admin_option AS admin
         FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.grantor
        WHERE m.member = $1::regrole AND m.roleid = $2::regrole
           OR m.roleid = $1::regrole AND m.member = $3::regrole AND m.admin_option
        ORDER BY m.admin_option`,
      [lease.role, `${service.config.leaseDatabase.slice(0, 50)}_leases_${parseInt(lease.role.slice(6, 7), 16)}`, serviceRole],
    );
    expect(grants.map(({ grantor_super, admin }) => ({ grantor_super, admin }))).toEqual([
      { grantor_super: true, admin: false },
      { grantor_super: true, admin: true },
    ]);

    // what the service may ask of it: only new lease roles, this database's groups, SCRAM verifiers
    const verifier = await scramVerifier(randomBytes(12).toString('hex'));
    const call = (base: string, group: string | null, login = verifier) =>
      outcome(url, `SELECT pglease_admin.make_lease_roles('${base}', '${login}', '${verifier}', 5, 5, '30s', '30s', ${group === null ? 'NULL' : `'${group}'`}, 'schema')`);
    const fresh = () => 'lease_' + randomBytes(8).toString('hex');
    expect(await outcome(url, `BEGIN; SELECT pglease_admin.make_lease_roles('${fresh()}', '${verifier}', '${verifier}', 5, 5, '30s', '30s', NULL, 'schema'); ROLLBACK`)).toBe('ok');
    expect(await call('postgres', null)).toBe('22023');
    expect(await call(fresh(), 'pg_write_server_files')).toBe('22023');
    expect(await call(fresh(), 'pg_read_server_files')).toBe('22023');
    expect(await call(fresh(), null, 'a plain password')).toBe('22023');
    // the superuser stores the login role's verifier itself (no CREATE ROLE ... PASSWORD to parse
    // it): only a whole one passes, and it is stored whole
    expect(await call(fresh(), null, verifier.slice(0, -2))).toBe('22023');
    expect(await call(fresh(), null, `${verifier}x`)).toBe('22023');
    expect(await call(fresh(), null, verifier.replace(/\$\d+:/, '$0:'))).toBe('22023');
    const [stored] = await queryUrl<{ rolpassword: string }>(superuserDatabaseUrl(service), 'SELECT rolpassword FROM pg_authid WHERE rolname = $1', [lease.role]);
    expect(stored!.rolpassword).toMatch(/^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
    expect(await call(lease.role, null)).toBe('42710');
    expect(await queryUrl(url, `SELECT rolname FROM pg_roles WHERE rolname LIKE 'lease\\_%' AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication)`)).toEqual([]);
    // and a lease cannot reach it at all
    expect(await outcome(lease.url, `SELECT pglease_admin.make_lease_roles('${fresh()}', '${verifier}', '${verifier}', 5, 5, '30s', '30s', NULL, 'schema')`)).toBe('42501');
    const [reachable] = await queryUrl<{ n: number }>(
      lease.url,
      `SELECT count(*)::int AS n FROM pg_proc WHERE proname = 'make_lease_roles' AND has_function_privilege(oid, 'EXECUTE')`,
    );
    expect(reachable).toEqual({ n: 0 });
  });
});

describe('the superuser function that drops leases\' roles', () => {
  it("drops one lease's roles whole, never another lease database's, and is no lease's to call", { timeout: 60_000 }, async () => {
    const url = service.host.databaseUrl;
    const lease = await createLease(service);
    const rolesOf = (base: string) => [`${base}_auth`, `${base}_anon`, base, `${base}_quota`];
    const exists = async (role: string) => (await queryUrl(url, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).length === 1;
    const drop = (roles: string[], on = url) => outcome(on, `SELECT pglease_admin.drop_lease_roles(ARRAY[${roles.map((r) => `'${r}'`).join(', ')}])`);

    // not one lease's, or a live lease's roles without its login role: refused, nothing dropped
    expect(await drop(['postgres'])).toBe('22023');
    expect(await drop([`${lease.role}_auth`, 'postgres'])).toBe('22023');
    expect(await drop([`${lease.role}_auth`])).toBe('22023');
    expect(await exists(`${lease.role}_auth`)).toBe(true);
    // no lease may call it
    expect(await outcome(lease.url, `SELECT pglease_admin.drop_lease_roles(ARRAY['${lease.role}_auth'])`)).toBe('42501');

    // another pglease on the same server, with a lease database of its own: its service role cannot
    // drop this database's lease through its own copy of the function
    const other = await startTestService();
    try {
      expect(await drop(rolesOf(lease.role), other.host.databaseUrl)).toBe('2BP01');
      for (const role of [lease.role, `${lease.role}_auth`, `${lease.role}_anon`]) expect(await exists(role)).toBe(true);
      expect(await queryUrl(lease.url, 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
    } finally {
      await other.close();
    }

    // its release goes through it: every role of the lease is gone
    const released = await fetch(`${service.baseUrl}/v1/leases/${lease.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${lease.token}` } });
    expect(released.status).toBe(204);
    for (const role of rolesOf(lease.role)) expect(await exists(role)).toBe(false);
  });
});

describe("the superuser function that closes a lease's logins", () => {
  it("makes one lease's roles of this database NOLOGIN, leaves another database's lease alone, and is no lease's to call", { timeout: 60_000 }, async () => {
    const url = service.host.databaseUrl;
    const canLogin = async (role: string) => (await queryUrl<{ login: boolean }>(url, 'SELECT rolcanlogin AS login FROM pg_roles WHERE rolname = $1', [role]))[0]?.login;
    const close = (roles: string[], on = url) =>
      queryUrl<{ closed: boolean }>(on, `SELECT pglease_admin.close_lease_logins(ARRAY[${roles.map((r) => `'${r}'`).join(', ')}]) AS closed`).then(
        (rows) => rows[0]!.closed,
        (error: { code?: string }) => error.code,
      );
    const lease = await createLease(service);
    const roles = [`${lease.role}_auth`, `${lease.role}_anon`, lease.role];

    expect(await close(['postgres'])).toBe('22023');
    expect(await close([`${lease.role}_auth`, 'postgres'])).toBe('22023');
    expect(await outcome(lease.url, `SELECT pglease_admin.close_lease_logins(ARRAY['${lease.role}_auth'])`)).toBe('42501');
    // another pglease on the same server: its service's copy leaves this database's lease alone
    const other = await startTestService();
    try {
      expect(await close(roles, other.host.databaseUrl)).toBe(false);
      expect(await canLogin(lease.role)).toBe(true);
      expect(await queryUrl(lease.url, 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
    } finally {
      await other.close();
    }
    expect(await close(roles)).toBe(true);
    expect([await canLogin(lease.role), await canLogin(`${lease.role}_auth`)]).toEqual([false, false]);
    await expect(queryUrl(lease.url, 'SELECT 1')).rejects.toMatchObject({ code: '28000' });
  });

  it("ends a lease's session for the lock guard, no other session, and is no lease's to call", { timeout: 60_000 }, async () => {
    const lease = await createLease(service);
    const end = (pid: number, on = service.host.databaseUrl) =>
      queryUrl<{ ended: boolean }>(on, 'SELECT pglease_admin.end_lease_backend($1) AS ended', [pid]).then(
        (rows) => rows[0]!.ended,
        (error: { code?: string }) => error.code,
      );
    const leaseSession = new pg.Client({ connectionString: lease.url });
    leaseSession.on('error', () => undefined); // it is ended below
    await leaseSession.connect();
    const bystander = new pg.Client({ connectionString: superuserDatabaseUrl(service) });
    await bystander.connect();
    try {
      const leasePid = (await leaseSession.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const superuserPid = (await bystander.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      // no lease may call it, not even on its own session
      expect(await outcome(lease.url, `SELECT pglease_admin.end_lease_backend(${leasePid})`)).toBe('42501');
      // a session of a role not named as a lease's (here a superuser's) is left alone
      expect(await end(superuserPid)).toBe(false);
      expect((await bystander.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
      // a pid that is no session: nothing
      expect(await end(0)).toBe(false);
      // the lease's session is ended
      expect(await end(leasePid)).toBe(true);
      await waitFor('the lease session to end', async () =>
        (await queryUrl(superuserDatabaseUrl(service), 'SELECT 1 FROM pg_stat_activity WHERE pid = $1', [leasePid])).length === 0 ? true : undefined,
      );
    } finally {
      await bystander.end();
      await leaseSession.end().catch(() => undefined);
    }
  });

  it("has a sibling that changes only a lease's membership in this database's lease groups, and is no lease's to call either", async () => {
    const url = service.host.databaseUrl;
    const lease = await createLease(service);
    const set = (group: string, member: string) =>
      queryUrl<{ done: boolean }>(url, `SELECT pglease_admin.set_lease_group_inherit($1, $2, false) AS done`, [group, member]).then(
        (rows) => rows[0]!.done,
        (error: { code?: string }) => error.code,
      );
    const inherits = async (member: string) =>
      (await queryUrl<{ inherit: boolean }>(url, `SELECT bool_and(inherit_option) AS inherit FROM pg_auth_members WHERE member = $1::regrole`, [member]))[0]!.inherit;
    // not a lease group of this database, or not a lease's login role or authenticator: nothing changes
    expect(await set('pg_write_server_files', lease.role)).toBe(false);
    expect(await set(`${service.config.leaseDatabase.slice(0, 50)}_leases_0`, 'postgres')).toBe(false);
    expect(await set(`${service.config.leaseDatabase.slice(0, 50)}_leases_0`, `${lease.role}_anon`)).toBe(false);
    expect(await inherits(lease.role)).toBe(true);
    expect(await outcome(lease.url, `SELECT pglease_admin.set_lease_group_inherit('x', '${lease.role}', false)`)).toBe('42501');
  });

  it('is what a release goes through: the lease ends whole, its schema with it', async () => {
    const lease = await createLease(service);
    await queryUrl(lease.url, 'CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept VALUES (1)');
    const released = await fetch(`${service.baseUrl}/v1/leases/${lease.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${lease.token}` } });
    expect(released.status).toBe(204);
    expect(await queryUrl(service.host.databaseUrl, 'SELECT nspname FROM pg_namespace WHERE nspname = $1', [lease.role])).toEqual([]);
    expect(await queryUrl(service.host.databaseUrl, `SELECT rolname FROM pg_roles WHERE rolname LIKE $1`, [`${lease.role}%`])).toEqual([]);
  });
});

describe("the superuser's copy of sql/lease-roles.sql", () => {
  it('refuses a text that would call into the schema pglease, which the service role could change', async () => {
    const text = await readFile(projectPath('sql', 'lease-roles.sql'), 'utf8');
    expect(superuserLeaseRolesSql(text)).toContain('SECURITY DEFINER');
    expect(superuserLeaseRolesSql(text)).not.toMatch(/FUNCTION pglease\.make_lease_roles/);
    const calling = text.replace("v_db       text := current_database();", "v_db       text := pglease.lease_template_database();");
    expect(calling).not.toBe(text);
    expect(() => superuserLeaseRolesSql(calling)).toThrow(/pglease\.lease_template_database/);
  });
});

describe('an install made while pglease ran as a superuser', () => {
  it('is handed over to the service role: its leases keep working and are released by it', async () => {
    // what an earlier version left: the schema, its objects and a lease, all made by the superuser
    const database = `pglease_test_${randomBytes(4).toString('hex')}`;
    const superuserUrl = inject('serverUrl');
    await queryUrl(superuserUrl, `CREATE DATABASE ${database}`);
    const databaseUrl = withDatabase(superuserUrl, database);
    await migrate(databaseUrl);
    const [{ id: hostId }] = await queryUrl<{ id: number }>(databaseUrl, `SELECT pglease.register_host('old', '127.0.0.1', 5432) AS id`);
    const [{ value: key }] = await queryUrl<{ value: Buffer }>(databaseUrl, `SELECT value FROM pglease.secrets WHERE name = 'authenticator_key'`);
    const base = `lease_${randomBytes(8).toString('hex')}`;
    const token = newToken();
    const [old] = await queryUrl<{ id: string }>(
      databaseUrl,
      `SELECT id FROM pglease.provision($1, $2, $3, $4, interval '1 hour', 'old', NULL, $5, 5, '60s', '60s')`,
      [base, await scramVerifier('old-password'), await scramVerifier(authenticatorPassword(key, `${base}_auth`), 1), hashToken(token), hostId],
    );
    await queryUrl(withDatabase(superuserUrl, database).replace(/\/\/[^@]*@/, `//${base}:old-password@`), 'CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1), (2); GRANT SELECT ON items TO ' + base + '_anon');

    const upgraded = await startService(loadConfig({ DATABASE_URL: superuserUrl, PGLEASE_DATABASE: database, PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN, PORT: '0', HOST: '127.0.0.1', PGLEASE_LEASE_POOL: '0' }));
    try {
      expect(upgraded.host.authenticatorKey.equals(key)).toBe(true);
      const [owner] = await queryUrl<{ owner: string }>(upgraded.host.databaseUrl, `SELECT pg_get_userbyid(nspowner) AS owner FROM pg_namespace WHERE nspname = 'pglease'`);
      expect(owner).toEqual({ owner: `${database}_service` });
      expect(await queryUrl(upgraded.host.databaseUrl, `SELECT name FROM pglease.secrets WHERE name = 'authenticator_key'`)).toEqual([]);
      // the old lease's REST API logs in with the key it was made with
      const rest = await upgraded.app.inject({ method: 'GET', url: `/v1/leases/${old!.id}/rest/items?order=id`, headers: { authorization: `Bearer ${token}` } });
      expect(rest.statusCode, rest.body).toBe(200);
      expect(rest.json()).toEqual([{ id: 1 }, { id: 2 }]);
      // and the service role, which did not make its roles, can drop them
      const released = await upgraded.app.inject({ method: 'DELETE', url: `/v1/leases/${old!.id}`, headers: { authorization: `Bearer ${token}` } });
      expect(released.statusCode, released.body).toBe(204);
      expect(await queryUrl(superuserUrl, `SELECT rolname FROM pg_roles WHERE rolname LIKE $1 || '%'`, [base])).toEqual([]);
      // new leases work as ever
      const fresh = await upgraded.app.inject({ method: 'POST', url: '/v1/leases', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      expect(fresh.statusCode, fresh.body).toBe(201);
    } finally {
      await upgraded.close();
    }
  }, 90_000);
});
