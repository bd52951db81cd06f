/**
 * The query string of a REST request → QueryParams: which parameters are `select`, filters,
 * `order`, `limit`/`offset`, `and`/`or` trees (each possibly under an embed path such as
 * `clients.projects.order`), and which are plain parameters (RPC arguments), following PostgREST's
 * classification rules.
 */
import { RestError } from '../response/errors.js';
import {
  isComparisonOperator,
  isFtsOperator,
  parseColumnList,
  parseEmbedPath,
  parseFilterExpression,
  parseLogicTree,
  parseOrder,
  parseSelect,
  parseTreePath,
} from './grammar.js';
import type { QueryParams, Range } from './types.js';

/**
 * Splits a raw query string into decoded (key, value) pairs, in order. `+` means space, as in
 * HTML forms (PostgREST decodes it the same way).
 */
export function splitQueryString(raw: string): [string, string][] {
  const pairs: [string, string][] = [];
  if (raw === '') return pairs;
  for (const part of raw.split('&')) {
    if (part === '') continue;
    const equals = part.indexOf('=');
    const rawKey = equals === -1 ? part : part.slice(0, equals);
    const rawValue = equals === -1 ? '' : part.slice(equals + 1);
    pairs.push([decode(rawKey), decode(rawValue)]);
  }
  return pairs;
}

function decode(text: string): string {
  const spaced = text.includes('+') ? text.replace(/\+/g, ' ') : text;
  if (!spaced.includes('%')) return spaced;
  try {
    return decodeURIComponent(spaced);
  } catch {
    throw new RestError('PGRST100', `"failed to parse query string (${text})"`, 'malformed percent-encoding');
  }
}

const RESERVED = new Set(['select', 'columns', 'on_conflict']);
const RESERVED_LAST_SEGMENT = new Set(['order', 'limit', 'offset', 'and', 'or']);

function lastSegment(key: string): string {
  const dot = key.lastIndexOf('.');
  return dot === -1 ? key : key.slice(dot + 1);
}

/** Whether a parameter value starts with an operator (PostgREST's test for "this is a filter"). */
function hasOperator(value: string): boolean {
  const parts = value.split('.');
  const first = parts[0]!;
  if (first === 'not' && parts.length > 1) return true;
  if (first === 'is' || first === 'in') return true;
  if (isComparisonOperator(first) || isFtsOperator(first)) return true;
  const quantified = /^([a-z]+)\((any|all)\)$/.exec(first);
  if (quantified && isComparisonOperator(quantified[1]!)) return true;
  const paren = value.split('(');
  return paren.length > 1 && isFtsOperator(paren[0]!);
}

/** A whole number in the same lenient way PostgREST reads limit/offset (anything else is ignored). */
function readInteger(value: string): number | undefined {
  return /^-?\d+$/.test(value.trim()) ? Number(value.trim()) : undefined;
}

export function parseQueryParams(pairs: [string, string][]): QueryParams {
  const params: QueryParams = { select: [{ kind: 'star' }], filters: [], logic: [], order: [], ranges: new Map(), rpcParams: [] };
  const limits = new Map<string, number>();
  const offsets = new Map<string, number>();
  let selectSeen = false;

  for (const [key, value] of pairs) {
    if (key === 'select') {
      if (!selectSeen) params.select = parseSelect(value);
      selectSeen = true;
      continue;
    }
    if (key === 'columns') {
      params.columns = parseColumnList('columns parameter', value);
      continue;
    }
    if (key === 'on_conflict') {
      params.onConflict = parseColumnList('on_conflict parameter', value);
      continue;
    }
    // empty values are ignored, as PostgREST ignores them
    if (value === '') continue;
    const last = lastSegment(key);
    if (RESERVED_LAST_SEGMENT.has(last)) {
      const path = parseEmbedPath(key);
      const pathKey = path.join('.');
      if (last === 'order') params.order.push({ path, terms: parseOrder(value) });
      else if (last === 'limit') {
        const limit = readInteger(value);
        if (limit !== undefined) limits.set(pathKey, limit);
      } else if (last === 'offset') {
        const offset = readInteger(value);
        if (offset !== undefined) offsets.set(pathKey, offset);
      } else {
        // `not.or` / `a.not.and`: the negation is part of the key
        const negated = path.length > 0 && path[path.length - 1] === 'not';
        const logicPath = path.filter((name) => name !== 'not');
        params.logic.push({ path: logicPath, tree: parseLogicTree(last as 'and' | 'or', negated, value) });
      }
      continue;
    }
    if (RESERVED.has(key)) continue;
    if (key.includes('.') || hasOperator(value)) {
      const { path, field } = parseTreePath(key);
      const expression = parseFilterExpression(value);
      params.filters.push({ path, filter: { field, ...expression } });
    } else {
      params.rpcParams.push([key, value]);
    }
  }

  for (const pathKey of new Set([...limits.keys(), ...offsets.keys()])) {
    const limit = limits.get(pathKey);
    if (limit !== undefined && limit < 0) {
      throw new RestError('PGRST103', undefined, 'Limit should be greater than or equal to zero.');
    }
    // a negative offset is a no-op, as in PostgREST
    const range: Range = { offset: Math.max(0, offsets.get(pathKey) ?? 0) };
    if (limit !== undefined) range.limit = limit;
    params.ranges.set(pathKey, range);
  }
  return params;
}
