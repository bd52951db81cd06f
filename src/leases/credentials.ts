/**
 * Secrets of a lease: its login password, its API token, and the password of its authenticator.
 * Postgres only ever receives SCRAM verifiers; pglease only ever stores a token's hash.
 */
import { createHash, createHmac, pbkdf2, pbkdf2Sync, randomBytes } from 'node:crypto';
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
  // a handful of iterations (the authenticators' one) costs microseconds: computed here rather than
  // queued to libuv's thread pool and back
  const saltedPassword = iterations <= SYNC_ITERATIONS
    ? pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256')
    : await pbkdf2Async(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', saltedPassword).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', saltedPassword).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** Up to this many PBKDF2 iterations are computed on the calling thread (a few microseconds). */
const SYNC_ITERATIONS = 16;

/** A lease's login password and the SCRAM verifier Postgres gets for it. */
export interface LoginSecret {
  password: string;
  verifier: string;
}

/**
 * Login passwords with their verifiers made ahead of the creates that take them. A verifier at
 * 4,096 iterations (the count old pgjdbc and Bun insist on) is ~0.85 ms of PBKDF2 here, on libuv's
 * thread pool; made in the request, it lengthened every create by that much, and under a stream of
 * creates it ran when the cores were busiest. Made ahead, one at a time, it runs in the gaps (a
 * create at concurrency 8 spends about a third of its time waiting for its commit's WAL flush:
 * bench:leases), and a create finds one ready. Each secret is handed out once and then forgotten
 * here; the stock is filled only after a first take, so a process that makes no lease makes none.
 * When the stock is empty a create makes its own, as before.
 */
export class LoginSecrets {
  private readonly ready: LoginSecret[] = [];
  private filling = false;

  constructor(
    private readonly iterations: number,
    /** Secrets kept ready: a burst of this many creates finds one each. */
    private readonly stock = 8,
  ) {}

  async take(): Promise<LoginSecret> {
    const made = this.ready.pop();
    this.fill();
    if (made) return made;
    const password = newPassword();
    return { password, verifier: await scramVerifier(password, this.iterations) };
  }

  /** Makes secrets one at a time until the stock is full (one thread of the pool at most). */
  private fill(): void {
    if (this.filling || this.ready.length >= this.stock) return;
    this.filling = true;
    const password = newPassword();
    scramVerifier(password, this.iterations).then(
      (verifier) => {
        this.filling = false;
        this.ready.push({ password, verifier });
        this.fill();
      },
      () => {
        // PBKDF2 of a random password does not fail; were it to, creates make their own
        this.filling = false;
      },
    );
  }
}

/**
 * Password of a lease's authenticator role, derived from a key shared by all pglease processes on
 * the database (pglease.secrets) and the role's name: nothing per lease is stored, and any replica
 * can log in as any lease's authenticator.
 */
export function authenticatorPassword(key: Buffer, authRole: string): string {
  return createHmac('sha256', key).update(authRole).digest('base64url');
}
