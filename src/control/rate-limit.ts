/**
 * Throttling of lease creation: the policy for a caller, the mapping of the limits that
 * sql/throttle.sql raises to 429/503, and the RateLimit-* headers
 * (draft-ietf-httpapi-ratelimit-headers). The counting itself happens in Postgres, atomically,
 * inside the statement that provisions or claims the lease (see LeaseStore.create and claim).
 */
import type { CreateLimits } from '../config.js';
import type { CreateQuota } from '../leases/lease-store.js';
import type { Caller } from '../auth/caller.js';
import { ControlError } from './errors.js';

/** The admin token bypasses per-client limits (0 disables a limit); the database's capacity binds everyone. */
export function createLimitsFor(limits: CreateLimits, caller: Caller): CreateLimits {
  return caller.kind === 'admin' ? { perHour: 0, activePerClient: 0, connectionsPerClient: 0, maxLeases: limits.maxLeases } : limits;
}

const LIMIT_ERRORS = {
  PGLRL: { code: 'PGLEASE_RATE_LIMITED', variable: 'PGLEASE_RATE_LIMIT' },
  PGLAC: { code: 'PGLEASE_RATE_LIMITED', variable: 'PGLEASE_MAX_ACTIVE' },
  PGLCC: { code: 'PGLEASE_RATE_LIMITED', variable: 'PGLEASE_CLIENT_CONNECTIONS' },
  PGLCP: { code: 'PGLEASE_CAPACITY', variable: 'PGLEASE_MAX_LEASES' },
} as const;

/** The 429/503 for a limit raised by pglease.check_create_limits; undefined for any other error. */
export function limitError(error: unknown): ControlError | undefined {
  const { code, message, detail } = error as { code?: string; message?: string; detail?: string };
  if (code === undefined || !(code in LIMIT_ERRORS)) return undefined;
  const known = LIMIT_ERRORS[code as keyof typeof LIMIT_ERRORS];
  const { limit, retry_after: retryAfter = 60 } = JSON.parse(detail ?? '{}') as { limit?: number; retry_after?: number };
  const headers: Record<string, string | number> = { 'Retry-After': retryAfter };
  if (code === 'PGLRL' && limit !== undefined) Object.assign(headers, rateLimitHeaders({ rate_limit: limit, remaining: 0, reset_seconds: retryAfter }));
  return new ControlError(known.code, message ?? known.variable, undefined, headers);
}

/** RateLimit-Limit, -Remaining, -Reset (seconds) and -Policy for the hourly creation quota. */
export function rateLimitHeaders(quota: CreateQuota | undefined): Record<string, string | number> {
  if (!quota || quota.rate_limit === null) return {};
  return {
    'RateLimit-Limit': quota.rate_limit,
    'RateLimit-Remaining': quota.remaining ?? 0,
    'RateLimit-Reset': quota.reset_seconds ?? 3600,
    'RateLimit-Policy': `${quota.rate_limit};w=3600`,
  };
}
