/**
 * ApiRequest + schema cache → a read plan: the requested relation (404 PGRST205 when it is not in
 * the cache), the embedded resources resolved to relationships, and the filters, logic trees,
 * orders and ranges of the query string attached to the node they apply to.
 */
import { negotiate } from '../request/headers.js';
import type { ApiRequest, EmbedPath, Field, Filter, LogicTree, MediaType, OrderTerm, Range, SelectItem } from '../request/types.js';
import { RestError } from '../response/errors.js';
import type { Relation, SchemaCache } from '../schema/types.js';
import { findRelationship, isToOne } from './relationship-finder.js';
import { closest } from './similarity.js';
import type { Condition, EmbedNode, OrderItem, ReadNode, ReadPlan, SelectField } from './types.js';

const ALL_ROWS: Range = { offset: 0 };

/** The relation a request names, or PGRST205 with a "perhaps you meant" hint. */
export function findRelation(cache: SchemaCache, name: string): Relation {
  const relation = cache.relations.get(name);
  if (relation) return relation;
  const suggestion = closest(name, cache.relations.keys(), 0.75);
  throw new RestError(
    'PGRST205',
    `Could not find the table '${cache.schema}.${name}' in the schema cache`,
    null,
    suggestion === undefined ? null : `Perhaps you meant the table '${cache.schema}.${suggestion}'`,
  );
}

/** The output key of a selected column: alias, else the last JSON key (PostgREST's rule). */
function outputNameOf(field: Field, alias: string | undefined): string | undefined {
  if (alias !== undefined) return alias;
  if (field.jsonPath.length === 0) return undefined;
  for (let i = field.jsonPath.length - 1; i >= 0; i--) {
    const operand = field.jsonPath[i]!.operand;
    if (operand.kind === 'key') return operand.key;
  }
  return field.name;
}

/** Hands out `<name>_<n>` aliases, unique within one statement. */
class AliasCounter {
  private next = 1;
  take(name: string): string {
    return `${name}_${this.next++}`;
  }
}

/** What a read tree may contain beyond columns and embeds. */
export interface ReadNodeOptions {
  /** db-aggregates-enabled: aggregates in select, embedded resources' too (else PGRST123, as PostgREST's default). */
  aggregates?: boolean;
}

function buildNode(cache: SchemaCache, relation: Relation, alias: string, items: SelectItem[], aliases: AliasCounter, options: ReadNodeOptions): ReadNode {
  const node: ReadNode = { relation, alias, select: [], embeds: [], where: [], order: [], range: ALL_ROWS };
  for (const item of items) {
    if (item.kind === 'aggregate') {
      if (!options.aggregates) throw new RestError('PGRST123');
      const aggregate: SelectField = { kind: 'aggregate', fn: item.fn, outputName: item.alias ?? item.fn };
      if (item.field) {
        aggregate.field = item.field;
        const column = relation.columnsByName.get(item.field.name);
        if (column) aggregate.column = column;
      }
      if (item.cast !== undefined) aggregate.cast = item.cast;
      node.select.push(aggregate);
    } else if (item.kind === 'star') {
      node.select.push({ kind: 'star' });
    } else if (item.kind === 'field') {
      const field: SelectField = { kind: 'column', field: item.field };
      const outputName = outputNameOf(item.field, item.alias);
      if (outputName !== undefined) field.outputName = outputName;
      if (item.cast !== undefined) {
        field.cast = item.cast;
        field.outputName ??= item.field.name;
      }
      const column = relation.columnsByName.get(item.field.name);
      if (column) field.column = column;
      node.select.push(field);
    } else {
      const relationship = findRelationship(cache, relation.name, item.relation, item.hint);
      const toOne = isToOne(relationship);
      const outputName = item.alias ?? item.relation;
      if (item.spread && !toOne) {
        throw new RestError(
          'PGRST119',
          `A spread operation on '${item.relation}' is not possible`,
          `'${relation.name}' and '${item.relation}' do not form a many-to-one or one-to-one relationship`,
        );
      }
      // PostgREST names an embed's subquery after its alias or relation: the same name twice at one
      // level is Postgres's duplicate alias error there (and here an object with a key twice)
      if (node.embeds.some((embed) => embed.outputName === outputName)) {
        throw new RestError('42712', `table name "${outputName}" specified more than once`);
      }
      const target = cache.relations.get(relationship.foreignTable)!;
      const child = buildNode(cache, target, aliases.take(target.name), item.children, aliases, options);
      node.embeds.push({
        outputName,
        relationship,
        toOne,
        joinType: item.joinType ?? 'left',
        spread: item.spread,
        hidden: item.children.length === 0,
        node: child,
        joinAlias: aliases.take(`${relation.name}_${outputName}`),
      });
    }
  }
  return node;
}

function findEmbed(node: ReadNode, name: string): EmbedNode | undefined {
  return node.embeds.find((embed) => embed.outputName === name) ?? node.embeds.find((embed) => embed.node.relation.name === name);
}

/** The node an embed path (`clients.projects`) leads to; PGRST108 when it is not embedded. */
function nodeAt(root: ReadNode, path: EmbedPath): ReadNode {
  let node = root;
  for (const name of path) {
    const embed = findEmbed(node, name);
    if (!embed) {
      throw new RestError('PGRST108', `'${name}' is not an embedded resource in this request`, null, `Verify that '${name}' is included in the 'select' query parameter.`);
    }
    node = embed.node;
  }
  return node;
}

/** A filter on an embedded resource itself: only `is.null` / `not.is.null` make sense. */
function embedNullCondition(node: ReadNode, filter: Filter): Condition | undefined {
  if (filter.field.jsonPath.length > 0) return undefined;
  const embed = node.embeds.find((candidate) => candidate.outputName === filter.field.name);
  if (!embed) return undefined;
  if (filter.operation.kind !== 'is' || filter.operation.value !== 'null') {
    throw new RestError('PGRST120', `Bad operator on the '${filter.field.name}' embedded resource`, 'Only is null or not is null filters are allowed on embedded resources');
  }
  return { kind: 'embed-null', embed, isNull: !filter.negated };
}

function filterCondition(node: ReadNode, filter: Filter): Condition {
  const embedNull = embedNullCondition(node, filter);
  if (embedNull) return embedNull;
  const column = node.relation.columnsByName.get(filter.field.name);
  return column ? { kind: 'filter', filter, column } : { kind: 'filter', filter };
}

function logicCondition(node: ReadNode, tree: LogicTree): Condition {
  if (tree.kind === 'filter') return filterCondition(node, tree.filter);
  return { kind: 'logic', operator: tree.operator, negated: tree.negated, children: tree.children.map((child) => logicCondition(node, child)) };
}

function orderItem(node: ReadNode, term: OrderTerm): OrderItem {
  const item: OrderItem = { field: term.field };
  if (term.direction) item.direction = term.direction;
  if (term.nulls) item.nulls = term.nulls;
  if (term.relation === undefined) {
    const column = node.relation.columnsByName.get(term.field.name);
    if (column) item.column = column;
    return item;
  }
  const embed = findEmbed(node, term.relation);
  if (!embed) {
    throw new RestError('PGRST108', `'${term.relation}' is not an embedded resource in this request`, null, `Verify that '${term.relation}' is included in the 'select' query parameter.`);
  }
  if (!embed.toOne) {
    throw new RestError(
      'PGRST118',
      `A related order on '${term.relation}' is not possible`,
      `'${node.relation.name}' and '${term.relation}' do not form a many-to-one or one-to-one relationship`,
    );
  }
  item.embed = embed;
  const column = embed.node.relation.columnsByName.get(term.field.name);
  if (column) item.column = column;
  return item;
}

/** limit/offset intersected with the Range header (the header applies to the top level only). */
export function topLevelRange(queryRange: Range | undefined, headerRange: Range | undefined): Range {
  if (!headerRange) return queryRange ?? ALL_ROWS;
  if (!queryRange) return headerRange;
  const offset = Math.max(queryRange.offset, headerRange.offset);
  const ends = [queryRange, headerRange].filter((range) => range.limit !== undefined).map((range) => range.offset + range.limit!);
  if (ends.length === 0) return { offset };
  return { offset, limit: Math.max(0, Math.min(...ends) - offset) };
}

/** Attaches filters, logic trees, orders and ranges of the query string to their nodes. */
export function applyQueryParams(root: ReadNode, request: ApiRequest): void {
  const { query } = request;
  for (const { path, filter } of query.filters) {
    const node = nodeAt(root, path);
    node.where.push(filterCondition(node, filter));
  }
  for (const { path, tree } of query.logic) {
    const node = nodeAt(root, path);
    node.where.push(logicCondition(node, tree));
  }
  for (const { path, terms } of query.order) {
    const node = nodeAt(root, path);
    node.order = terms.map((term) => orderItem(node, term));
  }
  for (const [pathKey, range] of query.ranges) {
    if (pathKey === '') continue;
    nodeAt(root, pathKey.split('.')).range = range;
  }
  root.range = topLevelRange(query.ranges.get(''), request.headerRange);
  // db-max-rows: PostgREST caps the top level's limit, whatever the request asked
  if (request.maxRows !== undefined && (root.range.limit === undefined || root.range.limit > request.maxRows)) {
    root.range = { ...root.range, limit: request.maxRows };
  }
}

/** The read tree for `relation` with the request's select, before filters are attached. */
export function buildReadNode(cache: SchemaCache, relation: Relation, select: SelectItem[], options: ReadNodeOptions = {}): ReadNode {
  return buildNode(cache, relation, relation.name, select, new AliasCounter(), options);
}

export const READ_MEDIA_TYPES: readonly MediaType['kind'][] = ['json', 'object', 'csv'];

/** GET/HEAD on a table or view. */
export function planRead(cache: SchemaCache, request: ApiRequest, relationName: string): ReadPlan {
  const relation = findRelation(cache, relationName);
  const media = negotiate(request.accept, READ_MEDIA_TYPES);
  const root = buildReadNode(cache, relation, request.query.select, { aggregates: request.aggregatesEnabled === true });
  applyQueryParams(root, request);
  const plan: ReadPlan = { kind: 'read', root, media, headersOnly: request.method === 'HEAD' };
  if (request.preferences.count) plan.count = request.preferences.count;
  return plan;
}
