/**
 * Writes end to end (POST, PUT, PATCH, DELETE on a table or view): body → write plan with the
 * lease's schema cache → one statement → executed as the caller's role in one transaction →
 * PostgREST's answer. RestService dispatches here; reads stay in rest-service.ts.
 */
import { requestSteps } from './executor/request-settings.js';
import { runWrite } from './executor/run-write.js';
import { planWrite } from './plan/write-plan.js';
import { writeStatement } from './query/write-query.js';
import { contentMediaType, parsePayload, type Payload } from './request/body.js';
import type { CompiledWrite } from './query/compiled-writes.js';
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

/** The body of a write as the plan reads it (undefined for DELETE); `columns`: the query has `columns=`. */
export function writePayload(http: RestHttpRequest, columns: boolean, mediaType = contentMediaType(http.headers['content-type'])): Payload | undefined {
  if (http.method === 'DELETE') return undefined;
  return parsePayload(http.body, mediaType, {
    // PUT writes the whole row: it ignores columns=
    columnsGiven: columns && http.method !== 'PUT',
    forRoutine: false,
  });
}

/**
 * `payload`: the body, when the caller has parsed it already (a request whose shape is cached but
 * whose body keys are new).
 */
export async function serveWrite(
  service: RestService,
  caller: Caller,
  http: RestHttpRequest,
  request: ApiRequest,
  relationName: string,
  startedAt: number,
  parsed?: { payload: Payload | undefined },
): Promise<RestResponse> {
  rejectBareParameters(request);
  const payload = parsed ? parsed.payload : writePayload(http, request.query.columns !== undefined);
  const compiled = await service.withSchema(caller, startedAt, (cache): CompiledWrite => {
    const compile = (from: ApiRequest, body: Payload | undefined): CompiledWrite => {
      const plan = planWrite(cache, from, relationName, body);
      return { kind: 'write', plan, statement: writeStatement(plan), publishRequest: cache.readsRequestSettings };
    };
    const write = compile(request, payload);
    service.compiledWrites.remember(cache, http, request, payload, compile);
    return write;
  });
  http.timing?.mark('plan');
  return executeWrite(service, caller, http, compiled);
}

/** Runs a compiled write as the caller, in one transaction, and shapes PostgREST's answer. */
export async function executeWrite(service: RestService, caller: Caller, http: RestHttpRequest, compiled: CompiledWrite): Promise<RestResponse> {
  const { plan } = compiled;
  const preamble = requestSteps(caller.lease, { role: caller.role, claims: caller.claims, method: http.method, path: http.path, headers: http.headers, readOnly: false, publish: compiled.publishRequest });
  const result = await runWrite(service.pools, caller.lease, preamble, compiled.statement, {
    rollback: plan.rollback,
    check: needsCheck(plan) ? (written) => checkWrite(plan, written) : undefined,
  });
  http.timing?.mark('transaction');
  const response = writeResponse(plan, result);
  http.timing?.mark('response');
  return response;
}
