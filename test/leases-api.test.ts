/**
 * The lease API end to end over HTTP: create, read, renew, release, list, and every kind of bad
 * input answered with a clear 4xx and a `{ code, message }` body.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { leaseUrl } from '../src/control/lease-json.js';
import { connectHost, type Host } from '../src/db/host.js';
import type { LeaseRow } from '../src/leases/lease-store.js';
import { ADMIN_TOKEN, createLease, startTestService, type TestService } from './support/service.js';

let service: TestService;

beforeAll(async () => {
  // up to PGLEASE_MAX_ACTIVE (20) live leases of one client at a time, more than the connection
  // budget allows at 20 connections each (test/client-connections.test.ts tests the budget)
  service = await startTestService({ PGLEASE_MAX_TTL: '7200', PGLEASE_CLIENT_CONNECTIONS: '0' });
});
afterAll(async () => {
  await service?.close();
});

async function call(method: string, path: string, options: { body?: string | object; token?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  const response = await fetch(service.baseUrl + path, { method, headers, body });
  const text = await response.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

describe('POST /v1/leases', () => {
  it('creates a lease with the documented fields and a default TTL of 30 minutes', async () => {
    const before = Date.now();
    const response = await call('POST', '/v1/leases');
    expect(response.status).toBe(201);
    const lease = response.json;
    expect(Object.keys(lease).sort()).toEqual(
      ['anon_role', 'connection_limit', 'created_at', 'database', 'ended_at', 'expires_at', 'host', 'id', 'jwt_secret', 'kind', 'name', 'plan', 'port', 'rest_url', 'role', 'roles', 'schema', 'settings', 'state', 'token', 'url'].sort(),
    );
    expect(lease.roles).toEqual([]);
    expect(lease.settings).toEqual({});
    expect(lease.connection_limit).toBe(20);
    expect(lease.state).toBe('active');
    expect(lease.database).toBe(service.config.leaseDatabase);
    expect(lease.schema).toMatch(/^lease_[0-9a-f]{16}$/);
    expect(lease.role).toBe(lease.schema);
    expect(lease.anon_role).toBe(`${lease.role}_anon`);
    expect(lease.rest_url).toBe(`${service.baseUrl}/v1/leases/${lease.id}/rest`);
    expect(response.headers.get('location')).toBe(`/v1/leases/${lease.id}`);
    const ttl = (Date.parse(lease.expires_at) - Date.parse(lease.created_at)) / 1000;
    expect(ttl).toBeCloseTo(1800, 0);
    expect(Date.parse(lease.created_at)).toBeGreaterThanOrEqual(before - 2000);
    // the URL is a real libpq URL with a 32-byte password
    const url = new URL(lease.url);
    expect(url.protocol).toBe('postgresql:');
    expect(url.username).toBe(lease.role);
    expect(Buffer.from(decodeURIComponent(url.password), 'base64url')).toHaveLength(32);
    // it names the address the service connects to (no name lookup for the client), as does `host`
    expect(url.hostname).toBe(new URL(inject('serverUrl')).hostname);
    expect(lease.host).toBe(url.hostname);
  });

  it('writes an IPv6 server address into lease URLs in brackets, once', () => {
    const publicHost = connectHost(new URL('postgresql://u:p@[::1]:5433/postgres'));
    expect(publicHost).toBe('::1');
    const host = { publicHost, publicPort: 5433, database: 'pglease' } as Host;
    const url = leaseUrl(host, { role_name: 'lease_1' } as LeaseRow, 'secret');
    expect(url).toBe('postgresql://lease_1:secret@[::1]:5433/pglease');
    expect(new URL(url).hostname).toBe('[::1]');
  });

  it('accepts a ttl and a name', async () => {
    const lease = await createLease(service, { ttl: 60, name: 'ci run 42' });
    expect((Date.parse(lease.expires_at!) - Date.parse(lease.created_at)) / 1000).toBeCloseTo(60, 0);
    expect((lease as unknown as { name: string }).name).toBe('ci run 42');
  });

  it('takes a ttl as a duration too, as the CLI and the settings do, and says what it accepts', async () => {
    const lifetime = (lease: { expires_at: string | null; created_at: string }) => (Date.parse(lease.expires_at!) - Date.parse(lease.created_at)) / 1000;
    for (const [ttl, seconds] of [['10m', 600], ['90s', 90], ['1h30m', 5400], ['2h', 7200], ['120', 120]] as const) {
      expect(lifetime(await createLease(service, { ttl })), ttl).toBeCloseTo(seconds, 0);
    }
    const lease = await createLease(service);
    const renewed = await call('POST', `/v1/leases/${lease.id}/renew`, { body: { ttl: '1h' }, token: lease.token });
    expect(renewed.status).toBe(200);
    expect((Date.parse(renewed.json.expires_at) - Date.now()) / 1000).toBeCloseTo(3600, -1);

    const bad = await call('POST', '/v1/leases', { body: { ttl: '10 minutes' } });
    expect(bad.json.message).toBe('"ttl" must be a whole number of seconds or a duration: 90 (seconds), 90s, 10m, 2h, 1d or 1h30m');
    // this service's maximum is 2h: the message says it in the same words, and so only suggests what it takes
    const tooLong = await call('POST', '/v1/leases', { body: { ttl: '1d' } });
    expect(tooLong.json).toMatchObject({ code: 'PGLEASE_INVALID_FIELD', field: 'ttl', message: 'ttl must be at most 2h (PGLEASE_MAX_TTL), got 1d' });
  });

  it('answers only the URL and a newline with Accept: text/plain or ?format=url, and in headers what releasing it takes', async () => {
    for (const request of [
      call('POST', '/v1/leases', { headers: { accept: 'text/plain' } }),
      call('POST', '/v1/leases?format=url'),
    ]) {
      const response = await request;
      expect(response.status).toBe(201);
      expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
      expect(response.text).toMatch(/^postgresql:\/\/lease_[0-9a-f]{16}:[A-Za-z0-9_-]{43}@[^\n]+\n$/);
      // the body has no room for the id and token, the headers do: with them the lease is released
      const id = response.headers.get('pglease-lease-id')!;
      expect(response.headers.get('location')).toBe(`/v1/leases/${id}`);
      const token = response.headers.get('pglease-token')!;
      expect(token).toMatch(/^pgl_/);
      const released = await call('DELETE', `/v1/leases/${id}`, { headers: { authorization: `Bearer ${token}` } });
      expect(released.status).toBe(204);
    }
  });

  it('rejects bad input with 400 and names the field', async () => {
    const cases: [string | object, string, string?][] = [
      ['{"ttl": 60', 'PGLEASE_INVALID_JSON'],
      [{ ttl: 0 }, 'PGLEASE_INVALID_FIELD', 'ttl'],
      [{ ttl: -5 }, 'PGLEASE_INVALID_FIELD', 'ttl'],
      [{ ttl: 1.5 }, 'PGLEASE_INVALID_FIELD', 'ttl'],
      [{ ttl: '10 minutes' }, 'PGLEASE_INVALID_FIELD', 'ttl'],
      [{ ttl: '500ms' }, 'PGLEASE_INVALID_FIELD', 'ttl'],
      [{ ttl: '0s' }, 'PGLEASE_INVALID_FIELD', 'ttl'],
      [{ ttl: '2h1s' }, 'PGLEASE_INVALID_FIELD', 'ttl'],
      [{ ttl: 7201 }, 'PGLEASE_INVALID_FIELD', 'ttl'],
      [{ name: 42 }, 'PGLEASE_INVALID_FIELD', 'name'],
      [{ name: '' }, 'PGLEASE_INVALID_FIELD', 'name'],
      [{ name: 'x'.repeat(201) }, 'PGLEASE_INVALID_FIELD', 'name'],
      [{ name: 'x\u001b[31mred' }, 'PGLEASE_INVALID_FIELD', 'name'],
      [{ name: 'two\nlines' }, 'PGLEASE_INVALID_FIELD', 'name'],
      [{ name: 'c1\u009b' }, 'PGLEASE_INVALID_FIELD', 'name'],
      [{ tll: 60 }, 'PGLEASE_UNKNOWN_FIELD', 'tll'],
      [[1, 2], 'PGLEASE_INVALID_FIELD'],
      ['"just a string"', 'PGLEASE_INVALID_FIELD'],
      ['null', 'PGLEASE_INVALID_FIELD'],
    ];
    for (const [body, code, field] of cases) {
      const response = await call('POST', '/v1/leases', { body });
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.json.code, JSON.stringify(body)).toBe(code);
      expect(typeof response.json.message).toBe('string');
      if (field) expect(response.json.field, JSON.stringify(body)).toBe(field);
    }
  });

  it('says in words what a bad field or parameter should be', async () => {
    const lease = await createLease(service);
    const messages = async (method: string, path: string, body?: string | object) => (await call(method, path, { body, token: lease.token })).json.message;
    expect(await messages('POST', `/v1/leases/${lease.id}/renew`, {})).toBe('"ttl" is required');
    expect(await messages('POST', `/v1/leases/${lease.id}/renew`, [])).toBe('the body must be a JSON object');
    expect(await messages('POST', '/v1/leases', { ttl: 1.5 })).toMatch(/^"ttl" must be a whole number/);
    expect(await messages('POST', '/v1/leases', { name: 'bell\u0007' })).toBe('"name" must not contain control characters (line breaks, tabs, escapes)');
    // any other text is a fine name
    expect((await call('POST', '/v1/leases', { body: { name: '日本語テスト ✓ — ok' } })).status).toBe(201);
    expect(await messages('POST', '/v1/leases?format=bogus')).toBe('"format" must be one of "json", "url"');
    const state = await call('GET', '/v1/leases?state=bogus', { token: ADMIN_TOKEN });
    expect(state.json.message).toMatch(/^"state" must be one of "[a-z]+"(, "[a-z]+")+$/);
    expect(state.json.message).toContain('"released"');
  });

  it('needs the admin token for a lease without expiry', async () => {
    const refused = await call('POST', '/v1/leases', { body: { ttl: null } });
    expect(refused.status).toBe(403);
    expect(refused.json).toMatchObject({ code: 'PGLEASE_FORBIDDEN', field: 'ttl' });
    const forever = await call('POST', '/v1/leases', { body: { ttl: null }, token: ADMIN_TOKEN });
    expect(forever.status).toBe(201);
    expect(forever.json.expires_at).toBeNull();
  });

  it('refuses a token that is neither the admin token nor an active lease\'s, instead of ignoring it', async () => {
    for (const body of [{}, { ttl: null }]) {
      const refused = await call('POST', '/v1/leases', { body, token: 'not-the-admin-token' });
      expect(refused.status).toBe(401);
      expect(refused.json).toEqual({ code: 'PGLEASE_UNAUTHORIZED', message: 'This token is neither the admin token nor the token of an active lease' });
    }
    // a lease's own token is a token too: it creates like a client without one
    const owner = await createLease(service);
    expect((await call('POST', '/v1/leases', { body: {}, token: owner.token })).status).toBe(201);
    await call('DELETE', `/v1/leases/${owner.id}`, { token: owner.token });
    expect((await call('POST', '/v1/leases', { body: {}, token: owner.token })).status).toBe(401);
  });

  it('refuses other body types and huge bodies', async () => {
    const form = await call('POST', '/v1/leases', { body: 'ttl=60', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(form.status).toBe(415);
    expect(form.json.code).toBe('PGLEASE_UNSUPPORTED_MEDIA_TYPE');
    const huge = await call('POST', '/v1/leases', { body: JSON.stringify({ name: 'x'.repeat(2_000_000) }) });
    expect(huge.status).toBe(413);
    expect(huge.json.code).toBe('PGLEASE_BODY_TOO_LARGE');
  });
});

describe('GET /v1/leases/:id', () => {
  it('returns the lease without password or token, to its own token only', async () => {
    const lease = await createLease(service);
    const response = await call('GET', `/v1/leases/${lease.id}`, { token: lease.token });
    expect(response.status).toBe(200);
    expect(response.json.token).toBeUndefined();
    expect(new URL(response.json.url).password).toBe('');
    expect(response.text).not.toContain(new URL(lease.url).password);
    expect(response.json).toMatchObject({ id: lease.id, state: 'active', schema: lease.schema, expires_at: lease.expires_at });

    const other = await createLease(service);
    for (const token of [other.token, 'pgl_' + 'A'.repeat(43), 'garbage']) {
      const denied = await call('GET', `/v1/leases/${lease.id}`, { token });
      expect(denied.status).toBe(404);
      expect(denied.json.code).toBe('PGLEASE_NOT_FOUND');
    }
    expect((await call('GET', `/v1/leases/${lease.id}`)).status).toBe(401);
    expect((await call('GET', `/v1/leases/${lease.id}`, { token: ADMIN_TOKEN })).status).toBe(200);
    // also through the apikey header that supabase clients send
    expect((await call('GET', `/v1/leases/${lease.id}`, { headers: { apikey: lease.token } })).status).toBe(200);
  });

  it('answers 404 for unknown and malformed ids', async () => {
    for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid', "1'; drop table pglease.leases; --", '%00']) {
      const response = await call('GET', `/v1/leases/${encodeURIComponent(id)}`, { token: ADMIN_TOKEN });
      expect(response.status, id).toBe(404);
      expect(response.json.code).toBe('PGLEASE_NOT_FOUND');
    }
  });
});

describe('GET /v1/leases/:id/stats', () => {
  it('counts rows and measures size exactly', async () => {
    const lease = await createLease(service);
    const sql = new pg.Client({ connectionString: lease.url });
    await sql.connect();
    await sql.query('CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 40)');
    await sql.end();
    const stats = await call('GET', `/v1/leases/${lease.id}/stats`, { token: lease.token });
    expect(stats.status).toBe(200);
    expect(stats.json).toMatchObject({ tables: 1, rows: 40, rows_exact: true, size_exact: true });
    expect(stats.json.size_bytes).toBeGreaterThan(0);
  });

  it("counts as the lease: an index expression's function never runs in the service's session", async () => {
    // the attack of the security issue: an IMMUTABLE function the planner pre-evaluates while
    // planning count(*) on the table ran as the service (a superuser: COPY ... TO PROGRAM)
    const lease = await createLease(service);
    const sql = new pg.Client({ connectionString: lease.url });
    await sql.connect();
    await sql.query(`
      CREATE SEQUENCE hits;
      GRANT USAGE ON SCHEMA ${lease.schema} TO PUBLIC;
      GRANT USAGE ON SEQUENCE hits TO PUBLIC;
      CREATE FUNCTION trap(a int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
      BEGIN
        IF session_user NOT LIKE '${lease.role}%' THEN
          PERFORM nextval('${lease.schema}.hits');
          COPY (SELECT 1) TO PROGRAM 'true';
        END IF;
        RETURN a;
      END $$;
      GRANT EXECUTE ON FUNCTION trap(int) TO PUBLIC;
      CREATE TABLE t (a int);
      CREATE INDEX ON t ((trap(1) + a));
      INSERT INTO t SELECT generate_series(1, 5)`);
    const stats = await call('GET', `/v1/leases/${lease.id}/stats`, { token: lease.token });
    expect(stats.status).toBe(200);
    expect(stats.json).toMatchObject({ tables: 1, rows: 5, rows_exact: true });
    const { rows } = await sql.query('SELECT is_called FROM hits');
    await sql.end();
    expect(rows).toEqual([{ is_called: false }]);
  });

  it("does not wait for a lock the lease holds on its table, nor leave the service's sessions waiting", async () => {
    const lease = await createLease(service);
    const holder = new pg.Client({ connectionString: lease.url });
    holder.on('error', () => undefined); // the release below ends its session
    await holder.connect();
    try {
      await holder.query('CREATE TABLE t (id int)');
      // a lock held by a busy session (so the idle-in-transaction timeout never ends it)
      await holder.query('BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE');
      void holder.query('SELECT pg_sleep(30)').catch(() => undefined);
      const answers = await Promise.all(Array.from({ length: 12 }, () => call('GET', `/v1/leases/${lease.id}/stats`, { token: lease.token })));
      for (const answer of answers) {
        expect(answer.status).toBe(200);
        expect(answer.json).toMatchObject({ tables: 1, rows_exact: false, size_exact: false });
      }
      // nobody waits for the lease's table any more
      const { rows } = await service.host.pool.query(
        `SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND relation = to_regclass(quote_ident($1) || '.t')`,
        [lease.schema],
      );
      expect(rows).toEqual([{ n: 0 }]);
      // the rest of the control API is not held up either
      expect((await call('GET', '/readyz')).status).toBe(200);
    } finally {
      await call('DELETE', `/v1/leases/${lease.id}`, { token: lease.token });
      await holder.end().catch(() => undefined);
    }
  });
});

describe('POST /v1/leases/:id/renew', () => {
  it('moves expires_at and records the event', async () => {
    const lease = await createLease(service, { ttl: 60 });
    const response = await call('POST', `/v1/leases/${lease.id}/renew`, { body: { ttl: 3600 }, token: lease.token });
    expect(response.status).toBe(200);
    const expiresIn = (Date.parse(response.json.expires_at) - Date.now()) / 1000;
    expect(expiresIn).toBeGreaterThan(3590);
    expect(expiresIn).toBeLessThanOrEqual(3600);
    const events = await service.host.pool.query('SELECT kind FROM pglease.lease_events WHERE lease_id = $1 ORDER BY id', [lease.id]);
    expect(events.rows.map((row) => row.kind)).toEqual(['created', 'renewed']);
  });

  it('is bounded by the maximum TTL and validates its body', async () => {
    const lease = await createLease(service);
    const tooLong = await call('POST', `/v1/leases/${lease.id}/renew`, { body: { ttl: 7201 }, token: lease.token });
    expect(tooLong.status).toBe(400);
    expect(tooLong.json.field).toBe('ttl');
    expect((await call('POST', `/v1/leases/${lease.id}/renew`, { body: {}, token: lease.token })).status).toBe(400);
    expect((await call('POST', `/v1/leases/${lease.id}/renew`, { body: { ttl: 60, extra: 1 }, token: lease.token })).json.code).toBe('PGLEASE_UNKNOWN_FIELD');
    expect((await call('POST', `/v1/leases/${lease.id}/renew`, { body: { ttl: 60 } })).status).toBe(401);
  });

  it('refuses to renew a released lease', async () => {
    const lease = await createLease(service);
    expect((await call('DELETE', `/v1/leases/${lease.id}`, { token: lease.token })).status).toBe(204);
    const response = await call('POST', `/v1/leases/${lease.id}/renew`, { body: { ttl: 60 }, token: lease.token });
    expect(response.status).toBe(409);
    expect(response.json.code).toBe('PGLEASE_LEASE_NOT_ACTIVE');
  });
});

describe('POST /v1/leases/:id/credentials', () => {
  async function session(url: string): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => undefined); // a cut session reports 57P01 here
    await client.connect();
    return client;
  }

  it('gives a new password: the new URL logs in, the old one no longer does, open sessions stay unless cut', async () => {
    const lease = await createLease(service);
    const open = await session(lease.url);
    const reset = await call('POST', `/v1/leases/${lease.id}/credentials`, { token: lease.token });
    expect(reset.status).toBe(200);
    expect(reset.json).toMatchObject({ id: lease.id, role: lease.role, state: 'active' });
    expect(reset.json.token).toBeUndefined();
    const fresh = reset.json.url as string;
    expect(new URL(fresh).password).not.toBe(new URL(lease.url).password);
    await expect(session(lease.url)).rejects.toMatchObject({ code: '28P01' });
    const renewed = await session(fresh);
    expect((await open.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);

    // cut_sessions: both sessions go (the REST API's are not the login role's), a new login works
    const again = await call('POST', `/v1/leases/${lease.id}/credentials`, { token: ADMIN_TOKEN, body: { cut_sessions: true }, headers: { accept: 'text/plain' } });
    expect(again.status).toBe(200);
    expect(again.text).toMatch(/^postgresql:\/\/[^\n]+\n$/);
    await expect(open.query('SELECT 1')).rejects.toThrow();
    await expect(renewed.query('SELECT 1')).rejects.toThrow();
    const latest = await session(again.text.trim());
    await latest.end();
    await Promise.all([open.end().catch(() => undefined), renewed.end().catch(() => undefined)]);
  });

  it('is refused to other tokens (404), for an ended lease (409), and for a bad body (400)', async () => {
    const [lease, other] = await Promise.all([createLease(service), createLease(service)]);
    expect((await call('POST', `/v1/leases/${lease.id}/credentials`, { token: other.token })).status).toBe(404);
    expect((await call('POST', `/v1/leases/${lease.id}/credentials`)).status).toBe(401);
    const bad = await call('POST', `/v1/leases/${lease.id}/credentials`, { token: lease.token, body: { cut_sessions: 'yes' } });
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({ code: 'PGLEASE_INVALID_FIELD', field: 'cut_sessions' });
    expect((await call('DELETE', `/v1/leases/${lease.id}`, { token: lease.token })).status).toBe(204);
    const ended = await call('POST', `/v1/leases/${lease.id}/credentials`, { token: ADMIN_TOKEN });
    expect(ended.status).toBe(409);
    expect(ended.json).toMatchObject({ code: 'PGLEASE_LEASE_NOT_ACTIVE' });
  });
});

describe('DELETE /v1/leases/:id', () => {
  it('cuts open sessions, drops schema and roles, and a second delete is 404', async () => {
    const lease = await createLease(service);
    const session = new pg.Client({ connectionString: lease.url });
    await session.connect();
    await session.query('CREATE TABLE t (id int)');
    const sessionEnded = new Promise<Error>((resolve) => session.on('error', resolve));
    // more sessions, one inside a transaction holding a lock on the table the drop needs
    const others = await Promise.all(
      Array.from({ length: 6 }, async () => {
        const other = new pg.Client({ connectionString: lease.url });
        const ended = new Promise<Error>((resolve) => other.on('error', resolve));
        await other.connect();
        return { other, ended };
      }),
    );
    await others[0]!.other.query('BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE');

    const response = await call('DELETE', `/v1/leases/${lease.id}`, { token: lease.token });
    expect(response.status).toBe(204);
    expect(response.text).toBe('');
    expect((await sessionEnded).message).toMatch(/terminat/i);
    for (const { ended } of others) expect((await ended).message).toMatch(/terminat/i);

    const leftovers = await service.host.pool.query(
      `SELECT (SELECT count(*) FROM pg_roles WHERE rolname LIKE $1 || '%')::int AS roles,
              (SELECT count(*) FROM pg_namespace WHERE nspname = $1)::int AS schemas`,
      [lease.role],
    );
    expect(leftovers.rows[0]).toEqual({ roles: 0, schemas: 0 });
    const relogin = new pg.Client({ connectionString: lease.url });
    await expect(relogin.connect()).rejects.toThrow(/password authentication failed|does not exist/);

    const again = await call('DELETE', `/v1/leases/${lease.id}`, { token: lease.token });
    expect(again.status).toBe(404);
    const state = await call('GET', `/v1/leases/${lease.id}`, { token: lease.token });
    expect(state.json).toMatchObject({ state: 'released' });
    expect(state.json.ended_at).not.toBeNull();
  });

  it('lets exactly one of several concurrent deletes win', async () => {
    const lease = await createLease(service);
    const statuses = await Promise.all(Array.from({ length: 5 }, () => call('DELETE', `/v1/leases/${lease.id}`, { token: lease.token }).then((r) => r.status)));
    expect(statuses.sort()).toEqual([204, 404, 404, 404, 404]);
  });
});

describe('GET /v1/leases (admin)', () => {
  it('pages through leases with a cursor and filters by state', async () => {
    const made = [];
    for (let i = 0; i < 5; i++) made.push(await createLease(service, { name: `page-${i}` }));
    await call('DELETE', `/v1/leases/${made[0]!.id}`, { token: made[0]!.token });

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { json: { items: { id: string; token?: string; url: string }[]; next: string | null } } = await call('GET', `/v1/leases?limit=2${cursor ? `&cursor=${cursor}` : ''}`, { token: ADMIN_TOKEN });
      expect(page.json.items.length).toBeLessThanOrEqual(2);
      for (const item of page.json.items) {
        expect(item.token).toBeUndefined();
        expect(new URL(item.url).password).toBe('');
        seen.push(item.id);
      }
      cursor = page.json.next;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    for (const lease of made) expect(seen).toContain(lease.id);

    const released = await call('GET', '/v1/leases?state=released&limit=1000', { token: ADMIN_TOKEN });
    expect(released.json.items.every((item: { state: string }) => item.state === 'released')).toBe(true);
    expect(released.json.items.map((item: { id: string }) => item.id)).toContain(made[0]!.id);
  });

  it('is for the admin only and validates its parameters', async () => {
    const lease = await createLease(service);
    const anonymous = await call('GET', '/v1/leases');
    expect(anonymous.status).toBe(401);
    // which token: the admin's, not any
    expect(anonymous.json.message).toBe('Listing leases needs the admin token (PGLEASE_ADMIN_TOKEN): send "Authorization: Bearer <admin token>"');
    const notAdmin = await call('GET', '/v1/leases', { token: lease.token });
    expect(notAdmin.status).toBe(403);
    expect(notAdmin.json.message).toMatch(/needs the admin token \(PGLEASE_ADMIN_TOKEN\), and this token is not it/);
    for (const query of ['limit=0', 'limit=abc', 'limit=5000', 'state=dead', 'cursor=xyz', 'bogus=1']) {
      const response = await call('GET', `/v1/leases?${query}`, { token: ADMIN_TOKEN });
      expect(response.status, query).toBe(400);
      expect(response.json.code, query).toBe('PGLEASE_INVALID_PARAMETER');
    }
  });
});

describe('health and unknown routes', () => {
  it('answers /healthz and /readyz', async () => {
    expect((await call('GET', '/healthz')).json).toEqual({ status: 'ok' });
    const ready = await call('GET', '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.json.status).toBe('ready');
  });

  it('answers /readyz 503 within seconds when the database does not answer', async () => {
    const blocker = new pg.Client({ connectionString: service.host.databaseUrl });
    await blocker.connect();
    try {
      // the probe's query waits behind this lock, as it would behind a stopped or swamped server
      await blocker.query('BEGIN; LOCK TABLE pglease.migrations IN ACCESS EXCLUSIVE MODE');
      const started = Date.now();
      const stuck = await call('GET', '/readyz');
      expect(stuck.status).toBe(503);
      expect(stuck.json).toMatchObject({ code: 'PGLEASE_NOT_READY', message: 'The lease database is not reachable: no answer within 2 s' });
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await blocker.query('ROLLBACK');
      await blocker.end();
    }
    expect((await call('GET', '/readyz')).status).toBe(200);
  });

  it('answers unknown routes with a JSON 404, and a known route asked with another method with 405 and Allow', async () => {
    const response = await call('GET', '/v2/nothing');
    expect(response.status).toBe(404);
    expect(response.json.code).toBe('PGLEASE_ROUTE_NOT_FOUND');
    const lease = await createLease(service);
    const put = await call('PUT', `/v1/leases/${lease.id}`, { token: lease.token, body: {} });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('GET, DELETE');
    expect(put.json).toEqual({ code: 'PGLEASE_METHOD_NOT_ALLOWED', message: `/v1/leases/${lease.id} answers GET, DELETE, not PUT` });
    expect((await call('PUT', '/v1/leases')).headers.get('allow')).toBe('POST, GET');
    expect((await call('GET', `/v1/leases/${lease.id}/renew`)).headers.get('allow')).toBe('POST');
  });

  it('records who created and released a lease', async () => {
    const lease = await createLease(service);
    await call('DELETE', `/v1/leases/${lease.id}`, { token: lease.token });
    const events = await service.host.pool.query('SELECT kind, host(client_ip) AS ip FROM pglease.lease_events WHERE lease_id = $1 ORDER BY id', [lease.id]);
    expect(events.rows).toEqual([
      { kind: 'created', ip: '127.0.0.1' },
      { kind: 'released', ip: '127.0.0.1' },
    ]);
  });
});
