/**
 * Executes a read plan: the request settings (and pre-request call), (for a planned count) an EXPLAIN of the count, and
 * the read statement, in one round trip; returns what the response needs, body text untouched.
 */
import type { ReadPlan } from '../plan/types.js';
import { plannedCountStatement, readStatement } from '../query/read-query.js';
import type { ReadResult } from '../response/read-response.js';
import type { LeaseAccess } from './lease-directory.js';
import type { LeasePools } from './lease-pools.js';
import type { PipelineStep } from './pipeline.js';

/** "Plan Rows" of the top plan node of `EXPLAIN (FORMAT JSON)` output. */
export function planRows(explainJson: string): number {
  const plans = JSON.parse(explainJson) as { Plan?: { 'Plan Rows'?: number } }[];
  return Math.round(plans[0]?.Plan?.['Plan Rows'] ?? 0);
}

/** The statements of a read after the request settings: (a planned count's EXPLAIN, then) the read. */
export function compileRead(plan: ReadPlan): PipelineStep[] {
  return plan.count === 'planned' ? [plannedCountStatement(plan), readStatement(plan)] : [readStatement(plan)];
}

/** `preamble`: the request settings and the pre-request call (./request-settings.ts). */
export async function runRead(pools: LeasePools, lease: LeaseAccess, preamble: PipelineStep[], plan: ReadPlan, compiled: PipelineStep[] = compileRead(plan)): Promise<ReadResult> {
  const results = await pools.run(lease, [...preamble, ...compiled]);
  const row = results[results.length - 1]![0]!;
  const page = Number(row[1]);
  let total = row[0] === null ? null : Number(row[0]);
  if (plan.count === 'planned') total = planRows(String(results[preamble.length]![0]![0]));
  return { total, page, body: row[2] ?? null, responseHeaders: row[3] ?? null, responseStatus: row[4] ?? null };
}
