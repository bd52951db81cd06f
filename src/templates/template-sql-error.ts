/**
 * A template's seed SQL failed: Postgres's own error, with where in the SQL it happened. Raised by
 * the registration check and by a create's seed (both in a lease's own session, LeaseStore.runSeed).
 */

/** Postgres's own error of a seed, with where in the SQL. */
export class TemplateSqlError extends Error {
  constructor(
    readonly postgres: { code: string; message: string; detail?: string; hint?: string; position?: number; line?: number; column?: number },
  ) {
    super(postgres.message);
    this.name = 'TemplateSqlError';
  }
}

interface PgError {
  code?: string;
  message: string;
  detail?: string;
  hint?: string;
  position?: string;
  internalPosition?: string;
  internalQuery?: string;
}

/** Line and column (1-based) of a character offset (Postgres counts characters, not bytes). */
function lineAndColumn(sql: string, position: number): { line: number; column: number } {
  const before = Array.from(sql).slice(0, position - 1).join('');
  const lines = before.split('\n');
  return { line: lines.length, column: Array.from(lines[lines.length - 1]!).length + 1 };
}

/** Turns an error raised while seeding into a TemplateSqlError pointing into the template's SQL. */
export function templateSqlError(error: unknown, sql: string): TemplateSqlError | undefined {
  const pgError = error as PgError;
  if (typeof pgError?.code !== 'string' || !/^[0-9A-Z]{5}$/.test(pgError.code)) return undefined;
  // errors inside the registration check carry the template's SQL as their internal query; in the
  // lease's own session (a create's seed) the SQL is the query itself
  const offset =
    pgError.internalQuery === sql && pgError.internalPosition ? Number(pgError.internalPosition)
    : pgError.internalQuery === undefined && pgError.position ? Number(pgError.position)
    : undefined;
  return new TemplateSqlError({
    code: pgError.code,
    message: pgError.message,
    ...(pgError.detail ? { detail: pgError.detail } : {}),
    ...(pgError.hint ? { hint: pgError.hint } : {}),
    ...(offset ? { position: offset, ...lineAndColumn(sql, offset) } : {}),
  });
}

/**
 * A seed that failed while leasing (LeaseStore's seed throws a TemplateSqlError; a process of an
 * earlier version raised PGLTF with the original SQLSTATE as detail), as a TemplateSqlError;
 * undefined for any other error.
 */
export function leaseSeedError(error: unknown): TemplateSqlError | undefined {
  if (error instanceof TemplateSqlError) return error;
  const pgError = error as PgError;
  if (pgError?.code !== 'PGLTF') return undefined;
  return new TemplateSqlError({ code: pgError.detail ?? 'PGLTF', message: pgError.message });
}
