/**
 * Throttling of lease creation: the policy for a caller, the mapping of the limits that
 * sql/throttle.sql raises to 429/503, and the RateLimit-* headers
 * (draft-ietf-httpapi-ratelimit-headers). The counting itself happens in Postgres, atomically,
 * inside the statement that provisions or claims the lease (see LeaseStore.create and claim).
 */
import { isIP } from 'node:net';
import type { FastifyRequest } from 'fastify';
import type { CreateLimits } from '../config.js';
import type { CreateQuota } from '../leases/lease-store.js';
import type { Caller } from './auth.js';
import { ControlError } from './errors.js';

/** 127.0.0.0/8, ::1 and their IPv4-mapped form; `localhost` for a configured host name. */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const bare = address.replace(/^\[|\]$/g, '').toLowerCase();
  if (bare === 'localhost' || bare === '::1') return true;
  const v4 = bare.startsWith('::ffff:') ? bare.slice('::ffff:'.length) : bare;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/**
 * The developer on their own machine, told apart from strangers on a network: the service is bound
 * to loopback (HOST, 127.0.0.1 by default), the TCP peer is on loopback, and the request names no
 * forwarding (`Forwarded`, `X-Forwarded-For`). Only processes of this machine can open such a
 * connection; a reverse proxy on the same machine could, on behalf of anyone, but a proxy says so
 * in those headers (a proxy that hides it also hides every client behind one address, which no
 * per-client limit survives either). A service bound to 0.0.0.0 (the Docker image) has no local
 * developer: its loopback peers may be a port forwarder.
 */
export function isLocalDeveloper(request: FastifyRequest, httpHost: string): boolean {
  if (!isLoopback(httpHost) || !isLoopback(request.socket.remoteAddress)) return false;
  return request.headers.forwarded === undefined && request.headers['x-forwarded-for'] === undefined;
}

const NO_CLIENT_LIMITS = { perHour: 0, activePerClient: 0, connectionsPerClient: 0 } as const;

/**
 * The limits a create meets (0 disables one): the per-client ones (creations per hour, live leases,
 * the connection budget) bind strangers, not the admin token nor the local developer (unless
 * PGLEASE_LIMIT_LOCAL=on), so that a developer running their tests never meets a limit meant for
 * a network; the database's capacity binds everyone.
 */
export function createLimitsFor(limits: CreateLimits, caller: Caller, localDeveloper: boolean): CreateLimits {
  if (caller.kind === 'admin' || (localDeveloper && !limits.limitLocalDeveloper)) return { ...limits, ...NO_CLIENT_LIMITS };
  return limits;
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
