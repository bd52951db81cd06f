/**
 * Configuration: every knob pglease reads from the environment, parsed once, with its default.
 * A bad value stops the start with a message naming the variable, never a silent fallback.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from './config-error.js';
import { CONTROL_HOST_NAME, defaultTls, HOST_NAME_PATTERN, type HostTlsMode, type NewHost } from './hosts/host-registry.js';
import { DurationError, durationMs, durationSeconds, formatSeconds, postgresInterval } from './duration.js';
import { LEASE_KINDS, type LeaseKind } from './leases/lease-kind.js';
import { parseSchedule, ScheduleError } from './scheduler/cron.js';
import { EMBEDDED_TLS_MODES, type EmbeddedTlsMode } from './tls/embedded-tls.js';
import { libpqCompatibleUrl, TlsUrlError } from './tls/libpq-url.js';

export interface LeaseLimits {
  /** CONNECTION LIMIT of each lease's login role. */
  connectionLimit: number;
  /** statement_timeout set on each lease's roles (Postgres interval text, e.g. '60s', '1500ms'). */
  statementTimeout: string;
  /** idle_in_transaction_session_timeout set on each lease's roles. */
  idleInTransactionTimeout: string;
  /**
   * PBKDF2 iterations of the login role's SCRAM verifier. Postgres's default is 4096; each one costs
   * the server (it checks the verifier is not the empty password's at CREATE ROLE) and every client
   * login. The password is 256 random bits, so iterations add no real protection: lower them for
   * faster leases and logins if your policy allows.
   */
  scramIterations: number;
}

/** Scheduled jobs (src/scheduler): expiry, repair, history. */
export interface JobsConfig {
  /** false: this process runs no jobs (others on the same database still do). */
  schedulerEnabled: boolean;
  reaperSchedule: string;
  cleanupSchedule: string;
  pruneSchedule: string;
  /** Leases dropped per reaper transaction. */
  reaperBatch: number;
  /** How long ended leases and job runs stay queryable. */
  historyRetentionSeconds: number;
  /** The observer's runs (sql/observe.sql): each looks at the leases that are due. */
  observerSchedule: string;
  /** Seconds between two observations of a lease; milliseconds for a lease near its limits or growing fast. */
  observeIntervalSeconds: number;
  observeFastMs: number;
  /** How long observations are kept (s). */
  observationRetentionSeconds: number;
  /** The host's free disk is read from this directory (the embedded server's data); undefined: unknown. */
  observeDiskPath?: string;
}

/** Throttling of lease creation (src/control/rate-limit.ts); 0 disables a limit. */
export interface CreateLimits {
  /** Creations per client address per hour. */
  perHour: number;
  /** Live leases per client address. */
  activePerClient: number;
  /**
   * Connections the live leases of one client address may open together: the sum of their login
   * roles' CONNECTION LIMITs (sql/throttle.sql lowers a new lease's limit to fit).
   */
  connectionsPerClient: number;
  /** Live leases in the lease database (host capacity). */
  maxLeases: number;
  /**
   * Whether the per-client limits above also bind the developer on their own machine (a client on
   * loopback talking to a service bound to loopback, through no proxy: see isLocalDeveloper in
   * src/control/rate-limit.ts). Off by default: those limits are meant for strangers on a network.
   */
  limitLocalDeveloper: boolean;
}

export interface Config {
  /** Postgres server to lease from; undefined means "start the embedded one". */
  databaseUrl: string | undefined;
  /** Name of the database on the host that holds the leases and the pglease schema. */
  leaseDatabase: string;
  dataDir: string;
  httpHost: string;
  httpPort: number;
  /** Port of the embedded Postgres (kept stable so lease URLs survive restarts). */
  embeddedPgPort: number;
  /** listen_addresses of the embedded Postgres. */
  embeddedPgListen: string;
  /** TLS of the embedded Postgres (PGLEASE_PG_TLS: off, on, require; src/tls/embedded-tls.ts). */
  embeddedPgTls: EmbeddedTlsMode;
  /** Host name written into lease URLs; defaults to the host pglease itself connects to. */
  publicPgHost: string | undefined;
  /** Port written into lease URLs; defaults to the port pglease itself connects to. */
  publicPgPort: number | undefined;
  /** Base URL used in rest_url; defaults to the request's own scheme and Host header. */
  publicUrl: string | undefined;
  adminToken: string | undefined;
  /**
   * Fetch a lease's JWKS from an http:// URL too (PGLEASE_JWKS_ALLOW_HTTP, off): for tests and a
   * local identity provider; otherwise only https URLs are fetched (src/auth/jwt.ts).
   */
  jwksAllowHttp: boolean;
  /** Bearer token for GET /metrics besides the admin token (a Prometheus scraper need not hold the admin's). */
  metricsToken: string | undefined;
  defaultTtlSeconds: number;
  maxTtlSeconds: number;
  leaseLimits: LeaseLimits;
  /** Plain leases this process keeps provisioned, ready to hand out (0: none). */
  leasePoolSize: number;
  /** Leases each global template keeps provisioned and seeded in this process, ready to hand out (0: none). */
  templatePoolSize: number;
  /**
   * Database leases this process keeps ready (PGLEASE_DATABASE_LEASE_POOL; 0: none), from the first
   * create of one on (or from the start when they are the default kind): each is a database of
   * about 6.6 MB, and a create of one takes 100-150 ms here, which the pool hides.
   */
  databasePoolSize: number;
  /** The kind of a create that names none (PGLEASE_DEFAULT_KIND: schema or database). */
  defaultKind: LeaseKind;
  /** REST API connections: per lease, and of all leases together (their pools share a budget). */
  /** `total` undefined: sized from the server's max_connections (src/db/connection-shares.ts). */
  restConnections: { perLease: number; total: number | undefined; activeStatements: number | undefined };
  /** The memory the REST API's schema caches may hold together (PGLEASE_REST_SCHEMA_CACHE_MB), in bytes. */
  restSchemaCacheBytes: number;
  /** Largest control API request body, in bytes. */
  bodyLimit: number;
  logLevel: string;
  /** Log every request (Fastify's "incoming request" / "request completed" lines, with request ids). */
  logRequests: boolean;
  /** Answer `Server-Timing` with each REST request's phases, and each control request's time. */
  serverTiming: boolean;
  /** How long a shutdown waits for in-flight requests before it closes their connections (s). */
  shutdownGraceSeconds: number;
  /**
   * How long the service waits for its lease database, for a connection and then for each answer,
   * before the request fails with 503 (s). Bounds what a stopped or unreachable server costs.
   */
  databaseTimeoutSeconds: number;
  /**
   * How often each lease host is probed and the host registry read again (s; src/hosts/fleet.ts):
   * how long a dead host can still be picked for a create (a create that fails there goes to
   * another host at once), and how soon a host added by another process is served here.
   */
  hostProbeIntervalSeconds: number;
  /** PGLEASE_HOSTS: hosts registered at start unless a host of the name is (docs/hosts.md). */
  staticHosts: NewHost[];
  /**
   * Locks the sessions of one lease may hold together before the lease is ended
   * (src/leases/lock-guard.ts); null: a quarter of the server's shared lock table.
   */
  maxLeaseLocks: number | null;
  jobs: JobsConfig;
  createLimits: CreateLimits;
  /** Fastify's trustProxy: whether (and from which proxies) X-Forwarded-For names the client. */
  trustProxy: TrustProxy;
}

export { ConfigError } from './config-error.js';

type Env = Record<string, string | undefined>;

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `expected a whole number, got ${JSON.stringify(raw)}`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function leaseKind(env: Env, name: string): LeaseKind {
  const raw = text(env, name);
  if (raw === undefined) return 'schema';
  const kind = LEASE_KINDS.find((known) => known === raw.toLowerCase());
  if (!kind) throw new ConfigError(name, `expected ${LEASE_KINDS.join(' or ')}, got ${JSON.stringify(raw)}`);
  return kind;
}

/**
 * PGLEASE_HOSTS: a JSON array of the bodies POST /v1/hosts takes ({name, url, capacity, weight,
 * public_host, public_port, tls, ca_file}; ca_file: the CA's PEM file instead of ca_pem).
 */
function staticHosts(env: Env): NewHost[] {
  const raw = text(env, 'PGLEASE_HOSTS');
  if (raw === undefined) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ConfigError('PGLEASE_HOSTS', 'expected a JSON array such as [{"name": "db2", "url": "postgresql://pglease:secret@db2:5432/postgres", "capacity": 500}]');
  }
  if (!Array.isArray(parsed)) throw new ConfigError('PGLEASE_HOSTS', 'expected a JSON array of hosts');
  const seen = new Set<string>();
  return parsed.map((item: unknown, index) => {
    const at = `host ${index + 1}`;
    if (typeof item !== 'object' || item === null) throw new ConfigError('PGLEASE_HOSTS', `${at}: expected an object with name and url`);
    const host = item as Record<string, unknown>;
    const known = ['name', 'url', 'capacity', 'weight', 'public_host', 'public_port', 'tls', 'ca_file'];
    for (const key of Object.keys(host)) if (!known.includes(key)) throw new ConfigError('PGLEASE_HOSTS', `${at}: unknown field "${key}" (known: ${known.join(', ')})`);
    if (typeof host.name !== 'string' || !new RegExp(HOST_NAME_PATTERN).test(host.name)) throw new ConfigError('PGLEASE_HOSTS', `${at}: name must be 1 to 63 lower-case letters, digits, _ and -`);
    if (seen.has(host.name) || host.name === CONTROL_HOST_NAME) throw new ConfigError('PGLEASE_HOSTS', `${at}: the name "${host.name}" is taken`);
    seen.add(host.name);
    let url: URL;
    try {
      url = new URL(String(host.url));
    } catch {
      throw new ConfigError('PGLEASE_HOSTS', `${at} (${host.name}): url must be postgresql://user:password@host:port/database`);
    }
    if (!['postgres:', 'postgresql:'].includes(url.protocol)) throw new ConfigError('PGLEASE_HOSTS', `${at} (${host.name}): url must be a postgresql:// URL`);
    const whole = (key: string, min: number, max: number): number | undefined => {
      const value = host[key];
      if (value === undefined) return undefined;
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw new ConfigError('PGLEASE_HOSTS', `${at} (${host.name}): ${key} must be a whole number from ${min} to ${max}`);
      return value;
    };
    if (host.weight !== undefined && !(typeof host.weight === 'number' && host.weight > 0 && host.weight <= 1000)) throw new ConfigError('PGLEASE_HOSTS', `${at} (${host.name}): weight must be a number above 0, at most 1000`);
    if (host.tls !== undefined && !['disable', 'require', 'verify-full'].includes(host.tls as string)) throw new ConfigError('PGLEASE_HOSTS', `${at} (${host.name}): tls must be disable, require or verify-full`);
    let caPem: string | undefined;
    if (host.ca_file !== undefined) {
      try {
        caPem = readFileSync(String(host.ca_file), 'utf8');
      } catch (error) {
        throw new ConfigError('PGLEASE_HOSTS', `${at} (${host.name}): ca_file cannot be read (${(error as Error).message})`);
      }
    }
    return {
      name: host.name,
      url: url.toString(),
      capacity: whole('capacity', 0, 10_000_000),
      weight: host.weight as number | undefined,
      publicHost: typeof host.public_host === 'string' ? host.public_host : undefined,
      publicPort: whole('public_port', 1, 65535),
      tls: (host.tls as HostTlsMode | undefined) ?? defaultTls(url),
      caPem,
    };
  });
}

function text(env: Env, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined || raw.trim() === '' ? undefined : raw.trim();
}

/**
 * A Postgres interval setting (passed to ALTER ROLE ... SET): a duration (src/duration.ts), where
 * milliseconds are allowed too, written back in units Postgres reads.
 */
function pgInterval(env: Env, name: string, fallback: string): string {
  try {
    return postgresInterval(durationMs(text(env, name) ?? fallback, { allowMs: true }));
  } catch (error) {
    if (error instanceof DurationError) throw new ConfigError(name, error.message);
    throw error;
  }
}

function schedule(env: Env, name: string, fallback: string): string {
  try {
    return parseSchedule(text(env, name) ?? fallback);
  } catch (error) {
    if (error instanceof ScheduleError) throw new ConfigError(name, error.message);
    throw error;
  }
}

/** A duration (src/duration.ts: 90, 90s, 10m, 2h, 1d), in whole seconds, between `min` and `max` seconds. */
function seconds(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = text(env, name);
  if (raw === undefined) return fallback;
  let value: number;
  try {
    value = durationSeconds(raw);
  } catch (error) {
    if (error instanceof DurationError) throw new ConfigError(name, error.message);
    throw error;
  }
  if (value < min || value > max) throw new ConfigError(name, `must be between ${formatSeconds(min)} and ${formatSeconds(max)}, got ${raw}`);
  return value;
}

function flag(env: Env, name: string, fallback: boolean): boolean {
  const raw = text(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (['1', 'true', 'on', 'yes'].includes(raw)) return true;
  if (['0', 'false', 'off', 'no'].includes(raw)) return false;
  throw new ConfigError(name, `expected on or off, got ${JSON.stringify(raw)}`);
}

/** Fastify's trustProxy forms: all, none, these proxy addresses/CIDRs, or a test per hop. */
export type TrustProxy = boolean | string[] | ((address: string, hop: number) => boolean);

/** PGLEASE_TRUST_PROXY: off (default), on (any proxy), a hop count, or proxy addresses/CIDRs separated by commas. */
function trustProxy(env: Env): TrustProxy {
  const raw = text(env, 'PGLEASE_TRUST_PROXY');
  if (raw === undefined || ['0', 'false', 'off', 'no'].includes(raw.toLowerCase())) return false;
  if (['true', 'on', 'yes'].includes(raw.toLowerCase())) return true;
  if (/^\d+$/.test(raw)) {
    const hops = Number(raw);
    return (_address, hop) => hop < hops;
  }
  return raw.split(',').map((part) => part.trim()).filter((part) => part !== '');
}

/**
 * PGLEASE_CLIENT_CONNECTIONS, default 160: 8 leases with the default 20 connections each (a test run
 * of 7 workers on an 8-core machine, src/testing making one lease per worker and CPUs - 1 workers by
 * default, plus its template's owner lease). Leases' logins may use 237 of the embedded server's 500
 * max_connections (the rest is reserved for pglease and its REST API, src/db/connection-shares.ts):
 * one client can no longer take them all (15 leases x 20 connections did). 100 would leave more to others but refuse a
 * 5-worker run with a template. 0: no budget; 1 would refuse every lease (sql/throttle.sql makes
 * none with fewer than 2 connections).
 */
function clientConnections(env: Env): number {
  const budget = integer(env, 'PGLEASE_CLIENT_CONNECTIONS', 160, 0, 1_000_000);
  if (budget === 1) throw new ConfigError('PGLEASE_CLIENT_CONNECTIONS', 'must be 0 (no budget) or at least 2, the fewest connections a lease is made with; got 1');
  return budget;
}

/**
 * DATABASE_URL with its sslmode/sslrootcert read as libpq reads them (src/tls/libpq-url.ts); a
 * mode or root certificate pglease cannot honour stops the start here, naming the variable.
 */
function databaseUrlSetting(env: Env): string | undefined {
  const raw = text(env, 'DATABASE_URL');
  if (raw === undefined) return undefined;
  try {
    return libpqCompatibleUrl(raw, env);
  } catch (error) {
    if (error instanceof TlsUrlError) throw new ConfigError('DATABASE_URL', error.message);
    if (error instanceof TypeError) return raw; // not a URL: the first connection says so, as before
    throw error;
  }
}

/** PGLEASE_PG_TLS: the embedded server's TLS; with DATABASE_URL, TLS is the URL's sslmode instead. */
function embeddedPgTls(env: Env): EmbeddedTlsMode {
  const raw = text(env, 'PGLEASE_PG_TLS')?.toLowerCase() ?? 'off';
  if (!(EMBEDDED_TLS_MODES as readonly string[]).includes(raw)) throw new ConfigError('PGLEASE_PG_TLS', `expected off, on or require, got ${JSON.stringify(raw)}`);
  if (raw !== 'off' && text(env, 'DATABASE_URL') !== undefined) {
    throw new ConfigError('PGLEASE_PG_TLS', 'applies to the embedded Postgres only: with DATABASE_URL, say sslmode (and sslrootcert) in the URL');
  }
  return raw as EmbeddedTlsMode;
}

export function loadConfig(env: Env = process.env): Config {
  const maxTtlSeconds = seconds(env, 'PGLEASE_MAX_TTL', 86_400, 1, 10 * 365 * 86_400);
  const defaultTtlSeconds = Math.min(seconds(env, 'PGLEASE_DEFAULT_TTL', 1800, 1, 10 * 365 * 86_400), maxTtlSeconds);
  const publicUrl = text(env, 'PGLEASE_PUBLIC_URL');
  return {
    databaseUrl: databaseUrlSetting(env),
    leaseDatabase: text(env, 'PGLEASE_DATABASE') ?? 'pglease',
    dataDir: path.resolve(text(env, 'PGLEASE_DATA_DIR') ?? '.pglease'),
    // loopback: lease creation needs no login, so the network gets it only when asked for
    // (the Docker image sets HOST=0.0.0.0)
    httpHost: text(env, 'HOST') ?? '127.0.0.1',
    httpPort: integer(env, 'PORT', 8080, 0, 65_535),
    // 0: a free port at each start (src/db/free-port.ts), for runs that must not collide
    embeddedPgPort: integer(env, 'PGLEASE_PG_PORT', 55_432, 0, 65_535),
    embeddedPgListen: text(env, 'PGLEASE_PG_LISTEN') ?? 'localhost',
    embeddedPgTls: embeddedPgTls(env),
    publicPgHost: text(env, 'PGLEASE_PUBLIC_PG_HOST'),
    publicPgPort: env.PGLEASE_PUBLIC_PG_PORT ? integer(env, 'PGLEASE_PUBLIC_PG_PORT', 0, 1, 65_535) : undefined,
    publicUrl: publicUrl?.replace(/\/+$/, ''),
    adminToken: text(env, 'PGLEASE_ADMIN_TOKEN'),
    jwksAllowHttp: flag(env, 'PGLEASE_JWKS_ALLOW_HTTP', false),
    metricsToken: text(env, 'PGLEASE_METRICS_TOKEN'),
    defaultTtlSeconds,
    maxTtlSeconds,
    leaseLimits: {
      connectionLimit: integer(env, 'PGLEASE_LEASE_CONNECTIONS', 20, 1, 10_000),
      statementTimeout: pgInterval(env, 'PGLEASE_LEASE_STATEMENT_TIMEOUT', '60s'),
      idleInTransactionTimeout: pgInterval(env, 'PGLEASE_LEASE_IDLE_TX_TIMEOUT', '60s'),
      scramIterations: integer(env, 'PGLEASE_SCRAM_ITERATIONS', 4096, 1, 1_000_000),
    },
    leasePoolSize: integer(env, 'PGLEASE_LEASE_POOL', 2, 0, 1000),
    templatePoolSize: integer(env, 'PGLEASE_TEMPLATE_POOL', 4, 0, 1000),
    databasePoolSize: integer(env, 'PGLEASE_DATABASE_LEASE_POOL', 2, 0, 1000),
    defaultKind: leaseKind(env, 'PGLEASE_DEFAULT_KIND'),
    restConnections: {
      perLease: integer(env, 'PGLEASE_REST_LEASE_CONNECTIONS', 5, 1, 1000),
      total: env.PGLEASE_REST_MAX_CONNECTIONS ? integer(env, 'PGLEASE_REST_MAX_CONNECTIONS', 0, 1, 100_000) : undefined,
      activeStatements: env.PGLEASE_REST_ACTIVE_STATEMENTS ? integer(env, 'PGLEASE_REST_ACTIVE_STATEMENTS', 0, 1, 100_000) : undefined,
    },
    restSchemaCacheBytes: integer(env, 'PGLEASE_REST_SCHEMA_CACHE_MB', 64, 1, 1_000_000) * 1024 * 1024,
    bodyLimit: integer(env, 'PGLEASE_BODY_LIMIT', 1_048_576, 1024, 1024 * 1024 * 1024),
    logLevel: text(env, 'LOG_LEVEL') ?? 'info',
    logRequests: flag(env, 'PGLEASE_LOG_REQUESTS', false),
    serverTiming: flag(env, 'PGLEASE_SERVER_TIMING', false),
    shutdownGraceSeconds: seconds(env, 'PGLEASE_SHUTDOWN_GRACE', 8, 0, 3600),
    databaseTimeoutSeconds: seconds(env, 'PGLEASE_DB_TIMEOUT', 30, 1, 3600),
    hostProbeIntervalSeconds: seconds(env, 'PGLEASE_HOST_PROBE_INTERVAL', 5, 1, 3600),
    staticHosts: staticHosts(env),
    maxLeaseLocks: env.PGLEASE_MAX_LOCKS ? integer(env, 'PGLEASE_MAX_LOCKS', 0, 100, 100_000_000) : null,
    jobs: {
      schedulerEnabled: flag(env, 'PGLEASE_SCHEDULER', true),
      reaperSchedule: schedule(env, 'PGLEASE_REAPER_CRON', '*/10 * * * * *'),
      cleanupSchedule: schedule(env, 'PGLEASE_CLEANUP_CRON', '*/5 * * * *'),
      pruneSchedule: schedule(env, 'PGLEASE_PRUNE_CRON', '17 * * * *'),
      reaperBatch: integer(env, 'PGLEASE_REAPER_BATCH', 50, 1, 60),
      // throttling counts the last hour of leases, so history must reach back at least that far
      historyRetentionSeconds: seconds(env, 'PGLEASE_HISTORY_RETENTION', 7 * 86_400, 3600, 100 * 365 * 86_400),
      // every second, each run taking only the leases that are due (every 10 s), then quick passes
      // until the next run for leases near a limit or growing (every 200 ms): a lease writing 150 MB/s
      // went 67 to 332 MB past a 16 MB limit when they were observed once a second
      observerSchedule: schedule(env, 'PGLEASE_OBSERVER_CRON', '* * * * * *'),
      observeIntervalSeconds: seconds(env, 'PGLEASE_OBSERVE_INTERVAL', 10, 1, 3600),
      observeFastMs: integer(env, 'PGLEASE_OBSERVE_FAST_MS', 200, 50, 60_000),
      observationRetentionSeconds: seconds(env, 'PGLEASE_OBSERVATION_RETENTION', 3600, 60, 100 * 365 * 86_400),
    },
    createLimits: {
      perHour: integer(env, 'PGLEASE_RATE_LIMIT', 100, 0, 1_000_000),
      activePerClient: integer(env, 'PGLEASE_MAX_ACTIVE', 20, 0, 1_000_000),
      connectionsPerClient: clientConnections(env),
      maxLeases: integer(env, 'PGLEASE_MAX_LEASES', 1000, 0, 10_000_000),
      limitLocalDeveloper: flag(env, 'PGLEASE_LIMIT_LOCAL', false),
    },
    trustProxy: trustProxy(env),
  };
}
