/**
 * A read plan → one SQL statement that returns one row: the total count (when asked for), the
 * number of rows on the page, the response body built by Postgres (JSON array, object or CSV), and
 * what the request's SQL left in response.headers and response.status (sql.ts).
 *
 * Shape, for `GET /films?select=title,director:directors(name),roles(character)&year=gt.2000`:
 *
 *   WITH "pgrst_source" AS (
 *     SELECT "films"."title", "films_director_2"."v" AS "director", coalesce("films_roles_4"."v", '[]') AS "roles"
 *     FROM "lease_x"."films" AS "films"
 *     LEFT JOIN LATERAL (SELECT row_to_json("pgrst_row") AS "v" FROM "lease_x"."directors" AS "directors_1",
 *                          LATERAL (SELECT "directors_1"."name") AS "pgrst_row"
 *                        WHERE "directors_1"."id" = "films"."director_id") AS "films_director_2" ON TRUE
 *     LEFT JOIN LATERAL (SELECT json_agg("pgrst_rows") AS "v" FROM (SELECT "roles_3"."character" FROM ...
 *                        WHERE "roles_3"."film_id" = "films"."id") AS "pgrst_rows") AS "films_roles_4" ON TRUE
 *     WHERE "films"."year" > $1
 *   )
 *   SELECT NULL::bigint AS "total", count(*) AS "page", coalesce(json_agg("pgrst_t"), '[]')::text AS "body"
 *   FROM "pgrst_source" AS "pgrst_t"
 *
 * To-one resources are one JSON object per row (`row_to_json`), to-many ones a JSON array
 * (`json_agg`), both in LATERAL joins so that filters (`!inner`, `rel=is.null`) and orders on
 * them (`order=director(name)`) can use them; spread resources (`...rel(cols)`) are joined as
 * plain columns.
 */
import { cappedBody } from './response-limit.js';
import type { EmbedNode, ReadNode, ReadPlan, SelectField } from '../plan/types.js';
import { conditionSql, embedMatchedSql, fieldSql } from './conditions.js';
import { RestError } from '../response/errors.js';
import { ident, Params, RESPONSE_SETTINGS_SQL } from './sql.js';

export interface Statement {
  text: string;
  values: (string | null)[];
}

function selectFieldSql(node: ReadNode, field: SelectField): string {
  if (field.kind === 'star') return `${ident(node.alias)}.*`;
  if (field.kind === 'aggregate') {
    let sql = `${field.fn}(${field.field === undefined ? '*' : fieldSql(node.alias, field.field, field.column)})`;
    if (field.cast !== undefined) sql = `CAST(${sql} AS ${field.cast})`;
    return `${sql} AS ${ident(field.outputName)}`;
  }
  let sql = fieldSql(node.alias, field.field, field.column);
  if (field.cast !== undefined) sql = `CAST(${sql} AS ${field.cast})`;
  return field.outputName === undefined ? sql : `${sql} AS ${ident(field.outputName)}`;
}

/** Whether a node's own select has an aggregate. */
function hasAggregates(node: ReadNode): boolean {
  return node.select.some((field) => field.kind === 'aggregate');
}

/**
 * Whether a node's rows are groups (PostgREST 12's groupF): an aggregate in its select, or in a
 * spread embed's, whose columns count as the node's own. Then every other selected column, every
 * embedded resource (as jsonb: json has no equality) and every spread column is a GROUP BY term.
 */
function isAggregated(node: ReadNode): boolean {
  return hasAggregates(node) || node.embeds.some((embed) => embed.spread && !embed.hidden && hasAggregates(embed.node));
}

/** The name a spread child's column has in its join (what `"alias".*` shows). */
function spreadColumnName(field: Extract<SelectField, { kind: 'column' }>): string {
  return field.outputName ?? field.field.name;
}

/** The input of a spread child's `index`th select item when its aggregate is computed by the parent. */
function liftedAggregateName(index: number): string {
  return `pgrst_agg_${index}`;
}

/**
 * The parent's select items of an embed; with `groups` (the parent is aggregated) also its GROUP BY
 * terms. A spread whose child has aggregates computes them here, over the child's rows as joined:
 * PostgREST applies them "within the context of the top-level".
 */
function embedSelectSql(embed: EmbedNode, groups: string[] | undefined): string | undefined {
  if (embed.hidden) return undefined;
  const join = ident(embed.joinAlias);
  if (embed.spread) {
    const child = embed.node;
    if (!hasAggregates(child)) {
      if (groups) for (const field of child.select) if (field.kind === 'column') groups.push(`${join}.${ident(spreadColumnName(field))}`);
      return `${join}.*`;
    }
    return child.select
      .map((field, index) => {
        if (field.kind === 'star') return `${join}.*`;
        if (field.kind === 'column') {
          const column = `${join}.${ident(spreadColumnName(field))}`;
          groups?.push(column);
          return column;
        }
        let sql = `${field.fn}(${field.field === undefined ? '*' : `${join}.${ident(liftedAggregateName(index))}`})`;
        if (field.cast !== undefined) sql = `CAST(${sql} AS ${field.cast})`;
        return `${sql} AS ${ident(field.outputName)}`;
      })
      .join(', ');
  }
  const value = `${join}."v"`;
  const embedded = embed.toOne ? value : `coalesce(${value}, '[]')`;
  if (!groups) return `${embedded} AS ${ident(embed.outputName)}`;
  const term = `(${embedded})::jsonb`;
  groups.push(term);
  return `${term} AS ${ident(embed.outputName)}`;
}

/**
 * Columns that relate a child's rows to its parent's (and the junction join of many-to-many); for
 * a computed relationship, the call of its function on the parent's row, which is the child's
 * source.
 */
function joinCondition(embed: EmbedNode, parentAlias: string): { junction?: string; condition: string; source?: string } {
  const child = embed.node;
  const relationship = embed.relationship;
  if (relationship.computed !== undefined) {
    return { condition: 'TRUE', source: `${ident(child.relation.schema)}.${ident(relationship.computed)}(${ident(parentAlias)})` };
  }
  if (relationship.junction) {
    const junction = relationship.junction;
    const junctionAlias = `${child.alias}_junction`;
    const toTarget = junction.targetColumns.map(([junctionColumn, column]) => `${ident(junctionAlias)}.${ident(junctionColumn)} = ${ident(child.alias)}.${ident(column)}`);
    const toOrigin = junction.originColumns.map(([junctionColumn, column]) => `${ident(junctionAlias)}.${ident(junctionColumn)} = ${ident(parentAlias)}.${ident(column)}`);
    return {
      junction: `JOIN ${ident(child.relation.schema)}.${ident(junction.table)} AS ${ident(junctionAlias)} ON ${toTarget.join(' AND ')}`,
      condition: toOrigin.join(' AND '),
    };
  }
  return {
    condition: relationship.columns.map(([parentColumn, childColumn]) => `${ident(child.alias)}.${ident(childColumn)} = ${ident(parentAlias)}.${ident(parentColumn)}`).join(' AND '),
  };
}

/** Whether a hidden (`rel()`) embed must still be joined: only when it filters the parent. */
function embedFilters(parent: ReadNode, embed: EmbedNode): boolean {
  return embed.joinType === 'inner' || parent.where.some(function refersTo(condition): boolean {
    if (condition.kind === 'embed-null') return condition.embed === embed;
    if (condition.kind === 'logic') return condition.children.some(refersTo);
    return false;
  });
}

interface NodeSqlOptions {
  /** The relation of the parent and the embed this node is joined through (absent at the root). */
  parent?: { alias: string; embed: EmbedNode };
  /** Build `SELECT 1 ...` without order/range, for a count. */
  forCount?: boolean;
  /** Extra select items (related-order keys of a to-one embed). */
  extraSelect?: string[];
  /** Select list rendered inside a `LATERAL (SELECT ...) AS "pgrst_row"` (to-one embeds). */
  rowLateral?: boolean;
  /** Read the root's rows from this CTE instead of its relation (a write's RETURNING, a function's result). */
  source?: string;
  /** A spread child whose aggregates its parent computes: select their inputs, group nothing. */
  liftAggregates?: boolean;
}

function embedJoinSql(parent: ReadNode, embed: EmbedNode, params: Params): string {
  const orderKeys = parent.order
    .filter((item) => item.embed === embed)
    .map((item, i) => `${fieldSql(embed.node.alias, item.field, item.column)} AS "o${i + 1}"`);
  // an aggregate cannot be computed in a LATERAL of its own level: an aggregated to-one child is
  // a subquery whose one row (one group) becomes the object
  const groupedToOne = embed.toOne && !embed.spread && isAggregated(embed.node);
  if (groupedToOne && orderKeys.length > 0) {
    throw new RestError('PGRST100', `'${embed.outputName}' cannot be ordered by: its select has aggregate functions`, 'Order by a column of the embedded resource without aggregates');
  }
  const childSql = nodeSql(embed.node, params, {
    parent: { alias: parent.alias, embed },
    ...(embed.toOne && !embed.spread && !groupedToOne ? { rowLateral: true, extraSelect: orderKeys } : {}),
    ...(embed.spread && hasAggregates(embed.node) ? { liftAggregates: true } : {}),
  });
  const joinKind = embed.joinType === 'inner' ? 'INNER JOIN LATERAL' : 'LEFT JOIN LATERAL';
  let lateral: string;
  let on = 'TRUE';
  if (groupedToOne) {
    lateral = `SELECT row_to_json("pgrst_row") AS "v" FROM (${childSql}) AS "pgrst_row"`;
  } else if (embed.spread || embed.toOne) {
    lateral = childSql;
  } else {
    lateral = `SELECT json_agg("pgrst_rows") AS "v" FROM (${childSql}) AS "pgrst_rows"`;
    if (embed.joinType === 'inner') on = embedMatchedSql(embed.joinAlias, false);
  }
  return `${joinKind} (${lateral}) AS ${ident(embed.joinAlias)} ON ${on}`;
}

/** The alias of a spread embed's order keys (see spreadOrderJoinSql). */
function spreadOrderAlias(embed: EmbedNode): string {
  return `${embed.joinAlias}_order`;
}

/**
 * The related-order keys of a spread embed (`...rel(a)` with `order=rel(b)`), in a join of their
 * own: the spread's columns come through as `"alias".*`, where extra key columns would show.
 */
function spreadOrderJoinSql(parent: ReadNode, embed: EmbedNode, params: Params): string | undefined {
  const items = parent.order.filter((item) => item.embed === embed);
  if (items.length === 0) return undefined;
  const child = embed.node;
  const keys = items.map((item, i) => `${fieldSql(child.alias, item.field, item.column)} AS "o${i + 1}"`);
  const { junction, condition, source } = joinCondition(embed, parent.alias);
  let from = `${source ?? `${ident(child.relation.schema)}.${ident(child.relation.name)}`} AS ${ident(child.alias)}`;
  if (junction) from += ` ${junction}`;
  const where = [condition, ...child.where.map((item) => conditionSql(child.alias, item, params))];
  return `LEFT JOIN LATERAL (SELECT ${keys.join(', ')} FROM ${from} WHERE ${where.join(' AND ')}) AS ${ident(spreadOrderAlias(embed))} ON TRUE`;
}

/** The SELECT of one node (and, recursively, its embeds). */
function nodeSql(node: ReadNode, params: Params, options: NodeSqlOptions): string {
  const joins: string[] = [];
  const embedColumns: string[] = [];
  // with an aggregate, the other selected columns and embeds are the groups (PostgREST 12's rule)
  const groups = !options.forCount && !options.liftAggregates && isAggregated(node)
    ? node.select.flatMap((field) => (field.kind === 'column' ? [fieldSql(node.alias, field.field, field.column)] : []))
    : undefined;
  for (const embed of node.embeds) {
    if (options.forCount ? !embedFilters(node, embed) : embed.hidden && !embedFilters(node, embed)) continue;
    joins.push(embedJoinSql(node, embed, params));
    const orderJoin = embed.spread && !options.forCount ? spreadOrderJoinSql(node, embed, params) : undefined;
    if (orderJoin !== undefined) joins.push(orderJoin);
    const column = options.forCount ? undefined : embedSelectSql(embed, groups);
    if (column !== undefined) embedColumns.push(column);
  }
  const ownItems = options.liftAggregates
    ? node.select.flatMap((field, index) => {
        if (field.kind !== 'aggregate') return [selectFieldSql(node, field)];
        return field.field === undefined ? [] : [`${fieldSql(node.alias, field.field, field.column)} AS ${ident(liftedAggregateName(index))}`];
      })
    : node.select.map((field) => selectFieldSql(node, field));
  const selectItems = options.forCount ? ['1'] : [...ownItems, ...embedColumns];

  const where: string[] = [];
  let from = `${options.source ?? `${ident(node.relation.schema)}.${ident(node.relation.name)}`} AS ${ident(node.alias)}`;
  if (options.parent) {
    const { junction, condition, source } = joinCondition(options.parent.embed, options.parent.alias);
    if (source !== undefined) from = `${source} AS ${ident(node.alias)}`;
    if (junction) from += ` ${junction}`;
    where.push(condition);
  }
  for (const condition of node.where) where.push(conditionSql(node.alias, condition, params));

  let sql: string;
  if (options.rowLateral) {
    const rowSelect = selectItems.length === 0 ? '' : ` ${selectItems.join(', ')}`;
    sql = `SELECT ${['row_to_json("pgrst_row") AS "v"', ...(options.extraSelect ?? [])].join(', ')} FROM ${from}`;
    if (joins.length > 0) sql += ` ${joins.join(' ')}`;
    sql += `, LATERAL (SELECT${rowSelect}) AS "pgrst_row"`;
  } else {
    sql = `SELECT ${selectItems.join(', ')} FROM ${from}`;
    if (joins.length > 0) sql += ` ${joins.join(' ')}`;
  }
  if (where.length > 0) sql += ` WHERE ${where.join(' AND ')}`;
  if (options.forCount) return sql;
  if (groups !== undefined && groups.length > 0) sql += ` GROUP BY ${groups.join(', ')}`;

  if (node.order.length > 0) {
    const keys = node.order.map((item) => {
      let key: string;
      if (item.embed) {
        const index = node.order.filter((other) => other.embed === item.embed).indexOf(item) + 1;
        key = `${ident(item.embed.spread ? spreadOrderAlias(item.embed) : item.embed.joinAlias)}."o${index}"`;
      } else {
        key = fieldSql(node.alias, item.field, item.column);
      }
      if (item.direction) key += item.direction === 'asc' ? ' ASC' : ' DESC';
      if (item.nulls) key += item.nulls === 'first' ? ' NULLS FIRST' : ' NULLS LAST';
      return key;
    });
    sql += ` ORDER BY ${keys.join(', ')}`;
  }
  if (node.range.limit !== undefined) sql += ` LIMIT ${params.add(String(node.range.limit))}`;
  if (node.range.offset > 0) sql += ` OFFSET ${params.add(String(node.range.offset))}`;
  return sql;
}

/** `SELECT 1 FROM ... WHERE ...` of the root with no order or range: what a count counts. */
export function countSource(plan: ReadPlan, params: Params): string {
  return nodeSql(plan.root, params, { forCount: true });
}

/**
 * The SELECT of a read tree whose root rows come from the CTE `source` rather than its relation:
 * the representation of a write or of a function's result (`forCount`: what a count counts).
 */
export function sourcedNodeSql(node: ReadNode, params: Params, source: string, forCount = false): string {
  return nodeSql(node, params, forCount ? { source, forCount } : { source });
}

/** The response body built from the rows of `"pgrst_source"` (aliased `"pgrst_t"`). */
export function bodySql(plan: ReadPlan): string {
  if (plan.headersOnly) return 'NULL::text';
  const rows = plan.media.stripNulls ? 'json_strip_nulls(json_agg("pgrst_t"))' : 'json_agg("pgrst_t")';
  switch (plan.media.kind) {
    case 'object':
      return cappedBody(`coalesce((${rows}->0)::text, '')`);
    case 'csv':
      return cappedBody(
        `(SELECT coalesce(string_agg(a.k, ','), '') FROM (SELECT json_object_keys(r)::text AS k FROM (SELECT row_to_json(hh) AS r FROM "pgrst_source" AS hh LIMIT 1) s) a)` +
          ` || chr(10) || coalesce(string_agg(substring("pgrst_t"::text, 2, length("pgrst_t"::text) - 2), chr(10)), '')`,
      );
    default:
      return cappedBody(`coalesce(${rows}, '[]')::text`);
  }
}

/**
 * The statement of a read: `total` (exact count, or NULL), `page` (rows in the body) and `body`.
 * Planned and estimated counts come from a separate EXPLAIN of `countSource` (see ../executor).
 */
export function readStatement(plan: ReadPlan): Statement {
  const params = new Params();
  const source = nodeSql(plan.root, params, {});
  const total = plan.count === 'exact' || plan.count === 'estimated' ? `(SELECT count(*) FROM (${countSource(plan, params)}) AS "pgrst_c")` : 'NULL::bigint';
  const text =
    `WITH "pgrst_source" AS (${source}) ` +
    `SELECT ${total} AS "total", count(*) AS "page", ${bodySql(plan)} AS "body", ${RESPONSE_SETTINGS_SQL} FROM "pgrst_source" AS "pgrst_t"`;
  return { text, values: params.values };
}

/** `EXPLAIN (FORMAT JSON)` of what a planned count counts; its top plan's "Plan Rows" is the count. */
export function plannedCountStatement(plan: ReadPlan): Statement {
  const params = new Params();
  const text = `EXPLAIN (FORMAT JSON) ${countSource(plan, params)}`;
  return { text, values: params.values };
}
