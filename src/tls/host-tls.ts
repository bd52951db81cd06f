/**
 * What a host's TLS means for lease holders, derived from the service's own URL of the host (one
 * rule for the embedded server and a DATABASE_URL alike):
 * - lease URLs carry the service's sslmode when it is `require` or stronger, so a client is told
 *   to use TLS exactly when pglease itself does (verify-full for the embedded server with TLS on);
 * - GET /v1/ca.pem serves the root certificate the service verifies the host with (its
 *   sslrootcert: the embedded server's own CA, or the file given in DATABASE_URL). It is public:
 *   a CA certificate carries no secret.
 */
import { readFile } from 'node:fs/promises';
import { sslModeOf, type SslMode } from './libpq-url.js';

export interface HostTls {
  /** sslmode written into lease URLs. */
  leaseSslMode: Extract<SslMode, 'require' | 'verify-ca' | 'verify-full'>;
  /** The CA certificate(s) that sign the host's certificate (PEM), when pglease verifies with a file. */
  caPem: string | undefined;
}

/** The host's TLS as lease holders see it, or undefined when pglease connects to it without TLS. */
export async function hostTls(serviceUrl: string): Promise<HostTls | undefined> {
  const mode = sslModeOf(serviceUrl);
  if (mode !== 'require' && mode !== 'verify-ca' && mode !== 'verify-full') return undefined;
  const rootCertificate = new URL(serviceUrl).searchParams.get('sslrootcert');
  return { leaseSslMode: mode, caPem: rootCertificate === null ? undefined : certificatesOf(await readFile(rootCertificate, 'utf8')) };
}

/** Only the certificates of a PEM file: whatever else an operator's file holds is not ours to publish. */
function certificatesOf(pem: string): string | undefined {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  return blocks ? blocks.join('\n') + '\n' : undefined;
}
