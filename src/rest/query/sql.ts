/**
 * SQL text building blocks: identifiers quoted once here, literals only for values the grammar
 * restricts (JSON keys), and every request value as a numbered bind parameter.
 */
import { RestError } from '../response/errors.js';

/** Postgres cannot hold NUL in text or names; such input is refused before it reaches SQL. */
function refuseNul(text: string): void {
  if (text.includes('\u0000')) throw new RestError('PGRST100', 'The query string contains a NUL character', 'NUL (\\u0000) cannot be used in names or values');
}

/** Refuses a value Postgres could not take (PGRST100), as binding it through Params would. */
export function checkValue(text: string): void {
  refuseNul(text);
}

/**
 * The last two columns of every main statement: what the request's SQL left in response.headers
 * and response.status (a db_pre_request function, a view, a trigger, a called function), read
 * after the rest of the statement as PostgREST reads them (response/response-settings.ts).
 */
export const RESPONSE_SETTINGS_SQL =
  `pg_catalog.current_setting('response.headers', true) AS "response_headers", pg_catalog.current_setting('response.status', true) AS "response_status"`;

export function ident(name: string): string {
  refuseNul(name);
  return `"${name.replace(/"/g, '""')}"`;
}

/** A string literal; standard_conforming_strings is on, so only quotes need doubling. */
export function literal(text: string): string {
  refuseNul(text);
  return `'${text.replace(/'/g, "''")}'`;
}

/** The bind parameters of one statement: `add` returns the placeholder to write in its place. */
export class Params {
  readonly values: (string | null)[] = [];

  add(value: string | null): string {
    if (value !== null) refuseNul(value);
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

/** A Postgres array literal (`{"a","b\"c"}`) from a list of values. */
export function arrayLiteral(values: readonly string[]): string {
  return `{${values.map((value) => `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`).join(',')}}`;
}
