/**
 * Writes and function calls compiled once per request shape: a request answered from its shape's
 * template gets exactly the statement, the checks and the answer a fresh compilation gives it,
 * whatever its values and body values (property-based), and what cannot be templated is not.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { planRpc } from '../src/rest/plan/rpc-plan.js';
import { planWrite } from '../src/rest/plan/write-plan.js';
import { callShape, CompiledWrites, type CompiledCall } from '../src/rest/query/compiled-writes.js';
import { rpcStatement } from '../src/rest/query/rpc-query.js';
import { writeStatement } from '../src/rest/query/write-query.js';
import { buildApiRequest } from '../src/rest/request/api-request.js';
import { contentMediaType, parsePayload, type Payload } from '../src/rest/request/body.js';
import type { ApiRequest } from '../src/rest/request/types.js';
import { checkWrite, needsCheck, writeResponse } from '../src/rest/response/write-response.js';
import { checkCall, needsCallCheck, rpcResponse } from '../src/rest/response/rpc-response.js';
import { schemaCacheFromDocument } from '../src/rest/schema/load.js';

function column(name: string, typeName: string, position: number) {
  return { name, position, type: typeName, typeName, typeSchema: 'pg_catalog', typeKind: 'b', elementType: null, baseType: null, nullable: true, default: null, generated: false, identity: false, maxLength: null, description: null, enumValues: null };
}

function routine(name: string, volatility: 'i' | 's' | 'v', params: { name: string; type: string }[], returns: { type: string; set?: boolean; relation?: string }) {
  return {
    name,
    volatility,
    returnsSet: returns.set ?? false,
    returnType: returns.type,
    returnTypeName: returns.type,
    returnTypeKind: returns.relation ? 'c' : returns.type === 'void' ? 'p' : 'b',
    returnRelation: returns.relation ?? null,
    variadic: false,
    description: null,
    privileges: {},
    argCount: params.length,
    defaultCount: 0,
    params: params.map((param) => ({ ...param, mode: 'i' as const })),
  };
}

const cache = schemaCacheFromDocument({
  schema: 'app',
  exists: true,
  relations: [
    { name: 'directors', kind: 'r', description: null, insertable: true, updatable: true, deletable: true, columns: [column('id', 'int4', 1), column('name', 'text', 2)], primaryKey: ['id'], uniqueKeys: [['id']], privileges: {}, viewDefinition: null, oid: 1 },
    {
      name: 'films',
      kind: 'r',
      description: null,
      insertable: true,
      updatable: true,
      deletable: true,
      columns: [column('id', 'int4', 1), column('director_id', 'int4', 2), column('title', 'text', 3), column('rating', 'numeric', 4), column('data', 'jsonb', 5)],
      primaryKey: ['id'],
      uniqueKeys: [['id']],
      privileges: {},
      viewDefinition: null,
      oid: 2,
    },
  ],
  foreignKeys: [{ constraint: 'films_director_id_fkey', table: 'films', foreignTable: 'directors', columns: [['director_id', 'id']] }],
  routines: [
    routine('add_them', 'i', [{ name: 'a', type: 'integer' }, { name: 'b', type: 'integer' }], { type: 'integer' }),
    routine('films_after', 's', [{ name: 'min_id', type: 'integer' }], { type: 'films', set: true, relation: 'films' }),
    routine('keep', 'v', [{ name: '', type: 'json' }], { type: 'void' }),
  ],
  enums: {},
}, 0);

interface HttpRequest {
  method: string;
  path: string;
  query: string;
  headers: Record<string, string>;
  body?: string;
}

/** What serveWrite / serveRpc do for a request that is not cached. */
function compileFresh(http: HttpRequest): { request: ApiRequest; payload: Payload | undefined; compiled: CompiledCall } {
  const request = buildApiRequest({ ...http, authenticated: true });
  const columns = request.query.columns !== undefined;
  const mediaType = contentMediaType(http.headers['content-type']);
  if (request.target.kind === 'routine') {
    const payload = parsePayload(http.body, mediaType, { columnsGiven: columns, forRoutine: true });
    return { request, payload, compiled: compileRpc(request.target.name, mediaType)(request, payload) };
  }
  if (request.target.kind !== 'relation') throw new Error('not a resource');
  const payload = http.method === 'DELETE' ? undefined : parsePayload(http.body, mediaType, { columnsGiven: columns && http.method !== 'PUT', forRoutine: false });
  return { request, payload, compiled: compileWrite(request.target.name)(request, payload) };
}

function compileWrite(relation: string) {
  return (request: ApiRequest, payload: Payload | undefined): CompiledCall => {
    const plan = planWrite(cache, request, relation, payload);
    return { kind: 'write', plan, statement: writeStatement(plan), publishRequest: false };
  };
}

function compileRpc(name: string, mediaType: string) {
  return (request: ApiRequest, payload: Payload | undefined): CompiledCall => {
    const plan = planRpc(cache, request, name, { payload, mediaType });
    return { kind: 'rpc', plan, statement: rpcStatement(plan), publishRequest: false };
  };
}

/** What the route does with a cached shape: the body read as its kind reads it, then the template. */
function fromCache(writes: CompiledWrites, http: HttpRequest): CompiledCall | undefined {
  const shape = callShape(http, true);
  const templates = writes.known(cache, shape);
  if (templates === undefined) return undefined;
  const kind = templates.kind;
  const mediaType = shape.mediaType;
  const payload =
    kind === 'rpc'
      ? parsePayload(http.body, mediaType, { columnsGiven: shape.columnsGiven, forRoutine: true })
      : http.method === 'DELETE'
        ? undefined
        : parsePayload(http.body, mediaType, { columnsGiven: shape.columnsGiven && http.method !== 'PUT', forRoutine: false });
  return writes.fill(templates, shape, payload);
}

/** The observable outcome of a compiled call for some results: statement, status, headers, checks. */
function outcome(compiled: CompiledCall): unknown {
  const answers = [0, 1, 3].map((page) => {
    const attempt = (run: () => unknown) => {
      try {
        return run();
      } catch (error) {
        return { error: (error as { code?: string }).code };
      }
    };
    if (compiled.kind === 'write') {
      const result = { page, body: '[]', location: '{"id":7}', inserted: page };
      return { check: needsCheck(compiled.plan) && attempt(() => checkWrite(compiled.plan, result)), response: attempt(() => writeResponse(compiled.plan, result)) };
    }
    const result = { total: null, page, body: '[]' };
    return { check: needsCallCheck(compiled.plan) && attempt(() => checkCall(compiled.plan, result)), response: attempt(() => rpcResponse(compiled.plan, result)) };
  });
  return { statement: compiled.statement, readOnly: compiled.kind === 'rpc' ? compiled.plan.readOnly : false, rollback: compiled.plan.rollback, answers };
}

const value = fc.oneof(fc.string({ maxLength: 8 }), fc.integer().map(String), fc.constantFrom('*', 'a*b', "it's", '1,2', '(x)', '"q"'));
const jsonValue = fc.oneof(fc.integer(), fc.string({ maxLength: 6 }), fc.constant(null), fc.boolean());

const shapeArbitrary = fc.record({
  target: fc.constantFrom('write', 'rpc'),
  method: fc.constantFrom('POST', 'PATCH', 'DELETE', 'PUT'),
  keys: fc.subarray(['id', 'title', 'rating', 'director_id', 'data'], { minLength: 0 }),
  array: fc.boolean(),
  filters: fc.array(fc.tuple(fc.constantFrom('id', 'title', 'rating'), fc.constantFrom('eq', 'neq', 'gt', 'like', 'not.eq')), { maxLength: 3 }),
  select: fc.constantFrom(undefined, '*', 'id,title', 'id,directors(name)'),
  limit: fc.option(fc.nat(100), { nil: undefined }),
  extra: fc.constantFrom('', 'order=id.desc', 'columns=id,title', 'on_conflict=id', 'id=in.(1,2)'),
  prefer: fc.constantFrom('', 'return=representation', 'return=headers-only', 'resolution=merge-duplicates', 'missing=default', 'count=exact', 'tx=rollback', 'handling=strict, max-affected=2', 'return=representation, count=exact'),
  accept: fc.constantFrom(undefined, 'application/vnd.pgrst.object+json', 'text/csv'),
  routine: fc.constantFrom('add_them', 'films_after', 'keep'),
});

type Shape = typeof shapeArbitrary extends fc.Arbitrary<infer T> ? T : never;

/** A request of the shape with these values. */
function requestOf(shape: Shape, values: string[], limit: number | undefined, bodyValues: unknown[]): HttpRequest {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (shape.prefer) headers.prefer = shape.prefer;
  if (shape.accept) headers.accept = shape.accept;
  if (shape.target === 'rpc') {
    const args: Record<string, Record<string, unknown>> = { add_them: { a: bodyValues[0], b: bodyValues[1] }, films_after: { min_id: bodyValues[0] }, keep: { any: bodyValues } };
    // select, filters and limits apply to a function returning rows
    const parts = shape.select && shape.routine === 'films_after' ? [`select=${encodeURIComponent(shape.select)}`] : [];
    if (shape.routine === 'films_after') {
      if (limit !== undefined) parts.push(`limit=${limit}`);
      shape.filters.forEach(([field, operator], i) => parts.push(`${field}=${encodeURIComponent(`${operator}.${values[i] ?? ''}`)}`));
    }
    return { method: 'POST', path: `/rpc/${shape.routine}`, query: parts.join('&'), headers, body: JSON.stringify(args[shape.routine]) };
  }
  const parts: string[] = [];
  if (shape.select) parts.push(`select=${encodeURIComponent(shape.select)}`);
  // filters pick the rows of an update or delete, and name the row of a PUT
  if (shape.method === 'PUT') parts.push(`id=eq.${encodeURIComponent(values[0] ?? '')}`);
  if (shape.method === 'PATCH' || shape.method === 'DELETE') {
    shape.filters.forEach(([field, operator], i) => parts.push(`${field}=${encodeURIComponent(`${operator}.${values[i] ?? ''}`)}`));
    if (limit !== undefined) parts.push(`limit=${limit}`);
  }
  if (shape.extra) parts.push(shape.extra);
  const row = Object.fromEntries(shape.keys.map((key, i) => [key, bodyValues[i] ?? null]));
  const body = shape.array ? JSON.stringify([row, row]) : JSON.stringify(row);
  return { method: shape.method, path: '/films', query: parts.join('&'), headers, body };
}

describe('compiled writes and calls', () => {
  it('answers a request from its shape exactly as a fresh compilation would', () => {
    const cached = { write: 0, rpc: 0 };
    const values = fc.array(value, { minLength: 3, maxLength: 3 });
    const bodyValues = fc.array(jsonValue, { minLength: 5, maxLength: 5 });
    fc.assert(
      fc.property(shapeArbitrary, values, values, bodyValues, bodyValues, fc.nat(100), (shape, first, second, firstBody, secondBody, otherLimit) => {
        const writes = new CompiledWrites();
        const firstHttp = requestOf(shape, first, shape.limit, firstBody);
        const secondHttp = requestOf(shape, second, shape.limit === undefined ? undefined : otherLimit, secondBody);
        expect(callShape(secondHttp, true).key).toBe(callShape(firstHttp, true).key);
        let first_: ReturnType<typeof compileFresh>;
        try {
          first_ = compileFresh(firstHttp);
        } catch {
          return; // the request itself is invalid: nothing is cached
        }
        const target = first_.request.target;
        const compile = target.kind === 'routine' ? compileRpc(target.name, 'application/json') : compileWrite(target.name);
        writes.remember(cache, firstHttp, first_.request, first_.payload, compile);
        let cachedCall: CompiledCall | undefined;
        let fresh: ReturnType<typeof compileFresh> | undefined;
        let cachedError: unknown;
        let freshError: unknown;
        try {
          cachedCall = fromCache(writes, secondHttp);
        } catch (error) {
          cachedError = (error as { code?: string }).code ?? error;
        }
        try {
          fresh = compileFresh(secondHttp);
        } catch (error) {
          freshError = (error as { code?: string }).code ?? error;
        }
        if (cachedError !== undefined) {
          // a cached shape may only fail where a fresh compilation fails the same way
          expect(cachedError).toEqual(freshError);
          return;
        }
        if (cachedCall === undefined) return;
        cached[cachedCall.kind]++;
        expect(freshError).toBeUndefined();
        expect(outcome(cachedCall)).toEqual(outcome(fresh!.compiled));
      }),
      { numRuns: 600, seed: 7 },
    );
    expect(cached.write).toBeGreaterThan(100);
    expect(cached.rpc).toBeGreaterThan(100);
  });

  it('does not template a limited update, whose check compares the changed rows with the limit', () => {
    const writes = new CompiledWrites();
    const http = { method: 'PATCH', path: '/films', query: 'order=id&limit=2', headers: { 'content-type': 'application/json' }, body: '{"title":"x"}' };
    const { request, payload } = compileFresh(http);
    writes.remember(cache, http, request, payload, compileWrite('films'));
    expect(writes.known(cache, callShape(http, true))?.kind).toBe('write');
    expect(fromCache(writes, { ...http, query: 'order=id&limit=5' })).toBeUndefined();
  });

  it('keys bodies by their keys exactly, whatever characters the keys hold', () => {
    const writes = new CompiledWrites();
    const http = { method: 'POST', path: '/films', query: '', headers: { 'content-type': 'application/json' }, body: '{"id":1,"title":"a"}' };
    const { request, payload } = compileFresh(http);
    writes.remember(cache, http, request, payload, compileWrite('films'));
    expect(fromCache(writes, { ...http, body: '{"id":2,"title":"b"}' })?.statement.values).toContain('{"id":2,"title":"b"}');
    // the same characters in one key are another body: not this template
    expect(fromCache(writes, { ...http, body: '{"id\\u0000title":1}' })).toBeUndefined();
    expect(fromCache(writes, { ...http, body: '{"title":"b","id":2}' })).toBeUndefined();
  });

  it('does not template form bodies of function calls, whose fields become arguments one by one', () => {
    const writes = new CompiledWrites();
    const http = { method: 'POST', path: '/rpc/add_them', query: '', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=1&b=2' };
    const { request, payload } = compileFresh(http);
    writes.remember(cache, http, request, payload, compileRpc('add_them', 'application/x-www-form-urlencoded'));
    expect(fromCache(writes, { ...http, body: 'a=5&b=6' })).toBeUndefined();
  });
});
