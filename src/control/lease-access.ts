/**
 * Which lease a control request may act on: the lease named in the path, when the request carries
 * that lease's own token or the admin token. One rule for every per-lease route, so that none can
 * drift: no token is 401, an unknown id or someone else's token is the same 404 (a token holder
 * cannot learn which ids exist).
 */
import type { FastifyRequest } from 'fastify';
import { identifyCaller } from '../auth/caller.js';
import type { HostServices } from '../hosts/host-services.js';
import type { LeaseHost } from '../hosts/fleet.js';
import type { LeaseRow } from '../leases/lease-store.js';
import type { ServiceContext } from '../service-context.js';
import { ControlError } from './errors.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The services of the host lease `id` lives on (src/hosts/fleet.ts): 404 for a host that is not
 * registered, 503 naming the host and its state when it is unreachable.
 */
export function hostOfLease(context: ServiceContext, id: string): HostServices {
  const at: LeaseHost = context.fleet.leaseHost(id);
  if (at.kind === 'ready') return at.services;
  if (at.kind === 'unknown') throw new ControlError('PGLEASE_NOT_FOUND');
  throw new ControlError(
    'PGLEASE_HOST_UNAVAILABLE',
    `the lease's host "${at.name}" is ${at.state} since ${at.since.toISOString()}${at.error ? ` (${at.error})` : ''}: try again later`,
    undefined,
    { 'Retry-After': 5 },
  );
}

export async function authorizedLease(context: ServiceContext, request: FastifyRequest, id: string): Promise<{ lease: LeaseRow; isAdmin: boolean; at: HostServices }> {
  const caller = identifyCaller(request, context.config.adminToken);
  if (caller.kind === 'anonymous') throw new ControlError('PGLEASE_UNAUTHORIZED');
  if (!UUID.test(id)) throw new ControlError('PGLEASE_NOT_FOUND');
  const at = hostOfLease(context, id);
  const lease = await at.leases.find(id.toLowerCase(), caller.kind === 'admin' ? null : caller.token);
  if (!lease) throw new ControlError('PGLEASE_NOT_FOUND');
  return { lease, isAdmin: caller.kind === 'admin', at };
}
