/**
 * ApiRequest + arguments + schema cache → a call plan: which overload of the function the
 * argument names select (PostgREST's rules: required parameters all given, optional ones any;
 * else a single json/jsonb parameter takes the whole POST body), how the arguments reach it, what
 * kind of result it gives, and for table-like results the read plan applied to its rows
 * (`select=`, filters, order, range, embedding), as for a table. Unknown → PGRST202 with a "perhaps
 * you meant" hint; ambiguous → PGRST203.
 */
import type { Payload } from '../request/body.js';
import { negotiate } from '../request/headers.js';
import type { ApiRequest, MediaType, Preferences } from '../request/types.js';
import { RestError } from '../response/errors.js';
import type { Column, Relation, Routine, RoutineParam, SchemaCache } from '../schema/types.js';
import { applyQueryParams, buildReadNode } from './read-plan.js';
import { closest } from './similarity.js';
import type { ReadPlan } from './types.js';

/** What the function returns, which decides the shape of the body. */
export type RoutineResult = 'void' | 'scalar' | 'scalars' | 'row' | 'rows';

export type CallArguments =
  | { kind: 'none' }
  /** The whole body as the one json/jsonb parameter (unnamed, or Prefer: params=single-object). */
  | { kind: 'whole-body'; json: string; type: string }
  /** Named parameters read from a JSON object (or from the first object of an array). */
  | { kind: 'named'; params: RoutineParam[]; json: string; shape: 'object' | 'array' };

export interface RpcPlan {
  kind: 'rpc';
  routine: Routine;
  args: CallArguments;
  result: RoutineResult;
  /** The function's rows read like a table's: select=, filters, order, range, embeds, media. */
  representation: ReadPlan;
  /** GET and HEAD, and POST to stable or immutable functions, run in a read-only transaction. */
  readOnly: boolean;
  /** Content-Range states the total (count=exact or estimated). */
  count: boolean;
  rollback: boolean;
  maxAffected?: number;
  preferenceApplied: string[];
}

export interface RpcArgumentsInput {
  /** POST's parsed body; undefined for GET and HEAD (their arguments are the query string's). */
  payload?: Payload;
  /** POST's Content-Type media type. */
  mediaType: string;
}

const INPUT_MODES: ReadonlySet<RoutineParam['mode']> = new Set(['i', 'b', 'v']);
const OUTPUT_MODES: ReadonlySet<RoutineParam['mode']> = new Set(['o', 'b', 't']);

function inputs(routine: Routine): RoutineParam[] {
  return routine.params.filter((param) => INPUT_MODES.has(param.mode));
}

function isJsonType(type: string): boolean {
  return type === 'json' || type === 'jsonb';
}

/** PostgREST's matchesParams: every required parameter named, the rest only optional ones. */
function matchesArguments(routine: Routine, keys: ReadonlySet<string>, rawPost: boolean): boolean {
  const params = inputs(routine);
  if (params.length === 0) return keys.size === 0 && !rawPost;
  const required = params.filter((param) => param.required).map((param) => param.name);
  const optional = new Set(params.filter((param) => !param.required).map((param) => param.name));
  const remaining = [...keys].filter((key) => !optional.has(key));
  return remaining.length === required.length && required.every((name) => keys.has(name));
}

function signature(routine: Routine): string {
  return `${routine.schema}.${routine.name}(${inputs(routine).map((param) => `${param.name} => ${param.type}`).join(', ')})`;
}

/** Text in code point order, as Haskell's Data.Text compares. */
function compareText(a: string, b: string): number {
  if (a === b) return 0;
  const left = [...a];
  const right = [...b];
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    const difference = left[i]!.codePointAt(0)! - right[i]!.codePointAt(0)!;
    if (difference !== 0) return difference;
  }
  return left.length - right.length;
}

/** PostgREST's ppTypeMaxLength: the types whose length it ignores, as their varying kind. */
function typeIgnoringLength(type: string): string {
  switch (type) {
    case 'bit':
      return 'bit varying';
    case 'bit[]':
      return 'bit varying[]';
    case 'character':
      return 'character varying';
    case 'character[]':
      return 'character varying[]';
  }
  return type;
}

/**
 * The order PostgREST's schema cache keeps overloads in, which is the order PGRST203 lists them
 * (SchemaCache/Routine.hs, `instance Ord Routine`, applied by `map sort` in decodeFuncs): fewer
 * input parameters first; then the description (none before any, then by text); then the input
 * parameters one by one, each by name, type, type ignoring length, required (false first) and
 * variadic (false first). Two overloads always differ by then: their input types differ.
 */
export function comparePostgrestOverloads(a: Routine, b: Routine): number {
  const left = inputs(a);
  const right = inputs(b);
  if (left.length !== right.length) return left.length - right.length;
  if (a.description !== b.description) {
    if (a.description === null) return -1;
    if (b.description === null) return 1;
    return compareText(a.description, b.description);
  }
  const bool = (x: boolean, y: boolean) => Number(x) - Number(y);
  for (let i = 0; i < left.length; i++) {
    const x = left[i]!;
    const y = right[i]!;
    const order =
      compareText(x.name, y.name) ||
      compareText(x.type, y.type) ||
      compareText(typeIgnoringLength(x.type), typeIgnoringLength(y.type)) ||
      bool(x.required, y.required) ||
      bool(x.mode === 'v', y.mode === 'v');
    if (order !== 0) return order;
  }
  return 0;
}

function ambiguous(routines: Routine[]): RestError {
  return new RestError(
    'PGRST203',
    `Could not choose the best candidate function between: ${[...routines].sort(comparePostgrestOverloads).map(signature).join(', ')}`,
    null,
    'Try renaming the parameters or the function itself in the database so function overloading can be resolved',
  );
}

function notFound(cache: SchemaCache, name: string, keys: string[], jsonPost: boolean, single: string | undefined): RestError {
  const func = `${cache.schema}.${name}`;
  if (single !== undefined) {
    return new RestError(
      'PGRST202',
      `Could not find the function ${func} in the schema cache`,
      `Searched for the function ${func} with a single ${single} parameter, but no matches were found in the schema cache.`,
    );
  }
  const listed = keys.length === 0 ? ' without parameters' : `(${keys.join(', ')})`;
  const searched = keys.length === 0 ? ' without parameters' : ` with parameter${keys.length > 1 ? 's' : ''} ${keys.join(', ')}`;
  const overloads = cache.routines.get(name) ?? [];
  let hint: string | null = null;
  if (overloads.length === 0) {
    const suggestion = closest(name, cache.routines.keys(), 0.75);
    if (suggestion !== undefined) hint = `Perhaps you meant to call the function ${cache.schema}.${suggestion}`;
  } else {
    const paramList = (names: string[]) => `(${[...names].sort().join(', ')})`;
    const suggestion = closest(paramList(keys), overloads.map((routine) => paramList(inputs(routine).map((param) => param.name))), 0.33);
    if (suggestion !== undefined) hint = `Perhaps you meant to call the function ${func}${suggestion}`;
  }
  return new RestError(
    'PGRST202',
    `Could not find the function ${func}${listed} in the schema cache`,
    `Searched for the function ${func}${searched}${jsonPost ? ' or with a single unnamed json/jsonb parameter' : ''}, but no matches were found in the schema cache.`,
    hint,
  );
}

/** The overload the request calls (PostgREST's findProc). */
function findRoutine(cache: SchemaCache, name: string, keys: string[], options: { post: boolean; payload: Payload | undefined; mediaType: string; singleObject: boolean }): Routine {
  const overloads = cache.routines.get(name) ?? [];
  const jsonPost = options.post && options.mediaType === 'application/json';
  const single = (routine: Routine, accepts: (type: string) => boolean) => inputs(routine).length === 1 && accepts(inputs(routine)[0]!.type);
  if (options.singleObject) {
    const found = overloads.filter((routine) => single(routine, isJsonType));
    if (found.length === 1) return found[0]!;
    if (found.length > 1) throw ambiguous(found);
    throw notFound(cache, name, keys, jsonPost, 'json/jsonb');
  }
  const rawType = options.payload?.rawType;
  const keySet = new Set(keys);
  const matching: Routine[] = [];
  const wholeBody: Routine[] = [];
  for (const routine of overloads) {
    if (matchesArguments(routine, keySet, rawType !== undefined)) matching.push(routine);
    else if (jsonPost && single(routine, isJsonType)) wholeBody.push(routine);
    else if (rawType !== undefined && single(routine, (type) => type === rawType)) wholeBody.push(routine);
  }
  if (matching.length === 1) return matching[0]!;
  if (matching.length > 1) throw ambiguous(matching);
  if (wholeBody.length === 1) return wholeBody[0]!;
  if (wholeBody.length > 1) throw ambiguous(wholeBody);
  throw notFound(cache, name, keys, jsonPost, rawType === undefined ? undefined : `unnamed ${rawType}`);
}

function resultOf(routine: Routine): RoutineResult {
  if (routine.returnTypeName === 'void') return 'void';
  const composite = routine.returnTypeKind === 'c' || routine.params.some((param) => OUTPUT_MODES.has(param.mode));
  if (composite) return routine.returnsSet ? 'rows' : 'row';
  return routine.returnsSet ? 'scalars' : 'scalar';
}

/**
 * The relation the result's rows are read as: the table or view it returns (embedding then
 * follows that relation's relationships), or one made of its OUT/TABLE columns.
 */
function resultRelation(cache: SchemaCache, routine: Routine): Relation {
  const returned = routine.returnRelation === null ? undefined : cache.relations.get(routine.returnRelation);
  if (returned) return returned;
  const columns: Column[] = routine.params
    .filter((param) => OUTPUT_MODES.has(param.mode))
    .map((param, index) => ({
      name: param.name,
      position: index + 1,
      type: param.type,
      typeName: param.type,
      typeSchema: '',
      typeKind: 'b',
      elementType: null,
      baseType: null,
      nullable: true,
      default: null,
      generated: false,
      identity: false,
      maxLength: null,
      description: null,
      enumValues: null,
    }));
  return {
    schema: routine.schema,
    name: routine.name,
    kind: 'view',
    description: routine.description,
    columns,
    columnsByName: new Map(columns.map((column) => [column.name, column])),
    primaryKey: [],
    uniqueKeys: [],
    insertable: false,
    updatable: false,
    deletable: false,
    privileges: {},
  };
}

/** Query-string or form arguments as one JSON object: a VARIADIC parameter collects every value. */
function fieldsToJson(routine: Routine, fields: [string, string][]): string {
  const variadic = new Set(routine.params.filter((param) => param.mode === 'v').map((param) => param.name));
  const object: Record<string, string | string[]> = {};
  for (const [name, value] of fields) {
    if (variadic.has(name)) {
      const list = object[name];
      object[name] = Array.isArray(list) ? [...list, value] : [value];
    } else {
      object[name] = value;
    }
  }
  return JSON.stringify(object);
}

function callArguments(routine: Routine, keys: ReadonlySet<string>, fields: [string, string][] | undefined, payload: Payload | undefined, singleObject: boolean): CallArguments {
  const params = inputs(routine);
  const unnamed = payload !== undefined && params.length === 1 && params[0]!.name === '';
  const wholeBody = unnamed && (payload.rawType === params[0]!.type || (payload.rawType === undefined && isJsonType(params[0]!.type)));
  if (singleObject || wholeBody) {
    const json = payload && !payload.formFields ? payload.json : JSON.stringify(Object.fromEntries(fields ?? []));
    return { kind: 'whole-body', json, type: params[0]!.type };
  }
  const given = params.filter((param) => keys.has(param.name));
  if (given.length === 0) return { kind: 'none' };
  if (payload && !payload.formFields) return { kind: 'named', params: given, json: payload.json, shape: payload.shape };
  return { kind: 'named', params: given, json: fieldsToJson(routine, fields ?? []), shape: 'object' };
}

function appliedPreferences(preferences: Preferences): string[] {
  const applied: string[] = [];
  if (preferences.count) applied.push(`count=${preferences.count}`);
  if (preferences.tx) applied.push(`tx=${preferences.tx}`);
  if (preferences.handling) applied.push(`handling=${preferences.handling}`);
  if (preferences.handling === 'strict' && preferences.maxAffected !== undefined) applied.push(`max-affected=${preferences.maxAffected}`);
  return applied;
}

const ROW_MEDIA_TYPES: readonly MediaType['kind'][] = ['json', 'object', 'csv'];
const SCALAR_MEDIA_TYPES: readonly MediaType['kind'][] = ['json', 'object'];

/** GET, HEAD or POST on `{rest_url}/rpc/<name>`. */
export function planRpc(cache: SchemaCache, request: ApiRequest, name: string, input: RpcArgumentsInput): RpcPlan {
  const { method, preferences, query } = request;
  const post = method === 'POST';
  const singleObject = preferences.params === 'single-object';
  const fields = post ? input.payload?.formFields : query.rpcParams;
  const keys = [...new Set(fields ? fields.map(([key]) => key) : (input.payload?.keys ?? query.columns ?? []))].sort();
  const routine = findRoutine(cache, name, keys, { post, payload: input.payload, mediaType: input.mediaType, singleObject });
  const result = resultOf(routine);

  const media = negotiate(request.accept, result === 'row' || result === 'rows' ? ROW_MEDIA_TYPES : SCALAR_MEDIA_TYPES);
  const root = buildReadNode(cache, resultRelation(cache, routine), query.select, { aggregates: request.aggregatesEnabled === true });
  applyQueryParams(root, request);
  return {
    kind: 'rpc',
    routine,
    args: callArguments(routine, new Set(keys), fields, post ? input.payload : undefined, singleObject),
    result,
    representation: { kind: 'read', root, media, headersOnly: method === 'HEAD' },
    readOnly: !post || routine.volatility !== 'v',
    count: preferences.count === 'exact' || preferences.count === 'estimated',
    rollback: preferences.tx === 'rollback',
    maxAffected: preferences.handling === 'strict' ? preferences.maxAffected : undefined,
    preferenceApplied: appliedPreferences(preferences),
  };
}
