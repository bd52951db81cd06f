/**
 * Assembles an ApiRequest from the raw pieces of an HTTP request under `{rest_url}`: the path
 * after it (which resource), the query string and the headers. Pure: no Fastify, no database.
 */
import { RestError } from '../response/errors.js';
import { parseAccept, parsePreferences, parseRangeHeader } from './headers.js';
import { parseQueryParams, splitQueryString } from './query-params.js';
import type { ApiRequest, RestTarget } from './types.js';

export interface RawRequest {
  method: string;
  /** The path below `{rest_url}`, still percent-encoded: '', '/', '/films', '/rpc/fn'. */
  path: string;
  /** The query string without '?'. */
  query: string;
  headers: Record<string, string | string[] | undefined>;
  authenticated: boolean;
  /** The lease's db-max-rows setting (it caps reads of tables and views, and function results). */
  maxRows?: number | undefined;
  /** The lease's db-aggregates-enabled setting (reads of tables and views, and function results). */
  aggregatesEnabled?: boolean | undefined;
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new RestError('PGRST125');
  }
}

export function parseTarget(path: string): RestTarget {
  const segments = path.split('/').filter((segment) => segment !== '');
  if (segments.length === 0) return { kind: 'root' };
  if (segments.length === 1) return { kind: 'relation', name: decodeSegment(segments[0]!) };
  if (segments.length === 2 && segments[0] === 'rpc') return { kind: 'routine', name: decodeSegment(segments[1]!) };
  throw new RestError('PGRST125');
}

export function buildApiRequest(raw: RawRequest): ApiRequest {
  const target = parseTarget(raw.path);
  const query = parseQueryParams(splitQueryString(raw.query));
  const method = raw.method.toUpperCase();
  const request: ApiRequest = {
    method,
    target,
    query,
    preferences: parsePreferences(raw.headers.prefer),
    accept: parseAccept(raw.headers.accept),
    authenticated: raw.authenticated,
  };
  const read = method === 'GET' || method === 'HEAD';
  if (read) {
    const headerRange = parseRangeHeader(raw.headers.range);
    if (headerRange) request.headerRange = headerRange;
  }
  // reads of tables and views, and function results (PostgREST's read plan of a call is a read)
  if ((read && target.kind === 'relation') || target.kind === 'routine') {
    if (raw.maxRows !== undefined) request.maxRows = raw.maxRows;
    if (raw.aggregatesEnabled === true) request.aggregatesEnabled = true;
  }
  return request;
}
