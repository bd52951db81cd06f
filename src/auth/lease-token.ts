/**
 * Whether a token is a lease's own token (the owner's: full power over the lease). pglease keeps
 * only the token's SHA-256 (pglease.leases.token_hash); the comparison is in constant time. The
 * last token that matched is remembered as bytes on the lease's cached lookup, so that later
 * requests with it compare bytes instead of hashing (a lease-token read spends no time on SHA-256).
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/** What a lease-token check needs of a lease. */
export interface LeaseTokenHolder {
  tokenHash: Buffer;
  /** The last token that matched tokenHash (as bytes): later requests with it skip the hashing. */
  verifiedToken?: Buffer;
}

/** Whether `token` is this lease's token (compared in constant time on its SHA-256). */
export function isLeaseToken(lease: LeaseTokenHolder, token: string): boolean {
  const bytes = Buffer.from(token);
  if (lease.verifiedToken !== undefined && lease.verifiedToken.length === bytes.length && timingSafeEqual(lease.verifiedToken, bytes)) return true;
  const digest = createHash('sha256').update(token).digest();
  const valid = digest.length === lease.tokenHash.length && timingSafeEqual(digest, lease.tokenHash);
  if (valid) lease.verifiedToken = bytes;
  return valid;
}
