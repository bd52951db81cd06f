/**
 * Column references, filters and logic trees → SQL boolean expressions. Every filter value is a
 * bind parameter whose type Postgres infers from the column, as PostgREST's unknown-typed literals.
 */
import type { ComparisonOperator, Field, Filter, Operation } from '../request/types.js';
import type { Condition } from '../plan/types.js';
import type { Column } from '../schema/types.js';
import { arrayLiteral, ident, literal, type Params } from './sql.js';

const SQL_OPERATORS: Record<ComparisonOperator, string> = {
  eq: '=',
  neq: '<>',
  gt: '>',
  gte: '>=',
  lt: '<',
  lte: '<=',
  like: 'LIKE',
  ilike: 'ILIKE',
  match: '~',
  imatch: '~*',
  cs: '@>',
  cd: '<@',
  ov: '&&',
  sl: '<<',
  sr: '>>',
  nxr: '&<',
  nxl: '&>',
  adj: '-|-',
  isdistinct: 'IS DISTINCT FROM',
};

const FTS_FUNCTIONS = {
  fts: 'to_tsquery',
  plfts: 'plainto_tsquery',
  phfts: 'phraseto_tsquery',
  wfts: 'websearch_to_tsquery',
} as const;

function isJsonColumn(column: Column | undefined): boolean {
  return column?.typeName === 'json' || column?.typeName === 'jsonb';
}

/**
 * `"alias"."col"` with its JSON path applied. Columns that are not json/jsonb go through
 * to_jsonb() first, so `->` works on any column (and indexes on json columns stay usable).
 */
export function fieldSql(alias: string, field: Field, column: Column | undefined): string {
  const base = `${ident(alias)}.${ident(field.name)}`;
  if (field.jsonPath.length === 0) return base;
  let sql = isJsonColumn(column) ? base : `to_jsonb(${base})`;
  for (const step of field.jsonPath) {
    sql += step.arrow + (step.operand.kind === 'key' ? literal(step.operand.key) : String(step.operand.index));
  }
  return `(${sql})`;
}

/** `*` in like/ilike patterns stands for `%` (it needs no URL encoding). */
function likePattern(operator: ComparisonOperator, value: string): string {
  return operator === 'like' || operator === 'ilike' ? value.replace(/\*/g, '%') : value;
}

function operationSql(target: string, operation: Operation, column: Column | undefined, params: Params): string {
  switch (operation.kind) {
    case 'compare':
      return `${target} ${SQL_OPERATORS[operation.operator]} ${params.add(likePattern(operation.operator, operation.value))}`;
    case 'quantified':
      return `${target} ${SQL_OPERATORS[operation.operator]} ${operation.quantifier.toUpperCase()} (${params.add(likePattern(operation.operator, operation.value))})`;
    case 'in': {
      // `in.()` is the empty list
      const values = operation.values.length === 1 && operation.values[0] === '' ? [] : operation.values;
      return `${target} = ANY (${params.add(arrayLiteral(values))})`;
    }
    case 'is':
      return `${target} IS ${operation.value.toUpperCase()}`;
    case 'fts': {
      const query = operation.language === undefined
        ? `${FTS_FUNCTIONS[operation.operator]}(${params.add(operation.value)})`
        : `${FTS_FUNCTIONS[operation.operator]}(${params.add(operation.language)}::regconfig, ${params.add(operation.value)})`;
      const vector = column?.typeName === 'tsvector'
        ? target
        : operation.language === undefined ? `to_tsvector(${target})` : `to_tsvector(${params.add(operation.language)}::regconfig, ${target})`;
      return `${vector} @@ ${query}`;
    }
  }
}

export function filterSql(alias: string, filter: Filter, column: Column | undefined, params: Params): string {
  const sql = operationSql(fieldSql(alias, filter.field, column), filter.operation, column, params);
  return filter.negated ? `NOT (${sql})` : sql;
}

/** Whether an embedded resource matched: its lateral value is not null. */
export function embedMatchedSql(joinAlias: string, spread: boolean): string {
  return spread ? `NOT (${ident(joinAlias)} IS NULL)` : `${ident(joinAlias)}."v" IS NOT NULL`;
}

export function conditionSql(alias: string, condition: Condition, params: Params): string {
  switch (condition.kind) {
    case 'filter':
      return filterSql(alias, condition.filter, condition.column, params);
    case 'embed-null': {
      const matched = embedMatchedSql(condition.embed.joinAlias, condition.embed.spread);
      return condition.isNull ? `NOT (${matched})` : matched;
    }
    case 'logic': {
      const joined = condition.children.map((child) => conditionSql(alias, child, params)).join(condition.operator === 'and' ? ' AND ' : ' OR ');
      return condition.negated ? `NOT (${joined})` : `(${joined})`;
    }
  }
}
