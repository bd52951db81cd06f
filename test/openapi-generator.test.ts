/**
 * The lease document generator (src/rest/openapi) on a real lease's schema cache: the fixture
 * lease with every column type, views, FKs, functions, enums and comments. The document must be
 * valid OpenAPI 3.1, and say exactly what each role may do.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import SwaggerParser from '@apidevtools/swagger-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectPath } from '../src/paths.js';
import { leaseOpenApiDocument } from '../src/rest/openapi/document.js';
import type { JsonSchema, OpenApiDocument, Parameter, Reference } from '../src/rest/openapi/types.js';
import { loadSchemaCache } from '../src/rest/schema/load.js';
import type { SchemaCache } from '../src/rest/schema/types.js';
import { applyFixture } from './fixtures/openapi/fixture.js';
import { createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';

let service: TestService;
let lease: CreatedLeaseJson;
let cache: SchemaCache;
let owner: OpenApiDocument;
let anonymous: OpenApiDocument;

function documentFor(role: string, authenticated: boolean): OpenApiDocument {
  return leaseOpenApiDocument({ cache, role, authenticated, restUrl: lease.rest_url, title: `lease ${lease.id}`, version: '0.1.0' });
}

function property(document: OpenApiDocument, schema: string, column: string): JsonSchema {
  const row = document.components.schemas[schema] as JsonSchema;
  return row.properties![column] as JsonSchema;
}

function parameterNames(document: OpenApiDocument, path: string, method: 'get' | 'post' | 'patch' | 'delete' | 'put'): string[] {
  return (document.paths[path]![method]!.parameters ?? []).map((parameter) => {
    const key = (parameter as Reference).$ref?.replace('#/components/parameters/', '');
    return key === undefined ? (parameter as Parameter).name : document.components.parameters[key]!.name;
  });
}

beforeAll(async () => {
  service = await startTestService();
  lease = await createLease(service);
  await applyFixture(lease);
  cache = await loadSchemaCache(service.host.pool, lease.schema, [lease.role, lease.anon_role]);
  owner = documentFor(lease.role, true);
  anonymous = documentFor(lease.anon_role, false);
  // for a person to look at (test/artifacts/ is not committed)
  mkdirSync(projectPath('test/artifacts'), { recursive: true });
  writeFileSync(projectPath('test/artifacts/openapi-fixture-lease.json'), JSON.stringify(owner, null, 2));
});

afterAll(async () => {
  await service?.close();
});

describe('lease OpenAPI document', () => {
  it('is valid OpenAPI 3.1 for the lease role and for the anonymous role', async () => {
    // swagger-parser dereferences in place: hand it copies
    await expect(SwaggerParser.validate(structuredClone(owner) as never)).resolves.toBeTruthy();
    await expect(SwaggerParser.validate(structuredClone(anonymous) as never)).resolves.toBeTruthy();
    expect(owner.openapi).toBe('3.1.0');
    expect(owner.servers).toEqual([{ url: lease.rest_url, description: 'This lease' }]);
    expect(owner.components.securitySchemes.leaseToken).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('lists each relation with the operations the lease role may perform', () => {
    expect(Object.keys(owner.paths)).toEqual(
      expect.arrayContaining(['/', '/actors', '/directors', '/events', '/film_actors', '/film_titles', '/films', '/events']),
    );
    expect(Object.keys(owner.paths['/films']!).sort()).toEqual(['delete', 'get', 'patch', 'post', 'put']);
    // no primary key: no PUT
    expect(Object.keys(owner.paths['/events']!).sort()).toEqual(['delete', 'get', 'patch', 'post']);
    // a simple view is writable through, and has its table's primary key (as in PostgREST): PUT too
    expect(Object.keys(owner.paths['/film_titles']!).sort()).toEqual(['delete', 'get', 'patch', 'post', 'put']);
  });

  it('lists only what the anonymous role was granted', () => {
    expect(Object.keys(anonymous.paths).sort()).toEqual(['/', '/directors', '/rpc/greet']);
    expect(Object.keys(anonymous.paths['/directors']!)).toEqual(['get']);
    expect(anonymous.components.schemas.films).toBeUndefined();
    expect(anonymous.info.description).toContain('anonymous role');
  });

  it('maps column types to JSON Schema types and formats, with nullability', () => {
    const expected: Record<string, Partial<JsonSchema>> = {
      id: { type: 'integer', format: 'int64', readOnly: true },
      title: { type: 'string', maxLength: 120 },
      director_id: { type: ['integer', 'null'], format: 'int32' },
      code: { type: ['string', 'null'], maxLength: 5 },
      rating: { type: ['number', 'null'], format: 'decimal', default: 5 },
      runtime: { type: ['integer', 'null'], format: 'int16' },
      budget: { type: ['number', 'null'], format: 'double' },
      ratio: { type: ['number', 'null'], format: 'float' },
      released: { type: 'boolean', default: false },
      public_id: { type: 'string', format: 'uuid' },
      release_date: { type: ['string', 'null'], format: 'date' },
      starts_at: { type: ['string', 'null'], format: 'time without time zone' },
      local_created: { type: ['string', 'null'], format: 'timestamp without time zone' },
      created_at: { type: 'string', format: 'date-time' },
      duration: { type: ['string', 'null'], format: 'interval' },
      meta: { format: 'json' },
      details: { format: 'jsonb', default: { cut: 'theatrical' } },
      poster: { type: ['string', 'null'], format: 'bytea' },
      server_ip: { type: ['string', 'null'], format: 'inet' },
      showings: { type: ['string', 'null'], format: 'int4range' },
      scores: { type: ['array', 'null'], items: { type: 'integer', format: 'int32' } },
      tags: { type: 'array', items: { type: 'string' }, default: [] },
      feeling: { type: ['string', 'null'], enum: ['sad', 'ok', 'happy', null], default: 'ok' },
      feelings: { type: ['array', 'null'], items: { type: 'string', format: 'mood', enum: ['sad', 'ok', 'happy'] } },
      sequel_count: { type: ['integer', 'null'], format: 'int32' },
      status: { type: ['string', 'null'], default: 'draft' },
      title_length: { readOnly: true },
    };
    for (const [column, schema] of Object.entries(expected)) {
      expect({ column, schema: property(owner, 'films', column) }).toMatchObject({ column, schema });
    }
    // an expression is not a value: it stays in the description rather than becoming a wrong default
    expect(property(owner, 'films', 'created_at').default).toBeUndefined();
    expect(property(owner, 'films', 'created_at').description).toContain('Default: `now()`');
  });

  it('uses COMMENT ON as summaries and descriptions, and notes keys', () => {
    const films = owner.components.schemas.films as JsonSchema;
    expect(films.title).toBe('Films we know about');
    expect(films.description).toBe('One row per film, with everything a type can hold.');
    expect(owner.paths['/films']!.get!.summary).toBe('Films we know about');
    expect(property(owner, 'films', 'title').description).toContain('The title as released');
    expect(property(owner, 'films', 'id').description).toContain('<pk/>');
    expect(property(owner, 'films', 'director_id').description).toContain("<fk table='directors' column='id'/>");
    expect(owner.tags.find((tag) => tag.name === 'directors')?.description).toBe('People who direct films');
    expect(owner.paths['/rpc/films_by_director']!.post!.summary).toBe('Films of one director');
  });

  it('describes insert and update bodies: required columns, no generated ones', () => {
    const insert = owner.components.schemas['films.insert'] as JsonSchema;
    expect(insert.required).toEqual(['title']);
    expect(Object.keys(insert.properties!)).not.toContain('id');
    expect(Object.keys(insert.properties!)).not.toContain('title_length');
    // defaults are told in words in bodies: typed-client generators take `default` for "always present"
    expect((insert.properties!.released as JsonSchema).default).toBeUndefined();
    expect((insert.properties!.released as JsonSchema).description).toContain('Default: `false`');
    expect((owner.components.schemas['directors.insert'] as JsonSchema).required).toEqual(['name']);
    expect((owner.components.schemas['films.update'] as JsonSchema).required).toBeUndefined();
    const post = owner.paths['/films']!.post!;
    expect(post.requestBody).toMatchObject({ required: true, content: { 'application/json': { schema: { oneOf: [{ $ref: '#/components/schemas/films.insert' }, { type: 'array' }] } } } });
  });

  it('offers PostgREST query parameters, headers and media types', () => {
    const names = parameterNames(owner, '/films', 'get');
    expect(names).toEqual(expect.arrayContaining(['select', 'order', 'limit', 'offset', 'or', 'and', 'Range', 'Range-Unit', 'Prefer', 'title', 'created_at']));
    expect(parameterNames(owner, '/films', 'post')).toEqual(expect.arrayContaining(['select', 'columns', 'on_conflict', 'Prefer']));
    const filter = owner.components.parameters['rowFilter.films.title']!;
    expect(filter.description).toContain('`[not.]operator.value`');
    expect(owner.info.description).toContain('`ilike`');
    const pattern = new RegExp((filter.schema as JsonSchema).pattern!);
    for (const good of ['eq.x', 'not.in.(1,2)', 'like(any).{a*,b*}', 'fts(english).cat', 'is.null', 'cs.{1}']) expect(good).toMatch(pattern);
    for (const bad of ['x', 'equals.1', 'eq']) expect(bad).not.toMatch(pattern);
    expect(Object.keys((owner.paths['/films']!.get!.responses['200'] as { content: object }).content)).toEqual([
      'application/json',
      'application/vnd.pgrst.object+json',
      'text/csv',
    ]);
    expect(owner.paths['/films']!.get!.responses['4XX']).toEqual({ $ref: '#/components/responses/ClientError' });
    expect(owner.components.schemas.Error).toMatchObject({ required: ['code', 'message', 'details', 'hint'] });
    // a column name with a space is a component key of allowed characters
    expect(owner.components.parameters['rowFilter.events.what-20-happened']?.name).toBe('what happened');
  });

  it('describes functions: GET for stable and immutable ones, POST for all', () => {
    expect(Object.keys(owner.paths['/rpc/films_by_director']!).sort()).toEqual(['get', 'post']);
    expect(Object.keys(owner.paths['/rpc/add_numbers']!)).toEqual(['post']);
    expect(Object.keys(owner.paths['/rpc/greet']!).sort()).toEqual(['get', 'post']);
    const add = owner.paths['/rpc/add_numbers']!.post!;
    expect(add.requestBody).toMatchObject({
      required: true,
      content: { 'application/json': { schema: { type: 'object', required: ['a'], properties: { a: { type: 'integer' }, b: { type: 'integer' } } } } },
    });
    expect(add.responses['200']).toMatchObject({ content: { 'application/json': { schema: { type: 'integer' } } } });
    const byDirector = owner.paths['/rpc/films_by_director']!.get!;
    expect(byDirector.responses['200']).toMatchObject({ content: { 'application/json': { schema: { type: 'array', items: { $ref: '#/components/schemas/films' } } } } });
    expect(byDirector.parameters).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'director', in: 'query', required: true })]));
    expect(owner.paths['/rpc/touch']!.post!.responses['204']).toBeDefined();
    expect(owner.paths['/rpc/film_stats']!.get!.responses['200']).toMatchObject({
      content: { 'application/json': { schema: { type: 'array', items: { type: 'object', properties: { title: { type: 'string' }, n: { type: 'integer' } } } } } },
    });
    expect(owner.paths['/rpc/echo_json']!.post!.requestBody).toMatchObject({ content: { 'application/json': { schema: { format: 'json' } } } });
    // overloads: one of their argument objects
    expect((owner.paths['/rpc/area']!.post!.requestBody as { content: { 'application/json': { schema: JsonSchema } } }).content['application/json'].schema.oneOf).toHaveLength(2);
    expect(owner.paths['/rpc/set_mood']!.post!.requestBody).toMatchObject({
      content: { 'application/json': { schema: { properties: { m: { enum: ['sad', 'ok', 'happy'] } } } } },
    });
  });
});
