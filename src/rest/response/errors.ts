/**
 * Every error the REST API answers, in PostgREST's shape `{ code, message, details, hint }`, and
 * the one place that decides HTTP statuses: PostgREST's own PGRST codes (declared once below) and
 * the SQLSTATE → status mapping PostgREST 12 applies to errors raised by Postgres.
 */

import { RESPONSE_LIMIT_BYTES, RESPONSE_LIMIT_MARK } from '../query/response-limit.js';

/** PostgREST's codes (and pglease's own, for lease lookup), each with the status it answers. */
export const restErrors = {
  PGRST000: { status: 503, message: 'Database connection error. Retrying the connection.' },
  PGRST002: { status: 503, message: 'Could not query the database for the schema cache. Retrying.' },
  PGRST003: { status: 504, message: 'Timed out acquiring connection from connection pool.' },
  PGRST100: { status: 400, message: 'Could not parse the query string' },
  PGRST101: { status: 405, message: 'Cannot use this method on RPC' },
  PGRST102: { status: 400, message: 'Invalid request body' },
  PGRST103: { status: 416, message: 'Requested range not satisfiable' },
  PGRST105: { status: 405, message: "Filters must include all and only primary key columns with 'eq' operators" },
  PGRST106: { status: 406, message: 'Invalid schema' },
  PGRST107: { status: 406, message: 'None of these media types are available' },
  PGRST108: { status: 400, message: 'Not an embedded resource in this request' },
  PGRST109: { status: 400, message: "A 'limit' was applied without an explicit 'order'" },
  PGRST110: { status: 400, message: 'The maximum number of rows allowed to change was surpassed' },
  PGRST111: { status: 500, message: 'response.headers guc must be a JSON array composed of objects with a single key and a string value' },
  PGRST112: { status: 500, message: 'response.status guc must be a valid status code' },
  PGRST114: { status: 400, message: 'limit/offset querystring parameters are not allowed for PUT' },
  PGRST115: { status: 400, message: 'Payload values do not match URL in primary key column(s)' },
  PGRST116: { status: 406, message: 'Cannot coerce the result to a single JSON object' },
  PGRST117: { status: 405, message: 'Unsupported HTTP method' },
  PGRST118: { status: 400, message: 'A related order is not possible' },
  PGRST119: { status: 400, message: 'A spread operation is not possible' },
  PGRST120: { status: 400, message: 'Bad operator on an embedded resource' },
  PGRST121: { status: 500, message: 'Could not parse JSON in the "RAISE SQLSTATE \'PGRST\'" error' },
  PGRST122: { status: 400, message: 'Invalid preferences given with handling=strict' },
  PGRST123: { status: 400, message: 'Use of aggregate functions is not allowed' },
  PGRST124: { status: 400, message: 'Query result exceeds max-affected preference constraint' },
  PGRST125: { status: 404, message: 'Invalid path specified in request URL' },
  PGRST126: { status: 404, message: 'Root endpoint metadata is disabled' },
  PGRST200: { status: 400, message: 'Could not find a relationship in the schema cache' },
  PGRST201: { status: 300, message: 'Could not embed because more than one relationship was found' },
  PGRST202: { status: 404, message: 'Could not find the function in the schema cache' },
  PGRST203: { status: 300, message: 'Could not choose the best candidate function' },
  PGRST204: { status: 400, message: 'Could not find the column in the schema cache' },
  PGRST205: { status: 404, message: 'Could not find the table in the schema cache' },
  PGRST300: { status: 500, message: 'Server lacks JWT secret' },
  PGRST301: { status: 401, message: 'The token is not valid for this lease' },
  // Postgres's duplicate_alias, as PostgREST's SQL meets it when one level embeds the same name twice
  '42712': { status: 400, message: 'table name specified more than once' },
  // what Postgres answers SET ROLE of a role that does not exist, which PostgREST 12 answers 401:
  // a JWT naming a role the lease did not declare (src/auth/roles.ts)
  '22023': { status: 401, message: 'role does not exist' },
  PGLEASE_NOT_FOUND: { status: 404, message: 'No live lease with this id' },
  PGLEASE_BODY_TOO_LARGE: { status: 413, message: 'The request body is too large' },
  PGLEASE_RESPONSE_TOO_LARGE: { status: 400, message: 'The response would be too large' },
  PGLEASE_INTERNAL: { status: 500, message: 'Internal error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type RestErrorCode = keyof typeof restErrors;

/** `details` is a string in most errors, a list of candidate relationships in PGRST201. */
export type ErrorDetails = string | readonly unknown[] | null;

export interface RestErrorBody {
  code: string;
  message: string;
  details: ErrorDetails;
  hint: string | null;
}

/** An error the REST pipeline raises on purpose: it carries its final status, body and headers. */
export class RestError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(
    readonly code: RestErrorCode,
    message?: string,
    readonly details: ErrorDetails = null,
    readonly hint: string | null = null,
    options: { status?: number; headers?: Record<string, string> } = {},
  ) {
    super(message ?? restErrors[code].message);
    this.name = 'RestError';
    this.status = options.status ?? restErrors[code].status;
    this.headers = options.headers ?? {};
  }

  toJSON(): RestErrorBody {
    return { code: this.code, message: this.message, details: this.details, hint: this.hint };
  }

  toResponse(): ErrorResponse {
    return { status: this.status, headers: this.headers, body: this.toJSON() };
  }
}

/** A PGRST100 for a query string piece that does not parse (PostgREST's wording and shape). */
export function queryParseError(what: string, input: string, position: number, details: string): RestError {
  return new RestError('PGRST100', `"failed to parse ${what} (${input})" (line 1, column ${position + 1})`, details);
}

/** What node-postgres reports for an error the server sent. */
export interface PgServerError {
  code?: string;
  message: string;
  detail?: string;
  hint?: string;
}

export function isPgServerError(error: unknown): error is PgServerError & Error {
  const code = (error as { code?: unknown } | null)?.code;
  return error instanceof Error && typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && 'severity' in error;
}

/**
 * PostgREST 12's SQLSTATE → HTTP status mapping. `authenticated` tells 42501 apart: a request
 * without a token gets 401 (it may succeed with one), a request with a token 403.
 */
export function statusForSqlState(code: string, message: string, authenticated: boolean): number {
  switch (code) {
    case '23503':
    case '23505':
      return 409;
    case '25006':
      return 405;
    case '21000':
      return message.endsWith('requires a WHERE clause') ? 400 : 500;
    case '22023':
      return message.startsWith('role') && message.endsWith('does not exist') ? 401 : 400;
    case '53400':
      return 500;
    case '57P01':
    // crash_shutdown and cannot_connect_now: the server restarting after a crash, a connection
    // problem as PostgREST sees it (it never gets a session), so 503 like 57P01 and 08xxx
    case '57P02':
    case '57P03':
      return 503;
    case 'P0001':
      return 400;
    case '42883':
      return message.startsWith('function xmlagg(') ? 406 : 404;
    case '42P01':
      return 404;
    case '42P17':
      return 500;
    case '42501':
      return authenticated ? 403 : 401;
  }
  // RAISE SQLSTATE 'PT402' answers 402; PT followed by anything but a number is a 500
  if (code.startsWith('PT')) return /^PT[1-5]\d\d$/.test(code) ? Number(code.slice(2)) : 500;
  switch (code.slice(0, 2)) {
    case '08':
      return 503;
    case '0L':
    case '0P':
    case '28':
      return 403;
    case '09':
    case '25':
    case '2D':
    case '38':
    case '39':
    case '3B':
    case '40':
    case '54':
    case '55':
    case '57':
    case '58':
    case 'F0':
    case 'HV':
    case 'P0':
    case 'XX':
      return 500;
    case '53':
      return 503;
  }
  return 400;
}

/** Node/network failures that mean "the database is unreachable" rather than a bug. */
// PGLEASE_POOL_CLOSED: the lease's pool closed while the request waited (executor/connection-pool.ts)
const CONNECTION_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'PGLEASE_POOL_CLOSED']);

export interface ErrorResponse {
  status: number;
  headers: Record<string, string>;
  body: RestErrorBody;
}

/**
 * `RAISE SQLSTATE 'PGRST' USING message = '{"code":..,"message":..,"details":..,"hint":..}',
 * detail = '{"status":402,"status_text":..,"headers":{..}}'`: the function chooses the whole answer.
 * JSON that does not have that shape is PGRST121.
 */
function raisedResponse(error: PgServerError): ErrorResponse {
  const parse = (text: string): Record<string, unknown> | undefined => {
    try {
      const value: unknown = JSON.parse(text);
      return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  };
  const optionalText = (value: unknown) => value === undefined || value === null || typeof value === 'string';
  const detailHint = "DETAIL must be a JSON object with obligatory keys: 'status', 'headers' and optional key: 'status_text'.";
  const body = parse(error.message);
  if (!body || typeof body.code !== 'string' || typeof body.message !== 'string' || !optionalText(body.details) || !optionalText(body.hint)) {
    const hint = "MESSAGE must be a JSON object with obligatory keys: 'code', 'message' and optional keys: 'details', 'hint'.";
    return new RestError('PGRST121', undefined, `Invalid JSON value for MESSAGE: '${error.message}'`, hint).toResponse();
  }
  if (error.detail === undefined) return new RestError('PGRST121', undefined, 'DETAIL is missing in the RAISE statement', detailHint).toResponse();
  const detail = parse(error.detail);
  const headers = detail?.headers;
  const validHeaders = typeof headers === 'object' && headers !== null && !Array.isArray(headers) && Object.values(headers).every((value) => typeof value === 'string');
  if (!detail || !Number.isInteger(detail.status) || !optionalText(detail.status_text) || !validHeaders) {
    return new RestError('PGRST121', undefined, `Invalid JSON value for DETAIL: '${error.detail}'`, detailHint).toResponse();
  }
  const status = detail.status as number;
  return {
    // Fastify refuses statuses outside 100-599
    status: status >= 100 && status <= 599 ? status : 500,
    headers: headers as Record<string, string>,
    body: { code: body.code, message: body.message, details: (body.details as string | undefined) ?? null, hint: (body.hint as string | undefined) ?? null },
  };
}

/**
 * Turns anything thrown while serving a REST request into PostgREST's response. Unknown errors
 * become 500 PGLEASE_INTERNAL; the caller logs those.
 */
export function toErrorResponse(error: unknown, authenticated: boolean): ErrorResponse {
  if (error instanceof RestError) return error.toResponse();
  if (isPgServerError(error) && error.code === 'PGRST') return raisedResponse(error);
  if (isPgServerError(error) && error.code === '22P02' && error.message.includes(RESPONSE_LIMIT_MARK)) {
    const bytes = /(\d+) bytes/.exec(error.message)?.[1] ?? 'more';
    return new RestError(
      'PGLEASE_RESPONSE_TOO_LARGE',
      `The response would be ${bytes} bytes; pglease sends at most ${RESPONSE_LIMIT_BYTES}`,
      null,
      'Ask for fewer rows (limit=, offset=, Range) or fewer columns (select=)',
    ).toResponse();
  }
  if (isPgServerError(error)) {
    const status = statusForSqlState(error.code!, error.message, authenticated);
    const headers: Record<string, string> = status === 401 ? { 'WWW-Authenticate': 'Bearer' } : status === 503 ? { 'Retry-After': '5' } : {};
    return { status, headers, body: { code: error.code!, message: error.message, details: error.detail ?? null, hint: error.hint ?? null } };
  }
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new RestError('PGLEASE_BODY_TOO_LARGE', message).toResponse();
  // Query read timeout: the service pool's query_timeout (src/db/host.ts), on a server that stopped answering
  if ((typeof code === 'string' && CONNECTION_ERROR_CODES.has(code)) || /Connection terminated|connection timeout|Client has encountered a connection error|^Query read timeout$/i.test(message)) {
    return { status: 503, headers: { 'Retry-After': '5' }, body: { code: 'PGRST000', message: restErrors.PGRST000.message, details: message, hint: null } };
  }
  if (/timeout exceeded when trying to connect/i.test(message)) {
    return { status: 504, headers: {}, body: { code: 'PGRST003', message: restErrors.PGRST003.message, details: null, hint: null } };
  }
  return { status: 500, headers: {}, body: { code: 'PGLEASE_INTERNAL', message: restErrors.PGLEASE_INTERNAL.message, details: null, hint: null } };
}
