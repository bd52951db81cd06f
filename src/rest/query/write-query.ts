/**
 * A write plan → one SQL statement: the INSERT, UPDATE or DELETE in a CTE, the representation read
 * over the rows its RETURNING gives, and one result row: `page` (rows written, or represented),
 * `body`, `location` (the primary key of a single inserted row), `inserted` (rows inserted
 * rather than merged), then response.headers and response.status (sql.ts). The body is one bind parameter of JSON that Postgres reads into typed rows.
 *
 * Shape, for `POST /films?select=title,director:directors(last_name)` with return=representation:
 *
 *   WITH "pgrst_mutation" AS (
 *     INSERT INTO "lease_x"."films" AS "films" ("director_id", "id", "title")
 *     SELECT "pgrst_body"."director_id", "pgrst_body"."id", "pgrst_body"."title"
 *     FROM json_to_record($1::json) AS "pgrst_body"("director_id" integer, "id" integer, "title" text)
 *     RETURNING "films"."director_id", "films"."id", "films"."title"
 *   ), "pgrst_source" AS (
 *     SELECT "films"."title", "films_director_2"."v" AS "director" FROM "pgrst_mutation" AS "films"
 *     LEFT JOIN LATERAL (...) AS "films_director_2" ON TRUE
 *   )
 *   SELECT count(*) AS "page", coalesce(json_agg("pgrst_t"), '[]')::text AS "body",
 *          NULL::text AS "location", NULL::bigint AS "inserted" FROM "pgrst_source" AS "pgrst_t"
 */
import type { Condition, OrderItem } from '../plan/types.js';
import type { DeletePlan, InsertPlan, UpdatePlan, WriteLimit, WritePlan } from '../plan/write-plan.js';
import type { Payload } from '../request/body.js';
import type { Column, Relation } from '../schema/types.js';
import { conditionSql, fieldSql } from './conditions.js';
import { bodySql, sourcedNodeSql, type Statement } from './read-query.js';
import { ident, literal, Params, RESPONSE_SETTINGS_SQL } from './sql.js';

const MUTATION = '"pgrst_mutation"';

function qualified(relation: Relation): string {
  return `${ident(relation.schema)}.${ident(relation.name)}`;
}

/** What `missing=default` puts in an absent key: the column default, or its identity's next value. */
function defaultSql(relation: Relation, column: Column): string | undefined {
  if (column.default !== null && !column.generated) return `(${column.default})`;
  if (column.identity && !column.generated) {
    return `nextval(pg_get_serial_sequence(${literal(qualified(relation))}, ${literal(column.name)}))`;
  }
  return undefined;
}

/**
 * `SELECT <one value per column> FROM <the body's rows>`: json_to_record(set) types each key as
 * its column; with `missing=default` each absent key takes the column's default instead of null.
 */
export function bodyRowsSql(relation: Relation, columns: Column[], payload: Payload, applyDefaults: boolean, params: Params): string {
  const isObject = payload.shape === 'object';
  if (columns.length === 0) {
    // `{}` is one row of defaults, `[{}, {}]` as many rows as objects
    return isObject ? 'SELECT FROM (VALUES (1)) AS "pgrst_body"' : `SELECT FROM json_array_elements(${params.add(payload.json)}::json) AS "pgrst_body"`;
  }
  const typed = columns.map((column) => `${ident(column.name)} ${column.type}`).join(', ');
  const value = (column: Column) => `"pgrst_body".${ident(column.name)}`;
  if (!applyDefaults) {
    const reader = isObject ? 'json_to_record' : 'json_to_recordset';
    const values = columns.map((column) => `${value(column)} AS ${ident(column.name)}`);
    return `SELECT ${values.join(', ')} FROM ${reader}(${params.add(payload.json)}::json) AS "pgrst_body"(${typed})`;
  }
  const json = params.add(payload.json);
  const elements = isObject ? `(SELECT ${json}::jsonb AS "v") AS "pgrst_json"` : `jsonb_array_elements(${json}::jsonb) AS "pgrst_json"("v")`;
  // Every default is evaluated for every row, as PostgREST does: a row that gives its own id
  // still takes a value of the sequence, so the next row's id is PostgREST's. The lateral refers
  // to the row, so Postgres evaluates it once per row (its volatile defaults keep it a subquery).
  const defaults: string[] = [];
  const values = columns.map((column) => {
    const fallback = defaultSql(relation, column);
    if (fallback === undefined) return `${value(column)} AS ${ident(column.name)}`;
    const key = `"d${defaults.length + 1}"`;
    defaults.push(`${fallback} AS ${key}`);
    return `CASE WHEN "pgrst_json"."v" ? ${literal(column.name)} THEN ${value(column)} ELSE "pgrst_defaults".${key} END AS ${ident(column.name)}`;
  });
  const defaultsJoin = defaults.length === 0 ? '' : `, LATERAL (SELECT ${defaults.join(', ')} WHERE "pgrst_json"."v" IS NOT NULL) AS "pgrst_defaults"`;
  return `SELECT ${values.join(', ')} FROM ${elements}, LATERAL jsonb_to_record("pgrst_json"."v") AS "pgrst_body"(${typed})${defaultsJoin}`;
}

/** The RETURNING list: `*`, named columns, and whether each row was inserted (not merged). */
function returningSql(plan: WritePlan): string {
  const alias = ident(plan.relation.name);
  const items = plan.returning.map((name) => (name === '*' ? `${alias}.*` : `${alias}.${ident(name)}`));
  if (plan.kind === 'insert' && plan.countInserted) items.push(`(${alias}."xmax" = 0) AS "pgrst_inserted"`);
  return items.length === 0 ? '1' : items.join(', ');
}

function whereSql(alias: string, conditions: Condition[], params: Params): string[] {
  return conditions.map((condition) => conditionSql(alias, condition, params));
}

function orderSql(alias: string, order: OrderItem[]): string {
  return order
    .map((item) => {
      let key = fieldSql(alias, item.field, item.column);
      if (item.direction) key += item.direction === 'asc' ? ' ASC' : ' DESC';
      if (item.nulls) key += item.nulls === 'first' ? ' NULLS FIRST' : ' NULLS LAST';
      return key;
    })
    .join(', ');
}

/**
 * A limited update or delete (PostgREST 12): the rows to change are the first of `order` after the
 * filters, picked in a subquery and matched back on the order's columns (which should be unique:
 * when they are not, more rows change and the write fails with PGRST110).
 */
function limitedRows(plan: UpdatePlan | DeletePlan, limit: WriteLimit, params: Params): { from: string; match: string[] } {
  const alias = ident(plan.relation.name);
  const keys = limit.order.map((item, i) => `${fieldSql(plan.relation.name, item.field, item.column)} AS "pgrst_k${i + 1}"`);
  let sql = `SELECT ${keys.join(', ')} FROM ${qualified(plan.relation)} AS ${alias}`;
  const where = whereSql(plan.relation.name, plan.where, params);
  if (where.length > 0) sql += ` WHERE ${where.join(' AND ')}`;
  sql += ` ORDER BY ${orderSql(plan.relation.name, limit.order)}`;
  if (limit.range.limit !== undefined) sql += ` LIMIT ${params.add(String(limit.range.limit))}`;
  if (limit.range.offset > 0) sql += ` OFFSET ${params.add(String(limit.range.offset))}`;
  const match = limit.order.map((item, i) => `${fieldSql(plan.relation.name, item.field, item.column)} = "pgrst_affected"."pgrst_k${i + 1}"`);
  return { from: `(${sql}) AS "pgrst_affected"`, match };
}

function insertSql(plan: InsertPlan, params: Params): string {
  const { relation, columns } = plan;
  const alias = ident(relation.name);
  let sql = `INSERT INTO ${qualified(relation)} AS ${alias}`;
  if (columns.length > 0) sql += ` (${columns.map((column) => ident(column.name)).join(', ')})`;
  sql += ` ${bodyRowsSql(relation, columns, plan.payload, plan.applyDefaults, params)}`;
  if (plan.put && plan.put.conditions.length > 0) sql += ` WHERE ${whereSql('pgrst_body', plan.put.conditions, params).join(' AND ')}`;
  if (plan.onConflict) {
    sql += ` ON CONFLICT (${plan.onConflict.columns.map(ident).join(', ')})`;
    if (plan.onConflict.resolution === 'ignore-duplicates' || columns.length === 0) {
      sql += ' DO NOTHING';
    } else {
      sql += ` DO UPDATE SET ${columns.map((column) => `${ident(column.name)} = EXCLUDED.${ident(column.name)}`).join(', ')}`;
    }
  }
  return `${sql} RETURNING ${returningSql(plan)}`;
}

function updateSql(plan: UpdatePlan, params: Params): string {
  const { relation, columns } = plan;
  const alias = ident(relation.name);
  if (columns.length === 0) {
    // nothing to set: no row changes, but the representation keeps its columns
    return `SELECT ${returningSql(plan)} FROM ${qualified(relation)} AS ${alias} WHERE false`;
  }
  const assignments = columns.map((column) => `${ident(column.name)} = "pgrst_row".${ident(column.name)}`);
  // an array body sets the values of its first object
  const from = [`(${bodyRowsSql(relation, columns, plan.payload, plan.applyDefaults, params)} LIMIT 1) AS "pgrst_row"`];
  let where: string[];
  if (plan.limit) {
    const limited = limitedRows(plan, plan.limit, params);
    from.push(limited.from);
    where = limited.match;
  } else {
    where = whereSql(relation.name, plan.where, params);
  }
  let sql = `UPDATE ${qualified(relation)} AS ${alias} SET ${assignments.join(', ')} FROM ${from.join(', ')}`;
  if (where.length > 0) sql += ` WHERE ${where.join(' AND ')}`;
  return `${sql} RETURNING ${returningSql(plan)}`;
}

function deleteSql(plan: DeletePlan, params: Params): string {
  const alias = ident(plan.relation.name);
  let sql = `DELETE FROM ${qualified(plan.relation)} AS ${alias}`;
  let where: string[];
  if (plan.limit) {
    const limited = limitedRows(plan, plan.limit, params);
    sql += ` USING ${limited.from}`;
    where = limited.match;
  } else {
    where = whereSql(plan.relation.name, plan.where, params);
  }
  if (where.length > 0) sql += ` WHERE ${where.join(' AND ')}`;
  return `${sql} RETURNING ${returningSql(plan)}`;
}

function mutationSql(plan: WritePlan, params: Params): string {
  switch (plan.kind) {
    case 'insert':
      return insertSql(plan, params);
    case 'update':
      return updateSql(plan, params);
    case 'delete':
      return deleteSql(plan, params);
  }
}

/** The primary key of the first written row as JSON text, for the Location header. */
function locationSql(plan: WritePlan): string {
  if (plan.kind !== 'insert' || plan.locationColumns.length === 0) return 'NULL::text';
  const pairs = plan.locationColumns.map((name) => `${literal(name)}, ${ident(name)}`);
  return `(SELECT json_build_object(${pairs.join(', ')})::text FROM ${MUTATION} LIMIT 1)`;
}

/**
 * Where the representation reads the written rows. When RETURNING also says which rows were
 * inserted, that flag is left out so that `select=*` shows the relation's columns only.
 */
function representationSource(plan: WritePlan): string {
  if (plan.kind !== 'insert' || !plan.countInserted) return MUTATION;
  const names = plan.returning.includes('*') ? plan.relation.columns.map((column) => column.name) : plan.returning;
  return `(SELECT ${names.map(ident).join(', ')} FROM ${MUTATION})`;
}

export function writeStatement(plan: WritePlan): Statement {
  const params = new Params();
  const mutation = mutationSql(plan, params);
  const represent = plan.returnPreference === 'representation';
  const source = represent ? sourcedNodeSql(plan.representation.root, params, representationSource(plan)) : `SELECT 1 FROM ${MUTATION}`;
  const inserted = plan.kind === 'insert' && plan.countInserted ? `(SELECT count(*) FROM ${MUTATION} WHERE "pgrst_inserted")` : 'NULL::bigint';
  const text =
    `WITH ${MUTATION} AS (${mutation}), "pgrst_source" AS (${source}) ` +
    `SELECT count(*) AS "page", ${represent ? bodySql(plan.representation) : 'NULL::text'} AS "body", ` +
    `${locationSql(plan)} AS "location", ${inserted} AS "inserted", ${RESPONSE_SETTINGS_SQL} FROM "pgrst_source" AS "pgrst_t"`;
  return { text, values: params.values };
}
