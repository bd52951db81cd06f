/**
 * The public JSON of a lease, and its connection URL.
 */
import type { Host } from '../db/host.js';
import type { LeaseRow } from '../leases/lease-store.js';
import type { LeaseJson } from './schemas.js';

/**
 * A libpq URL for the lease. The role's search_path lands it in its schema, so no options are
 * needed; with `password` undefined the URL is the same minus the secret (for GET).
 */
export function leaseUrl(host: Host, lease: LeaseRow, password?: string): string {
  const hostPart = host.publicHost.includes(':') ? `[${host.publicHost}]` : host.publicHost;
  const userInfo = password === undefined ? lease.role_name : `${lease.role_name}:${encodeURIComponent(password)}`;
  return `postgresql://${userInfo}@${hostPart}:${host.publicPort}/${encodeURIComponent(host.database)}`;
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
    schema: lease.schema_name,
    role: lease.role_name,
    anon_role: lease.anon_role,
    database: host.database,
    host: host.publicHost,
    port: host.publicPort,
    rest_url: `${baseUrl}/v1/leases/${lease.id}/rest`,
    created_at: lease.created_at.toISOString(),
    expires_at: lease.expires_at?.toISOString() ?? null,
    ended_at: lease.ended_at?.toISOString() ?? null,
    state: lease.state,
    plan: lease.plan,
    connection_limit: lease.connection_limit,
  };
}
