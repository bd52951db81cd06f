/**
 * The public JSON of a lease, and its connection URL.
 */
import type { Host } from '../db/host.js';
import type { LeaseRow } from '../leases/lease-store.js';
import type { LeaseJson } from './schemas.js';
import { declaredRoleName } from '../auth/roles.js';

/**
 * A libpq URL for the lease. The role's search_path lands it in its schema (a database lease: its
 * database's public schema), so no options are needed; with `password` undefined the URL is the
 * same minus the secret (for GET). On a TLS host it says the sslmode the client must use
 * (src/tls/host-tls.ts); the CA it verifies with is the client's to keep (GET /v1/ca.pem; the CLI
 * and pglease/testing add sslrootcert themselves).
 */
export function leaseUrl(host: Host, lease: LeaseRow, password?: string): string {
  const hostPart = host.publicHost.includes(':') ? `[${host.publicHost}]` : host.publicHost;
  const userInfo = password === undefined ? lease.role_name : `${lease.role_name}:${encodeURIComponent(password)}`;
  const query = host.tls ? `?sslmode=${host.tls.leaseSslMode}` : '';
  return `postgresql://${userInfo}@${hostPart}:${host.publicPort}/${encodeURIComponent(leaseDatabase(host, lease))}${query}`;
}

/** The database a lease's URL names: the shared lease database, or a database lease's own. */
export function leaseDatabase(host: Host, lease: Pick<LeaseRow, 'kind' | 'schema_name'>): string {
  return lease.kind === 'database' ? lease.schema_name : host.database;
}

export function leaseJson(
  host: Host,
  lease: LeaseRow,
  baseUrl: string,
  secrets?: { password: string; token: string },
): LeaseJson {
  return {
    id: lease.id,
    name: lease.label,
    url: leaseUrl(host, lease, secrets?.password),
    ...(secrets ? { token: secrets.token } : {}),
    ...(secrets && typeof lease.jwt_secret === 'string' ? { jwt_secret: lease.jwt_secret } : {}),
    kind: lease.kind,
    schema: lease.kind === 'database' ? 'public' : lease.schema_name,
    role: lease.role_name,
    anon_role: lease.anon_role,
    database: leaseDatabase(host, lease),
    host: host.publicHost,
    port: host.publicPort,
    rest_url: `${baseUrl}/v1/leases/${lease.id}/rest`,
    created_at: lease.created_at.toISOString(),
    expires_at: lease.expires_at?.toISOString() ?? null,
    ended_at: lease.ended_at?.toISOString() ?? null,
    state: lease.state,
    plan: lease.plan,
    roles: lease.user_roles.map((name) => ({ name, role: declaredRoleName(lease.role_name, name) })),
    settings: lease.api_settings,
    connection_limit: lease.connection_limit,
  };
}
