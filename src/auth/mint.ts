/**
 * Minting a JWT for a lease's users, for the CLI (`pglease jwt`) and the test helpers: HS256 (or
 * HS384/512) with the lease's secret, `iat` now and `exp` an hour later unless told otherwise,
 * signed by `jose`. A front end's identity provider does the same in production.
 */
import { SignJWT, type JWTPayload } from 'jose';

export interface MintOptions {
  /** Seconds until `exp` (3600); null: no `exp` at all. */
  expiresInSeconds?: number | null;
  algorithm?: 'HS256' | 'HS384' | 'HS512';
}

/** A JWT with `claims` (e.g. `{ role: 'authenticated', sub: 'alice' }`) signed with `secret`. */
export function mintJwt(secret: string, claims: JWTPayload, options: MintOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const expiresIn = options.expiresInSeconds === undefined ? 3600 : options.expiresInSeconds;
  const payload: JWTPayload = { iat: now, ...(expiresIn === null ? {} : { exp: now + expiresIn }), ...claims };
  return new SignJWT(payload).setProtectedHeader({ alg: options.algorithm ?? 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(secret));
}
