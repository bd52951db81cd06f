/**
 * Configuration: every knob pglease reads from the environment, parsed once, with its default.
 * A bad value stops the start with a message naming the variable, never a silent fallback.
 */
import path from 'node:path';

export interface LeaseLimits {
  /** CONNECTION LIMIT of each lease's login role. */
  connectionLimit: number;
  /** statement_timeout set on each lease's roles (Postgres interval text, e.g. '60s'). */
  statementTimeout: string;
  /** idle_in_transaction_session_timeout set on each lease's roles. */
  idleInTransactionTimeout: string;
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
  /** Host name written into lease URLs; defaults to the host pglease itself connects to. */
  publicPgHost: string | undefined;
  /** Port written into lease URLs; defaults to the port pglease itself connects to. */
  publicPgPort: number | undefined;
  /** Base URL used in rest_url; defaults to the request's own scheme and Host header. */
  publicUrl: string | undefined;
  adminToken: string | undefined;
  defaultTtlSeconds: number;
  maxTtlSeconds: number;
  leaseLimits: LeaseLimits;
  /** Largest control API request body, in bytes. */
  bodyLimit: number;
  logLevel: string;
}

export class ConfigError extends Error {
  constructor(variable: string, problem: string) {
    super(`${variable}: ${problem}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `expected a whole number, got ${JSON.stringify(raw)}`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function text(env: Env, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined || raw.trim() === '' ? undefined : raw.trim();
}

/** Postgres duration settings are passed to ALTER ROLE ... SET, so only plain `<n><unit>` is accepted. */
function duration(env: Env, name: string, fallback: string): string {
  const raw = text(env, name) ?? fallback;
  if (!/^\d+(ms|s|min|h)?$/.test(raw)) throw new ConfigError(name, `expected a duration like 30s, 500ms or 5min, got ${JSON.stringify(raw)}`);
  return raw;
}

export function loadConfig(env: Env = process.env): Config {
  const maxTtlSeconds = integer(env, 'PGLEASE_MAX_TTL', 86_400, 1, 10 * 365 * 86_400);
  const defaultTtlSeconds = Math.min(integer(env, 'PGLEASE_DEFAULT_TTL', 1800, 1, 10 * 365 * 86_400), maxTtlSeconds);
  const publicUrl = text(env, 'PGLEASE_PUBLIC_URL');
  return {
    databaseUrl: text(env, 'DATABASE_URL'),
    leaseDatabase: text(env, 'PGLEASE_DATABASE') ?? 'pglease',
    dataDir: path.resolve(text(env, 'PGLEASE_DATA_DIR') ?? '.pglease'),
    httpHost: text(env, 'HOST') ?? '0.0.0.0',
    httpPort: integer(env, 'PORT', 8080, 0, 65_535),
    embeddedPgPort: integer(env, 'PGLEASE_PG_PORT', 55_432, 1, 65_535),
    embeddedPgListen: text(env, 'PGLEASE_PG_LISTEN') ?? 'localhost',
    publicPgHost: text(env, 'PGLEASE_PUBLIC_PG_HOST'),
    publicPgPort: env.PGLEASE_PUBLIC_PG_PORT ? integer(env, 'PGLEASE_PUBLIC_PG_PORT', 0, 1, 65_535) : undefined,
    publicUrl: publicUrl?.replace(/\/+$/, ''),
    adminToken: text(env, 'PGLEASE_ADMIN_TOKEN'),
    defaultTtlSeconds,
    maxTtlSeconds,
    leaseLimits: {
      connectionLimit: integer(env, 'PGLEASE_LEASE_CONNECTIONS', 20, 1, 10_000),
      statementTimeout: duration(env, 'PGLEASE_LEASE_STATEMENT_TIMEOUT', '60s'),
      idleInTransactionTimeout: duration(env, 'PGLEASE_LEASE_IDLE_TX_TIMEOUT', '60s'),
    },
    bodyLimit: integer(env, 'PGLEASE_BODY_LIMIT', 1_048_576, 1024, 1024 * 1024 * 1024),
    logLevel: text(env, 'LOG_LEVEL') ?? 'info',
  };
}
