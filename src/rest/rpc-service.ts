/**
 * Function calls end to end (`{rest_url}/rpc/<name>`): arguments from the query string (GET, HEAD)
 * or the body (POST) → call plan with the lease's schema cache → one statement → executed as the
 * caller's role, read-only unless a POST calls a volatile function → PostgREST's answer.
 */
import { requestSteps } from './executor/request-settings.js';
import { runRpc } from './executor/run-rpc.js';
import { planRpc } from './plan/rpc-plan.js';
import { rpcStatement } from './query/rpc-query.js';
import { contentMediaType, parsePayload, type Payload } from './request/body.js';
import type { CompiledRpc } from './query/compiled-writes.js';
import type { ApiRequest } from './request/types.js';
import { RestError } from './response/errors.js';
import type { RestResponse } from './response/read-response.js';
import { checkCall, needsCallCheck, rpcResponse } from './response/rpc-response.js';
import type { Caller, RestHttpRequest, RestService } from './rest-service.js';
import { rejectBareParameters } from './write-service.js';

/** The arguments of a POST call, from its body; `columns`: the query has `columns=`. */
export function rpcPayload(http: RestHttpRequest, columns: boolean, mediaType = contentMediaType(http.headers['content-type'])): Payload {
  return parsePayload(http.body, mediaType, { columnsGiven: columns, forRoutine: true });
}

/** `parsed`: the body of a POST, when the caller has parsed it already. */
export async function serveRpc(
  service: RestService,
  caller: Caller,
  http: RestHttpRequest,
  request: ApiRequest,
  routineName: string,
  startedAt: number,
  parsed?: { payload: Payload | undefined },
): Promise<RestResponse> {
  const { method } = request;
  if (method !== 'GET' && method !== 'HEAD' && method !== 'POST') {
    throw new RestError('PGRST101', `Cannot use the ${method} method on RPC`);
  }
  const mediaType = contentMediaType(http.headers['content-type']);
  let payload: Payload | undefined;
  if (method === 'POST') {
    rejectBareParameters(request);
    payload = parsed ? parsed.payload : rpcPayload(http, request.query.columns !== undefined, mediaType);
  }
  const compiled = await service.withSchema(caller, startedAt, (cache): CompiledRpc => {
    const compile = (from: ApiRequest, body: Payload | undefined): CompiledRpc => {
      const plan = planRpc(cache, from, routineName, { payload: body, mediaType });
      return { kind: 'rpc', plan, statement: rpcStatement(plan), publishRequest: cache.readsRequestSettings };
    };
    const call = compile(request, payload);
    if (method === 'POST') service.compiledWrites.remember(cache, http, request, payload, compile);
    return call;
  });
  http.timing?.mark('plan');
  return executeRpc(service, caller, http, compiled);
}

/** Runs a compiled call as the caller, read-only unless it may write, and shapes the answer. */
export async function executeRpc(service: RestService, caller: Caller, http: RestHttpRequest, compiled: CompiledRpc): Promise<RestResponse> {
  const { plan } = compiled;
  const preamble = requestSteps(caller.lease, { role: caller.role, claims: caller.claims, method: http.method, path: http.path, headers: http.headers, readOnly: plan.readOnly, publish: compiled.publishRequest });
  const result = await runRpc(service.pools, caller.lease, preamble, compiled.statement, {
    rollback: plan.rollback,
    check: needsCallCheck(plan) ? (called) => checkCall(plan, called) : undefined,
  });
  http.timing?.mark('transaction');
  const response = rpcResponse(plan, result);
  http.timing?.mark('response');
  return response;
}
