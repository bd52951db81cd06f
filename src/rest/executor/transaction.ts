/**
 * How a write (or a function call) ends its transaction:
 *
 * - plain: one round trip, the implicit transaction of the pipeline commits at its Sync;
 * - Prefer: tx=rollback: `BEGIN ... SET CONSTRAINTS ALL IMMEDIATE; ROLLBACK` in the same round trip,
 *   so deferred constraints still answer and nothing is kept;
 * - checked: `BEGIN ...` in one round trip, then `check` looks at the results and the transaction
 *   commits, or rolls back when it throws (PostgREST undoes a PUT that matched no row, a result
 *   that is not the single object asked for, more rows than max-affected): a second round trip,
 *   paid only by the requests that ask for such a check.
 */
import type pg from 'pg';
import type { LeaseAccess } from './lease-directory.js';
import { breaksConnection, type LeasePools } from './lease-pools.js';
import { Pipeline, type PipelineStep, type StepRows } from './pipeline.js';

const BEGIN: PipelineStep = { text: 'BEGIN', values: [] };
const IMMEDIATE: PipelineStep = { text: 'SET CONSTRAINTS ALL IMMEDIATE', values: [] };
const ROLLBACK: PipelineStep = { text: 'ROLLBACK', values: [] };

export interface TransactionOptions {
  rollback: boolean;
  /** Throws to roll the transaction back; the error is what the request answers. */
  check?: (rows: StepRows[]) => void;
}


/** The rows of each of `steps`, in order. */
export async function runTransaction(pools: LeasePools, lease: LeaseAccess, steps: PipelineStep[], options: TransactionOptions): Promise<StepRows[]> {
  if (options.rollback) {
    const rows = await pools.run(lease, [BEGIN, ...steps, IMMEDIATE, ROLLBACK], { explicitTransaction: true });
    const stepRows = rows.slice(1, 1 + steps.length);
    options.check?.(stepRows);
    return stepRows;
  }
  if (!options.check) return pools.run(lease, steps);

  const pool = pools.pool(lease);
  const acquired = pool.acquire();
  const client = acquired instanceof Promise ? await acquired : acquired;
  let broken: Error | undefined;
  const settle = async (command: 'COMMIT' | 'ROLLBACK') => {
    try {
      await client.query(command);
    } catch (error) {
      if (breaksConnection(error)) broken = error as Error;
      throw error;
    }
  };
  try {
    let rows: StepRows[];
    try {
      const pipeline = new Pipeline([BEGIN, ...steps]);
      client.query(pipeline as unknown as pg.QueryConfig);
      rows = (await pipeline.result).slice(1);
    } catch (error) {
      if (breaksConnection(error)) broken = error as Error;
      else await settle('ROLLBACK');
      throw error;
    }
    try {
      options.check(rows);
    } catch (error) {
      await settle('ROLLBACK');
      throw error;
    }
    // a deferred constraint that fails here ends the transaction: its error is the answer
    await settle('COMMIT');
    return rows;
  } finally {
    pool.release(client, broken);
  }
}
