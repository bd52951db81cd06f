/**
 * Who is calling: the bearer token of a request, and whether it is the admin token
 * (PGLEASE_ADMIN_TOKEN), some other token (a lease's, checked by whoever knows the lease), or none.
 * Used by the control API (src/control) and the REST API (src/rest). The admin token is compared
 * on SHA-256 digests in constant time, so neither its length nor its prefix leaks through timing.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';

export type Caller = { kind: 'admin' } | { kind: 'token'; token: string } | { kind: 'anonymous' };

/** The bearer token of a request (`Authorization: Bearer x`, or the `apikey` header supabase clients send). */
export function bearerToken(request: FastifyRequest): string | null {
  const authorization = request.headers.authorization;
  if (typeof authorization === 'string') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (match) return match[1]!;
  }
  const apikey = request.headers.apikey;
  return typeof apikey === 'string' && apikey.length > 0 ? apikey : null;
}

/** Compares digests so that the comparison takes the same time whatever the token's length. */
function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

export function isAdminToken(token: string, adminToken: string | undefined): boolean {
  return adminToken !== undefined && sameSecret(token, adminToken);
}

export function identifyCaller(request: FastifyRequest, adminToken: string | undefined): Caller {
  const token = bearerToken(request);
  if (token === null) return { kind: 'anonymous' };
  if (isAdminToken(token, adminToken)) return { kind: 'admin' };
  return { kind: 'token', token };
}
