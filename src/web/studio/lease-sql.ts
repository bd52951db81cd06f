/**
 * The studio's SQL box: one statement a lease holder wrote, run as the lease's own role.
 *
 * What it guarantees, and why:
 * - It never runs on the service's pool: the statement is lease-written code by definition. It runs
 *   on a session that *logged in* as the lease's REST authenticator (`<lease>_auth`, see
 *   src/leases/lease-session.ts), which then takes the lease role for the transaction
 *   (`set_config('role', …, true)`). Whatever the statement does, it does with the lease's rights;
 *   `SET ROLE` to the service role is refused by Postgres (the authenticator is a member of the
 *   lease's two roles only), and so are `pglease.leases` and `COPY … TO PROGRAM`.
 * - One statement: it is sent with the extended protocol (Parse/Bind/Execute), which Postgres
 *   refuses for text holding several statements ("cannot insert multiple commands into a prepared
 *   statement"), so `SELECT 1; RESET ROLE` cannot smuggle a second one.
 * - Read-only unless the caller confirmed a write: the transaction is `BEGIN READ ONLY`, and the
 *   statement cannot lift that (Postgres refuses `transaction_read_only = off` after the first query).
 * - The role stays the lease's: statements that change the session's identity or settings (`SET`,
 *   `RESET`, `DISCARD`) or end our transaction (`COMMIT`, `ROLLBACK`, …) are refused before they are
 *   sent, and after the statement the session must still be the authenticator acting as the lease
 *   role, else the transaction is rolled back and the answer is a refusal (a `set_config('role', …)`
 *   inside a SELECT is caught there). The authenticator itself is NOINHERIT: it holds no rights of
 *   its own beyond PUBLIC's, so nothing run before that check reaches more than the lease could.
 * - Bounded: statement_timeout and lock_timeout in the transaction, a client-side deadline a little
 *   longer (which closes the session), and at most MAX_ROWS rows read: the portal is executed with
 *   a row limit and left suspended, so a `SELECT` of millions of rows costs MAX_ROWS rows of memory.
 * - The session is closed after the statement: nothing it leaves behind reaches anything else.
 */
import pg from 'pg';
import { authenticatorLogin, withLeaseSession } from '../../leases/lease-session.js';
import type { LeaseRow } from '../../leases/lease-store.js';

/** Rows sent back at most: a grid of a few thousand rows is as much as a person reads. */
export const MAX_ROWS = 1_000;
/** The statement's budget; the client gives up (closing the session) a little later. */
const STATEMENT_TIMEOUT_MS = 10_000;
const CLIENT_DEADLINE_MS = STATEMENT_TIMEOUT_MS + 5_000;
const LOCK_TIMEOUT_MS = 2_000;
/** Longest statement accepted: a box, not a migration tool. */
export const MAX_SQL_LENGTH = 100_000;

export interface SqlColumn {
  name: string;
  /** Postgres's name of the column's type (format_type), or its OID when the catalog has no name. */
  type: string;
}

export interface SqlResult {
  /** The command tag's verb (`SELECT`, `INSERT`, …); null when the rows were cut at MAX_ROWS. */
  command: string | null;
  columns: SqlColumn[];
  /** Rows as arrays in column order (two columns may share a name). */
  rows: unknown[][];
  /** Rows the statement returned or touched, when Postgres said. */
  rowCount: number | null;
  /** More rows than MAX_ROWS: only the first MAX_ROWS are here. */
  truncated: boolean;
}

/** Why a statement was not run at all. */
export class SqlRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SqlRefusedError';
  }
}

/** The first word of a statement, past whitespace and comments, upper-cased ('' for none). */
export function leadingKeyword(sql: string): string {
  let rest = sql;
  for (;;) {
    const trimmed = rest.replace(/^\s+/, '');
    if (trimmed.startsWith('--')) {
      const end = trimmed.indexOf('\n');
      rest = end < 0 ? '' : trimmed.slice(end + 1);
    } else if (trimmed.startsWith('/*')) {
      // block comments nest in Postgres
      let depth = 0;
      let i = 0;
      for (; i < trimmed.length; i++) {
        if (trimmed.startsWith('/*', i)) {
          depth++;
          i++;
        } else if (trimmed.startsWith('*/', i)) {
          depth--;
          i++;
          if (depth === 0) break;
        }
      }
      rest = trimmed.slice(i + 1);
    } else {
      rest = trimmed;
      break;
    }
  }
  return (/^[A-Za-z_]+/.exec(rest)?.[0] ?? '').toUpperCase();
}

/** Statements that would change who the session is or end its transaction. */
const REFUSED = new Map<string, string>([
  ['SET', 'SET changes the session (its role included): the SQL box runs as the lease role, with its settings'],
  ['RESET', 'RESET changes the session (its role included): the SQL box runs as the lease role, with its settings'],
  ['DISCARD', 'DISCARD resets the session: the SQL box runs as the lease role, with its settings'],
  ['BEGIN', 'The SQL box runs each statement in its own transaction: leave out BEGIN, COMMIT and ROLLBACK'],
  ['START', 'The SQL box runs each statement in its own transaction: leave out BEGIN, COMMIT and ROLLBACK'],
  ['COMMIT', 'The SQL box runs each statement in its own transaction: leave out BEGIN, COMMIT and ROLLBACK'],
  ['END', 'The SQL box runs each statement in its own transaction: leave out BEGIN, COMMIT and ROLLBACK'],
  ['ROLLBACK', 'The SQL box runs each statement in its own transaction: leave out BEGIN, COMMIT and ROLLBACK'],
  ['ABORT', 'The SQL box runs each statement in its own transaction: leave out BEGIN, COMMIT and ROLLBACK'],
  ['SAVEPOINT', 'The SQL box runs each statement in its own transaction: savepoints have no use there'],
  ['RELEASE', 'The SQL box runs each statement in its own transaction: savepoints have no use there'],
  ['PREPARE', 'The SQL box runs each statement in its own transaction: PREPARE has no use there'],
]);

/**
 * A pg query that reads at most `maxRows` rows: the portal is executed with that row limit, and
 * when Postgres suspends it (more rows are left) the query ends there instead of fetching more.
 */
class CappedQuery extends pg.Query {
  truncated = false;
  constructor(text: string, maxRows: number) {
    super({ text, values: [], rows: maxRows, rowMode: 'array', queryMode: 'extended' } as pg.QueryConfig);
  }

  /** Replaces node-postgres's fetch of the next rows: the transaction ends with the portal unread. */
  handlePortalSuspended(connection: { sync(): void }): void {
    this.truncated = true;
    connection.sync();
  }
}

interface PgQueryResult {
  command: string | null;
  rowCount: number | null;
  fields: { name: string; dataTypeID: number }[];
  rows: unknown[][];
}

function runCapped(session: pg.Client, text: string): Promise<{ result: PgQueryResult; truncated: boolean }> {
  const query = new CappedQuery(text, MAX_ROWS + 1);
  return new Promise((resolve, reject) => {
    // node-postgres calls back a Submittable's `callback` when it is done
    (query as unknown as { callback: (error: Error | null, result: PgQueryResult) => void }).callback = (error, result) => {
      if (error) return reject(error);
      const truncated = query.truncated || result.rows.length > MAX_ROWS;
      resolve({ result: { ...result, rows: result.rows.slice(0, MAX_ROWS) }, truncated });
    };
    void session.query(query as unknown as pg.QueryConfig);
  });
}

/**
 * Runs `sql` (one statement) as the lease's role. Rejects with a SqlRefusedError for what it will
 * not run, and with Postgres's own error (a `code` SQLSTATE) for what failed.
 */
export async function runLeaseSql(
  databaseUrl: string,
  authenticatorKey: Buffer,
  lease: Pick<LeaseRow, 'auth_role' | 'role_name'>,
  sql: string,
  options: { write: boolean },
): Promise<SqlResult> {
  const keyword = leadingKeyword(sql);
  if (keyword === '') throw new SqlRefusedError('Write one SQL statement');
  const refusal = REFUSED.get(keyword);
  if (refusal) throw new SqlRefusedError(refusal);

  return withLeaseSession(databaseUrl, authenticatorLogin(authenticatorKey, lease.auth_role), async (session) => {
    const deadline = setTimeout(() => void session.end().catch(() => undefined), CLIENT_DEADLINE_MS);
    try {
      await session.query(options.write ? 'BEGIN' : 'BEGIN READ ONLY');
      await session.query(
        `SELECT set_config('role', $1, true), set_config('statement_timeout', $2, true), set_config('lock_timeout', $3, true)`,
        [lease.role_name, `${STATEMENT_TIMEOUT_MS}ms`, `${LOCK_TIMEOUT_MS}ms`],
      );
      const { result, truncated } = await runCapped(session, sql);
      // the statement may have been a set_config('role', …) in disguise: it did nothing the
      // authenticator could not, but what it returned is not the lease role's answer
      const { rows } = await session.query<{ same: boolean }>(
        `SELECT session_user = $1 AND current_user = $2 AND current_setting('transaction_read_only') = $3 AS same`,
        [lease.auth_role, lease.role_name, options.write ? 'off' : 'on'],
      );
      if (rows[0]?.same !== true) {
        await session.query('ROLLBACK');
        throw new SqlRefusedError('The statement changed the session’s role or settings: the SQL box runs as the lease role only');
      }
      await session.query(options.write ? 'COMMIT' : 'ROLLBACK');
      const types = await typeNames(session, result.fields.map((field) => field.dataTypeID));
      return {
        command: truncated ? 'SELECT' : result.command,
        columns: result.fields.map((field) => ({ name: field.name, type: types.get(field.dataTypeID) ?? String(field.dataTypeID) })),
        rows: result.rows,
        rowCount: truncated ? null : result.rowCount,
        truncated,
      };
    } finally {
      clearTimeout(deadline);
    }
  }, 'pglease-studio-sql');
}

/** format_type of each OID, read from the catalog after the transaction (as the authenticator). */
async function typeNames(session: pg.Client, oids: number[]): Promise<Map<number, string>> {
  if (oids.length === 0) return new Map();
  const { rows } = await session.query<{ oid: number; name: string }>(
    'SELECT t.oid::int AS oid, pg_catalog.format_type(t.oid, NULL) AS name FROM pg_catalog.pg_type t WHERE t.oid = ANY($1::oid[])',
    [oids],
  );
  return new Map(rows.map((row) => [row.oid, row.name]));
}
