/**
 * pglease on a server where it is not superuser (DATABASE_URL with a CREATEROLE CREATEDB role, as on
 * managed Postgres), on the embedded Postgres 17 and, when the machine has them, Debian's Postgres 15
 * binaries (before 16, role membership always inherits and CREATEROLE grants differ).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startEmbedded, type EmbeddedServer } from '../src/db/embedded.js';
import { withDatabase } from '../src/db/host.js';
import { startService } from '../src/service.js';
import { freePort } from './support/free-port.js';

const PG15_BIN = '/usr/lib/postgresql/15/bin';
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** Creates a non-superuser service role on the server and returns its URL. */
async function serviceRoleUrl(superuserUrl: string, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: superuserUrl });
  await admin.connect();
  await admin.query(`CREATE ROLE ${name} LOGIN CREATEROLE CREATEDB PASSWORD 'service-secret'`);
  // other pglease services on this host may already have closed `postgres` to PUBLIC; an operator
  // gives the service role its own grant
  await admin.query(`GRANT CONNECT ON DATABASE postgres TO ${name}`);
  await admin.end();
  const url = new URL(superuserUrl);
  url.username = name;
  url.password = 'service-secret';
  return url.toString();
}

async function exercise(superuserUrl: string, roleName: string): Promise<void> {
  const serverUrl = await serviceRoleUrl(superuserUrl, roleName);
  const messages: string[] = [];
  const service = await startService(loadConfig({ DATABASE_URL: serverUrl, PGLEASE_DATABASE: `${roleName}_db`, PORT: '0', HOST: '127.0.0.1' }), {
    log: (message) => messages.push(message),
  });
  try {
    const role = await service.host.pool.query('SELECT rolsuper FROM pg_roles WHERE rolname = current_user');
    expect(role.rows[0].rolsuper).toBe(false);

    const created = await service.app.inject({ method: 'POST', url: '/v1/leases' });
    expect(created.statusCode, created.body).toBe(201);
    const lease = created.json() as { id: string; url: string; token: string; role: string; schema: string };
    const client = new pg.Client({ connectionString: lease.url });
    client.on('error', () => undefined); // the release below terminates this session
    await client.connect();
    await client.query('CREATE TABLE t (id int); INSERT INTO t VALUES (1)');
    expect((await client.query('SELECT current_schema() AS s, count(*)::int AS n FROM t')).rows[0]).toEqual({ s: lease.schema, n: 1 });
    // A database the service role does not own keeps its ACL: the service says which REVOKE to run,
    // and once the owner ran it the lease cannot reach that database.
    const superuser = new pg.Client({ connectionString: superuserUrl });
    await superuser.connect();
    const open = await superuser.query(`SELECT has_database_privilege('public', 'postgres', 'CONNECT') AS open`);
    if (open.rows[0].open) {
      expect(messages.join('\n')).toContain('REVOKE CONNECT ON DATABASE "postgres" FROM PUBLIC');
      await superuser.query('REVOKE CONNECT ON DATABASE postgres FROM PUBLIC');
    }
    await superuser.end();
    const other = new pg.Client({ connectionString: withDatabase(lease.url, 'postgres') });
    await expect(other.connect()).rejects.toMatchObject({ code: '42501' });

    const released = await service.app.inject({ method: 'DELETE', url: `/v1/leases/${lease.id}`, headers: { authorization: `Bearer ${lease.token}` } });
    expect(released.statusCode, released.body).toBe(204);
    await client.end().catch(() => undefined);
    const left = await service.host.pool.query(`SELECT count(*)::int AS n FROM pg_roles WHERE rolname LIKE $1 || '%'`, [lease.role]);
    expect(left.rows[0].n).toBe(0);
  } finally {
    await service.close();
  }
}

describe('with a CREATEROLE, CREATEDB service role instead of a superuser', () => {
  it('provisions and releases leases on the embedded Postgres 17', async () => {
    await exercise(inject('serverUrl'), `svc_${process.pid}`);
  });

  it.runIf(existsSync(path.join(PG15_BIN, 'initdb')))('provisions and releases leases on Postgres 15', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-pg15-'));
    let server: EmbeddedServer | undefined;
    cleanups.push(async () => {
      await server?.stop();
      await rm(dataDir, { recursive: true, force: true });
    });
    server = await startEmbedded({ dataDir, port: await freePort(), listen: 'localhost', binDir: PG15_BIN });
    const version = new pg.Client({ connectionString: server.url('postgres') });
    await version.connect();
    expect((await version.query('SHOW server_version_num')).rows[0].server_version_num).toMatch(/^15/);
    await version.end();
    await exercise(server.url('postgres'), 'svc15');
  }, 60_000);
});
