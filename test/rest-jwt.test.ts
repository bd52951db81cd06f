/**
 * A lease backing a small multi-user app, as PostgREST 12 serves one: users sign in elsewhere and
 * send a JWT signed with the lease's secret (or a key of its JWKS); the role their JWT names is one
 * the lease declared, and row-level security on `sub` decides what each one sees. Errors are
 * PostgREST 12's (401 PGRST301 with its message and WWW-Authenticate, 401 22023 for an unknown role).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PostgrestClient } from '@supabase/postgrest-js';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { mintJwt } from '../src/auth/mint.js';
import { runCli } from '../src/cli/program.js';
import { ADMIN_TOKEN, createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';
import { waitFor } from './support/wait.js';

type Lease = CreatedLeaseJson & { jwt_secret: string };

let service: TestService;
let lease: Lease;
let userRole: string;

async function control(method: string, path: string, body?: unknown, token: string = lease.token): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${service.baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: (text === '' ? {} : JSON.parse(text)) as Record<string, unknown> };
}

interface RestAnswer {
  status: number;
  body: unknown;
  headers: Headers;
}

async function rest(path: string, token: string | null, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}, target: Lease = lease): Promise<RestAnswer> {
  const response = await fetch(`${target.rest_url}${path}`, {
    method: init.method ?? 'GET',
    headers: {
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...init.headers,
    },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? null : JSON.parse(text), headers: response.headers };
}

async function asOwner(sql: string, target: Lease = lease): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: target.url });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

const user = (sub: string, claims: Record<string, unknown> = {}) => mintJwt(lease.jwt_secret, { role: 'authenticated', sub, ...claims });
const now = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  service = await startTestService({ PGLEASE_JWKS_ALLOW_HTTP: '1' });
  lease = (await createLease(service)) as Lease;
  const declared = await control('POST', `/v1/leases/${lease.id}/roles`, { name: 'authenticated' });
  expect(declared.status).toBe(201);
  userRole = declared.body.role as string;
  expect(userRole).toBe(`${lease.role}_authenticated`);
  await asOwner(`
    create table todos (
      id serial primary key,
      owner text not null default (current_setting('request.jwt.claims', true)::json ->> 'sub'),
      title text not null,
      public boolean not null default false
    );
    alter table todos enable row level security;
    grant select, insert, update, delete on todos to ${userRole};
    grant usage on sequence todos_id_seq to ${userRole};
    grant select on todos to ${lease.anon_role};
    create policy own_todos on todos to ${userRole}
      using (owner = current_setting('request.jwt.claims', true)::json ->> 'sub')
      with check (owner = current_setting('request.jwt.claims', true)::json ->> 'sub');
    create policy public_todos on todos for select to ${lease.anon_role} using (public);
    insert into todos (owner, title, public) values
      ('alice', 'alice private', false), ('alice', 'alice public', true), ('bob', 'bob private', false);
    create function whoami() returns json language sql stable
      as $$ select json_build_object('role', current_user, 'claims', current_setting('request.jwt.claims', true)::json) $$;
    grant execute on function whoami() to ${userRole}, ${lease.anon_role};
  `);
});

afterAll(async () => {
  await service?.close();
});

describe('a lease with users', () => {
  it('gives every lease a JWT secret at creation, once, and shows its declared roles', async () => {
    expect(lease.jwt_secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const shown = await control('GET', `/v1/leases/${lease.id}`);
    expect(shown.body.jwt_secret).toBeUndefined();
    expect(shown.body.roles).toEqual([{ name: 'authenticated', role: userRole }]);
    expect(shown.body.settings).toEqual({});
    const other = (await createLease(service)) as Lease;
    expect(other.jwt_secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(other.jwt_secret).not.toBe(lease.jwt_secret);
    await control('DELETE', `/v1/leases/${other.id}`, undefined, other.token);
  });

  it('lets each user see and change only their own rows', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const aliceRows = await rest('/todos?select=title&order=id', alice);
    expect(aliceRows.status).toBe(200);
    expect(aliceRows.body).toEqual([{ title: 'alice private' }, { title: 'alice public' }]);
    expect((await rest('/todos?select=title', bob)).body).toEqual([{ title: 'bob private' }]);

    // a row Bob writes is his (the default reads the claims); one he writes for Alice is refused
    const created = await rest('/todos?select=owner,title', bob, { method: 'POST', body: { title: 'bob new' }, headers: { prefer: 'return=representation' } });
    expect(created.status).toBe(201);
    expect(created.body).toEqual([{ owner: 'bob', title: 'bob new' }]);
    const forged = await rest('/todos', bob, { method: 'POST', body: { title: 'for alice', owner: 'alice' } });
    expect(forged.status).toBe(403);
    expect((forged.body as { code: string }).code).toBe('42501');

    // Bob's update and delete of Alice's rows find nothing to change
    const update = await rest('/todos?owner=eq.alice', bob, { method: 'PATCH', body: { title: 'mine now' }, headers: { prefer: 'return=representation' } });
    expect(update.status).toBe(200);
    expect(update.body).toEqual([]);
    const removal = await rest('/todos?owner=eq.alice', bob, { method: 'DELETE', headers: { prefer: 'return=representation' } });
    expect(removal.body).toEqual([]);
    expect((await rest('/todos?select=title&order=id', alice)).body).toEqual([{ title: 'alice private' }, { title: 'alice public' }]);
    // his own he can change
    const own = await rest('/todos?title=eq.bob%20new', bob, { method: 'DELETE', headers: { prefer: 'return=representation' } });
    expect((own.body as unknown[]).length).toBe(1);
  });

  it('serves the anonymous role the public rows only, and the owner everything', async () => {
    expect((await rest('/todos?select=title', null)).body).toEqual([{ title: 'alice public' }]);
    // a JWT without a role claim is the anonymous role too, as in PostgREST
    const roleless = await mintJwt(lease.jwt_secret, { sub: 'alice' });
    expect((await rest('/todos?select=title', roleless)).body).toEqual([{ title: 'alice public' }]);
    expect((await rest('/todos?select=title&order=id', lease.token)).body).toEqual([
      { title: 'alice private' },
      { title: 'alice public' },
      { title: 'bob private' },
    ]);
    expect(((await rest('/todos?select=id', ADMIN_TOKEN)).body as unknown[]).length).toBe(3);
  });

  it('publishes the claims to SQL as request.jwt.claims and runs as the declared role', async () => {
    const token = await user('alice', { email: 'alice@example.com', app: { plan: 'pro' } });
    const answer = await rest('/rpc/whoami', token);
    expect(answer.status).toBe(200);
    const who = answer.body as { role: string; claims: Record<string, unknown> };
    expect(who.role).toBe(userRole);
    expect(who.claims).toMatchObject({ role: 'authenticated', sub: 'alice', email: 'alice@example.com', app: { plan: 'pro' } });
    // the role may also be named by its Postgres name
    const byFullName = await mintJwt(lease.jwt_secret, { role: userRole, sub: 'bob' });
    expect(((await rest('/rpc/whoami', byFullName)).body as { role: string }).role).toBe(userRole);
  });

  it('refuses bad tokens with PostgREST 12’s status, code, message and WWW-Authenticate', async () => {
    const secret = lease.jwt_secret;
    const cases: [string, string, string][] = [
      ['expired', await mintJwt(secret, { role: 'authenticated', exp: now() - 60 }), 'JWT expired'],
      ['not yet valid', await mintJwt(secret, { role: 'authenticated', nbf: now() + 120 }), 'JWTNotYetValid'],
      ['issued in the future', await mintJwt(secret, { role: 'authenticated', iat: now() + 120 }), 'JWTIssuedAtFuture'],
      ['signed with another secret', await mintJwt('another secret of forty-three characters...', { role: 'authenticated' }), 'JWSError JWSInvalidSignature'],
      ['malformed (two parts)', 'eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYSJ9', 'JWSError (CompactDecodeError Invalid number of parts: Expected 3 parts; got 2)'],
      ['not a JWT at all', 'pgl_notthetoken', 'JWSError (CompactDecodeError Invalid number of parts: Expected 3 parts; got 1)'],
    ];
    for (const [what, token, message] of cases) {
      const answer = await rest('/todos', token);
      expect({ what, status: answer.status, body: answer.body }).toEqual({ what, status: 401, body: { code: 'PGRST301', message, details: null, hint: null } });
      expect(answer.headers.get('www-authenticate')).toBe(`Bearer error="invalid_token", error_description=${JSON.stringify(message)}`);
    }
    // alg none is never accepted
    const unsigned = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"role":"authenticated"}').toString('base64url')}.`;
    const none = await rest('/todos', unsigned);
    expect(none.status).toBe(401);
    expect((none.body as { code: string }).code).toBe('PGRST301');
    // within PostgREST's 30 s of clock skew a token still counts
    const justExpired = await mintJwt(secret, { role: 'authenticated', sub: 'alice', exp: now() - 10 });
    expect((await rest('/todos?select=id', justExpired)).status).toBe(200);
  });

  it('answers a role the lease did not declare as PostgREST does: 401 22023', async () => {
    for (const role of ['editor', 'postgres', `${lease.role}_auth`]) {
      const answer = await rest('/todos', await mintJwt(lease.jwt_secret, { role }));
      expect(answer.status).toBe(401);
      expect(answer.body).toEqual({ code: '22023', message: `role "${role}" does not exist`, details: null, hint: null });
    }
  });

  it('checks the audience and reads the role where jwt_role_claim_key says', async () => {
    const settings = await control('PATCH', `/v1/leases/${lease.id}/settings`, { jwt_aud: 'todo-app', jwt_role_claim_key: '.app_metadata.roles[0]' });
    expect(settings.status).toBe(200);
    expect(settings.body.settings).toEqual({ jwt_aud: 'todo-app', jwt_role_claim_key: '.app_metadata.roles[0]' });
    const nested = await mintJwt(lease.jwt_secret, { sub: 'alice', aud: 'todo-app', app_metadata: { roles: ['authenticated'] } });
    await waitFor('the settings to reach the REST API', async () => ((await rest('/rpc/whoami', nested)).body as { role?: string }).role === userRole || undefined);
    const wrongAudience = await mintJwt(lease.jwt_secret, { sub: 'alice', aud: ['other-app'], app_metadata: { roles: ['authenticated'] } });
    const refused = await rest('/todos', wrongAudience);
    expect(refused.status).toBe(401);
    expect(refused.body).toEqual({ code: 'PGRST301', message: 'JWTNotInAudience', details: null, hint: null });

    const invalid = await control('PATCH', `/v1/leases/${lease.id}/settings`, { jwt_role_claim_key: 'role' });
    expect(invalid.status).toBe(400);
    expect(invalid.body).toMatchObject({ code: 'PGLEASE_INVALID_FIELD', field: 'jwt_role_claim_key' });
    const reset = await control('PATCH', `/v1/leases/${lease.id}/settings`, { jwt_aud: null, jwt_role_claim_key: null });
    expect(reset.body.settings).toEqual({});
    const plain = await user('alice');
    await waitFor('the default settings to be back', async () => ((await rest('/rpc/whoami', plain)).body as { role?: string }).role === userRole || undefined);
  });

  it('describes the API as the JWT\'s role sees it, with the JWT bearer scheme and the declared roles', async () => {
    type Document = { paths: Record<string, Record<string, unknown>>; components: { securitySchemes: Record<string, { bearerFormat?: string; description?: string }> } };
    const methods = (document: Document) => Object.keys(document.paths['/todos'] ?? {}).filter((key) => ['get', 'post', 'patch', 'put', 'delete'].includes(key)).sort();
    const asAlice = (await rest('/', await user('alice'))).body as Document;
    expect(methods(asAlice)).toEqual(['delete', 'get', 'patch', 'post', 'put']);
    expect(asAlice.components.securitySchemes.userJwt).toMatchObject({ bearerFormat: 'JWT' });
    expect(asAlice.components.securitySchemes.userJwt!.description).toContain(`\`authenticated\` (\`${userRole}\`)`);
    const anonymous = (await rest('/', null)).body as Document;
    expect(methods(anonymous)).toEqual(['get']);
  });

  it('refuses names that are not a role name, and declares a role once', async () => {
    for (const name of ['anon', 'auth', 'Editor', '1st', 'a-b']) {
      const answer = await control('POST', `/v1/leases/${lease.id}/roles`, { name });
      expect({ name, status: answer.status, code: answer.body.code, field: answer.body.field }).toEqual({ name, status: 400, code: 'PGLEASE_INVALID_FIELD', field: 'name' });
    }
    const again = await control('POST', `/v1/leases/${lease.id}/roles`, { name: 'authenticated' });
    expect(again).toEqual({ status: 201, body: { name: 'authenticated', role: userRole } });
    const stranger = await control('POST', `/v1/leases/${lease.id}/roles`, { name: 'editor' }, 'pgl_not_the_token');
    expect(stranger.status).toBe(404);
  });

  it('verifies keys of a JWKS served at a URL, and follows its key rotation', async () => {
    const first = await generateKeyPair('ES256');
    const second = await generateKeyPair('ES256');
    const publicJwk = async (key: CryptoKey, kid: string): Promise<JWK> => ({ ...(await exportJWK(key)), kid, alg: 'ES256', use: 'sig' });
    let served: JWK[] = [await publicJwk(first.publicKey, 'k1')];
    let fetches = 0;
    const jwksServer: Server = createServer((_request, response) => {
      fetches++;
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: served }));
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
      const target = (await createLease(service, { settings: { jwt_jwks: url } })) as Lease;
      expect(target.settings).toEqual({ jwt_jwks: url });
      await control('POST', `/v1/leases/${target.id}/roles`, { name: 'authenticated' }, target.token);
      const sign = (key: CryptoKey, kid: string) =>
        new SignJWT({ role: 'authenticated', sub: 'carol' }).setProtectedHeader({ alg: 'ES256', kid }).setIssuedAt().setExpirationTime('1h').sign(key);
      const whoami = async (token: string) => rest('/', token, { headers: { accept: 'application/openapi+json' } }, target);

      await waitFor('the declared role', async () => ((await whoami(await sign(first.privateKey, 'k1'))).status === 200 ? true : undefined));
      // the same token again is served from the cache: no second verification, no fetch
      const fetchesBefore = fetches;
      const token = await sign(first.privateKey, 'k1');
      for (let i = 0; i < 5; i++) expect((await whoami(token)).status).toBe(200);
      expect(fetches).toBe(fetchesBefore);

      // the provider rotates: a token signed with the new key is accepted once the set is refetched
      served = [await publicJwk(second.publicKey, 'k2')];
      const rotated = await sign(second.privateKey, 'k2');
      await waitFor('the rotated key', async () => ((await whoami(rotated)).status === 200 ? true : undefined), 30_000);
      // a key the set does not hold, signed by someone else
      const stranger = await generateKeyPair('ES256');
      const forged = await rest('/', await sign(stranger.privateKey, 'k2'), {}, target);
      expect(forged.status).toBe(401);
      expect((forged.body as { message: string }).message).toBe('JWSError JWSInvalidSignature');
      // the lease's own secret still works next to its JWKS
      const hs = await mintJwt(target.jwt_secret, { role: 'authenticated' });
      expect((await whoami(hs)).status).toBe(200);
      await control('DELETE', `/v1/leases/${target.id}`, undefined, target.token);
    } finally {
      await new Promise((resolve) => jwksServer.close(resolve));
    }
  });

  it('accepts a JWKS given as a document', async () => {
    const keys = await generateKeyPair('RS256');
    const target = (await createLease(service, { settings: { jwt_jwks: { keys: [{ ...(await exportJWK(keys.publicKey)), kid: 'r1', alg: 'RS256' }] } } })) as Lease;
    const token = await new SignJWT({ sub: 'dave' }).setProtectedHeader({ alg: 'RS256', kid: 'r1' }).setExpirationTime('1h').sign(keys.privateKey);
    // no role claim: the anonymous role, which may read the OpenAPI document
    const answer = await rest('/', token, {}, target);
    expect(answer.status).toBe(200);
    await control('DELETE', `/v1/leases/${target.id}`, undefined, target.token);
  });

  it('rotates the secret: tokens signed with the old one are refused', async () => {
    const target = (await createLease(service)) as Lease;
    const old = await mintJwt(target.jwt_secret, { sub: 'erin' });
    expect((await rest('/', old, {}, target)).status).toBe(200);
    const rotated = await control('POST', `/v1/leases/${target.id}/jwt-secret`, undefined, target.token);
    expect(rotated.status).toBe(200);
    const secret = rotated.body.jwt_secret as string;
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(secret).not.toBe(target.jwt_secret);
    await waitFor('the old secret to be refused', async () => ((await rest('/', old, {}, target)).status === 401 ? true : undefined));
    expect((await rest('/', await mintJwt(secret, { sub: 'erin' }), {}, target)).status).toBe(200);
    await control('DELETE', `/v1/leases/${target.id}`, undefined, target.token);
  });

  it('drops the declared roles with the lease', async () => {
    const target = (await createLease(service)) as Lease;
    const declared = await control('POST', `/v1/leases/${target.id}/roles`, { name: 'editor' }, target.token);
    const role = declared.body.role as string;
    const admin = new pg.Client({ connectionString: inject('serverUrl') });
    await admin.connect();
    try {
      const exists = async () => (await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).rowCount;
      expect(await exists()).toBe(1);
      const attributes = await admin.query('SELECT rolcanlogin, rolinherit, rolsuper, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = $1', [role]);
      expect(attributes.rows[0]).toEqual({ rolcanlogin: false, rolinherit: false, rolsuper: false, rolcreaterole: false, rolbypassrls: false });
      // the lease's authenticator may become it, holding none of its privileges itself
      const membership = await admin.query(
        `SELECT m.inherit_option, m.set_option FROM pg_auth_members m
          WHERE m.roleid = $1::regrole AND m.member = $2::regrole`,
        [role, `${target.role}_auth`],
      );
      expect(membership.rows).toEqual([{ inherit_option: false, set_option: true }]);
      expect((await control('DELETE', `/v1/leases/${target.id}`, undefined, target.token)).status).toBe(204);
      expect(await exists()).toBe(0);
    } finally {
      await admin.end();
    }
  });
});

describe('@supabase/postgrest-js with a user\'s JWT', () => {
  it('lists, adds, changes and removes the user\'s own todos only', async () => {
    const alice = new PostgrestClient(lease.rest_url, { headers: { Authorization: `Bearer ${await user('alice')}` } });
    const bob = new PostgrestClient(lease.rest_url, { headers: { Authorization: `Bearer ${await user('bob')}` } });
    const listed = await alice.from('todos').select('title').order('id');
    expect(listed.error).toBeNull();
    expect(listed.data).toEqual([{ title: 'alice private' }, { title: 'alice public' }]);

    const added = await alice.from('todos').insert({ title: 'write tests' }).select('id, owner, title').single();
    expect(added.error).toBeNull();
    expect(added.data).toMatchObject({ owner: 'alice', title: 'write tests' });
    const id = (added.data as { id: number }).id;

    const stolen = await bob.from('todos').update({ title: 'bob was here' }).eq('id', id).select();
    expect(stolen.error).toBeNull();
    expect(stolen.data).toEqual([]);
    const renamed = await alice.from('todos').update({ title: 'tests written' }).eq('id', id).select('title');
    expect(renamed.data).toEqual([{ title: 'tests written' }]);

    const counted = await bob.from('todos').select('*', { count: 'exact', head: true });
    expect(counted.count).toBe(1);
    const removed = await alice.from('todos').delete().eq('id', id).select('id');
    expect(removed.data).toEqual([{ id }]);

    const expired = new PostgrestClient(lease.rest_url, { headers: { Authorization: `Bearer ${await mintJwt(lease.jwt_secret, { role: 'authenticated', exp: now() - 3600 })}` } });
    const refused = await expired.from('todos').select();
    expect(refused.status).toBe(401);
    expect(refused.error).toMatchObject({ code: 'PGRST301', message: 'JWT expired' });
  });
});

describe('pglease jwt, role and settings', () => {
  it('declares a role, mints a token a request runs with, and changes settings', async () => {
    const home = await mkdtemp(path.join(tmpdir(), 'pglease-jwt-cli-'));
    const cli = async (args: string[]) => {
      let stdout = '';
      let stderr = '';
      const code = await runCli(args, {
        stdout: { write: (text: string) => (stdout += text), isTTY: false },
        stderr: { write: (text: string) => (stderr += text), isTTY: false },
        env: { PGLEASE_URL: service.baseUrl, PGLEASE_HOME: home, PGLEASE_TOKEN: lease.token },
      });
      return { code, stdout, stderr };
    };
    try {
      const declared = await cli(['role', 'add', lease.id, 'authenticated', '--json']);
      expect(declared.code).toBe(0);
      expect(JSON.parse(declared.stdout)).toEqual({ name: 'authenticated', role: userRole });

      const minted = await cli(['jwt', lease.id, '--role', 'authenticated', 'sub=bob', 'tier=3', '--exp', '10m']);
      expect(minted).toMatchObject({ code: 0, stderr: '' });
      const token = minted.stdout.trim();
      expect((await rest('/todos?select=title', token)).body).toEqual([{ title: 'bob private' }]);
      const who = (await rest('/rpc/whoami', token)).body as { claims: { tier: number; exp: number; iat: number } };
      expect(who.claims.tier).toBe(3);
      expect(who.claims.exp - who.claims.iat).toBe(600);

      const badClaim = await cli(['jwt', lease.id, 'nonsense']);
      expect(badClaim.code).toBe(2);
      expect(badClaim.stderr).toContain('is not a claim');

      const changed = await cli(['settings', lease.id, '--jwt-aud', 'cli-app']);
      expect(changed.code).toBe(0);
      expect(JSON.parse(changed.stdout)).toEqual({ settings: { jwt_aud: 'cli-app' }, roles: [{ name: 'authenticated', role: userRole }] });
      const reset = await cli(['settings', lease.id, '--jwt-aud', '']);
      expect(JSON.parse(reset.stdout).settings).toEqual({});
      const badSetting = await cli(['settings', lease.id, '--jwt-role-claim-key', 'role']);
      expect(badSetting.code).toBe(1);
      expect(badSetting.stderr).toContain('PGLEASE_INVALID_FIELD');
      // every setting of the API, with on/off and "" for the default
      const all = await cli(['settings', lease.id, '--db-max-rows', '50', '--db-aggregates-enabled', 'on', '--db-plan-enabled', 'off', '--db-pre-request', 'check_request', '--openapi-mode', 'ignore-privileges']);
      expect(all.code, all.stderr).toBe(0);
      expect(JSON.parse(all.stdout).settings).toEqual({ db_max_rows: 50, db_aggregates_enabled: true, db_plan_enabled: false, db_pre_request: 'check_request', openapi_mode: 'ignore-privileges' });
      const cleared = await cli(['settings', lease.id, '--db-max-rows', '', '--db-aggregates-enabled', '', '--db-plan-enabled', '', '--db-pre-request', '', '--openapi-mode', '']);
      expect(JSON.parse(cleared.stdout).settings).toEqual({});
      const notOnOff = await cli(['settings', lease.id, '--db-aggregates-enabled', 'maybe']);
      expect({ code: notOnOff.code, stderr: notOnOff.stderr }).toEqual({ code: 2, stderr: expect.stringContaining('--db-aggregates-enabled takes on or off') });
      const badMode = await cli(['settings', lease.id, '--openapi-mode', 'sometimes']);
      expect({ code: badMode.code, stderr: badMode.stderr }).toEqual({ code: 1, stderr: expect.stringContaining('PGLEASE_INVALID_FIELD') });
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });
});
