/**
 * Executes a function call: the request settings (read-only for GET and for stable or immutable
 * functions) and the call statement in one transaction, ended as the plan asks (./transaction.ts).
 */
import type { Statement } from '../query/read-query.js';
import type { ReadResult } from '../response/read-response.js';
import type { LeaseAccess } from './lease-directory.js';
import type { LeasePools } from './lease-pools.js';
import type { PipelineStep, StepRows } from './pipeline.js';
import { runTransaction } from './transaction.js';

export interface RunRpcOptions {
  rollback: boolean;
  /** Throws to undo what the function did (PostgREST's checks of a result before it commits). */
  check?: (result: ReadResult) => void;
}

function callResult(rows: StepRows[]): ReadResult {
  const row = rows[rows.length - 1]![0]!;
  return {
    total: row[0] === null || row[0] === undefined ? null : Number(row[0]),
    page: Number(row[1]),
    body: row[2] ?? null,
    responseHeaders: row[3] ?? null,
    responseStatus: row[4] ?? null,
  };
}

/** `preamble`: the request settings and the pre-request call (./request-settings.ts). */
export async function runRpc(pools: LeasePools, lease: LeaseAccess, preamble: PipelineStep[], statement: Statement, options: RunRpcOptions): Promise<ReadResult> {
  const check = options.check;
  const rows = await runTransaction(pools, lease, [...preamble, statement], {
    rollback: options.rollback,
    check: check ? (stepRows) => check(callResult(stepRows)) : undefined,
  });
  return callResult(rows);
}
