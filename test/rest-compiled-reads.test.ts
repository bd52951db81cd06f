/**
 * Reads compiled once per request shape: a request answered from a shape's template gets exactly
 * the SQL and parameters a fresh compilation gives it, whatever its values (property-based), and
 * shapes whose values the planner interprets are not cached; past 256 shapes of a schema the
 * least recently used goes first.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileRead } from '../src/rest/executor/run-read.js';
import { planRead } from '../src/rest/plan/read-plan.js';
import { CompiledReads, readShape, type CompiledRead } from '../src/rest/query/compiled-reads.js';
import { buildApiRequest } from '../src/rest/request/api-request.js';
import { schemaCacheFromDocument } from '../src/rest/schema/load.js';

function column(name: string, typeName: string, position: number) {
  return { name, position, type: typeName, typeName, typeSchema: 'pg_catalog', typeKind: 'b', elementType: null, baseType: null, nullable: true, default: null, generated: false, identity: false, maxLength: null, description: null, enumValues: null };
}

const cache = schemaCacheFromDocument({
  schema: 'app',
  exists: true,
  relations: [
    { name: 'directors', kind: 'r', description: null, insertable: true, updatable: true, deletable: true, columns: [column('id', 'int4', 1), column('name', 'text', 2)], primaryKey: ['id'], uniqueKeys: [['id']], privileges: {}, viewDefinition: null, oid: 1 },
    { name: 'films', kind: 'r', description: null, insertable: true, updatable: true, deletable: true, columns: [column('id', 'int4', 1), column('director_id', 'int4', 2), column('title', 'text', 3), column('data', 'jsonb', 4)], primaryKey: ['id'], uniqueKeys: [['id']], privileges: {}, viewDefinition: null, oid: 2 },
  ],
  foreignKeys: [{ constraint: 'films_director_id_fkey', table: 'films', foreignTable: 'directors', columns: [['director_id', 'id']] }],
  routines: [],
  enums: {},
}, 0);

function compile(query: string, headers: Record<string, string>): CompiledRead {
  const request = buildApiRequest({ method: 'GET', path: '/films', query, headers, authenticated: true });
  const plan = planRead(cache, request, 'films');
  return { plan, steps: compileRead(plan), preferenceApplied: [], publishRequest: true };
}

/** A request of one shape, and a function giving the same shape with other values. */
const value = fc.oneof(fc.string({ maxLength: 8 }), fc.integer().map(String), fc.constantFrom('*', 'a*b', "it's", '1,2', '(x)', '"q"'));
const filter = fc.tuple(fc.constantFrom('id', 'title', 'data->>a', 'directors.name', 'directors.id'), fc.constantFrom('eq', 'neq', 'gt', 'like', 'ilike', 'not.eq', 'isdistinct', 'match'));

const shapeArbitrary = fc.record({
  select: fc.constantFrom('*', 'id,title', 'id,directors(name)', 'id,directors!inner(id,name)', 'title,...directors(name)'),
  filters: fc.array(filter, { maxLength: 4 }),
  limit: fc.option(fc.nat(1000), { nil: undefined }),
  embeddedLimit: fc.option(fc.nat(50), { nil: undefined }),
  extra: fc.constantFrom('', 'order=id.desc', 'title=is.null', 'or=(id.eq.1,id.eq.2)', 'offset=3', 'id=in.(1,2)'),
  headers: fc.constantFrom<Record<string, string>>({}, { prefer: 'count=exact' }, { accept: 'text/csv' }, { range: '0-4' }),
});

interface Shape {
  select: string;
  filters: [string, string][];
  extra: string;
}

function query(shape: Shape, values: string[], limits: [number | undefined, number | undefined]): string {
  const select = shape.select;
  const parts = [`select=${encodeURIComponent(select)}`];
  shape.filters.forEach(([field, operator], i) => {
    if (field.startsWith('directors.') && !select.includes('directors(')) return;
    parts.push(`${encodeURIComponent(field)}=${encodeURIComponent(`${operator}.${values[i] ?? ''}`)}`);
  });
  if (limits[0] !== undefined) parts.push(`limit=${limits[0]}`);
  if (limits[1] !== undefined && select.includes('directors(') && !select.includes('...')) parts.push(`directors.limit=${limits[1]}`);
  if (shape.extra) parts.push(shape.extra);
  return parts.join('&');
}

describe('compiled reads', () => {
  it('answers a request from its shape exactly as a fresh compilation would', () => {
    let cached = 0;
    fc.assert(
      fc.property(shapeArbitrary, fc.array(value, { minLength: 4, maxLength: 4 }), fc.array(value, { minLength: 4, maxLength: 4 }), fc.nat(1000), (shape, first, second, otherLimit) => {
        const reads = new CompiledReads();
        const firstQuery = query(shape, first, [shape.limit, shape.embeddedLimit]);
        const secondQuery = query(shape, second, [shape.limit === undefined ? undefined : otherLimit, shape.embeddedLimit === undefined ? undefined : otherLimit % 50]);
        const firstShape = readShape({ method: 'GET', path: '/films', query: firstQuery, headers: shape.headers });
        const secondShape = readShape({ method: 'GET', path: '/films', query: secondQuery, headers: shape.headers });
        expect(secondShape.key).toBe(firstShape.key);
        let template: CompiledRead | undefined;
        try {
          compile(firstQuery, shape.headers);
          template = compile(firstShape.sentinelQuery, shape.headers);
        } catch {
          return; // the request itself is invalid: nothing is cached
        }
        reads.set(cache, firstShape, template);
        const fromShape = reads.get(cache, secondShape);
        if (fromShape === undefined) return;
        cached++;
        const fresh = compile(secondQuery, shape.headers);
        expect(fromShape.steps).toEqual(fresh.steps);
      }),
      { numRuns: 400, seed: 42 },
    );
    expect(cached).toBeGreaterThan(200);
  });

  it('does not cache a shape whose masked value the planner interprets', () => {
    const reads = new CompiledReads();
    // with a Range header, limit is intersected with it rather than bound as given
    const shape = readShape({ method: 'GET', path: '/films', query: 'limit=50', headers: { range: '0-9' } });
    reads.set(cache, shape, compile(shape.sentinelQuery, { range: '0-9' }));
    expect(reads.has(cache, shape)).toBe(true);
    expect(reads.get(cache, shape)).toBeUndefined();
  });

  it('keeps the 256 shapes of a schema used last: a shape used again outlives those compiled after it', () => {
    const reads = new CompiledReads();
    const shapeOf = (i: number) => readShape({ method: 'GET', path: '/films', query: `select=id&id=eq.1&title=eq.${i}&limit=${i}`, headers: { prefer: `count=exact, n=${i}` } });
    const template = (i: number) => compile(shapeOf(i).sentinelQuery, { prefer: `count=exact, n=${i}` });
    for (let i = 0; i < 256; i++) reads.set(cache, shapeOf(i), template(i));
    // shape 0 is the oldest compiled, but used again now: shape 1 goes first, then 2
    expect(reads.get(cache, shapeOf(0))).toBeDefined();
    reads.set(cache, shapeOf(256), template(256));
    reads.set(cache, shapeOf(257), template(257));
    expect([0, 1, 2, 3, 256, 257].map((i) => reads.has(cache, shapeOf(i)))).toEqual([true, false, false, true, true, true]);
  });

  it('refuses a NUL in a value taken from the cache, as a fresh compilation does', () => {
    const reads = new CompiledReads();
    const shape = readShape({ method: 'GET', path: '/films', query: 'id=eq.1', headers: {} });
    reads.set(cache, shape, compile(shape.sentinelQuery, {}));
    expect(() => reads.get(cache, readShape({ method: 'GET', path: '/films', query: 'id=eq.%00', headers: {} }))).toThrow(/NUL/);
  });
});
