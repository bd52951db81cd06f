/**
 * Plans (pglease.plans, sql/plans.sql) as the service reads and changes them: one query each, on
 * the service pool. Which plan a create gets is src/control/plan-choice.ts's decision.
 */
import type pg from 'pg';

/** A row of pglease.plans; bigint columns arrive as strings and are turned into numbers here. */
export interface Plan {
  name: string;
  description: string;
  max_size_bytes: number;
  max_rows: number | null;
  max_connections: number | null;
  max_ttl_seconds: number | null;
  statement_timeout: string | null;
  token_may_choose: boolean;
  created_at: Date;
  updated_at: Date;
}

export type PlanInput = Omit<Plan, 'name' | 'created_at' | 'updated_at'>;

const PLAN_COLUMNS =
  'name, description, max_size_bytes::float8 AS max_size_bytes, max_rows::float8 AS max_rows, max_connections, max_ttl_seconds, statement_timeout, token_may_choose, created_at, updated_at';

export class PlanStore {
  constructor(private readonly pool: pg.Pool) {}

  async list(): Promise<Plan[]> {
    return (await this.pool.query<Plan>(`SELECT ${PLAN_COLUMNS} FROM pglease.plans ORDER BY max_size_bytes, name`)).rows;
  }

  async find(name: string): Promise<Plan | undefined> {
    return (await this.pool.query<Plan>(`SELECT ${PLAN_COLUMNS} FROM pglease.plans WHERE name = $1`, [name])).rows[0];
  }

  /**
   * Creates the plan or replaces its limits; true when it was created. Changed limits are put on
   * the live leases on it in the same transaction (sql/plans.sql, pglease.apply_plan_change;
   * `defaultStatementTimeout` stands in for a statement timeout the plan no longer sets).
   */
  async put(name: string, input: PlanInput, defaultStatementTimeout: string): Promise<{ plan: Plan; created: boolean; leasesUpdated: number }> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const { plan, created } = await this.upsert(client, name, input);
      const leasesUpdated = created
        ? 0
        : (await client.query<{ n: number }>('SELECT pglease.apply_plan_change($1, $2) AS n', [name, defaultStatementTimeout])).rows[0]!.n;
      await client.query('COMMIT');
      return { plan, created, leasesUpdated };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  private async upsert(client: pg.PoolClient, name: string, input: PlanInput): Promise<{ plan: Plan; created: boolean }> {
    const { rows } = await client.query<Plan & { created: boolean }>(
      `INSERT INTO pglease.plans AS p (name, description, max_size_bytes, max_rows, max_connections, max_ttl_seconds, statement_timeout, token_may_choose)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (name) DO UPDATE
         SET description = excluded.description, max_size_bytes = excluded.max_size_bytes, max_rows = excluded.max_rows,
             max_connections = excluded.max_connections, max_ttl_seconds = excluded.max_ttl_seconds,
             statement_timeout = excluded.statement_timeout, token_may_choose = excluded.token_may_choose, updated_at = now()
       RETURNING ${PLAN_COLUMNS.replace(/(^|, )(\w+)/g, '$1p.$2')}, (xmax = 0) AS created`,
      [name, input.description, input.max_size_bytes, input.max_rows, input.max_connections, input.max_ttl_seconds, input.statement_timeout, input.token_may_choose],
    );
    const { created, ...plan } = rows[0]!;
    return { plan, created };
  }

  /** 'deleted', 'missing', or 'in-use' (a lease, live or in the history, is on it). */
  async remove(name: string): Promise<'deleted' | 'missing' | 'in-use'> {
    try {
      const { rowCount } = await this.pool.query('DELETE FROM pglease.plans WHERE name = $1', [name]);
      return rowCount === 0 ? 'missing' : 'deleted';
    } catch (error) {
      if ((error as { code?: string }).code === '23503') return 'in-use';
      throw error;
    }
  }

  /** Puts plan `name` on a live lease (sql/plans.sql); false when the lease is no longer live. */
  async apply(leaseId: string, name: string): Promise<boolean> {
    const { rows } = await this.pool.query<{ id: string | null }>('SELECT (pglease.apply_plan($1, $2)).id AS id', [leaseId, name]);
    return rows[0]?.id !== null && rows[0]?.id !== undefined;
  }
}
