/**
 * The HTTP answer to a function call: a read's answer (status 200 or 206, Content-Range, the body
 * Postgres built), or 204 without a body for a function returning void. And the checks that undo
 * a call before it commits: a single object asked for and not given (PGRST116), more rows than
 * max-affected (PGRST124).
 */
import type { RpcPlan } from '../plan/rpc-plan.js';
import { RestError } from './errors.js';
import { readAnswer, type ReadResult, type RestResponse } from './read-response.js';
import { withResponseSettings } from './response-settings.js';

export function needsCallCheck(plan: RpcPlan): boolean {
  return plan.representation.media.kind === 'object' || plan.maxAffected !== undefined;
}

export function checkCall(plan: RpcPlan, result: ReadResult): void {
  if (plan.representation.media.kind === 'object' && result.page !== 1) {
    throw new RestError('PGRST116', undefined, `The result contains ${result.page} rows`);
  }
  if (plan.maxAffected !== undefined && result.page > plan.maxAffected) {
    throw new RestError('PGRST124', undefined, `The query affects ${result.page} rows`);
  }
}

export function rpcResponse(plan: RpcPlan, result: ReadResult): RestResponse {
  const response = readAnswer(plan.representation, result, plan.preferenceApplied);
  if (plan.result !== 'void') return withResponseSettings(response, result);
  const { 'Content-Type': _none, ...headers } = response.headers;
  return withResponseSettings({ status: 204, headers, body: null }, result);
}
