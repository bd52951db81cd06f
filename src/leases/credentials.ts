/**
 * Secrets of a lease: its login password, its API token, and the password of its authenticator.
 * Postgres only ever receives SCRAM verifiers; pglease only ever stores a token's hash.
 */
import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);

/** 32 random bytes, base64url: safe in a URL's userinfo without escaping. */
export function newPassword(): string {
  return randomBytes(32).toString('base64url');
}

/** Lease tokens carry a prefix so that they are recognisable in logs and secret scanners. */
export function newToken(): string {
  return 'pgl_' + randomBytes(32).toString('base64url');
}

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/**
 * The SCRAM-SHA-256 verifier Postgres stores for a password (RFC 5802/7677, the format of
 * pg_authid.rolpassword). Computing it here keeps the password out of the server and its logs.
 * `iterations` 4096 is Postgres's own default.
 */
export async function scramVerifier(password: string, iterations = 4096): Promise<string> {
  const salt = randomBytes(16);
  const saltedPassword = await pbkdf2Async(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', saltedPassword).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', saltedPassword).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/**
 * Password of a lease's authenticator role, derived from a key shared by all pglease processes on
 * the database (pglease.secrets) and the role's name: nothing per lease is stored, and any replica
 * can log in as any lease's authenticator.
 */
export function authenticatorPassword(key: Buffer, authRole: string): string {
  return createHmac('sha256', key).update(authRole).digest('base64url');
}
