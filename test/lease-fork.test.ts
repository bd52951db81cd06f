/**
 * Fork of a database lease (issue 14): POST /v1/leases/:id/fork makes a new lease holding a copy of
 * the source's objects and data, owned by its own roles, independent of the source both ways; the
 * source's sessions are ended for the copy and the answer says so; nothing in the fork refers to
 * the source's roles (either may end first); pglease runs none of the lease's code meanwhile.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, createLease, queryUrl, startTestService, superuserDatabaseUrl, type CreatedLeaseJson, type TestService } from './support/service.js';

type DatabaseLease = CreatedLeaseJson & { kind: string; database: string; anon_role: string };

let service: TestService;

beforeAll(async () => {
  service = await startTestService({ PGLEASE_DATABASE_LEASE_POOL: '0' });
});

afterAll(async () => {
  await service?.close();
});

async function fork(lease: { id: string; token: string }, body: Record<string, unknown> = {}): Promise<Response> {
  return fetch(`${service.baseUrl}/v1/leases/${lease.id}/fork`, {
    method: 'POST',
    headers: { authorization: `Bearer ${lease.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

async function release(lease: { id: string; token: string }): Promise<number> {
  const response = await fetch(`${service.baseUrl}/v1/leases/${lease.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${lease.token}` } });
  return response.status;
}

/**
 * A lease's code that counts every call made by a session that is not the lease's own: a sequence
 * advances even when the statement that called it is rolled back.
 */
const TRAP = `
  CREATE SEQUENCE foreign_calls;
  CREATE FUNCTION trap(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$
  BEGIN
    IF session_user::text NOT LIKE 'lease\\_%' THEN PERFORM nextval('public.foreign_calls'); END IF;
    RETURN x;
  END $f$;
  CREATE TABLE trapped (a int DEFAULT trap(1), b int CHECK (trap(b) >= 0));
  CREATE INDEX ON trapped ((trap(a)));
  INSERT INTO trapped (b) VALUES (1), (2);
  CREATE VIEW trapped_view AS SELECT trap(a) AS a FROM trapped;
  CREATE FUNCTION trap_trigger() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN PERFORM trap(1); RETURN NEW; END $f$;
  CREATE TRIGGER trapped_trigger BEFORE INSERT OR UPDATE OR DELETE ON trapped FOR EACH ROW EXECUTE FUNCTION trap_trigger();
  CREATE TRIGGER trapped_statement AFTER TRUNCATE ON trapped FOR EACH STATEMENT EXECUTE FUNCTION trap_trigger();
  ALTER TABLE trapped ENABLE ROW LEVEL SECURITY;
  ALTER TABLE trapped FORCE ROW LEVEL SECURITY;
  CREATE POLICY trapped_policy ON trapped USING (trap(a) IS NOT NULL);
  CREATE MATERIALIZED VIEW trapped_matview AS SELECT trap(a) AS a FROM trapped;
`;

const SEED = `
  CREATE EXTENSION citext;
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
  CREATE SCHEMA app;
  CREATE TABLE app.people (id serial PRIMARY KEY, email citext UNIQUE NOT NULL, mood mood NOT NULL DEFAULT 'ok');
  INSERT INTO app.people (email, mood) SELECT 'p' || i || '@example.com', 'happy' FROM generate_series(1, 50) i;
  CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, person int REFERENCES app.people, title text);
  INSERT INTO items (person, title) SELECT 1 + i % 50, 'item ' || i FROM generate_series(1, 1000) i;
  CREATE VIEW item_titles AS SELECT title FROM items;
  CREATE FUNCTION item_count() RETURNS bigint LANGUAGE sql STABLE AS $f$ SELECT count(*) FROM items $f$;
  GRANT SELECT ON items, item_titles TO CURRENT_USER;
  ${TRAP}
`;

describe('a fork of a database lease', () => {
  let source: DatabaseLease;
  let forked: DatabaseLease & { forked_from: string; source_sessions_ended: number };
  let sourceSession: pg.Client;
  let sourceSessionEnded = false;

  beforeAll(async () => {
    source = (await createLease(service, { kind: 'database', ttl: 600 })) as DatabaseLease;
    await queryUrl(source.url, SEED);
    await queryUrl(source.url, `GRANT SELECT ON items TO ${source.anon_role}; GRANT USAGE ON SCHEMA app TO ${source.anon_role};
                                GRANT SELECT (email) ON app.people TO ${source.anon_role};
                                CREATE POLICY anon_reads ON trapped FOR SELECT TO ${source.anon_role} USING (true)`);
    // a JWT role the source declared: the fork gets its own, with the same grants
    const declared = await fetch(`${service.baseUrl}/v1/leases/${source.id}/roles`, {
      method: 'POST',
      headers: { authorization: `Bearer ${source.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'editor' }),
    });
    expect(declared.status, await declared.clone().text()).toBeLessThan(300);
    await queryUrl(source.url, `GRANT SELECT, UPDATE ON items TO ${source.role}_editor`);
    sourceSession = new pg.Client({ connectionString: source.url });
    sourceSession.on('error', () => undefined);
    sourceSession.on('end', () => (sourceSessionEnded = true));
    await sourceSession.connect();
    await sourceSession.query('SELECT 1');

    const response = await fork(source, { ttl: 300, name: 'copy' });
    expect(response.status, await response.clone().text()).toBe(201);
    forked = (await response.json()) as typeof forked;
  });

  afterAll(async () => {
    await sourceSession?.end().catch(() => undefined);
  });

  it('is a new database lease, with its own URL, token and TTL, and says what it was forked from', async () => {
    expect(forked.kind).toBe('database');
    expect(forked.id).not.toBe(source.id);
    expect(forked.database).not.toBe(source.database);
    expect(forked.name).toBe('copy');
    expect(forked.forked_from).toBe(source.id);
    expect(forked.token).toBeTruthy();
    expect(Date.parse(forked.expires_at!) - Date.now()).toBeLessThanOrEqual(300_000);
    const [row] = await queryUrl<{ user: string; database: string }>(forked.url, 'SELECT current_user AS user, current_database() AS database');
    expect(row).toEqual({ user: forked.role, database: forked.database });
  });

  it('ended the source’s open session, and says so', async () => {
    expect(forked.source_sessions_ended).toBeGreaterThanOrEqual(1);
    await expect(sourceSession.query('SELECT 1')).rejects.toThrow();
    expect(sourceSessionEnded).toBe(true);
  });

  it('holds the source’s objects and data', async () => {
    const snapshot = `SELECT (SELECT count(*)::int FROM items) AS items, (SELECT count(*)::int FROM app.people WHERE mood = 'happy') AS happy,
                             (SELECT item_count()::int) AS counted, (SELECT count(*)::int FROM item_titles) AS titles,
                             (SELECT extversion FROM pg_extension WHERE extname = 'citext') IS NOT NULL AS citext,
                             (SELECT count(*)::int FROM app.people WHERE email = 'P1@EXAMPLE.COM') AS case_insensitive,
                             (SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                WHERE n.nspname IN ('public', 'app') AND c.relkind IN ('r', 'v', 'm', 'S')) AS relations`;
    const [inSource] = await queryUrl(source.url, snapshot);
    const [inFork] = await queryUrl(forked.url, snapshot);
    expect(inFork).toEqual(inSource);
    expect(inFork).toMatchObject({ items: 1000, happy: 50, counted: 1000, titles: 1000, citext: true, case_insensitive: 1 });
  });

  it('belongs to the fork’s roles: no object, privilege, default privilege or policy names a role of the source', async () => {
    const [refs] = await queryUrl<Record<string, number>>(
      forked.url,
      `WITH src AS (SELECT oid FROM pg_roles WHERE rolname LIKE $1 || '%')
       SELECT (SELECT count(*)::int FROM pg_class WHERE relowner IN (SELECT oid FROM src)) AS relations,
              (SELECT count(*)::int FROM pg_proc WHERE proowner IN (SELECT oid FROM src)) AS routines,
              (SELECT count(*)::int FROM pg_type WHERE typowner IN (SELECT oid FROM src)) AS types,
              (SELECT count(*)::int FROM pg_namespace WHERE nspowner IN (SELECT oid FROM src)) AS schemas,
              (SELECT count(*)::int FROM pg_class, aclexplode(relacl) a WHERE a.grantee IN (SELECT oid FROM src) OR a.grantor IN (SELECT oid FROM src)) AS acl,
              (SELECT count(*)::int FROM pg_attribute, aclexplode(attacl) a WHERE a.grantee IN (SELECT oid FROM src)) AS column_acl,
              (SELECT count(*)::int FROM pg_default_acl WHERE defaclrole IN (SELECT oid FROM src)) AS default_acl,
              (SELECT count(*)::int FROM pg_policy, unnest(polroles) r WHERE r IN (SELECT oid FROM src)) AS policies`,
      [source.role],
    );
    expect(refs).toEqual({ relations: 0, routines: 0, types: 0, schemas: 0, acl: 0, column_acl: 0, default_acl: 0, policies: 0 });
    // what the source granted its anonymous role, the fork grants its own
    const [grants] = await queryUrl<Record<string, boolean>>(
      forked.url,
      `SELECT has_table_privilege($1, 'items', 'SELECT') AS items, has_column_privilege($1, 'app.people', 'email', 'SELECT') AS email,
              has_column_privilege($1, 'app.people', 'mood', 'SELECT') AS mood,
              EXISTS (SELECT 1 FROM pg_policy p, unnest(p.polroles) r WHERE p.polname = 'anon_reads' AND r = $1::regrole) AS policy,
              has_schema_privilege($1, 'public', 'USAGE') AS public`,
      [forked.anon_role],
    );
    // (USAGE on public: what a new database lease's first session grants, carried by the copy)
    expect(grants).toEqual({ items: true, email: true, mood: false, policy: true, public: true });
    const [editor] = await queryUrl<{ update: boolean }>(forked.url, `SELECT has_table_privilege($1, 'items', 'UPDATE') AS update`, [`${forked.role}_editor`]);
    expect(editor!.update).toBe(true);
    // new functions start private in the fork too
    await queryUrl(forked.url, 'CREATE FUNCTION fresh() RETURNS int LANGUAGE sql AS $f$ SELECT 1 $f$');
    const [fresh] = await queryUrl<{ public: boolean }>(forked.url, `SELECT has_function_privilege('public', 'fresh()', 'EXECUTE') AS public`);
    expect(fresh!.public).toBe(false);
  });

  it('ran none of the lease’s code as pglease (index expressions, defaults, checks, triggers, views, policies)', async () => {
    for (const url of [source.url, forked.url]) {
      const [trap] = await queryUrl<{ last_value: string; is_called: boolean }>(url, 'SELECT last_value, is_called FROM foreign_calls');
      expect(trap!.is_called).toBe(false);
    }
  });

  it('is independent of the source both ways, and the source keeps working as before', async () => {
    await queryUrl(forked.url, `INSERT INTO items (person, title) VALUES (1, 'only in the fork')`);
    await queryUrl(source.url, `DELETE FROM items WHERE id <= 10`);
    const [inFork] = await queryUrl<{ n: number }>(forked.url, `SELECT count(*)::int AS n FROM items`);
    const [inSource] = await queryUrl<{ n: number }>(source.url, `SELECT count(*)::int AS n FROM items`);
    expect(inFork!.n).toBe(1001);
    expect(inSource!.n).toBe(990);
    const [owner] = await queryUrl<{ owner: string; connect: boolean }>(
      superuserDatabaseUrl(service),
      `SELECT pg_get_userbyid(datdba) AS owner, datallowconn AS connect FROM pg_database WHERE datname = $1`,
      [source.database],
    );
    expect(owner).toEqual({ owner: source.role, connect: true });
  });

  it('outlives its source: the source ends (its roles dropped) and the fork still works', async () => {
    expect(await release(source)).toBe(204);
    const [gone] = await queryUrl<{ roles: number }>(superuserDatabaseUrl(service), `SELECT count(*)::int AS roles FROM pg_roles WHERE rolname LIKE $1 || '%'`, [source.role]);
    expect(gone!.roles).toBe(0);
    const [row] = await queryUrl<{ n: number }>(forked.url, 'SELECT count(*)::int AS n FROM items');
    expect(row!.n).toBe(1001);
    expect(await release(forked)).toBe(204);
  }, 90_000);
});

describe('forking', () => {
  it('(calibration) the trap counts a foreign session that runs the lease’s code', async () => {
    const lease = (await createLease(service, { kind: 'database' })) as DatabaseLease;
    await queryUrl(lease.url, TRAP);
    const url = new URL(superuserDatabaseUrl(service));
    url.pathname = '/' + lease.database;
    await queryUrl(url.toString(), 'SELECT * FROM public.trapped_view');
    const [trap] = await queryUrl<{ is_called: boolean }>(lease.url, 'SELECT is_called FROM foreign_calls');
    expect(trap!.is_called).toBe(true);
  });

  it('is refused for a schema lease, with a message that points to database leases', async () => {
    const lease = await createLease(service, { kind: 'schema' });
    const response = await fork(lease);
    expect(response.status).toBe(409);
    const body = (await response.json()) as { code: string; message: string };
    expect(body.code).toBe('PGLEASE_FORK_NEEDS_DATABASE');
    expect(body.message).toMatch(/"kind": "database"/);
  });

  it('needs the lease’s own token (or the admin’s), and refuses bad input with the field named', async () => {
    const lease = await createLease(service, { kind: 'database' });
    const other = await createLease(service, { kind: 'database' });
    const stranger = await fetch(`${service.baseUrl}/v1/leases/${lease.id}/fork`, { method: 'POST', headers: { authorization: `Bearer ${other.token}` } });
    expect(stranger.status).toBe(404);
    const bad = await fork(lease, { ttl: -5 });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { field?: string }).field).toBe('ttl');
    const unknown = await fork(lease, { colour: 'red' });
    expect(unknown.status).toBe(400);
    const byAdmin = await fetch(`${service.baseUrl}/v1/leases/${lease.id}/fork`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(byAdmin.status).toBe(201);
  });

  it('while another process copies the same lease answers 409 PGLEASE_LEASE_BUSY, and leaves that copy\'s bracket alone', async () => {
    const lease = await createLease(service, { kind: 'database' });
    // another pglease's bracket (src/leases/copy-bracket.ts), held by this session
    const other = new pg.Client({ connectionString: superuserDatabaseUrl(service) });
    await other.connect();
    try {
      await other.query('SELECT pglease.close_for_fork($1)', [lease.id]);
      const busy = await fork(lease);
      expect(busy.status).toBe(409);
      expect(((await busy.json()) as { code: string }).code).toBe('PGLEASE_LEASE_BUSY');
      const [database] = await queryUrl<{ open: boolean }>(superuserDatabaseUrl(service), 'SELECT datallowconn AS open FROM pg_database WHERE datname = $1', [lease.database]);
      expect(database).toEqual({ open: false });
      await other.query('SELECT pglease.reopen_after_fork($1)', [lease.id]);
    } finally {
      await other.end();
    }
    const response = await fork(lease);
    expect(response.status, await response.clone().text()).toBe(201);
  });

  it('leaves alone a session it may not end (a superuser\'s, as an autovacuum worker\'s is): the copy waits for it, no 500', async () => {
    const lease = await createLease(service, { kind: 'database' });
    const url = new URL(superuserDatabaseUrl(service));
    url.pathname = '/' + lease.database;
    const operator = new pg.Client({ connectionString: url.toString() });
    operator.on('error', () => undefined);
    await operator.connect();
    await operator.query('SELECT 1');
    const forking = fork(lease);
    // CREATE DATABASE waits up to 5 s for the template's other sessions: this one goes after 1 s
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await operator.end();
    const response = await forking;
    expect(response.status, await response.clone().text()).toBe(201);
    expect(((await response.json()) as { source_sessions_ended: number }).source_sessions_ended).toBe(0);
  });

  it('of a released lease answers 409', async () => {
    const lease = await createLease(service, { kind: 'database' });
    expect(await release(lease)).toBe(204);
    const response = await fork(lease);
    expect([404, 409]).toContain(response.status);
  });
});

type Forked = DatabaseLease & { copied_from_snapshot: string | null; source_sessions_ended: number };

/** POST `path` under the lease, with its own token. */
function postTo(lease: DatabaseLease, path: string, body: unknown = {}): Promise<Response> {
  return fetch(`${service.baseUrl}/v1/leases/${lease.id}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${lease.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

/** A fork of `lease`, which must succeed; kept in `forks` for the block's release. */
async function forkInto(lease: DatabaseLease, forks: Forked[]): Promise<Forked> {
  const response = await fork(lease);
  expect(response.status, await response.clone().text()).toBe(201);
  const forked = (await response.json()) as Forked;
  forks.push(forked);
  return forked;
}

/**
 * Has the observer count the lease's tables and rows now (a session of the service in its
 * database, which must not void the copy mark), and waits until it has: so that no count of it
 * runs while the next fork's bracket ends its sessions.
 */
async function countedNow(lease: DatabaseLease): Promise<void> {
  await service.host.pool.query('UPDATE pglease.lease_health SET database_counted_at = NULL WHERE lease_id = $1', [lease.id]);
  for (let i = 0; i < 600; i++) {
    const { rows } = await service.host.pool.query<{ counted: boolean }>('SELECT database_counted_at IS NOT NULL AS counted FROM pglease.lease_health WHERE lease_id = $1', [lease.id]);
    if (rows[0]?.counted) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('the observer did not count the lease within 30 s');
}

describe('a fork of a lease that has not changed since its snapshot or restore', () => {
  let source: DatabaseLease;
  const forks: Forked[] = [];

  const call = (path: string, body: unknown = {}) => postTo(source, path, body);
  const forkNow = () => forkInto(source, forks);
  /** The copy of snapshot `name` made in advance for the next restore (or fork), once it exists. */
  const preparedCopy = async (name: string): Promise<void> => {
    const superuser = await superuserDatabaseUrl(service);
    for (let i = 0; i < 600; i++) {
      const rows = await queryUrl(superuser, `SELECT 1 FROM pg_database WHERE datname LIKE $1 AND NOT datallowconn`, [`${source.database}_p_${name}_%`]);
      if (rows.length > 0) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`no prepared copy of snapshot ${name} within 30 s`);
  };
  const titles = async (url: string) => (await queryUrl<{ title: string }>(url, 'SELECT title FROM items ORDER BY id')).map((row) => row.title);
  const countedByObserver = () => countedNow(source);

  beforeAll(async () => {
    source = (await createLease(service, { kind: 'database' })) as DatabaseLease;
    await queryUrl(source.url, `
      CREATE TABLE items (id int PRIMARY KEY, title text);
      INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 3) i;
      CREATE SEQUENCE counter;
      ${TRAP}`);
    expect((await call('/snapshots', { name: 'seeded' })).status).toBe(201);
    await preparedCopy('seeded');
  });

  afterAll(async () => {
    for (const forked of forks) await release(forked);
    await release(source);
  });

  it('gets the snapshot\'s copy made in advance: the same contents, its own roles, and pglease ran none of the lease\'s code', async () => {
    // the observer counts the lease's rows in its database meanwhile: a session of the service
    // there, which changes nothing and leaves the mark as it was
    await countedByObserver();
    // the copy comes with its relation cache file, which CREATE DATABASE does not copy: the fork's
    // first sessions do not build it (one login of the service made it, and left the copy closed)
    // (made just after the copy itself, which a waiting fork would wait for too: the copy may be
    // there a moment before its file)
    const superuser = await superuserDatabaseUrl(service);
    const cacheFiles = () =>
      queryUrl(
        superuser,
        `SELECT f FROM pg_database d, pg_ls_dir('base/' || d.oid) f WHERE d.datname LIKE $1 AND NOT d.datallowconn AND f = 'pg_internal.init'`,
        [`${source.database}_p_seeded_%`],
      );
    await expect.poll(cacheFiles, { timeout: 30_000, interval: 50 }).toHaveLength(1);
    // and no one but its owner, the service, may connect to it (a new database grants PUBLIC CONNECT)
    const [acl] = await queryUrl<{ public_connect: boolean; owner: string }>(
      superuser,
      `SELECT has_database_privilege('public', d.oid, 'CONNECT') AS public_connect, pg_get_userbyid(d.datdba) AS owner
         FROM pg_database d WHERE d.datname LIKE $1`,
      [`${source.database}_p_seeded_%`],
    );
    expect(acl).toEqual({ public_connect: false, owner: `${service.config.leaseDatabase}_service` });
    const forked = await forkNow();
    expect(forked.copied_from_snapshot).toBe('seeded');
    expect(await titles(forked.url)).toEqual(['item 1', 'item 2', 'item 3']);
    // handed over as any fork: the fork's login owns what the source's did, and may write
    const [owner] = await queryUrl<{ owner: string; me: string }>(forked.url, `SELECT tableowner AS owner, current_user AS me FROM pg_tables WHERE tablename = 'items'`);
    expect(owner!.owner).toBe(owner!.me);
    await queryUrl(forked.url, `INSERT INTO items VALUES (4, 'forked')`);
    expect(await titles(source.url)).toEqual(['item 1', 'item 2', 'item 3']);
    for (const url of [source.url, forked.url]) {
      const [calls] = await queryUrl<{ n: string }>(url, 'SELECT last_value::text AS n, is_called FROM foreign_calls');
      expect(calls).toMatchObject({ n: '1', is_called: false });
    }
  });

  it('after any transaction in the source, copies the live database: a write, or a sequence advanced alone', async () => {
    expect((await call('/restore', { name: 'seeded' })).status).toBe(200);
    await countedByObserver();
    await preparedCopy('seeded');
    const unchanged = await forkNow();
    expect(unchanged.copied_from_snapshot).toBe('seeded');

    await preparedCopy('seeded');
    await queryUrl(source.url, `SELECT nextval('counter')`);
    const afterSequence = await forkNow();
    expect(afterSequence.copied_from_snapshot).toBeNull();
    expect(await queryUrl(afterSequence.url, `SELECT last_value::int AS n, is_called FROM counter`)).toEqual([{ n: 1, is_called: true }]);

    // the live copy left the prepared one for the next restore
    await preparedCopy('seeded');
    await queryUrl(source.url, `INSERT INTO items VALUES (5, 'written')`);
    const afterWrite = await forkNow();
    expect(afterWrite.copied_from_snapshot).toBeNull();
    expect(await titles(afterWrite.url)).toEqual(['item 1', 'item 2', 'item 3', 'written']);
  });

  it('after a restore, gets the snapshot\'s copy again, until the next transaction', async () => {
    const restored = await call('/restore', { name: 'seeded' });
    expect(restored.status, await restored.clone().text()).toBe(200);
    await countedByObserver();
    await preparedCopy('seeded');
    const forked = await forkNow();
    expect(forked.copied_from_snapshot).toBe('seeded');
    expect(await titles(forked.url)).toEqual(['item 1', 'item 2', 'item 3']);

    // a session that writes and is still open when the fork comes: ended for the copy, its
    // transaction counted at its exit, so the fork copies the live database with its write
    await preparedCopy('seeded');
    const session = new pg.Client({ connectionString: source.url });
    session.on('error', () => undefined);
    await session.connect();
    await session.query(`INSERT INTO items VALUES (6, 'from an open session')`);
    const withOpenSession = await forkNow();
    await session.end().catch(() => undefined);
    expect(withOpenSession.source_sessions_ended).toBe(1);
    expect(withOpenSession.copied_from_snapshot).toBeNull();
    expect(await titles(withOpenSession.url)).toEqual(['item 1', 'item 2', 'item 3', 'from an open session']);
  });
});

describe('a fork made in advance (after a fork of a lease as its snapshot left it)', () => {
  let source: DatabaseLease;
  const forks: Forked[] = [];

  const call = (path: string, body: unknown = {}) => postTo(source, path, body);
  const forkNow = () => forkInto(source, forks);
  /** The id of the fork made in advance for the source, once there is one. */
  const readyFork = async (): Promise<string> => {
    for (let i = 0; i < 600; i++) {
      const { rows } = await service.host.pool.query<{ lease_id: string }>('SELECT lease_id FROM pglease.ready_forks WHERE source_id = $1', [source.id]);
      if (rows.length === 1) return rows[0]!.lease_id;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error('no fork was made in advance within 30 s');
  };
  /** The source restored to its snapshot, and counted by the observer since (countedNow). */
  const restored = async (): Promise<void> => {
    const response = await call('/restore', { name: 'seeded' });
    expect(response.status, await response.clone().text()).toBe(200);
    await countedNow(source);
  };
  const sourceDatabase = async () =>
    (await queryUrl<{ owner: string; open: boolean; acl: string }>(
      superuserDatabaseUrl(service),
      `SELECT pg_get_userbyid(datdba) AS owner, datallowconn AS open, datacl::text AS acl FROM pg_database WHERE datname = $1`,
      [source.database],
    ))[0];
  const declare = async (name: string) => {
    const response = await fetch(`${service.baseUrl}/v1/leases/${source.id}/roles`, {
      method: 'POST',
      headers: { authorization: `Bearer ${source.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
    });
    expect(response.status, await response.clone().text()).toBeLessThan(300);
  };

  beforeAll(async () => {
    source = (await createLease(service, { kind: 'database', ttl: 600 })) as DatabaseLease;
    await queryUrl(source.url, SEED);
    await declare('editor');
    await queryUrl(source.url, `GRANT SELECT ON items TO ${source.anon_role}; GRANT SELECT, UPDATE ON items TO ${source.role}_editor`);
    expect((await call('/snapshots', { name: 'seeded' })).status).toBe(201);
  });

  afterAll(async () => {
    for (const forked of forks) await release(forked);
    await release(source);
  });

  it('is made while the source stays open, its sessions untouched and its database its own', async () => {
    const before = await sourceDatabase();
    await restored();
    const first = await forkNow();
    expect(first.copied_from_snapshot).toBe('seeded');
    // a session on the source while the next fork is made: not ended, and the database stays the
    // lease's (the handover gives it back in its own transaction)
    const session = new pg.Client({ connectionString: source.url });
    session.on('error', () => undefined);
    await session.connect();
    try {
      const owners = new Set<string>();
      let ready: string | undefined;
      while (ready === undefined) {
        owners.add((await sourceDatabase())!.owner);
        await session.query(`SELECT count(*) FROM items`);
        ready = (await service.host.pool.query<{ lease_id: string }>('SELECT lease_id FROM pglease.ready_forks WHERE source_id = $1', [source.id])).rows[0]?.lease_id;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      expect([...owners]).toEqual([source.role]);
      expect(await sourceDatabase()).toEqual(before);
      // parked: nobody's, not listed, closed to everyone but its own roles
      const [parked] = await queryUrl<{ state: string }>(superuserDatabaseUrl(service), `SELECT state::text FROM pglease.leases WHERE id = $1`, [ready]);
      expect(parked!.state).toBe('provisioning');
    } finally {
      await session.end();
    }
  });

  it('is held a minute at a time by its maker\'s heartbeat, and let go when it is too old', async () => {
    const ready = await readyFork();
    const { rows } = await service.host.pool.query<{ holder: string; left: number }>(
      `SELECT r.holder, extract(epoch FROM l.expires_at - now())::float8 AS left FROM pglease.ready_forks r JOIN pglease.leases l ON l.id = r.lease_id WHERE r.lease_id = $1`,
      [ready],
    );
    // a process that dies leaves it for a minute at most, as a warm pool's lease
    expect(rows[0]!.left).toBeLessThanOrEqual(60);
    const hold = async (maxAge: string) =>
      (await service.host.pool.query<{ id: string }>(`SELECT id FROM pglease.hold_ready_forks($1, interval '60 seconds', $2::interval) id`, [rows[0]!.holder, maxAge])).rows.map((row) => row.id);
    // (the same process holds another source's, from the tests above)
    expect(await hold('10 minutes')).toContain(ready);
    expect(await hold('0 seconds')).toEqual([]);
  });

  it('is what the next fork of the unchanged source gets: the same contents, its own roles, no lease code run', async () => {
    const ready = await readyFork();
    await restored();
    const forked = await forkNow();
    expect(forked.id).toBe(ready);
    expect(forked.copied_from_snapshot).toBe('seeded');
    expect(forked.kind).toBe('database');
    const [rows] = await queryUrl<{ items: number; people: number }>(forked.url, `SELECT (SELECT count(*)::int FROM items) AS items, (SELECT count(*)::int FROM app.people) AS people`);
    expect(rows).toEqual({ items: 1000, people: 50 });
    const [refs] = await queryUrl<Record<string, number>>(
      forked.url,
      `WITH src AS (SELECT oid FROM pg_roles WHERE rolname LIKE $1 || '%')
       SELECT (SELECT count(*)::int FROM pg_class WHERE relowner IN (SELECT oid FROM src)) AS relations,
              (SELECT count(*)::int FROM pg_proc WHERE proowner IN (SELECT oid FROM src)) AS routines,
              (SELECT count(*)::int FROM pg_type WHERE typowner IN (SELECT oid FROM src)) AS types,
              (SELECT count(*)::int FROM pg_namespace WHERE nspowner IN (SELECT oid FROM src)) AS schemas,
              (SELECT count(*)::int FROM pg_class, aclexplode(relacl) a WHERE a.grantee IN (SELECT oid FROM src) OR a.grantor IN (SELECT oid FROM src)) AS acl,
              (SELECT count(*)::int FROM pg_default_acl WHERE defaclrole IN (SELECT oid FROM src)) AS default_acl,
              (SELECT count(*)::int FROM pg_extension WHERE extowner IN (SELECT oid FROM src)) AS extensions,
              (SELECT count(*)::int FROM pg_database WHERE datname = current_database() AND datdba IN (SELECT oid FROM src)) AS database`,
      [source.role],
    );
    expect(refs).toEqual({ relations: 0, routines: 0, types: 0, schemas: 0, acl: 0, default_acl: 0, extensions: 0, database: 0 });
    const [grants] = await queryUrl<Record<string, boolean>>(
      forked.url,
      `SELECT has_table_privilege($1, 'items', 'SELECT') AS anon, has_table_privilege($2, 'items', 'UPDATE') AS editor`,
      [forked.anon_role, `${forked.role}_editor`],
    );
    expect(grants).toEqual({ anon: true, editor: true });
    await queryUrl(forked.url, `INSERT INTO items (person, title) VALUES (1, 'only in the fork')`);
    const [inSource] = await queryUrl<{ n: number }>(source.url, 'SELECT count(*)::int AS n FROM items');
    expect(inSource!.n).toBe(1000);
    for (const url of [source.url, forked.url]) {
      const [trap] = await queryUrl<{ is_called: boolean }>(url, 'SELECT is_called FROM foreign_calls');
      expect(trap!.is_called).toBe(false);
    }
    // its created event says where it came from, as any fork's
    const [event] = await queryUrl<{ from: string }>(superuserDatabaseUrl(service), `SELECT detail->>'forked_from' AS from FROM pglease.lease_events WHERE lease_id = $1 AND kind = 'created'`, [forked.id]);
    expect(event!.from).toBe(source.id);
  });

  it('is not taken once the source declared other JWT roles, nor after a transaction in the source', async () => {
    const stale = await readyFork();
    await declare('viewer');
    await restored();
    const forked = await forkNow();
    expect(forked.id).not.toBe(stale);
    expect(forked.copied_from_snapshot).toBe('seeded');
    const [viewer] = await queryUrl<{ n: number }>(superuserDatabaseUrl(service), `SELECT count(*)::int AS n FROM pg_roles WHERE rolname = $1`, [`${forked.role}_viewer`]);
    expect(viewer!.n).toBe(1);

    await queryUrl(source.url, `INSERT INTO items (person, title) VALUES (1, 'after the snapshot')`);
    const live = await forkNow();
    expect(live.copied_from_snapshot).toBeNull();
    const [row] = await queryUrl<{ n: number }>(live.url, `SELECT count(*)::int AS n FROM items WHERE title = 'after the snapshot'`);
    expect(row!.n).toBe(1);
  });

  it('forks that come at once each get a copy of the snapshot, made after their bracket: none copies the live database', async () => {
    const before = await sourceDatabase();
    await restored();
    const burst = await Promise.all([forkNow(), forkNow(), forkNow(), forkNow()]);
    expect(burst.map((forked) => forked.copied_from_snapshot)).toEqual(['seeded', 'seeded', 'seeded', 'seeded']);
    for (const forked of burst) {
      const [rows] = await queryUrl<{ items: number; me: string; owner: string }>(
        forked.url,
        `SELECT (SELECT count(*)::int FROM items) AS items, current_user AS me, (SELECT tableowner FROM pg_tables WHERE tablename = 'items') AS owner`,
      );
      expect(rows).toEqual({ items: 1000, me: forked.role, owner: forked.role });
      const [trap] = await queryUrl<{ is_called: boolean }>(forked.url, 'SELECT is_called FROM foreign_calls');
      expect(trap!.is_called).toBe(false);
    }
    expect(await sourceDatabase()).toEqual(before);
  });

  it('waits for a copy bracket on the source in any process before its handover, which gives the source its database back', async () => {
    // another pglease process's bracket (a restore, a fork) holds this lock for its whole length:
    // the handover of a fork made in advance, which updates the source's database row too, must
    // not run inside it ("tuple concurrently updated")
    const lockKey = [7101, source.id] as const;
    const waitersSql = `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = pg_catalog.hashtext($2)::oid AND NOT granted`;
    for (let attempt = 1; ; attempt++) {
      await readyFork(); // the one made after the last test's forks, so none is being made now
      await restored();
      const forked = await forkNow(); // takes it: the next one is made now, in the background
      expect(forked.copied_from_snapshot).toBe('seeded');
      const other = await service.host.pool.connect();
      try {
        await other.query('SELECT pg_advisory_lock($1, pg_catalog.hashtext($2))', lockKey);
        let waiting = false;
        let madeBefore = false;
        for (let i = 0; i < 600 && !waiting && !madeBefore; i++) {
          waiting = (await service.host.pool.query<{ n: number }>(waitersSql, lockKey)).rows[0]!.n > 0;
          madeBefore = (await service.host.pool.query('SELECT 1 FROM pglease.ready_forks WHERE source_id = $1', [source.id])).rowCount! > 0;
          if (!waiting && !madeBefore) await new Promise((resolve) => setTimeout(resolve, 50));
        }
        // made before this test took the lock (a fast maker): the test says nothing then; again
        if (madeBefore && !waiting && attempt < 3) continue;
        expect(waiting, 'the fork made in advance did not wait for the lock').toBe(true);
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect((await service.host.pool.query('SELECT 1 FROM pglease.ready_forks WHERE source_id = $1', [source.id])).rowCount).toBe(0);
        expect((await sourceDatabase())!.owner).toBe(source.role);
      } finally {
        await other.query('SELECT pg_advisory_unlock($1, pg_catalog.hashtext($2))', lockKey).catch(() => undefined);
        other.release();
      }
      await readyFork();
      expect((await sourceDatabase())!.owner).toBe(source.role);
      return;
    }
  }, 120_000);
});
