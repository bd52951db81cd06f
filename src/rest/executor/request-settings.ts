/**
 * The first statements of every REST transaction: switch to the request's role and publish the
 * request to SQL the way PostgREST does (`current_setting('request.method')`, `request.path`,
 * `request.headers`, `request.jwt.claims`), all transaction-local. Reads also make the
 * transaction read-only, so a view calling a writing function fails (25006 → 405) as in PostgREST.
 *
 * Then, when the lease has a db_pre_request function, a call of it: as the request's role, after
 * the settings, before the main statement, in the same transaction (PostgREST's runPreReq, right
 * after setPgLocals). It is lease code, run on the lease's own connection as the request's role,
 * like every REST statement; an error it raises ends the request as any statement's would
 * (response/errors.ts: `PT403` is 403, `PGRST` chooses the whole answer).
 */
import type { ApiSettings } from '../../leases/api-settings.js';
import { ident } from '../query/sql.js';
import type { PipelineStep } from './pipeline.js';

export interface RequestSettings {
  role: string;
  /** request.jwt.claims as JSON (a JWT's claims); undefined: `{"role": <role>}`. */
  claims?: string | undefined;
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  readOnly: boolean;
  /** Prefer: timezone=..., already validated. */
  timezone?: string;
  /**
   * Publish request.method/path/headers/jwt.claims (default). The lease's schema cache knows
   * whether any of its SQL can read them (readsRequestSettings); if none can, only the role is
   * switched, which spares Postgres a fifth of the work of a small read.
   */
  publish?: boolean;
}

/** What the statements need to know of the lease: its schema and its db_pre_request. */
export interface RequestLease {
  schema: string;
  apiSettings: Pick<ApiSettings, 'db_pre_request'>;
}

const BASE =
  "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true), " +
  "set_config('request.method', $3, true), set_config('request.path', $4, true), set_config('request.headers', $5, true)";

const READ_WRITE = BASE;
const READ_ONLY = BASE + ", set_config('transaction_read_only', 'on', true)";

function headersJson(headers: RequestSettings['headers']): string {
  const flat: Record<string, string> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return JSON.stringify(flat);
}

const ROLE_ONLY = "SELECT set_config('role', $1, true)";
const ROLE_ONLY_READ_ONLY = ROLE_ONLY + ", set_config('transaction_read_only', 'on', true)";

/**
 * The statements before the main one: the settings, then the pre-request call if the lease has
 * one. A lease with a pre-request always publishes the request settings (its function is what
 * reads them, and the schema cache's readsRequestSettings does not look at it).
 */
export function requestSteps(lease: RequestLease, settings: RequestSettings): PipelineStep[] {
  const preRequest = lease.apiSettings.db_pre_request;
  if (preRequest === undefined) return [requestSettingsStep(settings)];
  return [requestSettingsStep({ ...settings, publish: true }), preRequestStep(preRequest, lease.schema)];
}

/**
 * `SELECT "schema"."fn"()`, an unqualified name in the lease's schema; names are taken as written,
 * as PostgREST takes db-pre-request (the setting's pattern allows no quotes or dots in them).
 */
export function preRequestStep(preRequest: string, leaseSchema: string): PipelineStep {
  const dot = preRequest.indexOf('.');
  const schema = dot === -1 ? leaseSchema : preRequest.slice(0, dot);
  const name = dot === -1 ? preRequest : preRequest.slice(dot + 1);
  return { text: `SELECT ${ident(schema)}.${ident(name)}()`, values: [] };
}

export function requestSettingsStep(settings: RequestSettings): PipelineStep {
  if (settings.publish === false && settings.timezone === undefined) {
    return { text: settings.readOnly ? ROLE_ONLY_READ_ONLY : ROLE_ONLY, values: [settings.role] };
  }
  let text = settings.readOnly ? READ_ONLY : READ_WRITE;
  const values: (string | null)[] = [settings.role, settings.claims ?? JSON.stringify({ role: settings.role }), settings.method, settings.path, headersJson(settings.headers)];
  if (settings.timezone !== undefined) {
    text += ", set_config('timezone', $6, true)";
    values.push(settings.timezone);
  }
  return { text, values };
}
