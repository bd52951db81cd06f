/**
 * Function calls end to end (`{rest_url}/rpc/<name>`): arguments from the query string (GET, HEAD)
 * or the body (POST) → call plan with the lease's schema cache → one statement → executed as the
 * caller's role, read-only unless a POST calls a volatile function → PostgREST's answer.
 */
import { requestSettingsStep } from './executor/request-settings.js';
import { runRpc } from './executor/run-rpc.js';
import { planRpc } from './plan/rpc-plan.js';
import { rpcStatement } from './query/rpc-query.js';
import { contentMediaType, parsePayload, type Payload } from './request/body.js';
import type { ApiRequest } from './request/types.js';
import { RestError } from './response/errors.js';
import type { RestResponse } from './response/read-response.js';
import { checkCall, needsCallCheck, rpcResponse } from './response/rpc-response.js';
import type { Caller, RestHttpRequest, RestService } from './rest-service.js';
import { rejectBareParameters } from './write-service.js';

export async function serveRpc(service: RestService, caller: Caller, http: RestHttpRequest, request: ApiRequest, routineName: string, startedAt: number): Promise<RestResponse> {
  const { method } = request;
  if (method !== 'GET' && method !== 'HEAD' && method !== 'POST') {
    throw new RestError('PGRST101', `Cannot use the ${method} method on RPC`);
  }
  const mediaType = contentMediaType(http.headers['content-type']);
  let payload: Payload | undefined;
  if (method === 'POST') {
    rejectBareParameters(request);
    payload = parsePayload(http.body, mediaType, { columnsGiven: request.query.columns !== undefined, forRoutine: true });
  }
  let publish = true;
  const plan = await service.withSchema(caller, startedAt, (cache) => {
    publish = cache.readsRequestSettings;
    return planRpc(cache, request, routineName, { payload, mediaType });
  });
  const settings = requestSettingsStep({ role: caller.role, method, path: http.path, headers: http.headers, readOnly: plan.readOnly, publish });
  const result = await runRpc(service.pools, caller.lease, settings, rpcStatement(plan), {
    rollback: plan.rollback,
    check: needsCallCheck(plan) ? (called) => checkCall(plan, called) : undefined,
  });
  return rpcResponse(plan, result);
}
