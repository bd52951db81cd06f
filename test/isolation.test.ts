/**
 * What a lease's role can and cannot do. Each attack is run from a second lease against the first
 * (or against the host), through node-postgres with the lease's own URL, exactly as a user would.
 */
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLease, queryUrl, startTestService, superuserDatabaseUrl, type CreatedLeaseJson, type TestService } from './support/service.js';

let service: TestService;
let victim: CreatedLeaseJson;
let attacker: CreatedLeaseJson;
let victimClient: pg.Client;
let attackerClient: pg.Client;
let victimLargeObject: number;

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined); // terminated sessions are part of some tests
  await client.connect();
  return client;
}

/** The SQLSTATE a statement fails with (or 'ok'). */
async function outcome(client: pg.Client, sql: string, values: unknown[] = []): Promise<string> {
  try {
    await client.query(sql, values);
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

beforeAll(async () => {
  service = await startTestService();
  victim = await createLease(service);
  attacker = await createLease(service);
  victimClient = await connect(victim.url);
  await victimClient.query(`CREATE TABLE secrets (id int PRIMARY KEY, secret text);
                            INSERT INTO secrets VALUES (1, 'the victim''s secret');
                            CREATE FUNCTION whisper() RETURNS text LANGUAGE sql AS $$ SELECT secret FROM secrets $$;
                            CREATE SEQUENCE counter;`);
  victimLargeObject = (await victimClient.query(`SELECT lo_from_bytea(0, 'large secret') AS oid`)).rows[0].oid;
  attackerClient = await connect(attacker.url);
});

afterAll(async () => {
  await victimClient?.end().catch(() => undefined);
  await attackerClient?.end().catch(() => undefined);
  await service?.close();
});

describe('a lease at home', () => {
  it('lands in its own schema as its own role, with its limits', async () => {
    const { rows } = await victimClient.query(
      `SELECT current_user AS role, current_schema() AS schema, current_database() AS database,
              current_setting('statement_timeout') AS statement_timeout,
              current_setting('idle_in_transaction_session_timeout') AS idle_timeout,
              r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication, r.rolbypassrls, r.rolconnlimit
         FROM pg_roles r WHERE r.rolname = current_user`,
    );
    expect(rows[0]).toEqual({
      role: victim.role,
      schema: victim.schema,
      database: service.config.leaseDatabase,
      statement_timeout: '1min',
      idle_timeout: '1min',
      rolsuper: false,
      rolcreatedb: false,
      rolcreaterole: false,
      rolreplication: false,
      rolbypassrls: false,
      rolconnlimit: service.config.leaseLimits.connectionLimit,
    });
    const verifier = await queryUrl<{ rolpassword: string }>(superuserDatabaseUrl(service), 'SELECT rolpassword FROM pg_authid WHERE rolname = $1', [victim.role]);
    expect(verifier[0]!.rolpassword).toMatch(/^SCRAM-SHA-256\$4096:/);
  });

  it('works from the system psql client when it is installed', async (context) => {
    let psql: string;
    try {
      psql = execFileSync('sh', ['-c', 'command -v psql']).toString().trim();
    } catch {
      context.skip(); // psql is optional on a developer machine; node-postgres covers the URL everywhere
      return;
    }
    const output = execFileSync(psql, [victim.url, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c',
      'CREATE TABLE from_psql (n int); INSERT INTO from_psql VALUES (41), (1); SELECT current_schema() || \':\' || sum(n) FROM from_psql;',
    ]).toString().trim();
    expect(output).toBe(`${victim.schema}:42`);
  });
});

describe('another lease cannot reach it', () => {
  it('cannot read, write, create in, drop, or call anything in the schema', async () => {
    const s = victim.schema;
    expect(await outcome(attackerClient, `SELECT * FROM ${s}.secrets`)).toBe('42501');
    expect(await outcome(attackerClient, `INSERT INTO ${s}.secrets VALUES (2, 'x')`)).toBe('42501');
    expect(await outcome(attackerClient, `UPDATE ${s}.secrets SET secret = 'x'`)).toBe('42501');
    expect(await outcome(attackerClient, `DELETE FROM ${s}.secrets`)).toBe('42501');
    expect(await outcome(attackerClient, `CREATE TABLE ${s}.planted (id int)`)).toBe('42501');
    expect(await outcome(attackerClient, `CREATE VIEW planted AS SELECT * FROM ${s}.secrets`)).toBe('42501');
    expect(await outcome(attackerClient, `DROP TABLE ${s}.secrets`)).toBe('42501');
    expect(await outcome(attackerClient, `DROP SCHEMA ${s} CASCADE`)).toBe('42501');
    expect(await outcome(attackerClient, `ALTER TABLE ${s}.secrets OWNER TO ${attacker.role}`)).toBe('42501');
    expect(await outcome(attackerClient, `SELECT ${s}.whisper()`)).toBe('42501');
    expect(await outcome(attackerClient, `SELECT nextval('${s}.counter')`)).toBe('42501');
    expect(await outcome(attackerClient, `GRANT USAGE ON SCHEMA ${s} TO ${attacker.role}`)).toBe('42501');
    expect(await outcome(attackerClient, `TRUNCATE ${s}.secrets`)).toBe('42501');
    const { rows } = await victimClient.query('SELECT count(*)::int AS n FROM secrets');
    expect(rows[0].n).toBe(1);
  });

  it('cannot become the other lease or any of its roles', async () => {
    for (const role of [victim.role, victim.anon_role, `${victim.role}_auth`]) {
      expect(await outcome(attackerClient, `SET ROLE ${role}`), role).toBe('42501');
      expect(await outcome(attackerClient, `SELECT set_config('role', $1, false)`, [role]), role).toBe('42501');
      expect(await outcome(attackerClient, `SET SESSION AUTHORIZATION ${role}`), role).toBe('42501');
      expect(await outcome(attackerClient, `GRANT ${role} TO ${attacker.role}`), role).toBe('42501');
      expect(await outcome(attackerClient, `ALTER ROLE ${role} PASSWORD 'stolen'`), role).toBe('42501');
    }
  });

  it('cannot become its lease group (whose large objects would outlive it and reach other leases)', async () => {
    const { rows } = await attackerClient.query<{ group: string }>(
      `SELECT g.rolname AS group FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
        WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)`,
    );
    expect(rows).toHaveLength(1);
    const group = rows[0]!.group;
    expect(await outcome(attackerClient, `SET ROLE ${group}`)).toBe('42501');
    expect(await outcome(attackerClient, `ALTER ROLE ${group} PASSWORD 'x'`)).toBe('42501');
    // the group's CONNECT is still inherited: this session exists
    expect((await attackerClient.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
  });

  it('cannot take the service down with notifications on its channels (empty or junk payloads)', async () => {
    for (const channel of ['pglease_lease_change', 'pglease_jobs', 'pglease_rest_ddl']) {
      for (const payload of [null, '', 'junk', 'help:', 'help:nope', '00000000-0000-0000-0000-000000000000', 'x'.repeat(7000)]) {
        await attackerClient.query(payload === null ? `NOTIFY ${channel}` : `SELECT pg_notify($1, $2)`, payload === null ? [] : [channel, payload]);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await fetch(`${service.baseUrl}/healthz`)).status).toBe(200);
    const created = await createLease(service);
    const rest = await fetch(`${created.rest_url}/`, { headers: { authorization: `Bearer ${created.token}` } });
    expect(rest.status).toBe(200);
  });

  it('cannot log in as the other lease’s authenticator or anonymous role', async () => {
    const url = new URL(victim.url);
    for (const user of [`${victim.role}_auth`, victim.anon_role]) {
      url.username = user;
      const client = new pg.Client({ connectionString: url.toString() });
      await expect(client.connect()).rejects.toThrow(/password authentication failed|not permitted to log in/);
    }
  });

  it('cannot terminate or cancel the other lease’s sessions, nor read their queries', async () => {
    const pid = (await victimClient.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    expect(await outcome(attackerClient, 'SELECT pg_terminate_backend($1)', [pid])).toBe('42501');
    expect(await outcome(attackerClient, 'SELECT pg_cancel_backend($1)', [pid])).toBe('42501');
    const seen = await attackerClient.query('SELECT query FROM pg_stat_activity WHERE pid = $1', [pid]);
    expect(seen.rows[0]?.query ?? '<insufficient privilege>').toBe('<insufficient privilege>');
    expect((await victimClient.query('SELECT 1 AS alive')).rows[0].alive).toBe(1);
  });

  it('cannot read the other lease’s large objects', async () => {
    expect(await outcome(attackerClient, 'SELECT lo_get($1)', [victimLargeObject])).toBe('42501');
    expect(await outcome(attackerClient, 'SELECT lo_unlink($1)', [victimLargeObject])).toBe('42501');
    expect(await outcome(attackerClient, 'SELECT lo_put($1, 0, $2)', [victimLargeObject, Buffer.from('x')])).toBe('42501');
  });
});

describe('no lease can escape to the host', () => {
  it('cannot create roles, databases or schemas, nor touch public', async () => {
    expect(await outcome(attackerClient, 'CREATE ROLE intruder')).toBe('42501');
    expect(await outcome(attackerClient, 'CREATE DATABASE intruder')).toBe('42501');
    expect(await outcome(attackerClient, 'CREATE SCHEMA intruder')).toBe('42501');
    expect(await outcome(attackerClient, 'CREATE TABLE public.intruder (id int)')).toBe('42501');
    expect(await outcome(attackerClient, 'CREATE EXTENSION IF NOT EXISTS dblink')).toMatch(/42501|0A000|58P01/);
  });

  it('cannot read pg_authid, server files or programs, or other databases', async () => {
    expect(await outcome(attackerClient, 'SELECT rolpassword FROM pg_authid')).toBe('42501');
    expect(await outcome(attackerClient, `SELECT pg_read_file('/etc/passwd')`)).toBe('42501');
    expect(await outcome(attackerClient, `SELECT pg_ls_dir('.')`)).toBe('42501');
    expect(await outcome(attackerClient, `SELECT lo_import('/etc/passwd')`)).toBe('42501');
    expect(await outcome(attackerClient, `CREATE TEMP TABLE f (line text); COPY f FROM '/etc/passwd'`)).toBe('42501');
    expect(await outcome(attackerClient, `COPY (SELECT 1) TO PROGRAM 'id'`)).toBe('42501');
    expect(await outcome(attackerClient, `COPY (SELECT 1) TO '/tmp/pglease-escape'`)).toBe('42501');
    expect(await outcome(attackerClient, `ALTER SYSTEM SET work_mem = '1GB'`)).toBe('42501');
  });

  it('cannot read or call anything in the pglease schema', async () => {
    expect(await outcome(attackerClient, 'SELECT * FROM pglease.leases')).toBe('42501');
    expect(await outcome(attackerClient, 'SELECT * FROM pglease.secrets')).toBe('42501');
    expect(await outcome(attackerClient, `SELECT pglease.release($1)`, [victim.id])).toBe('42501');
    expect(await outcome(attackerClient, 'SELECT pglease.restrict_other_databases()')).toBe('42501');
  });

  it('cannot connect to any other database of the host', async () => {
    for (const database of ['postgres', 'template1']) {
      const url = new URL(attacker.url);
      url.pathname = '/' + database;
      const client = new pg.Client({ connectionString: url.toString() });
      await expect(client.connect(), database).rejects.toMatchObject({ code: '42501' });
    }
  });

  it('cannot reach another pglease database on the same host', async () => {
    const neighbour = await startTestService();
    try {
      const url = new URL(attacker.url);
      url.pathname = '/' + neighbour.config.leaseDatabase;
      const client = new pg.Client({ connectionString: url.toString() });
      await expect(client.connect()).rejects.toMatchObject({ code: '42501' });
      // and the neighbour's leases still reach their own database (CONNECT comes from its group)
      const lease = await createLease(neighbour);
      const own = await connect(lease.url);
      expect((await own.query('SELECT current_database() AS db')).rows[0].db).toBe(neighbour.config.leaseDatabase);
      await own.end();
    } finally {
      await neighbour.close();
    }
  });

  it('keeps new functions private: the anonymous role cannot execute them until granted', async () => {
    await victimClient.query('CREATE FUNCTION hello() RETURNS text LANGUAGE sql AS $$ SELECT \'hi\' $$');
    const { rows } = await victimClient.query(`SELECT has_function_privilege($1, 'hello()', 'EXECUTE') AS anon_can`, [victim.anon_role]);
    expect(rows[0].anon_can).toBe(false);
  });
});

describe('no lease can outlive its end through another', () => {
  it("is released at once though another lease holds a lock on its table: that lease's session is cut", async () => {
    const [shared, holder] = await Promise.all([createLease(service), createLease(service)]);
    const sharing = await connect(shared.url);
    await sharing.query(`CREATE TABLE t (id int); GRANT USAGE ON SCHEMA ${shared.schema} TO PUBLIC; GRANT SELECT ON t TO PUBLIC`);
    await sharing.end();
    const locker = await connect(holder.url);
    // a lock held by a busy session of the other lease (its idle timeout never ends it)
    await locker.query(`BEGIN; LOCK TABLE ${shared.schema}.t IN ACCESS SHARE MODE`);
    const sleeping = locker.query('SELECT pg_sleep(60)').then(
      () => 'finished',
      (error: { code?: string }) => error.code,
    );
    const started = Date.now();
    const released = await fetch(`${service.baseUrl}/v1/leases/${shared.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${shared.token}` } });
    expect(released.status).toBe(204);
    // not held up by the lock (the drop's lock_timeout is 10 s)
    expect(Date.now() - started).toBeLessThan(8000);
    expect(await sleeping).toBe('57P01');
    const { rows } = await service.host.pool.query(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = $1`, [shared.schema]);
    expect(rows).toEqual([{ n: 0 }]);
    await fetch(`${service.baseUrl}/v1/leases/${holder.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${holder.token}` } });
  });
});

describe('no lease can fill the lock table every session shares', () => {
  it('is ended, sessions and all, once one of its sessions holds more than PGLEASE_MAX_LOCKS locks', async () => {
    const guarded = await startTestService({ PGLEASE_MAX_LOCKS: '2000', PGLEASE_LEASE_POOL: '0' });
    try {
      const hog = await createLease(guarded);
      const bystander = await createLease(guarded);
      const session = await connect(hog.url);
      // session advisory locks: one call each, kept after the statement (and after a failed one)
      await session.query('SELECT count(pg_advisory_lock(i)) FROM generate_series(1, 5000) i');
      const waiting = session.query('SELECT pg_sleep(30)').then(
        () => 'finished',
        (error: { code?: string }) => error.code,
      );
      expect(await waiting).toBe('57P01');
      await expect
        .poll(async () => (await (await fetch(`${guarded.baseUrl}/v1/leases/${hog.id}`, { headers: { authorization: `Bearer ${hog.token}` } })).json()).state, { timeout: 10_000 })
        .not.toBe('active');
      // another lease's ordinary use is left alone
      const other = await connect(bystander.url);
      await other.query('SELECT count(pg_advisory_lock(i)) FROM generate_series(1, 100) i');
      await new Promise((resolve) => setTimeout(resolve, 2500));
      expect((await other.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
      await other.end();
    } finally {
      await guarded.close();
    }
  }, 90_000);
});
