/**
 * Functions → `/rpc/<name>` path items: POST for every function the role may EXECUTE (arguments
 * as a JSON object), GET as well for stable and immutable ones (arguments in the query string).
 * Overloads share one path: the body is one of their argument objects. Results are the relation's
 * rows for `RETURNS [SETOF] <table>`, objects of the OUT / TABLE columns, or the scalar.
 */
import type { Routine, RoutineParam, SchemaCache } from '../schema/types.js';
import { componentName, parameterRef, responseRef, schemaRef } from './names.js';
import { CONTENT_RANGE, RESERVED_PARAMETERS } from './parameters.js';
import { splitComment } from './relation-paths.js';
import { typeSchema, type TypeContext } from './type-schema.js';
import type { JsonSchema, MediaTypeObject, Parameter, PathItem, Reference, RequestBody, Response, Schema } from './types.js';

const isInput = (param: RoutineParam): boolean => param.mode === 'i' || param.mode === 'b' || param.mode === 'v';
const isOutput = (param: RoutineParam): boolean => param.mode === 'o' || param.mode === 'b' || param.mode === 't';

/** One unnamed argument of these types takes the whole request body, by its media type. */
const RAW_BODY_TYPES: Record<string, string> = {
  json: 'application/json',
  jsonb: 'application/json',
  text: 'text/plain',
  xml: 'text/xml',
  bytea: 'application/octet-stream',
};

type Call = { kind: 'named'; inputs: RoutineParam[] } | { kind: 'raw'; param: RoutineParam; mediaType: string };

/** How a function is called over HTTP; null when it cannot be (unnamed arguments). */
function callOf(routine: Routine): Call | null {
  const inputs = routine.params.filter(isInput);
  if (inputs.every((param) => param.name !== '')) return { kind: 'named', inputs };
  const mediaType = inputs.length === 1 ? RAW_BODY_TYPES[inputs[0]!.type] : undefined;
  return mediaType ? { kind: 'raw', param: inputs[0]!, mediaType } : null;
}

function argumentsSchema(inputs: RoutineParam[], context: TypeContext): JsonSchema {
  const required = inputs.filter((param) => param.required).map((param) => param.name);
  return {
    type: 'object',
    ...(required.length > 0 ? { required } : {}),
    properties: Object.fromEntries(inputs.map((param) => [param.name, typeSchema(param.type, context)])),
    additionalProperties: false,
  };
}

/** The JSON of one result row or value; `rows` when the result is a set of objects (filterable). */
function resultSchema(routine: Routine, context: TypeContext): { schema: Schema; rows: boolean } {
  const outputs = routine.params.filter(isOutput);
  if (routine.returnRelation !== null) return { schema: schemaRef(componentName(routine.returnRelation)), rows: true };
  if (outputs.length > 0 && (routine.returnTypeName === 'record' || routine.returnsSet)) {
    return {
      schema: { type: 'object', properties: Object.fromEntries(outputs.map((param) => [param.name, typeSchema(param.type, context)])) },
      rows: true,
    };
  }
  return { schema: typeSchema(routine.returnType, context), rows: routine.returnTypeKind === 'c' };
}

/** The schema, or `anyOf` the distinct schemas of several overloads. */
function anyOf(schemas: Schema[]): Schema {
  const distinct = [...new Map(schemas.map((schema) => [JSON.stringify(schema), schema])).values()];
  return distinct.length === 1 ? distinct[0]! : { anyOf: distinct };
}

function successResponse(routines: Routine[], context: TypeContext): Record<string, Response | Reference> {
  if (routines.every((routine) => routine.returnTypeName === 'void')) {
    return { '204': { description: 'Done (the function returns void).' } };
  }
  const results = routines.map((routine) => {
    const { schema, rows } = resultSchema(routine, context);
    return { schema: routine.returnsSet ? { type: 'array', items: schema } as Schema : schema, rows: rows || routine.returnsSet, item: schema };
  });
  const body = anyOf(results.map((result) => result.schema));
  const content: Record<string, MediaTypeObject> = { 'application/json': { schema: body }, 'text/csv': { schema: { type: 'string' } } };
  if (results.every((result) => result.rows)) {
    content['application/vnd.pgrst.object+json'] = { schema: anyOf(results.map((result) => result.item)) };
  }
  return { '200': { description: 'The function’s result.', headers: CONTENT_RANGE, content } };
}

function requestBody(calls: Call[], context: TypeContext): RequestBody {
  const raw = calls.find((call): call is Extract<Call, { kind: 'raw' }> => call.kind === 'raw');
  const named = calls.filter((call): call is Extract<Call, { kind: 'named' }> => call.kind === 'named');
  const content: Record<string, MediaTypeObject> = {};
  if (named.length > 0) {
    const schemas = named.map((call): Schema => argumentsSchema(call.inputs, context));
    content['application/json'] = { schema: schemas.length === 1 ? schemas[0]! : { oneOf: schemas } };
  }
  if (raw && !content[raw.mediaType]) content[raw.mediaType] = { schema: typeSchema(raw.param.type, context) };
  const optional = named.some((call) => call.inputs.every((param) => !param.required));
  return { required: !optional, content };
}

/** Query parameters for a GET call: the union of the overloads' arguments, each as its overloads require it. */
function queryArguments(calls: Call[], context: TypeContext): Parameter[] {
  const byName = new Map<string, { param: RoutineParam; requiredBy: number }>();
  const named = calls.filter((call): call is Extract<Call, { kind: 'named' }> => call.kind === 'named');
  for (const call of named) {
    for (const param of call.inputs) {
      const seen = byName.get(param.name) ?? { param, requiredBy: 0 };
      if (param.required) seen.requiredBy++;
      byName.set(param.name, seen);
    }
  }
  return [...byName.values()]
    .filter(({ param }) => !RESERVED_PARAMETERS.has(param.name))
    .map(({ param, requiredBy }) => {
      const schema = typeSchema(param.type, context);
      const scalar = !('$ref' in schema) && schema.type !== undefined && schema.type !== 'array' && schema.type !== 'object';
      return {
        name: param.name,
        in: 'query',
        description: `Argument \`${param.name}\` (${param.type})${param.mode === 'v' ? ', variadic: repeat the parameter for each value' : ''}.`,
        required: requiredBy === named.length && named.length > 0,
        // arrays, rows and JSON travel as their Postgres text form: `{1,2,3}`, `(1,x)`, `{"a":1}`
        schema: scalar ? schema : { type: 'string' },
      };
    });
}

/** The path item of a function name (all its overloads) for the role; null when it may call none. */
export function routinePathItem(overloads: Routine[], role: string, cache: SchemaCache, ignorePrivileges = false): PathItem | null {
  const callable = overloads.flatMap((routine) => {
    const call = ignorePrivileges || routine.privileges[role] ? callOf(routine) : null;
    return call ? [{ routine, call }] : [];
  });
  if (callable.length === 0) return null;
  const context: TypeContext = { cache };
  const name = overloads[0]!.name;
  const routines = callable.map((entry) => entry.routine);
  const calls = callable.map((entry) => entry.call);
  const { summary, description } = splitComment(routines.find((routine) => routine.description)?.description ?? null);
  const rows = routines.every((routine) => routine.returnsSet || routine.returnRelation !== null || routine.returnTypeKind === 'c');
  const shaping = rows ? [parameterRef('select'), parameterRef('order'), parameterRef('limit'), parameterRef('offset')] : [];
  const common = {
    summary: summary ?? `Call ${name}()`,
    ...(description ? { description } : {}),
    tags: ['rpc'],
    responses: { ...successResponse(routines, context), '4XX': responseRef('ClientError'), '5XX': responseRef('ServerError') },
  };
  const item: PathItem = {
    post: {
      operationId: `rpc.${componentName(name)}.post`,
      ...common,
      parameters: [...shaping, parameterRef('preferRpc')],
      requestBody: requestBody(calls, context),
    },
  };
  const readOnly = callable.filter((entry) => entry.routine.volatility !== 'v' && entry.call.kind === 'named');
  if (readOnly.length > 0) {
    item.get = {
      operationId: `rpc.${componentName(name)}.get`,
      ...common,
      parameters: [...queryArguments(readOnly.map((entry) => entry.call), context), ...shaping, parameterRef('preferRpc')],
    };
  }
  return item;
}
