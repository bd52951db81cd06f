/**
 * The client side of a TLS host, for the CLI and pglease/testing: a lease URL that asks for
 * sslmode=verify-full (src/control/lease-json.ts) gets `sslrootcert=<file>` pointing at the
 * server's CA (GET /v1/ca.pem) saved in the user's pglease directory, so `psql "$URL"` and
 * node-postgres verify the server out of the box.
 *
 * Files are named by a hash of their content (`<dir>/ca/<sha256, 16 hex>.pem`): two servers never
 * overwrite each other's CA, a server that makes a new CA gets a new file, and a file once written
 * never changes under a client that is reading it. Written to a temporary name and renamed, so a
 * concurrent reader sees the whole file or none.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { userConfigDirectory } from '../user-config-dir.js';

/** Where CA files are kept for `env`'s user. */
export function caDirectory(env: Record<string, string | undefined> = process.env): string {
  return path.join(userConfigDirectory(env), 'ca');
}

/** Saves `caPem` under `directory` (once) and returns its path. */
export async function saveCa(directory: string, caPem: string): Promise<string> {
  const file = path.join(directory, `${createHash('sha256').update(caPem).digest('hex').slice(0, 16)}.pem`);
  if (existsSync(file)) return file;
  await mkdir(directory, { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(temporary, caPem, { mode: 0o644 });
  await rename(temporary, file);
  return file;
}

/** Whether a lease URL asks the client to verify the server with a CA it does not name yet. */
export function needsRootCertificate(url: string): boolean {
  const query = url.includes('?') ? new URLSearchParams(url.slice(url.indexOf('?') + 1)) : undefined;
  const mode = query?.get('sslmode');
  return (mode === 'verify-full' || mode === 'verify-ca') && !query?.has('sslrootcert');
}

/** `url` with sslrootcert=`file` (slashes left readable: libpq and node-postgres both decode the value). */
export function withRootCertificate(url: string, file: string): string {
  return `${url}&sslrootcert=${encodeURIComponent(file).replace(/%2F/g, '/')}`;
}
