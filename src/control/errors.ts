/**
 * Every error the control API (/v1/leases, /v1/jobs, health) can answer, declared once with its
 * stable code and HTTP status. Bodies are `{ code, message }`, plus `field` when one input is at fault.
 */
export const controlErrors = {
  PGLEASE_INVALID_JSON: { status: 400, message: 'The request body is not valid JSON' },
  PGLEASE_INVALID_FIELD: { status: 400, message: 'A field of the request is invalid' },
  PGLEASE_UNKNOWN_FIELD: { status: 400, message: 'The request has a field this endpoint does not accept' },
  PGLEASE_INVALID_PARAMETER: { status: 400, message: 'A query parameter is invalid' },
  PGLEASE_BAD_URL: { status: 400, message: 'The request URL is not valid: a % must be followed by two hex digits that decode to UTF-8' },
  PGLEASE_TEMPLATE_INVALID: { status: 400, message: 'The template SQL failed on a fresh lease' },
  PGLEASE_SQL_FAILED: { status: 400, message: 'The statement failed' },
  PGLEASE_SQL_REFUSED: { status: 400, message: 'The SQL box does not run this statement' },
  PGLEASE_UNAUTHORIZED: { status: 401, message: 'This endpoint needs a token: send "Authorization: Bearer <token>"' },
  PGLEASE_FORBIDDEN: { status: 403, message: 'This needs the admin token (PGLEASE_ADMIN_TOKEN)' },
  PGLEASE_NOT_FOUND: { status: 404, message: 'No such lease, or the token is not its own' },
  PGLEASE_ROUTE_NOT_FOUND: { status: 404, message: 'No such endpoint' },
  PGLEASE_TEMPLATE_NOT_FOUND: { status: 404, message: 'No such template visible to this token' },
  PGLEASE_JOB_NOT_FOUND: { status: 404, message: 'No such job' },
  PGLEASE_SNAPSHOT_NOT_FOUND: { status: 404, message: 'The lease has no snapshot of that name' },
  PGLEASE_PLAN_NOT_FOUND: { status: 404, message: 'No such plan' },
  PGLEASE_HOST_NOT_FOUND: { status: 404, message: 'No such host' },
  PGLEASE_TLS_OFF: { status: 404, message: 'The lease host does not use TLS: there is no CA to serve' },
  PGLEASE_METHOD_NOT_ALLOWED: { status: 405, message: 'This endpoint does not support that method' },
  PGLEASE_LEASE_NOT_ACTIVE: { status: 409, message: 'The lease is not active' },
  PGLEASE_FORK_NEEDS_DATABASE: { status: 409, message: 'Only a database lease can be forked' },
  PGLEASE_SNAPSHOT_LIMIT: { status: 409, message: 'The lease keeps as many snapshots as it may' },
  PGLEASE_LEASE_BUSY: { status: 409, message: 'The lease is busy: try again' },
  PGLEASE_JOB_DISABLED: { status: 409, message: 'The job is disabled' },
  PGLEASE_HOST_CONFLICT: { status: 409, message: 'The host cannot be added or removed as asked' },
  PGLEASE_PLAN_IN_USE: { status: 409, message: 'A lease is on this plan (live, or in the history until it is pruned)' },
  PGLEASE_BODY_TOO_LARGE: { status: 413, message: 'The request body is too large' },
  PGLEASE_UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'Send the request body as application/json' },
  PGLEASE_RATE_LIMITED: { status: 429, message: 'Too many leases for this client' },
  PGLEASE_CAPACITY: { status: 503, message: 'This pglease host is full' },
  PGLEASE_HOST_UNAVAILABLE: { status: 503, message: "The lease's host is not reachable" },
  PGLEASE_NOT_READY: { status: 503, message: 'The lease database is not reachable' },
  PGLEASE_INTERNAL: { status: 500, message: 'Internal error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ControlErrorCode = keyof typeof controlErrors;

export class ControlError extends Error {
  readonly status: number;
  constructor(
    readonly code: ControlErrorCode,
    message?: string,
    readonly field?: string,
    readonly headers: Record<string, string | number> = {},
  ) {
    super(message ?? controlErrors[code].message);
    this.name = 'ControlError';
    this.status = controlErrors[code].status;
  }

  toJSON(): { code: ControlErrorCode; message: string; field?: string } {
    return this.field === undefined ? { code: this.code, message: this.message } : { code: this.code, message: this.message, field: this.field };
  }
}

/** JSON schema of an error body, for route declarations and the OpenAPI document. */
export const controlErrorSchema = {
  type: 'object',
  required: ['code', 'message'],
  properties: {
    code: { type: 'string', enum: Object.keys(controlErrors) },
    message: { type: 'string' },
    field: { type: 'string' },
    // PGLEASE_TEMPLATE_INVALID and PGLEASE_SQL_FAILED: Postgres's own error and where in the template's SQL it happened
    postgres: {
      type: 'object',
      properties: {
        code: { type: 'string' },
        message: { type: 'string' },
        detail: { type: 'string' },
        hint: { type: 'string' },
        position: { type: 'integer' },
        line: { type: 'integer' },
        column: { type: 'integer' },
      },
    },
  },
} as const;
