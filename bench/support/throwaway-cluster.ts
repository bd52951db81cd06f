/**
 * A throwaway Postgres cluster for a benchmark against a server that is not the embedded one (issue
 * 14: "against an external Postgres 15"): initdb in a temporary directory with the binaries of
 * `bindir` (default: `pg_config --bindir`, Debian's postgresql-15 here), started with pg_ctl on a
 * free port with initdb's defaults (fsync on, shared_buffers 128 MB) and 200 connections, a
 * superuser `postgres` with a random password over TCP. Run as root, the server runs as the OS user
 * `postgres` (Postgres refuses root; Debian's package made that user). stop() stops it and removes it.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../test/support/free-port.js';

const execFileAsync = promisify(execFile);

/** The OS user the server runs as when we are root (Postgres refuses to run as root). */
function serverUser(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined;
  return { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) };
}

const run = (binary: string, args: string[]) => execFileAsync(binary, args, { ...serverUser(), env: { ...process.env, LC_ALL: 'C' } });

export interface ThrowawayCluster {
  /** The server's major version and build, as `SHOW server_version` says it. */
  version: string;
  /** The superuser's URL of `database`. */
  url: (database: string) => string;
  stop: () => Promise<void>;
}

export async function startThrowawayCluster(bindir?: string): Promise<ThrowawayCluster> {
  const binaries = bindir ?? (await execFileAsync('pg_config', ['--bindir'])).stdout.trim();
  const dir = await mkdtemp(path.join(tmpdir(), 'pglease-bench-pg-'));
  const dataDir = path.join(dir, 'data');
  const password = randomBytes(16).toString('hex');
  const port = await freePort();
  await writeFile(path.join(dir, 'pwfile'), password + '\n');
  const user = serverUser();
  if (user) {
    await chmod(dir, 0o755);
    await chown(dir, user.uid, user.gid);
    await chown(path.join(dir, 'pwfile'), user.uid, user.gid);
  }
  const pgCtl = path.join(binaries, 'pg_ctl');
  try {
    await run(path.join(binaries, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--pwfile', path.join(dir, 'pwfile'), '--auth=scram-sha-256', '-E', 'UTF8', '--no-sync']);
    // BENCH_PG_OPTIONS adds server options, e.g. pg_stat_statements to see where a provision's time goes:
    // "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
    const options = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c max_connections=200 ${process.env.BENCH_PG_OPTIONS ?? ''}`;
    await run(pgCtl, ['-D', dataDir, '-o', options, '-l', path.join(dir, 'server.log'), '-w', '-t', '60', 'start']);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const url = (database: string) => `postgresql://postgres:${password}@127.0.0.1:${port}/${database}`;
  const version = (await run(path.join(binaries, 'postgres'), ['--version'])).stdout.trim();
  return {
    version,
    url,
    stop: async () => {
      await run(pgCtl, ['-D', dataDir, '-m', 'fast', '-w', 'stop']).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
