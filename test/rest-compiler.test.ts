/**
 * The REST compiler without HTTP or a database: request → plan → the exact SQL and bind
 * parameters (golden), for each feature of the read dialect. rest-read, rest-embed and
 * rest-injection run the same features live against a lease.
 */
import { cappedBody } from '../src/rest/query/response-limit.js';
import { describe, expect, it } from 'vitest';
import { buildApiRequest } from '../src/rest/request/api-request.js';
import { planRead } from '../src/rest/plan/read-plan.js';
import { plannedCountStatement, readStatement, type Statement } from '../src/rest/query/read-query.js';
import { schemaCacheFromDocument } from '../src/rest/schema/load.js';
import { RESPONSE_SETTINGS_SQL } from '../src/rest/query/sql.js';

function column(name: string, typeName: string, position: number) {
  return { name, position, type: typeName, typeName, typeSchema: 'pg_catalog', typeKind: 'b', elementType: null, baseType: null, nullable: true, default: null, generated: false, identity: false, maxLength: null, description: null, enumValues: null };
}

function table(name: string, oid: number, primaryKey: string[], columns: [string, string][]) {
  return {
    name, kind: 'r', description: null, insertable: true, updatable: true, deletable: true,
    columns: columns.map(([columnName, typeName], i) => column(columnName, typeName, i + 1)),
    primaryKey, uniqueKeys: [primaryKey], privileges: {}, viewDefinition: null, oid,
  };
}

const cache = schemaCacheFromDocument({
  schema: 'app',
  exists: true,
  relations: [
    table('directors', 1, ['id'], [['id', 'int4'], ['name', 'text']]),
    table('films', 2, ['id'], [['id', 'int4'], ['director_id', 'int4'], ['title', 'text'], ['data', 'jsonb'], ['search', 'tsvector'], ['tags', '_text']]),
    table('actors', 3, ['id'], [['id', 'int4'], ['name', 'text']]),
    table('roles', 4, ['film_id', 'actor_id'], [['film_id', 'int4'], ['actor_id', 'int4'], ['character', 'text']]),
  ],
  foreignKeys: [
    { constraint: 'films_director_id_fkey', table: 'films', foreignTable: 'directors', columns: [['director_id', 'id']] },
    { constraint: 'roles_film_id_fkey', table: 'roles', foreignTable: 'films', columns: [['film_id', 'id']] },
    { constraint: 'roles_actor_id_fkey', table: 'roles', foreignTable: 'actors', columns: [['actor_id', 'id']] },
  ],
  routines: [],
  enums: {},
}, 0);

function compile(url: string, headers: Record<string, string> = {}, method = 'GET'): Statement {
  const [path, query = ''] = url.split('?') as [string, string?];
  const request = buildApiRequest({ method, path, query, headers, authenticated: true });
  return readStatement(planRead(cache, request, path.slice(1)));
}

/** The statement around a root SELECT, for the default JSON body and no count. */
function jsonRead(source: string): string {
  return `WITH "pgrst_source" AS (${source}) SELECT NULL::bigint AS "total", count(*) AS "page", ${cappedBody(`coalesce(json_agg("pgrst_t"), '[]')::text`)} AS "body", ${RESPONSE_SETTINGS_SQL} FROM "pgrst_source" AS "pgrst_t"`;
}

describe('select', () => {
  it('selects * by default', () => {
    expect(compile('/films')).toEqual({ text: jsonRead('SELECT "films".* FROM "app"."films" AS "films"'), values: [] });
  });

  it('selects columns, aliases, casts and JSON paths (to_jsonb for non-JSON columns)', () => {
    expect(compile('/films?select=id,name:title,title::text,data->a->>b,tags->0')).toEqual({
      text: jsonRead(`SELECT "films"."id", "films"."title" AS "name", CAST("films"."title" AS text) AS "title", ("films"."data"->'a'->>'b') AS "b", (to_jsonb("films"."tags")->0) AS "tags" FROM "app"."films" AS "films"`),
      values: [],
    });
  });

  it('quotes names and escapes JSON keys', () => {
    expect(compile('/films?select=%22we%5C%22ird%22,data->>%22it\'s%22').text).toBe(
      jsonRead(`SELECT "films"."we""ird", ("films"."data"->>'it''s') AS "it's" FROM "app"."films" AS "films"`),
    );
  });
});

describe('filters', () => {
  it('binds every value as a parameter', () => {
    expect(compile('/films?select=id&id=eq.1&title=like.A*&data->a->>b=neq.x')).toEqual({
      text: jsonRead(`SELECT "films"."id" FROM "app"."films" AS "films" WHERE "films"."id" = $1 AND "films"."title" LIKE $2 AND ("films"."data"->'a'->>'b') <> $3`),
      values: ['1', 'A%', 'x'],
    });
  });

  it('compiles in, is, not, any/all and full-text search', () => {
    expect(compile('/films?select=id&id=in.(1,"2,3")&title=not.is.null&id=eq(any).{4,5}&title=ilike(all).{*a*,*b*}&search=fts(english).cat&title=wfts.dog')).toEqual({
      text: jsonRead(
        'SELECT "films"."id" FROM "app"."films" AS "films" WHERE "films"."id" = ANY ($1) AND NOT ("films"."title" IS NULL) AND "films"."id" = ANY ($2) ' +
          'AND "films"."title" ILIKE ALL ($3) AND "films"."search" @@ to_tsquery($4::regconfig, $5) AND to_tsvector("films"."title") @@ websearch_to_tsquery($6)',
      ),
      values: ['{"1","2,3"}', '{4,5}', '{%a%,%b%}', 'english', 'cat', 'dog'],
    });
  });

  it('compiles or/and trees with negation', () => {
    expect(compile('/films?select=id&or=(id.lt.2,and(title.like.A*,id.not.in.(3,4)))&not.and=(id.gt.0,id.lt.9)')).toEqual({
      text: jsonRead(
        'SELECT "films"."id" FROM "app"."films" AS "films" WHERE ("films"."id" < $1 OR ("films"."title" LIKE $2 AND NOT ("films"."id" = ANY ($3)))) AND NOT ("films"."id" > $4 AND "films"."id" < $5)',
      ),
      values: ['2', 'A%', '{"3","4"}', '0', '9'],
    });
  });

  it('compiles array and range operators', () => {
    expect(compile('/films?select=id&tags=cs.{a}&tags=cd.{a,b}&tags=ov.{c}').text).toBe(
      jsonRead('SELECT "films"."id" FROM "app"."films" AS "films" WHERE "films"."tags" @> $1 AND "films"."tags" <@ $2 AND "films"."tags" && $3'),
    );
  });
});

describe('order and ranges', () => {
  it('orders with directions, nulls and JSON paths, and binds limit/offset', () => {
    expect(compile('/films?select=id&order=data->a.desc.nullslast,id&limit=10&offset=20')).toEqual({
      text: jsonRead(`SELECT "films"."id" FROM "app"."films" AS "films" ORDER BY ("films"."data"->'a') DESC NULLS LAST, "films"."id" LIMIT $1 OFFSET $2`),
      values: ['10', '20'],
    });
  });

  it('intersects limit with the Range header', () => {
    expect(compile('/films?select=id&limit=5', { range: '2-10' }).values).toEqual(['3', '2']);
  });
});

describe('embedding', () => {
  it('joins a to-one resource as one JSON object per row', () => {
    expect(compile('/films?select=title,director:directors(name)')).toEqual({
      text: jsonRead(
        'SELECT "films"."title", "films_director_2"."v" AS "director" FROM "app"."films" AS "films" ' +
          'LEFT JOIN LATERAL (SELECT row_to_json("pgrst_row") AS "v" FROM "app"."directors" AS "directors_1", LATERAL (SELECT "directors_1"."name") AS "pgrst_row" ' +
          'WHERE "directors_1"."id" = "films"."director_id") AS "films_director_2" ON TRUE',
      ),
      values: [],
    });
  });

  it('joins a to-many resource as a JSON array, with its own filters, order and limit', () => {
    expect(compile('/directors?select=name,films(title)&films.title=like.A*&films.order=id.desc&films.limit=2')).toEqual({
      text: jsonRead(
        `SELECT "directors"."name", coalesce("directors_films_2"."v", '[]') AS "films" FROM "app"."directors" AS "directors" ` +
          'LEFT JOIN LATERAL (SELECT json_agg("pgrst_rows") AS "v" FROM (SELECT "films_1"."title" FROM "app"."films" AS "films_1" ' +
          'WHERE "films_1"."director_id" = "directors"."id" AND "films_1"."title" LIKE $1 ORDER BY "films_1"."id" DESC LIMIT $2) AS "pgrst_rows") AS "directors_films_2" ON TRUE',
      ),
      values: ['A%', '2'],
    });
  });

  it('joins many-to-many through the junction table', () => {
    expect(compile('/films?select=title,actors(name)').text).toBe(
      jsonRead(
        `SELECT "films"."title", coalesce("films_actors_2"."v", '[]') AS "actors" FROM "app"."films" AS "films" ` +
          'LEFT JOIN LATERAL (SELECT json_agg("pgrst_rows") AS "v" FROM (SELECT "actors_1"."name" FROM "app"."actors" AS "actors_1" ' +
          'JOIN "app"."roles" AS "actors_1_junction" ON "actors_1_junction"."actor_id" = "actors_1"."id" ' +
          'WHERE "actors_1_junction"."film_id" = "films"."id") AS "pgrst_rows") AS "films_actors_2" ON TRUE',
      ),
    );
  });

  it('filters parents with !inner (to-many: the array is not null) and with rel=is.null', () => {
    expect(compile('/directors?select=id,films!inner(id)&films.id=gt.1').text).toContain('INNER JOIN LATERAL (SELECT json_agg("pgrst_rows") AS "v"');
    expect(compile('/directors?select=id,films!inner(id)').text).toContain(') AS "directors_films_2" ON "directors_films_2"."v" IS NOT NULL');
    expect(compile('/films?select=id,roles(character)&roles=is.null').text).toContain(' ON TRUE WHERE NOT ("films_roles_2"."v" IS NOT NULL))');
  });

  it('spreads a to-one resource as plain columns', () => {
    expect(compile('/films?select=title,...directors(name)').text).toBe(
      jsonRead(
        'SELECT "films"."title", "films_directors_2".* FROM "app"."films" AS "films" ' +
          'LEFT JOIN LATERAL (SELECT "directors_1"."name" FROM "app"."directors" AS "directors_1" WHERE "directors_1"."id" = "films"."director_id") AS "films_directors_2" ON TRUE',
      ),
    );
  });

  it('orders by a to-one column through an extra key of its join', () => {
    const { text } = compile('/films?select=id,directors(name)&order=directors(name).desc');
    expect(text).toContain('SELECT row_to_json("pgrst_row") AS "v", "directors_1"."name" AS "o1" FROM');
    expect(text).toContain('ORDER BY "films_directors_2"."o1" DESC)');
  });
});

describe('counts and media types', () => {
  it('counts exactly with a subquery over the same conditions', () => {
    expect(compile('/films?select=id&id=gt.1&limit=1', { prefer: 'count=exact' })).toEqual({
      text:
        'WITH "pgrst_source" AS (SELECT "films"."id" FROM "app"."films" AS "films" WHERE "films"."id" > $1 LIMIT $2) ' +
        'SELECT (SELECT count(*) FROM (SELECT 1 FROM "app"."films" AS "films" WHERE "films"."id" > $3) AS "pgrst_c") AS "total", count(*) AS "page", ' +
        `${cappedBody(`coalesce(json_agg("pgrst_t"), '[]')::text`)} AS "body", ${RESPONSE_SETTINGS_SQL} FROM "pgrst_source" AS "pgrst_t"`,
      values: ['1', '1', '1'],
    });
  });

  it('counts by plan with EXPLAIN of the same conditions', () => {
    const request = buildApiRequest({ method: 'GET', path: '/films', query: 'id=gt.1', headers: { prefer: 'count=planned' }, authenticated: true });
    expect(plannedCountStatement(planRead(cache, request, 'films'))).toEqual({
      text: 'EXPLAIN (FORMAT JSON) SELECT 1 FROM "app"."films" AS "films" WHERE "films"."id" > $1',
      values: ['1'],
    });
  });

  it('builds a single object, CSV, or no body (HEAD) in Postgres', () => {
    expect(compile('/films?select=id', { accept: 'application/vnd.pgrst.object+json' }).text).toContain(`${cappedBody(`coalesce((json_agg("pgrst_t")->0)::text, '')`)} AS "body"`);
    const csv =
      `(SELECT coalesce(string_agg(a.k, ','), '') FROM (SELECT json_object_keys(r)::text AS k FROM (SELECT row_to_json(hh) AS r FROM "pgrst_source" AS hh LIMIT 1) s) a)` +
      ` || chr(10) || coalesce(string_agg(substring("pgrst_t"::text, 2, length("pgrst_t"::text) - 2), chr(10)), '')`;
    expect(compile('/films?select=id', { accept: 'text/csv' }).text).toContain(`${cappedBody(csv)} AS "body"`);
    expect(compile('/films?select=id', {}, 'HEAD').text).toContain('NULL::text AS "body"');
    expect(compile('/films?select=id', { accept: 'application/vnd.pgrst.array+json;nulls=stripped' }).text).toContain(`coalesce(json_strip_nulls(json_agg("pgrst_t")), '[]')::text`);
  });
});
