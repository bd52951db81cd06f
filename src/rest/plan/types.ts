/**
 * Plans: a typed request resolved against the schema cache. A read plan is a tree of nodes, one
 * per relation (the requested one, then each embedded resource), saying which columns to select,
 * which conditions and order apply at that level, and how each child is joined. `Plan.kind` is the
 * action; writes and RPC (issue 5) add their own kinds next to 'read' and reuse ReadNode for the
 * representation they return.
 */
import type { AggregateFunction, CountPreference, Field, Filter, MediaType, Range } from '../request/types.js';
import type { Column, Relation, Relationship } from '../schema/types.js';
import type { RpcPlan } from './rpc-plan.js';
import type { WritePlan } from './write-plan.js';

/** A selected column (or `*`) of a node. */
export type SelectField =
  | { kind: 'star' }
  | {
      kind: 'column';
      field: Field;
      /** The key it gets in the output: alias, or the last JSON key, or none (the column name). */
      outputName?: string;
      cast?: string;
      /** From the schema cache; undefined when the column is unknown (Postgres will say so). */
      column?: Column;
    }
  /** An aggregate (db_aggregates_enabled): the node's other columns become its GROUP BY. */
  | { kind: 'aggregate'; fn: AggregateFunction; field?: Field; column?: Column; outputName: string; cast?: string };

/** A WHERE condition of a node. */
export type Condition =
  | { kind: 'filter'; filter: Filter; column?: Column }
  | { kind: 'logic'; operator: 'and' | 'or'; negated: boolean; children: Condition[] }
  /** `rel=is.null` / `rel=not.is.null`: whether an embedded resource matched. */
  | { kind: 'embed-null'; embed: EmbedNode; isNull: boolean };

export interface OrderItem {
  field: Field;
  column?: Column;
  direction?: 'asc' | 'desc';
  nulls?: 'first' | 'last';
  /** Ordering by a column of an embedded to-one resource (`order=clients(name)`). */
  embed?: EmbedNode;
}

export interface ReadNode {
  relation: Relation;
  /** The SQL alias of this relation: the relation's name at the root, `<name>_<n>` below. */
  alias: string;
  select: SelectField[];
  embeds: EmbedNode[];
  where: Condition[];
  order: OrderItem[];
  range: Range;
}

export interface EmbedNode {
  /** The key it gets in its parent's output (alias or relation name). */
  outputName: string;
  relationship: Relationship;
  toOne: boolean;
  joinType: 'inner' | 'left';
  /** `...rel(cols)`: its columns are merged into the parent's. */
  spread: boolean;
  /** `rel()`: joined for filtering only, not in the output. */
  hidden: boolean;
  node: ReadNode;
  /** SQL alias of the lateral subquery that joins it. */
  joinAlias: string;
}

export interface ReadPlan {
  kind: 'read';
  root: ReadNode;
  media: MediaType;
  count?: CountPreference;
  /** HEAD: headers only, the body is not built. */
  headersOnly: boolean;
}

/** Every action the REST pipeline executes: reads, writes ('insert' | 'update' | 'delete') and calls. */
export type Plan = ReadPlan | WritePlan | RpcPlan;
