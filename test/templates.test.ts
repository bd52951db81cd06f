/**
 * Templates: seed SQL checked at registration against a scratch lease, applied to new leases as
 * the lease role in the provisioning transaction, versioned by the SQL's hash.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from './support/wait.js';
import { ADMIN_TOKEN, createLease, queryUrl as query, startTestService, superuserDatabaseUrl, type TestService } from './support/service.js';

let service: TestService;

beforeAll(async () => {
  // no warm pools here, so that counts of roles and schemas only move with what a test does; more
  // live leases of one client than PGLEASE_MAX_ACTIVE's default (20) and its connection budget allow
  // (test/client-connections.test.ts tests the budget)
  service = await startTestService({ PGLEASE_TEMPLATE_POOL: '0', PGLEASE_LEASE_POOL: '0', PGLEASE_MAX_ACTIVE: '100', PGLEASE_CLIENT_CONNECTIONS: '0' });
});
afterAll(async () => {
  await service?.close();
});

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${service.baseUrl}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

/** Counts what the service's database holds, to prove a rejected template left nothing behind. */
async function leaseObjects(): Promise<{ schemas: number; roles: number; leases: number }> {
  const [row] = await query<{ schemas: number; roles: number; leases: number }>(
    service.host.databaseUrl,
    // roles are shared by the cluster's databases (other test files' too): this database's lease
    // roles are the members of its lease group
    `SELECT (SELECT count(*)::int FROM pg_namespace WHERE nspname LIKE 'lease\\_%') AS schemas,
            (SELECT count(*)::int FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
              WHERE g.rolname = ANY (pglease.lease_groups())) AS roles,
            (SELECT count(*)::int FROM pglease.leases) AS leases`,
  );
  return row!;
}

const TODO_SQL = `
CREATE TABLE todos (id serial PRIMARY KEY, title text NOT NULL, done boolean NOT NULL DEFAULT false);
INSERT INTO todos (title) VALUES ('write tests'), ('ship it'), ('sleep');
CREATE VIEW open_todos AS SELECT * FROM todos WHERE NOT done;
`;

describe('registering', () => {
  it('stores a global template with the admin token; the same SQL again is a no-op', async () => {
    const first = await call('POST', '/v1/templates', { name: 'todo', sql: TODO_SQL }, admin);
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ name: 'todo', scope: 'global', lease_id: null, bytes: Buffer.byteLength(TODO_SQL) });
    expect(first.body.sha256).toMatch(/^[0-9a-f]{64}$/);

    const again = await call('POST', '/v1/templates', { name: 'todo', sql: TODO_SQL }, admin);
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);

    const listed = await call('GET', '/v1/templates', undefined, admin);
    expect(listed.body.items.filter((item: { name: string }) => item.name === 'todo')).toHaveLength(1);
    const one = await call('GET', '/v1/templates/todo', undefined, admin);
    expect(one.body.sql).toBe(TODO_SQL);
  });

  it('rejects failing SQL with Postgres\'s error and position, storing nothing and leaving no role or schema', async () => {
    const before = await leaseObjects();
    const sql = 'CREATE TABLE ok (id int);\nINSERT INTO ok VALUES (1);\nSELECT * FROM\n  missing_table;';
    const response = await call('POST', '/v1/templates', { name: 'broken', sql }, admin);
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({
      code: 'PGLEASE_TEMPLATE_INVALID',
      field: 'sql',
      postgres: { code: '42P01', message: 'relation "missing_table" does not exist', line: 4, column: 3 },
    });
    expect(response.body.message).toContain('line 4, column 3');
    expect(sql.slice(response.body.postgres.position - 1)).toMatch(/^missing_table/);

    const syntax = await call('POST', '/v1/templates', { name: 'broken', sql: 'CREATE TABLE a (id int);\nCRATE TABLE b ();' }, admin);
    expect(syntax.status).toBe(400);
    expect(syntax.body.postgres).toMatchObject({ code: '42601', line: 2, column: 1 });

    expect((await call('GET', '/v1/templates/broken', undefined, admin)).status).toBe(404);
    expect(await leaseObjects()).toEqual(before);
  });

  it("checks do not wait for each other: one client's slow check delays neither another's registration nor a create", async () => {
    const owner = await createLease(service);
    const started = Date.now();
    const slow = call('POST', '/v1/templates', { name: 'slow-check', sql: 'CREATE TABLE s (id int); SELECT pg_sleep(3)' }, { authorization: `Bearer ${owner.token}` });
    // the slow check is running: its scratch lease's session sleeps
    await waitFor('the slow check to run', async () => {
      // a check in a lease's session shows its SQL; one inside a service function, the function
      const [{ n }] = await query<{ n: number }>(
        superuserDatabaseUrl(service),
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE (query LIKE '%pg_sleep(3)%' OR query LIKE '%check_template%') AND state = 'active' AND pid <> pg_backend_pid()`,
      );
      return n === 1 ? true : undefined;
    });
    const quick = await call('POST', '/v1/templates', { name: 'quick-check', sql: 'CREATE TABLE q (id int)' }, admin);
    expect(quick.status).toBe(201);
    expect((await call('POST', '/v1/leases', {}, admin)).status).toBe(201);
    // both answered while the slow check still ran (it sleeps 3 s)
    expect(Date.now() - started).toBeLessThan(3000);
    expect((await slow).status).toBe(201);
  });

  it('refuses SQL that ends its own transaction: a seed is all or nothing', async () => {
    for (const sql of ['CREATE TABLE a (id int); COMMIT; CREATE TABLE b (id int)', 'CREATE TABLE a (id int); ROLLBACK', 'COMMIT; BEGIN; CREATE TABLE c (id int)']) {
      const response = await call('POST', '/v1/templates', { name: 'ends-itself', sql }, admin);
      expect(response.status, sql).toBe(400);
      expect(response.body, sql).toMatchObject({ code: 'PGLEASE_TEMPLATE_INVALID', postgres: { code: '0A000' } });
    }
    expect((await call('GET', '/v1/templates/ends-itself', undefined, admin)).status).toBe(404);
  });

  it('runs the SQL as the lease role: it cannot climb back to the service role or leave its schema', async () => {
    const attempts: [string, string][] = [
      ['RESET ROLE; SET ROLE postgres', '42501'],
      ['SET ROLE postgres', '42501'],
      ['SET SESSION AUTHORIZATION postgres', '42501'],
      [`SELECT set_config('role', 'postgres', false)`, '42501'],
      ['CREATE TABLE public.outside (id int)', '42501'],
      ['SELECT * FROM pglease.leases', '42501'],
      ['CREATE SCHEMA other', '42501'],
      ['COMMIT', '0A000'],
    ];
    for (const [sql, code] of attempts) {
      const response = await call('POST', '/v1/templates', { name: 'sneaky', sql }, admin);
      expect(response.status, sql).toBe(400);
      expect(response.body.postgres.code, sql).toBe(code);
    }
  });

  it('validates input and needs a token', async () => {
    expect((await call('POST', '/v1/templates', { name: 'x', sql: 'SELECT 1' })).status).toBe(401);
    expect((await call('POST', '/v1/templates', { name: 'x', sql: 'SELECT 1' }, { authorization: 'Bearer pgl_nobody' })).status).toBe(401);
    const badName = await call('POST', '/v1/templates', { name: 'no spaces', sql: 'SELECT 1' }, admin);
    expect(badName).toMatchObject({ status: 400, body: { code: 'PGLEASE_INVALID_FIELD', field: 'name' } });
    const empty = await call('POST', '/v1/templates', { name: 'x', sql: '' }, admin);
    expect(empty).toMatchObject({ status: 400, body: { field: 'sql' } });
    const blank = await call('POST', '/v1/templates', { name: 'x', sql: ' \n\t ' }, admin);
    expect(blank).toMatchObject({ status: 400, body: { code: 'PGLEASE_INVALID_FIELD', field: 'sql', message: 'sql: the template has no SQL, only white space' } });
    const extra = await call('POST', '/v1/templates', { name: 'x', sql: 'SELECT 1', owner: 'me' }, admin);
    expect(extra).toMatchObject({ status: 400, body: { code: 'PGLEASE_UNKNOWN_FIELD', field: 'owner' } });
    const notJson = await call('POST', '/v1/templates', undefined, { ...admin, 'content-type': 'application/json' });
    expect(notJson.status).toBe(400);
  });
});

describe('leasing from a template', () => {
  it('creates the lease with the seed applied, owned by the lease, in its schema', async () => {
    await call('POST', '/v1/templates', { name: 'todo', sql: TODO_SQL }, admin);
    const lease = await createLease(service, { template: 'todo' });
    const rows = await query<{ title: string }>(lease.url, 'SELECT title FROM todos ORDER BY id');
    expect(rows.map((row) => row.title)).toEqual(['write tests', 'ship it', 'sleep']);
    const owners = await query<{ tableowner: string; schemaname: string }>(lease.url, `SELECT tableowner, schemaname FROM pg_tables WHERE tablename = 'todos'`);
    expect(owners).toEqual([{ tableowner: lease.role, schemaname: lease.schema }]);
    // the lease owns its seed: it may drop it
    await query(lease.url, 'DROP VIEW open_todos; DROP TABLE todos');
    // no helper function is left in the schema
    const functions = await query(service.host.databaseUrl, `SELECT proname FROM pg_proc WHERE pronamespace = $1::regnamespace`, [lease.schema]);
    expect(functions).toEqual([]);
  });

  it('answers 400 naming the field for an unknown template', async () => {
    const response = await call('POST', '/v1/leases', { template: 'nope' });
    expect(response).toMatchObject({ status: 400, body: { code: 'PGLEASE_INVALID_FIELD', field: 'template' } });
    const badType = await call('POST', '/v1/leases', { template: 42 });
    expect(badType).toMatchObject({ status: 400, body: { field: 'template' } });
  });

  it('ignores a byte order mark before the SQL (the same version as without it)', async () => {
    const plain = await call('POST', '/v1/templates', { name: 'bom', sql: 'CREATE TABLE bom (id int)' }, admin);
    const marked = await call('POST', '/v1/templates', { name: 'bom', sql: '\uFEFFCREATE TABLE bom (id int)' }, admin);
    expect(marked.status).toBe(200);
    expect(marked.body.sha256).toBe(plain.body.sha256);
  });

  it('gives new leases the current version; re-registering an older SQL makes it current again', async () => {
    const v1 = await call('POST', '/v1/templates', { name: 'versions', sql: 'CREATE TABLE v1 (id int)' }, admin);
    const v2 = await call('POST', '/v1/templates', { name: 'versions', sql: 'CREATE TABLE v2 (id int)' }, admin);
    expect(v2.status).toBe(201);
    expect(v2.body.sha256).not.toBe(v1.body.sha256);
    const tablesOf = async (url: string) => (await query<{ t: string }>(url, 'SELECT tablename AS t FROM pg_tables WHERE schemaname = current_schema()')).map((row) => row.t);
    expect(await tablesOf((await createLease(service, { template: 'versions' })).url)).toEqual(['v2']);

    // the current version changes: 201, as for a new one; the same again changes nothing: 200
    const back = await call('POST', '/v1/templates', { name: 'versions', sql: 'CREATE TABLE v1 (id int)' }, admin);
    expect(back.status).toBe(201);
    expect(back.body.sha256).toBe(v1.body.sha256);
    expect(await tablesOf((await createLease(service, { template: 'versions' })).url)).toEqual(['v1']);
    expect((await call('POST', '/v1/templates', { name: 'versions', sql: 'CREATE TABLE v1 (id int)' }, admin)).status).toBe(200);
  });

  it('makes current the version whose registration answers last, though it started first', async () => {
    const answered: string[] = [];
    const register = (label: string, sql: string) =>
      call('POST', '/v1/templates', { name: 'overtaken', sql }, admin).then((response) => {
        answered.push(label);
        return response;
      });
    // the first one's check is slow: the second overtakes it
    const slow = register('slow_one', 'CREATE TABLE slow_one (id int); SELECT pg_sleep(2)');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const [fast, slowAnswer] = await Promise.all([register('fast_one', 'CREATE TABLE fast_one (id int)'), slow]);
    expect([fast.status, slowAnswer.status]).toEqual([201, 201]);
    const last = answered[1]!;
    const current = await call('GET', '/v1/templates/overtaken', undefined, admin);
    expect(current.body.sql).toContain(last);
    const lease = await createLease(service, { template: 'overtaken' });
    expect(await query(lease.url, 'SELECT tablename FROM pg_tables WHERE schemaname = current_schema()')).toEqual([{ tablename: last }]);
    // this file's client stays under PGLEASE_MAX_ACTIVE
    expect((await call('DELETE', `/v1/leases/${lease.id}`, undefined, { authorization: `Bearer ${lease.token}` })).status).toBe(204);
  });

  it('is all or nothing: a seed that fails at lease time leaves no lease behind', async () => {
    await call('POST', '/v1/templates', { name: 'turns-bad', sql: 'CREATE TABLE fine (id int)' }, admin);
    // the SQL changes behind the service's back (it cannot through the API)
    await query(service.host.databaseUrl, `UPDATE pglease.templates SET sql = 'CREATE TABLE fine (id int); SELECT 1/0' WHERE name = 'turns-bad'`);
    const before = await leaseObjects();
    const response = await call('POST', '/v1/leases', { template: 'turns-bad' });
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({ code: 'PGLEASE_TEMPLATE_INVALID', field: 'template', postgres: { code: '22012' } });
    expect(response.body.message).toContain('turns-bad');
    expect(await leaseObjects()).toEqual(before);
  });
});

describe('private templates', () => {
  it('belong to the lease whose token registered them, while it is active', async () => {
    const owner = await createLease(service);
    const bearer = { authorization: `Bearer ${owner.token}` };
    const registered = await call('POST', '/v1/templates', { name: 'mine', sql: 'CREATE TABLE private_seed (id int)' }, bearer);
    expect(registered).toMatchObject({ status: 201, body: { scope: 'private', lease_id: owner.id } });

    // others (anonymous, another lease, the admin's global scope) do not see it
    expect((await call('POST', '/v1/leases', { template: 'mine' })).status).toBe(400);
    const other = await createLease(service);
    expect((await call('POST', '/v1/leases', { template: 'mine' }, { authorization: `Bearer ${other.token}` })).status).toBe(400);
    expect((await call('GET', '/v1/templates/mine', undefined, admin)).status).toBe(404);

    // its owner's token creates leases from it; a private template shadows a global one
    await call('POST', '/v1/templates', { name: 'mine', sql: 'CREATE TABLE global_seed (id int)' }, admin);
    const seeded = await call('POST', '/v1/leases', { template: 'mine' }, bearer);
    expect(seeded.status).toBe(201);
    expect(await query(seeded.body.url, 'SELECT count(*) FROM private_seed')).toEqual([{ count: '0' }]);

    expect((await call('DELETE', `/v1/leases/${owner.id}`, undefined, bearer)).status).toBe(204);
    // with its owner gone it is gone too; the global one of the same name remains
    const after = await call('POST', '/v1/leases', { template: 'mine' });
    expect(after.status).toBe(201);
    expect(await query(after.body.url, 'SELECT count(*) FROM global_seed')).toEqual([{ count: '0' }]);
  });

  it('gives no lease from a private template whose owner was released while the lease was seeded', async () => {
    const owner = await createLease(service);
    const bearer = { authorization: `Bearer ${owner.token}` };
    // quick at the registration check (the service's session), slow in the new lease's own
    const sql = `CREATE TABLE late (id int);
      DO $$ BEGIN IF session_user = current_user THEN PERFORM pg_sleep(1.5); END IF; END $$;`;
    expect((await call('POST', '/v1/templates', { name: 'orphaned', sql }, bearer)).status).toBe(201);
    const creating = call('POST', '/v1/leases', { template: 'orphaned' }, bearer);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await call('DELETE', `/v1/leases/${owner.id}`, undefined, bearer)).status).toBe(204);
    const created = await creating;
    expect(created.status).toBe(400);
    expect(created.body).toMatchObject({ code: 'PGLEASE_INVALID_FIELD', field: 'template' });
    // the lease made for it is gone: no schema is left without a live lease
    const [orphans] = await query<{ n: number }>(
      service.host.databaseUrl,
      `SELECT count(*)::int AS n FROM pg_namespace n WHERE n.nspname LIKE 'lease\\_%'
          AND NOT EXISTS (SELECT 1 FROM pglease.leases l WHERE l.schema_name = n.nspname AND l.state IN ('active', 'provisioning'))`,
    );
    expect(orphans).toEqual({ n: 0 });
  });

  it('can be removed by their owner; global ones only by the admin', async () => {
    const owner = await createLease(service);
    const bearer = { authorization: `Bearer ${owner.token}` };
    await call('POST', '/v1/templates', { name: 'removable', sql: 'SELECT 1' }, bearer);
    await call('POST', '/v1/templates', { name: 'global-only', sql: 'SELECT 2' }, admin);
    expect((await call('DELETE', '/v1/templates/global-only', undefined, bearer)).status).toBe(404);
    expect((await call('DELETE', '/v1/templates/removable', undefined, bearer)).status).toBe(204);
    expect((await call('DELETE', '/v1/templates/removable', undefined, bearer)).status).toBe(404);
    expect((await call('DELETE', '/v1/templates/global-only', undefined, admin)).status).toBe(204);
  });
});

describe('seed SQL and the service\'s own sessions', () => {
  // a lease's token holder writes private templates' SQL; the service runs it in its sessions
  it('leaves no setting, lock or temporary object behind for the requests that follow', async () => {
    const owner = await createLease(service);
    const bearer = { authorization: `Bearer ${owner.token}` };
    const seeds: Record<string, string> = {
      datestyle: `CREATE TABLE a (x int); SET datestyle = 'SQL, DMY'; SET intervalstyle = 'sql_standard'`,
      readonly: 'CREATE TABLE b (x int); SET default_transaction_read_only = on',
      lock: 'CREATE TABLE c (x int); SELECT pg_advisory_lock(28780, 0); SELECT pg_advisory_lock(1)',
      prepared: 'CREATE TABLE d (x int); PREPARE mine AS SELECT 1; DEALLOCATE ALL',
    };
    for (const [name, sql] of Object.entries(seeds)) {
      expect((await call('POST', '/v1/templates', { name, sql }, bearer)).status, name).toBe(201);
      // twice: the create runs the seed again, and what follows must not notice
      for (let i = 0; i < 2; i++) {
        const created = await call('POST', '/v1/leases', { template: name }, bearer);
        expect(created.status, `${name}: ${JSON.stringify(created.body)}`).toBe(201);
        expect(Date.parse(created.body.created_at), name).toBeGreaterThan(Date.now() - 60_000);
        expect((await call('GET', `/v1/leases/${created.body.id}`, undefined, { authorization: `Bearer ${created.body.token}` })).status, name).toBe(200);
        expect((await call('POST', '/v1/leases', {}, admin)).status, name).toBe(201);
      }
    }
    // no session of the service holds an advisory lock a seed took (pg_locks covers the whole
    // cluster, where other test files migrate under their own advisory locks: only these keys count)
    const held = await query<{ n: number }>(
      service.host.databaseUrl,
      `SELECT count(*)::int AS n FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND ((classid = 28780 AND objid = 0 AND objsubid = 2) OR (classid = 0 AND objid = 1 AND objsubid = 1))`,
    );
    expect(held).toEqual([{ n: 0 }]);
  });

  it('runs what the seed leaves for commit (deferred triggers, cursors WITH HOLD) with the lease\'s rights only', async () => {
    const owner = await createLease(service);
    const bearer = { authorization: `Bearer ${owner.token}` };
    const victim = await createLease(service);
    await query(victim.url, `CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('victim-secret')`);
    // a deferred constraint trigger fires at commit, a WITH HOLD cursor is read to its end at
    // commit: both note who they ran as, and try what only a superuser (or the victim) may do
    const sql = `
      CREATE TABLE seen (how text, who text, super boolean, stolen text);
      CREATE FUNCTION note(how text) RETURNS int LANGUAGE plpgsql AS $f$
      BEGIN
        INSERT INTO seen SELECT how, current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), NULL;
        BEGIN
          EXECUTE format('INSERT INTO seen SELECT %L, NULL, NULL, v FROM ${victim.schema}.secrets', how);
        EXCEPTION WHEN insufficient_privilege THEN NULL;
        END;
        RETURN 1;
      END $f$;
      CREATE FUNCTION at_commit() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN PERFORM note('trigger'); RETURN NULL; END $f$;
      CREATE TABLE t (i int);
      CREATE CONSTRAINT TRIGGER ct AFTER INSERT ON t DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION at_commit();
      INSERT INTO t VALUES (1);
      DECLARE held CURSOR WITH HOLD FOR SELECT note('cursor');`;
    expect((await call('POST', '/v1/templates', { name: 'at-commit', sql }, bearer)).status).toBe(201);
    const created = await call('POST', '/v1/leases', { template: 'at-commit' }, bearer);
    expect(created.status).toBe(201);
    const seen = await query<{ how: string; who: string | null; super: boolean | null; stolen: string | null }>(created.body.url, 'SELECT * FROM seen ORDER BY how');
    expect(seen).toEqual([
      { how: 'cursor', who: created.body.role, super: false, stolen: null },
      { how: 'trigger', who: created.body.role, super: false, stolen: null },
    ]);
    // this file's client stays under PGLEASE_MAX_ACTIVE
    for (const lease of [created.body, victim, owner]) {
      expect((await call('DELETE', `/v1/leases/${lease.id}`, undefined, { authorization: `Bearer ${lease.token}` })).status).toBe(204);
    }
    // a private template goes with its lease
    expect(await query(service.host.databaseUrl, `SELECT name FROM pglease.templates WHERE owner_lease_id = $1`, [owner.id])).toEqual([]);
  });

  it('ends a seed that outlasts the lease statement timeout, even one that lifted its own timeout', async () => {
    // no warm pools: a refill landing between the two counts below would change them
    const strict = await startTestService({ PGLEASE_TEMPLATE_POOL: '0', PGLEASE_LEASE_POOL: '0', PGLEASE_LEASE_STATEMENT_TIMEOUT: '1s' });
    try {
      const owner = await createLease(strict);
      const bearer = { authorization: `Bearer ${owner.token}` };
      const post = (path: string, body: unknown) =>
        fetch(`${strict.baseUrl}${path}`, { method: 'POST', headers: { ...bearer, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const slowSql = (flag: string) => `CREATE TABLE x (i int);
        DO $$ BEGIN IF ${flag} THEN SET LOCAL statement_timeout = 0; PERFORM pg_sleep(20); END IF; END $$;`;
      // at registration: the check is a seed like any other
      let started = Date.now();
      const refused = await post('/v1/templates', { name: 'slow-now', sql: slowSql('true') });
      expect(Date.now() - started).toBeLessThan(8000);
      expect(refused.status).toBe(400);
      expect(await refused.json()).toMatchObject({ code: 'PGLEASE_TEMPLATE_INVALID', postgres: { code: '57014' } });

      // at create: quick while it was checked, slow once its owner turns a flag on
      const ownerSql = new pg.Client({ connectionString: owner.url });
      await ownerSql.connect();
      await ownerSql.query(`CREATE TABLE flag (slow bool); INSERT INTO flag VALUES (false);
        GRANT USAGE ON SCHEMA ${owner.schema} TO PUBLIC; GRANT SELECT ON flag TO PUBLIC`);
      const register = await post('/v1/templates', { name: 'slow-later', sql: slowSql(`(SELECT slow FROM ${owner.schema}.flag)`) });
      expect(register.status).toBe(201);
      await ownerSql.query('UPDATE flag SET slow = true');
      await ownerSql.end();
      const before = await query<{ n: number }>(strict.host.databaseUrl, `SELECT count(*)::int AS n FROM pglease.leases`);
      started = Date.now();
      const created = await post('/v1/leases', { template: 'slow-later' });
      expect(Date.now() - started).toBeLessThan(8000);
      expect(created.status).toBe(400);
      expect(await created.json()).toMatchObject({ code: 'PGLEASE_TEMPLATE_INVALID', postgres: { code: '57014' } });
      // the parked lease is gone, and so is its session
      expect(await query(strict.host.databaseUrl, `SELECT count(*)::int AS n FROM pglease.leases`)).toEqual(before);
      await waitFor('the seed sessions to end', async () => {
        const [{ n }] = await query<{ n: number }>(strict.host.databaseUrl, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE '%pg_sleep(20)%' AND pid <> pg_backend_pid()`);
        return n === 0 ? true : undefined;
      });
    } finally {
      await strict.close();
    }
  });

  it('lets a seed use temporary objects, which end with its session', async () => {
    const owner = await createLease(service);
    const bearer = { authorization: `Bearer ${owner.token}` };
    const sql = `CREATE TEMP TABLE scratch AS SELECT 7 AS x;
      CREATE FUNCTION pg_temp.twice(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2';
      CREATE TABLE kept AS SELECT pg_temp.twice(x) AS x FROM scratch`;
    expect((await call('POST', '/v1/templates', { name: 'uses-temp', sql }, bearer)).status).toBe(201);
    const lease = await call('POST', '/v1/leases', { template: 'uses-temp' }, bearer);
    expect(lease.status).toBe(201);
    expect(await query(lease.body.url, 'SELECT x FROM kept')).toEqual([{ x: 14 }]);
    const temporary = await query<{ n: number }>(
      service.host.databaseUrl,
      `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname LIKE 'pg_temp%' AND c.relowner = to_regrole($1)`,
      [lease.body.role],
    );
    expect(temporary).toEqual([{ n: 0 }]);
  });

  it("runs on connections of its own, two at a time per client: one client's slow seeds do not hold up the rest of the control API", async () => {
    const owner = await createLease(service);
    const bearer = { authorization: `Bearer ${owner.token}` };
    const slow = Array.from({ length: 6 }, (_, i) => call('POST', '/v1/templates', { name: `slow${i}`, sql: `CREATE TABLE s (x int); SELECT pg_sleep(2.5); -- ${i}` }, bearer));
    await new Promise((resolve) => setTimeout(resolve, 300));
    // the service pool has 10 connections: 6 seeds on it would leave the listing waiting
    for (let i = 0; i < 10; i++) expect((await call('GET', '/v1/leases?limit=1', undefined, admin)).status).toBe(200);
    const answers = await Promise.all(slow);
    expect(answers.map((answer) => answer.status).sort()).toEqual([201, 201, 429, 429, 429, 429]);
    const busy = answers.find((answer) => answer.status === 429)!;
    expect(busy.body).toMatchObject({ code: 'PGLEASE_RATE_LIMITED' });
    expect(busy.body.message).toMatch(/2 template checks of this client are running/);
  });
});

describe('lease stats', () => {
  it('reports connections, tables, rows, size and template', async () => {
    await call('POST', '/v1/templates', { name: 'todo', sql: TODO_SQL }, admin);
    const lease = await createLease(service, { template: 'todo' });
    const client = new pg.Client({ connectionString: lease.url });
    await client.connect();
    try {
      await client.query(`CREATE TABLE extra (id int); INSERT INTO extra SELECT generate_series(1, 10)`);
      const stats = await call('GET', `/v1/leases/${lease.id}/stats`, undefined, { authorization: `Bearer ${lease.token}` });
      expect(stats.status).toBe(200);
      expect(stats.body).toMatchObject({ id: lease.id, state: 'active', connections: 1, tables: 2, rows: 13, rows_exact: true, template: 'todo' });
      expect(stats.body.size_bytes).toBeGreaterThan(8192);
    } finally {
      await client.end();
    }
    const other = await createLease(service);
    expect((await call('GET', `/v1/leases/${lease.id}/stats`, undefined, { authorization: `Bearer ${other.token}` })).status).toBe(404);
    expect((await call('GET', `/v1/leases/${lease.id}/stats`)).status).toBe(401);
    expect((await call('GET', `/v1/leases/not-a-uuid/stats`, undefined, admin)).status).toBe(404);
  });
});

describe('warm pools', () => {
  let pooled: TestService;
  const poolSize = 2;

  beforeAll(async () => {
    pooled = await startTestService({ PGLEASE_TEMPLATE_POOL: String(poolSize) });
  });
  afterAll(async () => {
    await pooled?.close();
  });

  async function poolOf(name: string): Promise<{ id: string; state: string }[]> {
    return query(
      pooled.host.databaseUrl,
      `SELECT l.id, l.state FROM pglease.lease_pool p JOIN pglease.templates t ON t.id = p.template_id
         JOIN pglease.leases l ON l.id = p.lease_id WHERE t.name = $1 AND l.state = 'provisioning' ORDER BY p.created_at`,
      [name],
    );
  }

  /** The pool of `name` holds `size` leases, and this process counts them as ready to claim. */
  async function poolFilled(name: string, size = poolSize): Promise<{ id: string; state: string }[]> {
    for (const deadline = Date.now() + 20_000; ; ) {
      const leases = await poolOf(name);
      // a refill's lease is in the table a moment before the process can claim it (its claim is
      // rehearsed first): a create in that moment would provision instead
      const [current] = await query<{ id: string }>(pooled.host.databaseUrl, `SELECT id::text FROM pglease.templates WHERE name = $1 AND owner_lease_id IS NULL ORDER BY registered_at DESC LIMIT 1`, [name]);
      const claimable = current !== undefined && pooled.context.leasePool.readySize(current.id) >= size;
      if (leases.length >= size && claimable) return leases;
      if (Date.now() > deadline) throw new Error(`pool of ${name} has ${leases.length} of ${size}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async function register(name: string, sql: string) {
    const response = await fetch(`${pooled.baseUrl}/v1/templates`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...admin },
      body: JSON.stringify({ name, sql }),
    });
    expect(response.status).toBeLessThan(300);
  }

  it('keeps seeded leases ready; a create claims one, with its own password and token, and the pool refills', async () => {
    await register('pooled', TODO_SQL);
    const ready = await poolFilled('pooled');
    expect(ready.every((lease) => lease.state === 'provisioning')).toBe(true);

    const lease = await createLease(pooled, { template: 'pooled', name: 'from the pool', ttl: 120 });
    expect(ready.map((entry) => entry.id)).toContain(lease.id);
    expect(lease).toMatchObject({ state: 'active', name: 'from the pool' });
    expect(Date.parse(lease.expires_at!) - Date.parse(lease.created_at)).toBe(120_000);
    expect(await query(lease.url, 'SELECT count(*)::int AS n FROM todos')).toEqual([{ n: 3 }]);
    const own = await fetch(`${pooled.baseUrl}/v1/leases/${lease.id}`, { headers: { authorization: `Bearer ${lease.token}` } });
    expect(own.status).toBe(200);
    const [event] = await query<{ detail: { pooled?: boolean; template?: string; label?: string } }>(
      pooled.host.databaseUrl,
      `SELECT detail FROM pglease.lease_events WHERE lease_id = $1 AND kind = 'created'`,
      [lease.id],
    );
    expect(event!.detail).toMatchObject({ pooled: true, template: 'pooled', label: 'from the pool' });

    const refilled = await poolFilled('pooled');
    expect(refilled.map((entry) => entry.id)).not.toContain(lease.id);
  });

  it('a create never gets a version that another process has replaced or removed, though this one still holds its leases', async () => {
    await register('overtaken', 'CREATE TABLE first_version (id int)');
    const first = await poolFilled('overtaken');
    // this process now knows the name's current version and claims from its pool at once
    const early = await createLease(pooled, { template: 'overtaken' });
    expect(first.map((lease) => lease.id)).toContain(early.id);
    await poolFilled('overtaken');
    // another process registers a new version: here only its row, so that this process still
    // holds ready leases of the first version
    const second = 'CREATE TABLE second_version (id int)';
    await query(
      pooled.host.databaseUrl,
      `INSERT INTO pglease.templates (name, sql, sha256, registered_at) VALUES ('overtaken', $1, encode(sha256(convert_to($1, 'UTF8')), 'hex'), now() + interval '1 second')`,
      [second],
    );
    const late = await createLease(pooled, { template: 'overtaken' });
    expect(await query(late.url, `SELECT to_regclass('second_version') IS NOT NULL AS second, to_regclass('first_version') IS NOT NULL AS first`)).toEqual([
      { second: true, first: false },
    ]);
    // and a removal there: the name is unknown here too
    await query(pooled.host.databaseUrl, `DELETE FROM pglease.templates WHERE name = 'overtaken'`);
    const gone = await fetch(`${pooled.baseUrl}/v1/leases`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ template: 'overtaken' }) });
    expect(gone.status).toBe(400);
    expect(((await gone.json()) as { message: string }).message).toMatch(/no template named "overtaken"/);
  });

  it('a new version releases the old version\'s pool; removing the template releases its pool', async () => {
    await register('versioned', 'CREATE TABLE old_version (id int)');
    const old = await poolFilled('versioned');
    const schemas = await query<{ schema_name: string }>(pooled.host.databaseUrl, 'SELECT schema_name FROM pglease.leases WHERE id = ANY ($1)', [old.map((lease) => lease.id)]);
    expect(schemas).toHaveLength(poolSize);
    await register('versioned', 'CREATE TABLE new_version (id int)');
    // a pooled lease nobody claimed leaves no history: its row goes with its schema and roles
    const left = async (ids: string[]) =>
      (await query<{ n: number }>(pooled.host.databaseUrl, 'SELECT count(*)::int AS n FROM pglease.leases WHERE id = ANY ($1)', [ids]))[0]!.n;
    for (const deadline = Date.now() + 20_000; (await left(old.map((lease) => lease.id))) > 0; ) {
      if (Date.now() > deadline) throw new Error('old pool not released');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const objects = await query(
      pooled.host.databaseUrl,
      `SELECT nspname FROM pg_namespace WHERE nspname = ANY ($1) UNION ALL SELECT rolname FROM pg_roles WHERE rolname = ANY ($1)`,
      [schemas.map((row) => row.schema_name)],
    );
    expect(objects).toEqual([]);
    const current = await poolFilled('versioned');
    expect(current.map((entry) => entry.id)).not.toContain(old[0]!.id);
    const lease = await createLease(pooled, { template: 'versioned' });
    expect(await query(lease.url, 'SELECT count(*)::int AS n FROM new_version')).toEqual([{ n: 0 }]);

    const removed = await fetch(`${pooled.baseUrl}/v1/templates/versioned`, { method: 'DELETE', headers: admin });
    expect(removed.status).toBe(204);
    expect(await left(current.map((entry) => entry.id).filter((id) => id !== lease.id))).toBe(0);
    expect(await poolOf('versioned')).toEqual([]);
  });
});
