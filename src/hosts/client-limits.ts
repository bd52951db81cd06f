/**
 * Per-client limits over every lease host (PGLEASE_MAX_ACTIVE, PGLEASE_RATE_LIMIT). Each host
 * counts a client's leases from its own rows (sql/throttle.sql, pglease.check_create_limits): with
 * one host that is the whole count, and this module does nothing (not one statement more). With
 * more, a create placed on host A first counts the client's live leases and its creations of the
 * last hour on every other reachable host (one statement each, in parallel, on the
 * leases_live_by_quota_ip and leases_by_quota_ip indexes of migration 0002), then runs on A with
 * its limits lowered by those counts, so A's exact check (under its per-client lock) completes the
 * sum. Refused outright, with the same 429 and Retry-After, when the other hosts alone hold the limit.
 *
 * What it does not guarantee: two creates of one client running at the same moment on two
 * different hosts each see the other's host before that create committed, so a client racing
 * itself across hosts may go over a limit by the creates it has in flight at once (on one host the
 * lock still makes it exact). A host that cannot be counted within COUNT_TIMEOUT_MS (down, or
 * slow) is left out: its leases are unusable meanwhile. Statements read pglease.leases only.
 */
import type { CreateLimits } from '../config.js';
import { ControlError } from '../control/errors.js';
import type { HostServices } from './host-services.js';

/** How long a count on another host may take before that host is left out of the sum. */
const COUNT_TIMEOUT_MS = 2_000;

interface ClientCount {
  live: number;
  recent: number;
}

async function countOn(services: HostServices, clientIp: string): Promise<ClientCount> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<ClientCount>((resolve) => {
    timer = setTimeout(() => resolve({ live: 0, recent: 0 }), COUNT_TIMEOUT_MS);
  });
  const counted = services.host.pool
    .query<ClientCount>({
      name: 'pglease.count-client-leases',
      text: `SELECT (SELECT count(*)::int FROM pglease.leases WHERE quota_ip = $1 AND state IN ('active', 'provisioning')) AS live,
                    (SELECT count(*)::int FROM pglease.leases WHERE quota_ip = $1 AND created_at > now() - interval '1 hour') AS recent`,
      values: [clientIp],
    })
    .then(({ rows }) => rows[0]!)
    .catch(() => ({ live: 0, recent: 0 }));
  return Promise.race([counted, timeout]).finally(() => clearTimeout(timer));
}

/**
 * `limits` for a create on `at`, lowered by what client `clientIp` holds on `others` (every other
 * reachable host); a 429 when those alone reach a limit. Unchanged when no count applies.
 */
export async function limitsAcrossHosts(others: HostServices[], clientIp: string | null, limits: CreateLimits | undefined): Promise<CreateLimits | undefined> {
  if (!limits || clientIp === null || others.length === 0 || (limits.activePerClient === 0 && limits.perHour === 0)) return limits;
  const counts = await Promise.all(others.map((services) => countOn(services, clientIp)));
  const live = counts.reduce((sum, count) => sum + count.live, 0);
  const recent = counts.reduce((sum, count) => sum + count.recent, 0);
  if (limits.activePerClient > 0 && live >= limits.activePerClient) {
    throw new ControlError(
      'PGLEASE_RATE_LIMITED',
      `client ${clientIp} has ${live} live leases on other hosts, the most a client may hold (PGLEASE_MAX_ACTIVE=${limits.activePerClient}); release one or wait until one expires`,
      undefined,
      { 'Retry-After': 60 },
    );
  }
  if (limits.perHour > 0 && recent >= limits.perHour) {
    throw new ControlError(
      'PGLEASE_RATE_LIMITED',
      `client ${clientIp} created ${recent} leases in the last hour on other hosts, the most allowed (PGLEASE_RATE_LIMIT=${limits.perHour})`,
      undefined,
      { 'Retry-After': 60 },
    );
  }
  return {
    ...limits,
    activePerClient: limits.activePerClient === 0 ? 0 : limits.activePerClient - live,
    perHour: limits.perHour === 0 ? 0 : limits.perHour - recent,
  };
}

/**
 * A host's PGLAC or PGLRL (sql/throttle.sql) for a create whose limits limitsAcrossHosts lowered,
 * in words that count every host: the host's own message names the lowered limit. Other errors
 * are returned as they are.
 */
export function limitErrorAcrossHosts(error: unknown, clientIp: string | null, original: CreateLimits | undefined, lowered: CreateLimits | undefined): unknown {
  const code = (error as { code?: string }).code;
  if (!original || !lowered || original === lowered || (code !== 'PGLAC' && code !== 'PGLRL')) return error;
  const { retry_after: retryAfter = 60 } = JSON.parse((error as { detail?: string }).detail ?? '{}') as { retry_after?: number };
  const message =
    code === 'PGLAC'
      ? `client ${clientIp} has ${original.activePerClient} live leases counting every host (${original.activePerClient - lowered.activePerClient} on others), the most a client may hold (PGLEASE_MAX_ACTIVE=${original.activePerClient}); release one or wait until one expires`
      : `client ${clientIp} created ${original.perHour} leases in the last hour counting every host (${original.perHour - lowered.perHour} on others), the most allowed (PGLEASE_RATE_LIMIT=${original.perHour})`;
  return new ControlError('PGLEASE_RATE_LIMITED', message, undefined, { 'Retry-After': retryAfter });
}
