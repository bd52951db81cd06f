/**
 * PostgREST's execution plan of a read (`db-plan-enabled`, a per-lease setting): a GET or HEAD on a
 * table or view with `Accept: application/vnd.pgrst.plan+json` (or `+text`, or no suffix: text)
 * answers Postgres's EXPLAIN of the statement the same request would run, instead of its rows.
 * `options=analyze|verbose|settings|buffers|wal` adds EXPLAIN's options; `for="text/csv"` names
 * the media type the plan is for (application/json by default). The EXPLAIN runs like the read:
 * on the lease's connection, as the caller's role, in a read-only transaction, so ANALYZE (which
 * executes the read) can do no more than the read could.
 */
import { requestSteps } from './executor/request-settings.js';
import { planRead } from './plan/read-plan.js';
import { readStatement } from './query/read-query.js';
import { buildApiRequest } from './request/api-request.js';
import { parseAccept } from './request/headers.js';
import { RestError } from './response/errors.js';
import type { RestResponse } from './response/read-response.js';
import type { Caller, RestHttpRequest, RestService } from './rest-service.js';

const PLAN_MIME = /^application\/vnd\.pgrst\.plan(\+json|\+text)?$/;
const EXPLAIN_OPTIONS = ['analyze', 'verbose', 'settings', 'buffers', 'wal'] as const;
type ExplainOption = (typeof EXPLAIN_OPTIONS)[number];

export interface PlanRequest {
  format: 'json' | 'text';
  /** The media type whose statement is explained. */
  for: string;
  options: ExplainOption[];
}

/** The plan media type the Accept header asks for first, if any. */
export function planRequestOf(accept: string | string[] | undefined): PlanRequest | undefined {
  if (accept === undefined || !String(accept).includes('vnd.pgrst.plan')) return undefined;
  const first = parseAccept(accept)[0]!;
  const [mime, ...params] = first.split(';');
  const match = PLAN_MIME.exec(mime!);
  if (!match) return undefined;
  const plan: PlanRequest = { format: match[1] === '+json' ? 'json' : 'text', for: 'application/json', options: [] };
  for (const param of params) {
    const [name, value = ''] = param.split('=');
    if (name === 'for') plan.for = value.replace(/^"|"$/g, '');
    if (name === 'options') {
      for (const option of value.split('|')) {
        if (!(EXPLAIN_OPTIONS as readonly string[]).includes(option)) {
          throw new RestError('PGRST107', `None of these media types are available: ${mime}; options=${value}`);
        }
        plan.options.push(option as ExplainOption);
      }
    }
  }
  return plan;
}

export async function serveExplain(service: RestService, caller: Caller, http: RestHttpRequest, relationName: string, planRequest: PlanRequest): Promise<RestResponse> {
  const request = buildApiRequest({
    ...http,
    headers: { ...http.headers, accept: planRequest.for },
    authenticated: caller.authenticated,
    maxRows: caller.lease.apiSettings.db_max_rows,
    aggregatesEnabled: caller.lease.apiSettings.db_aggregates_enabled === true,
  });
  const plan = await service.withSchema(caller, Date.now(), (cache) => planRead(cache, request, relationName));
  const statement = readStatement(plan);
  const options = [`FORMAT ${planRequest.format.toUpperCase()}`, ...planRequest.options.map((option) => option.toUpperCase())];
  const preamble = requestSteps(caller.lease, { role: caller.role, claims: caller.claims, method: http.method, path: http.path, headers: http.headers, readOnly: true });
  const results = await service.pools.run(caller.lease, [...preamble, { text: `EXPLAIN (${options.join(', ')}) ${statement.text}`, values: statement.values }]);
  const lines = results[preamble.length]!.map((row) => row[0] ?? '');
  const body = planRequest.format === 'json' ? lines.join('') : lines.join('\n');
  const optionsParam = planRequest.options.length > 0 ? `; options=${planRequest.options.join('|')}` : '';
  return {
    status: 200,
    headers: { 'Content-Type': `application/vnd.pgrst.plan+${planRequest.format}; for="${planRequest.for}"${optionsParam}; charset=utf-8` },
    body: http.method === 'HEAD' ? null : body,
  };
}
