/**
 * The typed form of a REST request, as the request parsers produce it from the URL, query string
 * and headers. No schema knowledge and no SQL here: the planner (../plan) gives it meaning.
 */

/** `->key` / `->>key` / `->0` in select, filters and order. */
export interface JsonStep {
  arrow: '->' | '->>';
  operand: { kind: 'key'; key: string } | { kind: 'index'; index: number };
}

/** A column reference with an optional JSON path: `data->a->>b`. */
export interface Field {
  name: string;
  jsonPath: JsonStep[];
}

export type JoinType = 'inner' | 'left';

/** PostgREST 12's aggregate functions in `select=` (`count()`, `amount.sum()`). */
export type AggregateFunction = 'count' | 'sum' | 'avg' | 'min' | 'max';

/** One item of `select=`. */
export type SelectItem =
  | { kind: 'field'; field: Field; alias?: string; cast?: string }
  /** `count()` (no field: every row) or `field.fn()`, its result cast with `::type`. */
  | { kind: 'aggregate'; fn: AggregateFunction; field?: Field; alias?: string; cast?: string }
  | { kind: 'star' }
  | { kind: 'embed'; relation: string; alias?: string; hint?: string; joinType?: JoinType; spread: boolean; children: SelectItem[] };

export type ComparisonOperator =
  | 'eq' | 'neq' | 'gt' | 'gte' | 'lt' | 'lte'
  | 'like' | 'ilike' | 'match' | 'imatch'
  | 'cs' | 'cd' | 'ov' | 'sl' | 'sr' | 'nxr' | 'nxl' | 'adj'
  | 'isdistinct';

export type FtsOperator = 'fts' | 'plfts' | 'phfts' | 'wfts';

/** Operators that take the `(any)` / `(all)` modifier with a `{a,b}` list. */
export const QUANTIFIABLE_OPERATORS: ReadonlySet<ComparisonOperator> = new Set(['eq', 'neq', 'gt', 'gte', 'lt', 'lte', 'like', 'ilike', 'match', 'imatch']);

export type Operation =
  | { kind: 'compare'; operator: ComparisonOperator; value: string }
  /** `like(any).{a*,b*}`: the value is a Postgres array literal, passed through as PostgREST does. */
  | { kind: 'quantified'; operator: ComparisonOperator; quantifier: 'any' | 'all'; value: string }
  | { kind: 'in'; values: string[] }
  | { kind: 'is'; value: 'null' | 'true' | 'false' | 'unknown' }
  | { kind: 'fts'; operator: FtsOperator; language?: string; value: string };

export interface Filter {
  field: Field;
  negated: boolean;
  operation: Operation;
}

/** `or=(a.eq.1,and(b.gt.2,c.lt.3))`: a tree of filters. */
export type LogicTree =
  | { kind: 'filter'; filter: Filter }
  | { kind: 'logic'; operator: 'and' | 'or'; negated: boolean; children: LogicTree[] };

export interface OrderTerm {
  /** Set for `order=rel(col)`: ordering by a column of an embedded to-one resource. */
  relation?: string;
  field: Field;
  direction?: 'asc' | 'desc';
  nulls?: 'first' | 'last';
}

/** Path of embedded resource names from the root: `clients.projects.id=eq.1` → ['clients', 'projects']. */
export type EmbedPath = string[];

export interface Range {
  offset: number;
  /** undefined: no upper bound. */
  limit?: number;
}

export type CountPreference = 'exact' | 'planned' | 'estimated';

export interface Preferences {
  count?: CountPreference;
  return?: 'minimal' | 'headers-only' | 'representation';
  resolution?: 'merge-duplicates' | 'ignore-duplicates';
  missing?: 'default' | 'null';
  tx?: 'commit' | 'rollback';
  handling?: 'lenient' | 'strict';
  maxAffected?: number;
  params?: 'single-object';
  timezone?: string;
  /** Preferences that were given but not understood (for handling=strict). */
  invalid: string[];
}

/** A response format the REST API can produce. */
export interface MediaType {
  kind: 'json' | 'object' | 'csv' | 'openapi';
  /** `;nulls=stripped`: keys whose value is null are left out. */
  stripNulls: boolean;
}

/** Everything the query string says, grouped by the embedded resource it applies to. */
export interface QueryParams {
  select: SelectItem[];
  filters: { path: EmbedPath; filter: Filter }[];
  logic: { path: EmbedPath; tree: LogicTree }[];
  order: { path: EmbedPath; terms: OrderTerm[] }[];
  /** limit/offset per embed path, keyed by the path joined with '.' ('' for the root). */
  ranges: Map<string, Range>;
  /** `columns=` (writes). */
  columns?: string[];
  /** `on_conflict=` (upserts). */
  onConflict?: string[];
  /** Parameters that are neither reserved nor filters (RPC arguments on GET). */
  rpcParams: [string, string][];
}

export type RestTarget =
  | { kind: 'relation'; name: string }
  | { kind: 'routine'; name: string }
  | { kind: 'root' };

/** A parsed REST request: what to act on, how, and how to answer. */
export interface ApiRequest {
  method: string;
  target: RestTarget;
  query: QueryParams;
  preferences: Preferences;
  /** The media types of the Accept header, best first ("any" when there is none). */
  accept: string[];
  /** The Range header, when it is valid. */
  headerRange?: Range;
  /** Whether the request carried the lease token (the lease role) or none (the anonymous role). */
  authenticated: boolean;
  /** db-max-rows of the lease, on a read of a table or view or a function call: the most rows it returns. */
  maxRows?: number;
  /** db-aggregates-enabled of the lease (reads of tables and views, function results). */
  aggregatesEnabled?: boolean;
}
