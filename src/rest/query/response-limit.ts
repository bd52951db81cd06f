/**
 * The most a REST response body may weigh, and the SQL that enforces it.
 */

/**
 * The most a response body may weigh (bytes). A bigger one fails in Postgres, before it is sent:
 * the driver holds a field as one JavaScript string, and past 512 MiB it cannot make one (the
 * process would end); long before that, a few such responses at once would take gigabytes.
 */
export const RESPONSE_LIMIT_BYTES = 128 * 1024 * 1024;
/** How a body over the limit fails: an integer cast of this text (toErrorResponse, ../response/errors.ts, answers it). */
export const RESPONSE_LIMIT_MARK = 'pglease: response body of ';

/**
 * `body` (a text expression), or an error when it weighs more than RESPONSE_LIMIT_BYTES. The
 * check is written out here rather than called: a lease can define functions of its own, but not
 * change what pg_catalog's length and casts do. The aggregate inside is computed once.
 */
export function cappedBody(body: string): string {
  return (
    `CASE WHEN pg_catalog.octet_length(${body}) > ${RESPONSE_LIMIT_BYTES} ` +
    `THEN ('${RESPONSE_LIMIT_MARK}' || pg_catalog.octet_length(${body}) || ' bytes')::pg_catalog.int4::pg_catalog.text ` +
    `ELSE ${body} END`
  );
}

