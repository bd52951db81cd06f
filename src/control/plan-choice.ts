/**
 * Which plan a new lease gets (pglease.plans), decided here and nowhere else, so that telling a
 * developer's own machine from a stranger (the newcomer issue) changes one function.
 *
 *   - a plan named in the create: the admin may pick any; a caller with a lease token only one whose
 *     token_may_choose is set; an anonymous caller none (403);
 *   - otherwise 'default' (1 GB) for the admin, lease-token callers and the developer on their own
 *     machine (isLocalDeveloper, src/control/rate-limit.ts: the rule the per-client limits follow):
 *     a developer's own test suite must never trip over limits meant for strangers; and 'network'
 *     (100 MB, 10,000 rows) for anonymous clients from elsewhere.
 */
import type { Caller } from './auth.js';

export const DEFAULT_PLAN = 'default';
export const NETWORK_PLAN = 'network';

export interface PlanChoice {
  plan: string;
  /** true: the plan must allow token holders to choose it (token_may_choose), checked against the table. */
  needsTokenChoice: boolean;
}

/** The plan of a create, or the reason (a message for PGLEASE_FORBIDDEN) it may not have the one asked for. */
export function choosePlan(requested: string | undefined, caller: Caller, localDeveloper: boolean): PlanChoice | { refused: string } {
  if (requested !== undefined) {
    if (caller.kind === 'admin') return { plan: requested, needsTokenChoice: false };
    if (caller.kind === 'token') return { plan: requested, needsTokenChoice: true };
    return { refused: 'choosing a plan needs the admin token or a lease token' };
  }
  if (caller.kind === 'anonymous' && !localDeveloper) return { plan: NETWORK_PLAN, needsTokenChoice: false };
  return { plan: DEFAULT_PLAN, needsTokenChoice: false };
}
