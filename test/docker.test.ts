/**
 * docker/: no Docker engine runs on these machines, so this test does what the Dockerfile's runtime
 * stage does, step by step, outside a container: the same COPY sources, the same RUN commands
 * (minus the ones only meaningful inside an image: /data ownership, npm cache cleaning), the same
 * ENV, the same CMD, and polls the same HEALTHCHECK command until it passes. The build stage's
 * `npm run build` is the shared tsc build of the test fixtures. compose.yaml is parsed and checked.
 * What this cannot show (base image, user switch, volumes, networking) is listed in the README.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, chmod } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { builtPackage, repoRoot } from './fixtures/install-package.js';
import { freePort } from './support/free-port.js';

const run = promisify(execFile);

interface Instruction {
  keyword: string;
  args: string;
}

/** Instructions of each stage of a Dockerfile, continuation lines joined, comments dropped. */
function parseDockerfile(text: string): Map<string, Instruction[]> {
  const logical = text.replace(/\\\n\s*/g, ' ').split('\n').map((line) => line.trim()).filter((line) => line && !line.startsWith('#'));
  const stages = new Map<string, Instruction[]>();
  let current: Instruction[] = [];
  for (const line of logical) {
    const [, keyword, args] = /^(\w+)\s+(.*)$/.exec(line)!;
    if (keyword!.toUpperCase() === 'FROM') {
      current = [];
      stages.set(/\bAS\s+(\S+)/i.exec(args!)?.[1] ?? String(stages.size), current);
    }
    current.push({ keyword: keyword!.toUpperCase(), args: args! });
  }
  return stages;
}

/** `ENV A=1 B=2` pairs. */
function envPairs(args: string): [string, string][] {
  return [...args.matchAll(/(\w+)=("[^"]*"|\S+)/g)].map((match) => [match[1]!, match[2]!.replace(/^"|"$/g, '')]);
}

const dockerfile = parseDockerfile(await readFile(path.join(repoRoot, 'docker/Dockerfile'), 'utf8'));
const runtime = dockerfile.get('runtime')!;

describe('docker/Dockerfile', () => {
  it('is multi-stage, installs production dependencies only, runs as a non-root user, checks /readyz', () => {
    expect([...dockerfile.keys()]).toEqual(['build', 'runtime']);
    const runs = runtime.filter((step) => step.keyword === 'RUN').map((step) => step.args);
    expect(runs.some((command) => command.includes('npm ci --omit=dev'))).toBe(true);
    const user = runtime.filter((step) => step.keyword === 'USER').at(-1)?.args;
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user);
    expect(runtime.find((step) => step.keyword === 'HEALTHCHECK')?.args).toContain('/readyz');
    expect(runtime.find((step) => step.keyword === 'CMD')?.args).toBe('["node", "dist/cli.js", "serve"]');
  });

  it('keeps node_modules, dist and local data out of the build context', async () => {
    const ignored = (await readFile(path.join(repoRoot, 'docker/Dockerfile.dockerignore'), 'utf8')).split('\n').map((line) => line.trim());
    for (const entry of ['node_modules', 'dist', '.pglease', '.git']) expect(ignored).toContain(entry);
    // nothing the Dockerfile copies from the context is ignored
    const copied = [...dockerfile.values()].flat().filter((step) => step.keyword === 'COPY' && !step.args.startsWith('--from')).flatMap((step) => step.args.split(/\s+/).slice(0, -1));
    for (const source of copied) expect(ignored).not.toContain(source);
  });

  describe('its runtime stage, run outside a container', () => {
    let appDir: string;
    let dataDir: string;
    let server: ChildProcess | undefined;
    let log = '';

    afterAll(async () => {
      if (server && server.exitCode === null) server.kill('SIGKILL');
      if (appDir) await rm(appDir, { recursive: true, force: true });
      if (dataDir) await rm(dataDir, { recursive: true, force: true });
    });

    it('installs, starts, passes its healthcheck, serves a lease, and stops cleanly on SIGTERM', async () => {
      appDir = await mkdtemp(path.join(tmpdir(), 'pglease-docker-app-'));
      dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-docker-data-'));
      // run as root (as here), the embedded Postgres runs as the OS user postgres: it must reach both
      await chmod(appDir, 0o755);
      await chmod(dataDir, 0o755);
      const build = await builtPackage();
      const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmpdir(), npm_config_prefer_offline: 'true' };

      for (const { keyword, args } of runtime) {
        if (keyword === 'COPY') {
          const parts = args.split(/\s+/);
          const fromBuild = parts[0] === '--from=build';
          const sources = parts.slice(fromBuild ? 1 : 0, -1);
          const target = parts.at(-1)!;
          for (const source of sources) {
            const from = fromBuild ? path.join(build, path.relative('/app', source)) : path.join(repoRoot, source);
            const to = target.endsWith('/') || target === './' ? path.join(appDir, path.basename(source)) : path.join(appDir, target);
            await cp(from, to, { recursive: true });
          }
        } else if (keyword === 'RUN') {
          // only meaningful inside an image: the volume's owner, the image's npm cache
          const commands = args.split('&&').map((part) => part.trim()).filter((part) => !/chown|mkdir -p \/data|npm cache clean/.test(part));
          if (commands.length === 0) continue;
          await run('sh', ['-c', commands.join(' && ')], { cwd: appDir, env, timeout: 360_000 });
        } else if (keyword === 'ENV') {
          for (const [name, value] of envPairs(args)) env[name] = value;
        }
      }
      expect(existsSync(path.join(appDir, 'node_modules', 'vitest'))).toBe(false); // no dev dependencies
      expect(existsSync(path.join(appDir, 'node_modules', 'fastify'))).toBe(true);

      // the image's settings, on ports and a data directory of this machine
      const port = await freePort();
      Object.assign(env, { PORT: String(port), PGLEASE_DATA_DIR: dataDir, PGLEASE_PG_PORT: String(await freePort()), PGLEASE_ADMIN_TOKEN: 'docker-test' });
      const [command, ...commandArgs] = JSON.parse(runtime.find((step) => step.keyword === 'CMD')!.args) as string[];
      server = spawn(command!, commandArgs, { cwd: appDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
      server.stdout!.on('data', (chunk: Buffer) => (log += chunk.toString()));
      server.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()));

      const healthcheck = runtime.find((step) => step.keyword === 'HEALTHCHECK')!.args;
      const [probe, ...probeArgs] = JSON.parse(/CMD\s+(\[.*\])$/.exec(healthcheck)![1]!) as string[];
      const deadline = Date.now() + 60_000;
      for (;;) {
        const healthy = await run(probe!, probeArgs, { cwd: appDir, env, timeout: 3000 }).then(() => true, () => false);
        if (healthy) break;
        if (server.exitCode !== null || Date.now() > deadline) throw new Error(`pglease did not become healthy:\n${log}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }

      const response = await fetch(`http://127.0.0.1:${port}/v1/leases`, { method: 'POST', headers: { accept: 'text/plain' } });
      expect(response.status).toBe(201);
      const client = new pg.Client({ connectionString: (await response.text()).trim() });
      await client.connect();
      expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await client.end();

      const exited = new Promise<number | null>((resolve) => server!.once('exit', (code) => resolve(code)));
      server.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(log).toContain('SIGTERM: finishing in-flight requests and stopping');
      expect(existsSync(path.join(dataDir, 'pg', 'postmaster.pid'))).toBe(false);
      // an install and a start: 114 s in a clean clone's CI, 188 s beside a second suite
    }, 480_000);
  });
});

describe('docker/compose.yaml', () => {
  it('runs Postgres and pglease, pglease leasing from it through DATABASE_URL', async () => {
    const compose = parse(await readFile(path.join(repoRoot, 'docker/compose.yaml'), 'utf8')) as {
      services: Record<string, { image?: string; build?: { context: string; dockerfile: string }; environment?: Record<string, string>; depends_on?: Record<string, { condition: string }>; ports?: string[]; healthcheck?: { test: string[] } }>;
      volumes?: Record<string, unknown>;
    };
    const { postgres, pglease } = compose.services;
    expect(postgres?.image).toMatch(/^postgres:\d+/);
    expect(postgres?.healthcheck?.test.join(' ')).toContain('pg_isready');

    // the build context is the repository root, and the Dockerfile it names is this one
    const context = path.resolve(repoRoot, 'docker', pglease!.build!.context);
    expect(context).toBe(repoRoot);
    expect(existsSync(path.join(context, pglease!.build!.dockerfile))).toBe(true);
    expect(pglease!.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });

    // DATABASE_URL reaches the postgres service as its superuser; the password is the same
    // variable, passed as PGPASSWORD (node-postgres reads it), so it needs no URL escaping
    const databaseUrl = new URL(pglease!.environment!.DATABASE_URL!);
    expect(databaseUrl.hostname).toBe('postgres');
    expect(databaseUrl.port).toBe('5432');
    expect(decodeURIComponent(databaseUrl.username)).toBe(postgres!.environment!.POSTGRES_USER);
    expect(databaseUrl.password).toBe('');
    expect(pglease!.environment!.PGPASSWORD).toBe(postgres!.environment!.POSTGRES_PASSWORD);

    // no default secrets: compose refuses to start until both are set (${VAR:?message})
    expect(postgres!.environment!.POSTGRES_PASSWORD).toMatch(/^\$\{POSTGRES_PASSWORD:\?.+\}$/);
    expect(pglease!.environment!.PGLEASE_ADMIN_TOKEN).toMatch(/^\$\{PGLEASE_ADMIN_TOKEN:\?.+\}$/);

    // lease URLs point where clients reach Postgres: the published port, on this machine only
    expect(postgres!.ports).toContain(`127.0.0.1:${pglease!.environment!.PGLEASE_PUBLIC_PG_PORT}:5432`);
    expect(pglease!.ports).toContain('127.0.0.1:8080:8080');
    expect(Object.keys(compose.volumes ?? {})).toContain('pgdata');
  });
});
