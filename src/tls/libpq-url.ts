/**
 * pglease's own connections read `sslmode` and `sslrootcert` in a URL the way libpq (psql) does,
 * so that a DATABASE_URL means the same to pglease as to `psql "$DATABASE_URL"`.
 *
 * node-postgres (pg-connection-string 2.x) differs from libpq unless told otherwise:
 * - `require`, `prefer` and `verify-ca` all verify the certificate chain *and* the host name, as
 *   `verify-full` does (a server with a self-signed certificate fails `require`, which libpq accepts);
 * - `verify-full` without `sslrootcert` trusts Node's bundled public CAs, where libpq reads
 *   ~/.postgresql/root.crt and fails when it is missing; `sslrootcert=system` (libpq 16) is read as a
 *   file named "system".
 * `uselibpqcompat=true` in the URL gives libpq's meaning to the modes (require: encrypted, not
 * verified, unless a root certificate is given; verify-ca: chain only). This module adds it, and
 * resolves what pg-connection-string does not: the default root certificate file and `system`.
 * Every connection pglease opens to a host derives its URL from the one normalized here (the
 * service pool, the scheduler, the listener, lease sessions, the REST API's lease pools: they
 * change only user and password), so all of them use the host's TLS settings.
 *
 * Without `sslmode`, nothing changes: node-postgres then connects without TLS (libpq would try TLS
 * first, `prefer`). `allow` (plain first, TLS if refused) has no node-postgres equivalent and is refused.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';

export const SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** A URL whose TLS settings cannot be honoured: `message` says which and what to do. */
export class TlsUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TlsUrlError';
  }
}

/** libpq's default root certificate file: $PGSSLROOTCERT, else ~/.postgresql/root.crt. */
export function defaultRootCertificate(env: Record<string, string | undefined> = process.env): string {
  return env.PGSSLROOTCERT || path.join(env.HOME || homedir(), '.postgresql', 'root.crt');
}

/**
 * `url` with libpq's meaning of its sslmode/sslrootcert made explicit for node-postgres. Throws a
 * TlsUrlError for an unknown sslmode, `allow`, or a root certificate file that does not exist
 * (libpq's own check, made at start instead of at each connection).
 */
export function libpqCompatibleUrl(url: string, env: Record<string, string | undefined> = process.env): string {
  const parsed = new URL(url);
  const params = parsed.searchParams;
  const mode = params.get('sslmode') ?? (env.PGSSLMODE || undefined);
  if (mode === undefined) return url;
  if (mode === 'allow') throw new TlsUrlError('sslmode=allow (plain first, TLS if the server insists) is not supported by pglease\'s driver: use disable, prefer, require, verify-ca or verify-full');
  if (!(SSL_MODES as readonly string[]).includes(mode)) throw new TlsUrlError(`sslmode=${mode} is not one of ${SSL_MODES.join(', ')}`);
  params.set('sslmode', mode);
  if (params.get('uselibpqcompat') === null) params.set('uselibpqcompat', 'true');
  if (mode === 'disable') {
    params.delete('sslrootcert');
    return parsed.toString();
  }
  const rootCertificate = params.get('sslrootcert');
  if (rootCertificate === 'system') {
    // libpq 16: the system's trusted roots; node-postgres trusts Node's bundled ones when given none
    params.delete('sslrootcert');
    if (mode !== 'verify-full') throw new TlsUrlError(`sslrootcert=system needs sslmode=verify-full (libpq's rule: a public CA signs other people's servers too), got sslmode=${mode}`);
    return parsed.toString();
  }
  if (rootCertificate !== null) {
    if (!existsSync(rootCertificate)) throw new TlsUrlError(`sslrootcert: root certificate file "${rootCertificate}" does not exist`);
    return parsed.toString();
  }
  const fallback = defaultRootCertificate(env);
  if (existsSync(fallback)) {
    // libpq verifies with this file when it exists, in require mode too (which then acts as verify-ca)
    params.set('sslrootcert', fallback);
  } else if (mode === 'verify-ca' || mode === 'verify-full') {
    throw new TlsUrlError(
      `sslmode=${mode} needs the CA that signed the server's certificate: add sslrootcert=<file> to the URL, put it in ${fallback}, ` +
        'or use sslrootcert=system for a publicly signed server',
    );
  }
  return parsed.toString();
}

/** The sslmode a URL asks for after libpqCompatibleUrl, or undefined when it says none. */
export function sslModeOf(url: string): SslMode | undefined {
  const mode = new URL(url).searchParams.get('sslmode');
  return mode === null ? undefined : (mode as SslMode);
}
