/**
 * The embedded server's own certificate authority and server certificate, made with
 * @peculiar/x509 over Node's WebCrypto (no openssl binary needed), kept in `<dataDir>/tls/`:
 *
 *   ca.pem           the CA certificate: public, served at GET /v1/ca.pem, clients verify with it
 *   ca-key.pem       the CA's private key (0600): never leaves this directory
 *   server.pem       the server certificate, signed by the CA (Postgres's ssl_cert_file)
 *   server-key.pem   its private key (0600, owned by the OS user Postgres runs as: Postgres refuses
 *                    a key file that group or others may read, "has group or world access")
 *
 * Guarantees:
 * - Made once, reused after: clients that saved the CA keep working across restarts. The CA lives
 *   CA_DAYS (10 years); nothing here ever replaces it while its files exist.
 * - The server certificate names every host a client is told to use (lease URLs' host, the
 *   addresses the service connects to, localhost, 127.0.0.1, ::1) as subject alternative names, so
 *   sslmode=verify-full holds; libpq and Node check IP addresses against IP SANs, names against DNS
 *   SANs. When a start needs a name the certificate lacks (PGLEASE_PUBLIC_PG_HOST changed), or it has
 *   less than RENEW_DAYS left, a new server certificate is signed by the same CA: clients see no change.
 * - Keys are ECDSA P-256: Postgres 15 and 17, libpq and Node all accept them, and they are quick to
 *   make (the CA and the server certificate together took 90 ms here, on a loaded machine; a later
 *   start only reads and checks them, 2 ms; re-signing for a new name 33 ms).
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { X509Certificate, webcrypto } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chown, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';

x509.cryptoProvider.set(webcrypto as ReturnType<typeof x509.cryptoProvider.get>);

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
const CA_DAYS = 3650;
/** A server certificate lives this long; a start re-signs it when fewer than RENEW_DAYS are left. */
const SERVER_DAYS = 825;
const RENEW_DAYS = 30;

export interface TlsFiles {
  directory: string;
  /** The CA certificate (PEM): what clients verify the server with. */
  caFile: string;
  caPem: string;
  certFile: string;
  keyFile: string;
}

/** Names a server certificate always covers, whatever the configuration. */
export const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'];

function pkcs8Pem(der: ArrayBuffer): string {
  return x509.PemConverter.encode(der, 'PRIVATE KEY') + '\n';
}

async function writeAtomically(file: string, content: string, mode: number, owner?: { uid: number; gid: number }): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, content, { mode });
  if (owner) await chown(temporary, owner.uid, owner.gid);
  await rename(temporary, file);
}

async function makeCa(directory: string): Promise<void> {
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=pglease embedded Postgres CA',
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + CA_DAYS * DAY_MS),
    keys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  // the key first: a CA certificate without its key could sign nothing on the next start
  await writeAtomically(path.join(directory, 'ca-key.pem'), pkcs8Pem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), 0o600);
  await writeAtomically(path.join(directory, 'ca.pem'), ca.toString('pem') + '\n', 0o644);
}

/** Whether the server certificate in `certPem` was signed by `caPem`, names every host, and is not near its end. */
function serverCertificateFits(certPem: string, caPem: string, hosts: string[]): boolean {
  const certificate = new X509Certificate(certPem);
  if (!certificate.verify(new X509Certificate(caPem).publicKey)) return false;
  if (Date.parse(certificate.validTo) - Date.now() < RENEW_DAYS * DAY_MS) return false;
  return hosts.every((host) => (isIP(host) ? certificate.checkIP(host) !== undefined : certificate.checkHost(host) !== undefined));
}

async function signServerCertificate(directory: string, hosts: string[], owner: { uid: number; gid: number } | undefined): Promise<void> {
  const caPem = await readFile(path.join(directory, 'ca.pem'), 'utf8');
  const ca = new x509.X509Certificate(caPem);
  const caKey = await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(await readFile(path.join(directory, 'ca-key.pem'), 'utf8')), ALGORITHM, false, ['sign']);
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const now = Date.now();
  const names = hosts.map((host): x509.JsonGeneralName => ({ type: isIP(host) ? 'ip' : 'dns', value: host }));
  const dnsName = hosts.find((host) => isIP(host) === 0) ?? 'localhost';
  const certificate = await x509.X509CertificateGenerator.create({
    subject: `CN=${dnsName}`,
    issuer: ca.subject,
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + SERVER_DAYS * DAY_MS),
    signingKey: caKey,
    publicKey: keys.publicKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.publicKey),
    ],
  });
  await writeAtomically(path.join(directory, 'server-key.pem'), pkcs8Pem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), 0o600, owner);
  await writeAtomically(path.join(directory, 'server.pem'), certificate.toString('pem') + '\n', 0o644, owner);
}

/**
 * The TLS files in `<dataDir>/tls`, made or completed as needed. `hosts`: the names and addresses
 * clients reach the server by (LOOPBACK_NAMES are added); `owner`: the OS user Postgres runs as,
 * when it is not this process's (pglease started as root).
 */
export async function ensureServerCertificates(
  dataDir: string,
  hosts: string[],
  owner: { uid: number; gid: number } | undefined,
  log: (message: string) => void = () => undefined,
): Promise<TlsFiles> {
  const directory = path.join(dataDir, 'tls');
  await mkdir(directory, { recursive: true, mode: 0o755 });
  const files = { directory, caFile: path.join(directory, 'ca.pem'), certFile: path.join(directory, 'server.pem'), keyFile: path.join(directory, 'server-key.pem') };
  if (!existsSync(files.caFile) || !existsSync(path.join(directory, 'ca-key.pem'))) {
    await makeCa(directory);
    log(`made a certificate authority for the embedded Postgres: ${files.caFile}`);
  }
  const caPem = await readFile(files.caFile, 'utf8');
  const wanted = [...new Set([...LOOPBACK_NAMES, ...hosts.map((host) => host.replace(/^\[(.*)\]$/, '$1'))])];
  const current = existsSync(files.certFile) && existsSync(files.keyFile) ? await readFile(files.certFile, 'utf8') : undefined;
  if (current === undefined || !serverCertificateFits(current, caPem, wanted)) {
    await signServerCertificate(directory, wanted, owner);
    log(`signed a server certificate for ${wanted.join(', ')}: ${files.certFile}`);
  }
  return { ...files, caPem };
}
