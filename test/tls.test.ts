/**
 * TLS on the embedded Postgres (PGLEASE_PG_TLS, src/tls/) and on a DATABASE_URL's host: pglease
 * makes a CA and a server certificate at first start and keeps them, serves the CA at
 * GET /v1/ca.pem, writes sslmode=verify-full lease URLs that the CLI and pglease/testing complete
 * with the saved CA, refuses plain lease logins with `require`, and connects to a host itself the
 * way libpq reads the URL's sslmode and sslrootcert. Against real servers: an embedded pglease of
 * its own here (TLS cannot be turned on for the suite's shared cluster), psql 15 where installed.
 */
import { execFile, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/program.js';
import { ConfigError, loadConfig, type Config } from '../src/config.js';
import { startService, type Service } from '../src/service.js';
import { PgleaseClient } from '../src/testing/client.js';
import { withLease } from '../src/testing/lease.js';
import { startEmbedded, type EmbeddedServer } from '../src/db/embedded.js';
import { projectPath } from '../src/paths.js';
import { ensureServerCertificates } from '../src/tls/certificates.js';
import { hostTls } from '../src/tls/host-tls.js';
import { libpqCompatibleUrl, TlsUrlError } from '../src/tls/libpq-url.js';
import { freePort } from './support/free-port.js';
import { ADMIN_TOKEN, startTestService } from './support/service.js';

const run = promisify(execFile);
const PSQL = ['/usr/bin/psql', '/usr/lib/postgresql/15/bin/psql'].find((file) => existsSync(file));
if (!PSQL) console.warn('tls.test.ts: psql is not installed here; the psql checks are skipped (apt-get install postgresql-client)');

interface RunningService extends Service {
  baseUrl: string;
}

async function start(config: Config): Promise<RunningService> {
  const service = await startService(config);
  const baseUrl = await service.app.listen({ host: '127.0.0.1', port: 0 });
  return Object.assign(service, { baseUrl });
}

/** Runs `sql` on a new connection to `url`; returns the first row's first value. */
async function scalar(url: string, sql: string): Promise<unknown> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 20_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<Record<string, unknown>>(sql);
    return Object.values(rows[0] ?? {})[0];
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** psql's answer to `sql` on `url`, or its error message (exit code non-zero). */
async function psql(url: string, sql: string, env: Record<string, string> = {}): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout } = await run(PSQL!, [url, '-X', '-At', '-c', sql], { env: { PATH: process.env.PATH, HOME: env.HOME ?? tmpdir(), ...env }, timeout: 30_000 });
    return { ok: true, output: stdout.trim() };
  } catch (error) {
    return { ok: false, output: String((error as { stderr?: string }).stderr ?? error) };
  }
}

const SSL_OF_SESSION = 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()';

describe('the embedded Postgres with PGLEASE_PG_TLS=require', () => {
  let dataDir: string;
  let home: string;
  let env: Record<string, string>;
  let service: RunningService;
  let client: PgleaseClient;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-tls-'));
    home = await mkdtemp(path.join(tmpdir(), 'pglease-tls-home-'));
    env = {
      PGLEASE_DATA_DIR: dataDir,
      PGLEASE_PG_PORT: String(await freePort()),
      PGLEASE_PG_TLS: 'require',
      PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN,
      PGLEASE_LEASE_POOL: '0',
      PGLEASE_TEMPLATE_POOL: '0',
      PGLEASE_CLIENT_CONNECTIONS: '0',
      HOST: '127.0.0.1',
      PORT: '0',
    };
    service = await start(loadConfig(env));
    client = new PgleaseClient({ server: service.baseUrl, token: ADMIN_TOKEN, caDirectory: path.join(home, 'ca') });
  }, 120_000);

  afterAll(async () => {
    await service?.close();
    await rm(dataDir, { recursive: true, force: true });
    await rm(home, { recursive: true, force: true });
  });

  it('makes a CA and a server certificate in the data directory, private keys readable by their owner only', async () => {
    const tls = path.join(dataDir, 'tls');
    const ca = new X509Certificate(await readFile(path.join(tls, 'ca.pem')));
    const server = new X509Certificate(await readFile(path.join(tls, 'server.pem')));
    expect(ca.ca).toBe(true);
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(server.checkHost('localhost')).toBe('localhost');
    for (const key of ['ca-key.pem', 'server-key.pem']) expect((await stat(path.join(tls, key))).mode & 0o777).toBe(0o600);
  });

  it('serves the CA at GET /v1/ca.pem, without a token', async () => {
    const response = await fetch(`${service.baseUrl}/v1/ca.pem`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/x-pem-file/);
    expect(await response.text()).toBe(await readFile(path.join(dataDir, 'tls', 'ca.pem'), 'utf8'));
  });

  it('writes lease URLs that ask for verify-full; the client saves the CA and names it, and node-postgres and psql connect over TLS', async () => {
    const raw = await fetch(`${service.baseUrl}/v1/leases`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(raw.status).toBe(201);
    expect(((await raw.json()) as { url: string }).url).toMatch(/\?sslmode=verify-full$/);

    const lease = await client.createLease({ ttl: 600 });
    const saved = new URL(lease.url).searchParams.get('sslrootcert')!;
    expect(new URL(lease.url).searchParams.get('sslmode')).toBe('verify-full');
    expect(path.dirname(saved)).toBe(path.join(home, 'ca'));
    expect(await readFile(saved, 'utf8')).toBe(await readFile(path.join(dataDir, 'tls', 'ca.pem'), 'utf8'));
    expect(await scalar(lease.url, SSL_OF_SESSION)).toBe(true);
    // GET gives the same completed URL (without the password)
    expect((await client.getLease(lease.id)).url).toContain(`sslrootcert=${saved}`);

    if (PSQL) {
      const answer = await psql(lease.url, SSL_OF_SESSION);
      expect(answer, answer.output).toEqual({ ok: true, output: 't' });
    }
  });

  it('fails verify-full against another CA, with node-postgres and psql', async () => {
    const otherDir = await mkdtemp(path.join(tmpdir(), 'pglease-tls-other-'));
    try {
      const other = await ensureServerCertificates(otherDir, [], undefined);
      const lease = await client.createLease({ ttl: 600 });
      const wrong = new URL(lease.url);
      wrong.searchParams.set('sslrootcert', other.caFile);
      await expect(scalar(wrong.toString(), 'SELECT 1')).rejects.toThrow(/certificate/);
      if (PSQL) {
        const answer = await psql(wrong.toString(), 'SELECT 1');
        expect(answer.ok).toBe(false);
        expect(answer.output).toMatch(/certificate verify failed/);
      }
    } finally {
      await rm(otherDir, { recursive: true, force: true });
    }
  });

  it('fails verify-full for a host name the certificate does not name', async () => {
    const lease = await client.createLease({ ttl: 600 });
    const url = new URL(lease.url);
    const session = new pg.Client({
      host: url.hostname,
      port: Number(url.port),
      user: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
      database: url.pathname.slice(1),
      ssl: { ca: await readFile(url.searchParams.get('sslrootcert')!, 'utf8'), servername: 'elsewhere.test' },
    });
    session.on('error', () => undefined);
    await expect(session.connect()).rejects.toThrow(/elsewhere\.test/);
    await session.end().catch(() => undefined);
    if (PSQL) {
      // libpq: connect to the address, check the certificate against the name
      const renamed = new URL(lease.url);
      renamed.hostname = 'elsewhere.test';
      renamed.searchParams.set('hostaddr', url.hostname);
      const answer = await psql(renamed.toString(), 'SELECT 1');
      expect(answer.ok).toBe(false);
      expect(answer.output).toMatch(/does not match host name "elsewhere.test"/);
    }
  });

  it('refuses a lease login without TLS (sslmode=disable)', async () => {
    const lease = await client.createLease({ ttl: 600 });
    const plain = new URL(lease.url);
    plain.searchParams.set('sslmode', 'disable');
    plain.searchParams.delete('sslrootcert');
    await expect(scalar(plain.toString(), 'SELECT 1')).rejects.toMatchObject({ code: '28000', message: expect.stringMatching(/no encryption/) });
    if (PSQL) {
      const answer = await psql(plain.toString(), 'SELECT 1');
      expect(answer.ok).toBe(false);
      expect(answer.output).toMatch(/no encryption/);
    }
  });

  it("serves the REST API over the TLS host, and pglease's own and the REST API's sessions use TLS", async () => {
    const lease = await client.createLease({ ttl: 600 });
    await scalar(lease.url, 'CREATE TABLE notes (id int PRIMARY KEY, body text)');
    const headers = { authorization: `Bearer ${lease.token}`, 'content-type': 'application/json' };
    const created = await fetch(`${lease.rest_url}/notes`, { method: 'POST', headers, body: JSON.stringify({ id: 1, body: 'over TLS' }) });
    expect(created.status, await created.clone().text()).toBe(201);
    const read = await fetch(`${lease.rest_url}/notes?select=body`, { headers });
    expect(await read.json()).toEqual([{ body: 'over TLS' }]);

    // every TCP session on the server (the service role's pool, the REST API's lease authenticator, ...)
    const superuser = `postgresql://postgres:${encodeURIComponent((await readFile(path.join(dataDir, 'superuser-password'), 'utf8')).trim())}@127.0.0.1:${env.PGLEASE_PG_PORT}/postgres?sslmode=verify-full&sslrootcert=${path.join(dataDir, 'tls', 'ca.pem')}`;
    const sessions = await new pg.Client({ connectionString: superuser });
    await sessions.connect();
    try {
      const { rows } = await sessions.query<{ usename: string; application_name: string; ssl: boolean }>(
        `SELECT a.usename, a.application_name, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.client_addr IS NOT NULL AND a.backend_type = 'client backend'`,
      );
      expect(rows.some((row) => row.application_name === 'pglease-rest')).toBe(true);
      expect(rows.some((row) => row.usename === 'pglease_service')).toBe(true);
      expect(rows.filter((row) => !row.ssl)).toEqual([]);
    } finally {
      await sessions.end();
    }
  });

  it("gives URLs with the saved CA from pglease/testing's withLease, under PGLEASE_HOME", async () => {
    const before = process.env.PGLEASE_HOME;
    process.env.PGLEASE_HOME = path.join(home, 'testing');
    try {
      await withLease(
        async (lease) => {
          expect(lease.url).toContain(`sslmode=verify-full&sslrootcert=${path.join(home, 'testing', 'ca')}/`);
          expect(await scalar(lease.url, SSL_OF_SESSION)).toBe(true);
        },
        { server: service.baseUrl, adminToken: ADMIN_TOKEN, local: 'never' },
      );
    } finally {
      if (before === undefined) delete process.env.PGLEASE_HOME;
      else process.env.PGLEASE_HOME = before;
    }
  });

  it('gives URLs with the saved CA from the CLI', async () => {
    let stdout = '';
    let stderr = '';
    const code = await runCli(['lease', '--url', '--ttl', '10m'], {
      stdout: { write: (text: string) => (stdout += text), isTTY: false },
      stderr: { write: (text: string) => (stderr += text), isTTY: false },
      env: { PGLEASE_URL: service.baseUrl, PGLEASE_HOME: path.join(home, 'cli'), PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN },
    });
    expect(code, stderr).toBe(0);
    const url = stdout.trim();
    expect(url).toContain(`sslmode=verify-full&sslrootcert=${path.join(home, 'cli', 'ca')}/`);
    expect(await scalar(url, SSL_OF_SESSION)).toBe(true);
    if (PSQL) expect(await psql(url, SSL_OF_SESSION)).toEqual({ ok: true, output: 't' });

    // --env's lines survive a shell's eval (the URL's & would otherwise start a background job)
    let env = '';
    expect(await runCli(['lease', '--env', '--ttl', '10m'], {
      stdout: { write: (text: string) => (env += text), isTTY: false },
      stderr: { write: () => undefined, isTTY: false },
      env: { PGLEASE_URL: service.baseUrl, PGLEASE_HOME: path.join(home, 'cli'), PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN },
    })).toBe(0);
    const { stdout: evaluated } = await run('/bin/sh', ['-c', `eval "$1"; printf %s "$DATABASE_URL"`, 'sh', env]);
    expect(evaluated).toContain(`sslmode=verify-full&sslrootcert=${path.join(home, 'cli', 'ca')}/`);
    expect(await scalar(evaluated, SSL_OF_SESSION)).toBe(true);
  });

  it('keeps the CA and the certificate across restarts; a new public host gets a new certificate from the same CA', async () => {
    const tls = path.join(dataDir, 'tls');
    const before = { ca: await readFile(path.join(tls, 'ca.pem'), 'utf8'), server: await readFile(path.join(tls, 'server.pem'), 'utf8') };
    const lease = await client.createLease({ ttl: 600 });
    await service.close();

    service = await start(loadConfig(env));
    expect(await readFile(path.join(tls, 'ca.pem'), 'utf8')).toBe(before.ca);
    expect(await readFile(path.join(tls, 'server.pem'), 'utf8')).toBe(before.server);
    // the URL made before the restart, with the CA saved then, still verifies
    expect(await scalar(lease.url, SSL_OF_SESSION)).toBe(true);
    await service.close();

    service = await start(loadConfig({ ...env, PGLEASE_PUBLIC_PG_HOST: 'db.pglease.test' }));
    expect(await readFile(path.join(tls, 'ca.pem'), 'utf8')).toBe(before.ca);
    const server = new X509Certificate(await readFile(path.join(tls, 'server.pem')));
    expect(server.checkHost('db.pglease.test')).toBe('db.pglease.test');
    expect(server.verify(new X509Certificate(before.ca).publicKey)).toBe(true);
    expect(await scalar(lease.url, SSL_OF_SESSION)).toBe(true);
    client = new PgleaseClient({ server: service.baseUrl, token: ADMIN_TOKEN, caDirectory: path.join(home, 'ca') });
  }, 180_000);

  describe('as a DATABASE_URL (sslmode and sslrootcert read as libpq reads them)', () => {
    let superuserUrl: URL;
    let emptyHome: string;

    beforeAll(async () => {
      const password = (await readFile(path.join(dataDir, 'superuser-password'), 'utf8')).trim();
      superuserUrl = new URL(`postgresql://postgres:${encodeURIComponent(password)}@127.0.0.1:${env.PGLEASE_PG_PORT}/postgres`);
      emptyHome = await mkdtemp(path.join(tmpdir(), 'pglease-tls-nohome-'));
    });
    afterAll(() => rm(emptyHome, { recursive: true, force: true }));

    function remoteConfig(query: Record<string, string>, extra: Record<string, string> = {}): Config {
      const url = new URL(superuserUrl);
      for (const [name, value] of Object.entries(query)) url.searchParams.set(name, value);
      return loadConfig({
        DATABASE_URL: url.toString(),
        PGLEASE_DATABASE: `pglease_remote_${Math.random().toString(16).slice(2, 8)}`,
        PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN,
        PGLEASE_LEASE_POOL: '0',
        PGLEASE_TEMPLATE_POOL: '0',
        PGLEASE_SCHEDULER: 'off',
        HOME: emptyHome,
        ...extra,
      });
    }

    it('verify-full with sslrootcert: leases say verify-full, the CA is the URL\'s, REST works', async () => {
      const caFile = path.join(dataDir, 'tls', 'ca.pem');
      const remote = await start(remoteConfig({ sslmode: 'verify-full', sslrootcert: caFile }));
      try {
        expect(await (await fetch(`${remote.baseUrl}/v1/ca.pem`)).text()).toBe(await readFile(caFile, 'utf8'));
        const lease = await new PgleaseClient({ server: remote.baseUrl, token: ADMIN_TOKEN, caDirectory: path.join(home, 'ca') }).createLease({ ttl: 600 });
        expect(lease.url).toContain('sslmode=verify-full&sslrootcert=');
        expect(await scalar(lease.url, SSL_OF_SESSION)).toBe(true);
        await scalar(lease.url, 'CREATE TABLE items (id int PRIMARY KEY)');
        const read = await fetch(`${lease.rest_url}/items`, { headers: { authorization: `Bearer ${lease.token}` } });
        expect(read.status).toBe(200);
        expect(await read.json()).toEqual([]);
      } finally {
        await remote.close();
      }
    }, 60_000);

    it('sslmode=require without a root certificate encrypts without verifying, as libpq does (node-postgres alone verifies and fails)', async () => {
      const url = new URL(superuserUrl);
      url.searchParams.set('sslmode', 'require');
      // node-postgres's own reading of require: verify-full, which a private CA fails
      await expect(scalar(url.toString(), 'SELECT 1')).rejects.toThrow(/self-signed certificate|unable to verify/);
      if (PSQL) expect(await psql(url.toString(), SSL_OF_SESSION, { HOME: emptyHome })).toEqual({ ok: true, output: 't' });

      const remote = await start(remoteConfig({ sslmode: 'require' }));
      try {
        expect(remote.host.tls).toEqual({ leaseSslMode: 'require', caPem: undefined });
        expect(await scalar(remote.host.databaseUrl, SSL_OF_SESSION)).toBe(true);
        const missing = await fetch(`${remote.baseUrl}/v1/ca.pem`);
        expect(missing.status).toBe(404);
        expect(await missing.json()).toMatchObject({ code: 'PGLEASE_TLS_OFF' });
        const lease = await new PgleaseClient({ server: remote.baseUrl, token: ADMIN_TOKEN }).createLease({ ttl: 600 });
        expect(lease.url).toMatch(/\?sslmode=require$/);
      } finally {
        await remote.close();
      }
    }, 60_000);

    it("verify-full without sslrootcert takes libpq's ~/.postgresql/root.crt, and fails at start without one", async () => {
      expect(() => remoteConfig({ sslmode: 'verify-full' })).toThrow(ConfigError);
      expect(() => remoteConfig({ sslmode: 'verify-full' })).toThrow(/DATABASE_URL: sslmode=verify-full needs the CA.*\.postgresql\/root\.crt/);
      const withRoot = await mkdtemp(path.join(tmpdir(), 'pglease-tls-roothome-'));
      try {
        await mkdir(path.join(withRoot, '.postgresql'));
        await writeFile(path.join(withRoot, '.postgresql', 'root.crt'), await readFile(path.join(dataDir, 'tls', 'ca.pem')));
        const config = remoteConfig({ sslmode: 'verify-full' }, { HOME: withRoot });
        expect(new URL(config.databaseUrl!).searchParams.get('sslrootcert')).toBe(path.join(withRoot, '.postgresql', 'root.crt'));
        expect(await scalar(libpqCompatibleUrl(superuserUrl.toString() + '?sslmode=verify-full', { HOME: withRoot }), SSL_OF_SESSION)).toBe(true);
      } finally {
        await rm(withRoot, { recursive: true, force: true });
      }
    });
  });

  it('with PGLEASE_PG_TLS=on, offers TLS (lease URLs ask for verify-full) and still takes a plain login', async () => {
    await service.close();
    service = await start(loadConfig({ ...env, PGLEASE_PG_TLS: 'on' }));
    client = new PgleaseClient({ server: service.baseUrl, token: ADMIN_TOKEN, caDirectory: path.join(home, 'ca') });
    const lease = await client.createLease({ ttl: 600 });
    expect(new URL(lease.url).searchParams.get('sslmode')).toBe('verify-full');
    expect(await scalar(lease.url, SSL_OF_SESSION)).toBe(true);
    const plain = new URL(lease.url);
    plain.searchParams.set('sslmode', 'disable');
    plain.searchParams.delete('sslrootcert');
    expect(await scalar(plain.toString(), SSL_OF_SESSION)).toBe(false);
  }, 120_000);
});

describe('a Postgres left running by a pglease that was killed', () => {
  it('is restarted when PGLEASE_PG_TLS changed', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-tls-adopt-'));
    const port = await freePort();
    const logs: string[] = [];
    const log = (line: string) => logs.push(line);
    // a process that starts the embedded Postgres without TLS, then dies (kill -9): its Postgres runs on
    const starter = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', [
      `const { startEmbedded } = await import(${JSON.stringify(projectPath('src/db/embedded.ts'))});`,
      `await startEmbedded({ dataDir: ${JSON.stringify(dataDir)}, port: ${port}, listen: 'localhost' });`,
      `console.log('ready');`,
      `setInterval(() => undefined, 1000);`,
    ].join('\n')], { cwd: projectPath(), stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      starter.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
      starter.on('exit', (code) => reject(new Error(`the starting process exited (${code})`)));
    });
    starter.kill('SIGKILL');
    await new Promise((resolve) => starter.once('exit', resolve));
    let running: EmbeddedServer | undefined;
    try {
      running = await startEmbedded({ dataDir, port, listen: 'localhost', tls: 'require', log });
      expect(logs.join('\n')).toMatch(/other TLS settings than PGLEASE_PG_TLS=require: restarting it/);
      expect(await scalar(running.url('postgres'), SSL_OF_SESSION)).toBe(true);
      const plain = running.url('postgres').replace(/\?.*/, '?sslmode=disable');
      await expect(scalar(plain, 'SELECT 1')).rejects.toMatchObject({ code: '28000' });
    } finally {
      if (running) await running.stop();
      else {
        // the start failed: stop the Postgres the killed process left
        const postmaster = Number((await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0]);
        if (postmaster > 0) process.kill(postmaster, 'SIGINT');
      }
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 180_000);
});

describe('TLS settings', () => {
  it('PGLEASE_PG_TLS takes off, on or require, and only without DATABASE_URL', () => {
    expect(loadConfig({}).embeddedPgTls).toBe('off');
    expect(loadConfig({ PGLEASE_PG_TLS: 'ON' }).embeddedPgTls).toBe('on');
    expect(() => loadConfig({ PGLEASE_PG_TLS: 'yes' })).toThrow(/PGLEASE_PG_TLS: expected off, on or require/);
    expect(() => loadConfig({ PGLEASE_PG_TLS: 'require', DATABASE_URL: 'postgresql://u@h/d' })).toThrow(/PGLEASE_PG_TLS: applies to the embedded Postgres only/);
  });

  it('reads a URL as libpq does', () => {
    const home = { HOME: '/nonexistent-home' };
    expect(libpqCompatibleUrl('postgresql://u@h/d', home)).toBe('postgresql://u@h/d');
    expect(libpqCompatibleUrl('postgresql://u@h/d?sslmode=disable', home)).toBe('postgresql://u@h/d?sslmode=disable&uselibpqcompat=true');
    expect(libpqCompatibleUrl('postgresql://u@h/d?sslmode=require', home)).toBe('postgresql://u@h/d?sslmode=require&uselibpqcompat=true');
    expect(libpqCompatibleUrl('postgresql://u@h/d?sslmode=verify-full&sslrootcert=system', home)).toBe('postgresql://u@h/d?sslmode=verify-full&uselibpqcompat=true');
    expect(() => libpqCompatibleUrl('postgresql://u@h/d?sslmode=verify-ca', home)).toThrow(TlsUrlError);
    expect(() => libpqCompatibleUrl('postgresql://u@h/d?sslmode=allow', home)).toThrow(/sslmode=allow/);
    expect(() => libpqCompatibleUrl('postgresql://u@h/d?sslmode=strict', home)).toThrow(/sslmode=strict is not one of/);
    expect(() => libpqCompatibleUrl('postgresql://u@h/d?sslmode=require&sslrootcert=/nonexistent.pem', home)).toThrow(/"\/nonexistent.pem" does not exist/);
    // PGSSLMODE applies when the URL says nothing, as in libpq
    expect(libpqCompatibleUrl('postgresql://u@h/d', { ...home, PGSSLMODE: 'require' })).toBe('postgresql://u@h/d?sslmode=require&uselibpqcompat=true');
  });

  it("serves only the certificates of a DATABASE_URL's sslrootcert file", async () => {
    const directory = await mkdtemp(path.join(tmpdir(), 'pglease-tls-bundle-'));
    try {
      const files = await ensureServerCertificates(directory, [], undefined);
      const bundle = path.join(directory, 'bundle.pem');
      await writeFile(bundle, `${files.caPem}${await readFile(path.join(files.directory, 'ca-key.pem'), 'utf8')}${await readFile(files.certFile, 'utf8')}`);
      const tls = await hostTls(`postgresql://u@h/d?sslmode=verify-full&sslrootcert=${bundle}`);
      expect(tls?.caPem).not.toMatch(/PRIVATE KEY/);
      expect(tls?.caPem?.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
      expect(await hostTls('postgresql://u@h/d?sslmode=prefer')).toBeUndefined();
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  it('without TLS, lease URLs are as before and GET /v1/ca.pem is a 404 in the control API\'s shape', async () => {
    const plain = await startTestService({ PGLEASE_LEASE_POOL: '0', PGLEASE_TEMPLATE_POOL: '0' });
    try {
      const response = await fetch(`${plain.baseUrl}/v1/ca.pem`);
      expect(response.status).toBe(404);
      const body = (await response.json()) as { code: string; message: string };
      expect(body.code).toBe('PGLEASE_TLS_OFF');
      expect(body.message).toMatch(/PGLEASE_PG_TLS/);
      const openapi = (await (await fetch(`${plain.baseUrl}/openapi.json`)).json()) as { paths: Record<string, { get?: { responses: Record<string, { content?: Record<string, unknown> }> } }> };
      expect(Object.keys(openapi.paths['/v1/ca.pem']?.get?.responses['200']?.content ?? {})).toEqual(['application/x-pem-file']);
      const lease = await new PgleaseClient({ server: plain.baseUrl, token: ADMIN_TOKEN }).createLease({ ttl: 60 });
      expect(lease.url).not.toContain('?');
      expect(await scalar(lease.url, SSL_OF_SESSION)).toBe(false);
    } finally {
      await plain.close();
    }
  }, 60_000);
});
