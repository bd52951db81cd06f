/**
 * Writes end to end (POST, PUT, PATCH, DELETE on a table or view): body → write plan with the
 * lease's schema cache → one statement → executed as the caller's role in one transaction →
 * PostgREST's answer. RestService dispatches here; reads stay in rest-service.ts.
 */
import { requestSettingsStep } from './executor/request-settings.js';
import { runWrite } from './executor/run-write.js';
import { planWrite } from './plan/write-plan.js';
import { writeStatement } from './query/write-query.js';
import { contentMediaType, parsePayload } from './request/body.js';
import { parseFilterExpression } from './request/grammar.js';
import type { ApiRequest } from './request/types.js';
import type { RestResponse } from './response/read-response.js';
import { checkWrite, needsCheck, writeResponse } from './response/write-response.js';
import type { Caller, RestHttpRequest, RestService } from './rest-service.js';

export const WRITE_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Outside a GET on a function, a parameter without an operator (`?name=John`) is a filter that
 * does not parse: PostgREST's PGRST100.
 */
export function rejectBareParameters(request: ApiRequest): void {
  for (const [, value] of request.query.rpcParams) parseFilterExpression(value);
}

export async function serveWrite(service: RestService, caller: Caller, http: RestHttpRequest, request: ApiRequest, relationName: string, startedAt: number): Promise<RestResponse> {
  rejectBareParameters(request);
  const payload =
    request.method === 'DELETE'
      ? undefined
      : parsePayload(http.body, contentMediaType(http.headers['content-type']), {
          // PUT writes the whole row: it ignores columns=
          columnsGiven: request.query.columns !== undefined && request.method !== 'PUT',
          forRoutine: false,
        });
  let publish = true;
  const plan = await service.withSchema(caller, startedAt, (cache) => {
    publish = cache.readsRequestSettings;
    return planWrite(cache, request, relationName, payload);
  });
  const settings = requestSettingsStep({ role: caller.role, method: request.method, path: http.path, headers: http.headers, readOnly: false, publish });
  const result = await runWrite(service.pools, caller.lease, settings, writeStatement(plan), {
    rollback: plan.rollback,
    check: needsCheck(plan) ? (written) => checkWrite(plan, written) : undefined,
  });
  return writeResponse(plan, result);
}
