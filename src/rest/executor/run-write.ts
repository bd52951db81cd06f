/**
 * Executes a write: the request settings (role, request.* settings) and the write statement in one
 * transaction, ended as the plan asks (./transaction.ts); returns what the response needs.
 */
import type { Statement } from '../query/read-query.js';
import type { WriteResult } from '../response/write-response.js';
import type { LeaseAccess } from './lease-directory.js';
import type { LeasePools } from './lease-pools.js';
import type { PipelineStep, StepRows } from './pipeline.js';
import { runTransaction } from './transaction.js';

export interface RunWriteOptions {
  rollback: boolean;
  /** Throws to undo the write (PostgREST's checks of a result before it commits). */
  check?: (result: WriteResult) => void;
}

function writeResult(rows: StepRows[]): WriteResult {
  const row = rows[rows.length - 1]![0]!;
  return {
    page: Number(row[0]),
    body: row[1] ?? null,
    location: row[2] ?? null,
    inserted: row[3] === null || row[3] === undefined ? null : Number(row[3]),
    responseHeaders: row[4] ?? null,
    responseStatus: row[5] ?? null,
  };
}

/** `preamble`: the request settings and the pre-request call (./request-settings.ts). */
export async function runWrite(pools: LeasePools, lease: LeaseAccess, preamble: PipelineStep[], statement: Statement, options: RunWriteOptions): Promise<WriteResult> {
  const check = options.check;
  const rows = await runTransaction(pools, lease, [...preamble, statement], {
    rollback: options.rollback,
    check: check ? (stepRows) => check(writeResult(stepRows)) : undefined,
  });
  return writeResult(rows);
}
