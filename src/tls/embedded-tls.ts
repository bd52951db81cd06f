/**
 * TLS on the embedded Postgres (PGLEASE_PG_TLS), the way hosted Postgres does it (RDS's
 * rds.force_ssl, Heroku's sslmode=require), with a CA of its own (certificates.ts):
 *
 * - `off` (default): no TLS, as before; nothing is made.
 * - `on`: ssl=on with the server certificate; clients may use TLS and lease URLs ask them to
 *   (sslmode=verify-full), but a plain login is still accepted (pg_hba `host` lines match both).
 * - `require`: every TCP login must use TLS (pg_hba has only `hostssl` lines): leases' clients,
 *   the REST API's lease authenticators and pglease's own service and superuser sessions alike,
 *   since all of them reach the server over TCP. The Unix socket stays as it was: it lives in the
 *   cluster directory (mode 0700), which only the OS user Postgres runs as can open.
 *
 * pglease's own connections to the embedded server use sslmode=verify-full with the CA file in
 * the data directory whenever TLS is on, so the REST API's lease connections (derived from the
 * service's URL, src/tls/libpq-url.ts) use the same settings.
 */
import type { TlsFiles } from './certificates.js';

export const EMBEDDED_TLS_MODES = ['off', 'on', 'require'] as const;
export type EmbeddedTlsMode = (typeof EMBEDDED_TLS_MODES)[number];

/** pg_hba.conf of the embedded cluster for a TLS mode; 'off' is the file pglease has always written. */
export function embeddedHba(mode: EmbeddedTlsMode): string {
  if (mode !== 'require') {
    return ['# written by pglease: every connection authenticates with SCRAM', 'local all all scram-sha-256', 'host all all 0.0.0.0/0 scram-sha-256', 'host all all ::/0 scram-sha-256', ''].join('\n');
  }
  return [
    '# written by pglease (PGLEASE_PG_TLS=require): every connection authenticates with SCRAM, and every TCP one uses TLS',
    'local all all scram-sha-256',
    'hostssl all all 0.0.0.0/0 scram-sha-256',
    'hostssl all all ::/0 scram-sha-256',
    '',
  ].join('\n');
}

/** The postgres command-line settings that turn TLS on with `files`. */
export function embeddedTlsSettings(files: TlsFiles): string[] {
  return ['-c', 'ssl=on', '-c', `ssl_cert_file=${files.certFile}`, '-c', `ssl_key_file=${files.keyFile}`, '-c', 'ssl_min_protocol_version=TLSv1.2'];
}

/** The query pglease's own URLs of the embedded server carry when TLS is on. */
export function embeddedTlsUrlQuery(files: TlsFiles): string {
  return `?${new URLSearchParams({ sslmode: 'verify-full', sslrootcert: files.caFile })}`;
}
