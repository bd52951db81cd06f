/**
 * The schema cache of one lease: its relations (tables, views, ...), the relationships between
 * them that embedding follows, its routines and enums. Built by ./load.ts from
 * pglease.rest_schema(); read by the planner (REST reads and writes), RPC and the OpenAPI document.
 */

export interface Column {
  name: string;
  /** 1-based position in the relation. */
  position: number;
  /** As Postgres spells it with its modifier: 'character varying(20)', 'integer[]', 'my_enum'. */
  type: string;
  /** pg_type.typname: 'int4', '_text', 'my_enum'. */
  typeName: string;
  typeSchema: string;
  /** pg_type.typtype: 'b' base, 'c' composite, 'd' domain, 'e' enum, 'r' range, 'm' multirange. */
  typeKind: string;
  /** typname of the element type when the column is an array. */
  elementType: string | null;
  /** For a domain, the type it is based on. */
  baseType: string | null;
  nullable: boolean;
  /** The default expression (`nextval(...)`, `now()`), null when none. */
  default: string | null;
  /** Generated (STORED) or GENERATED ALWAYS AS IDENTITY: cannot be written. */
  generated: boolean;
  identity: boolean;
  maxLength: number | null;
  description: string | null;
  enumValues: string[] | null;
}

export type RelationKind = 'table' | 'view' | 'materialized_view' | 'foreign_table' | 'partitioned_table';

export interface Relation {
  schema: string;
  name: string;
  kind: RelationKind;
  description: string | null;
  columns: Column[];
  columnsByName: Map<string, Column>;
  /** Primary key columns in key order; empty when there is none. */
  primaryKey: string[];
  /** Primary key and unique constraints, each a column list. */
  uniqueKeys: string[][];
  insertable: boolean;
  updatable: boolean;
  deletable: boolean;
  /** Privileges per role name (the lease role and its anonymous role): SELECT, INSERT, UPDATE, DELETE. */
  privileges: Record<string, string[]>;
}

export type Cardinality = 'many-to-one' | 'one-to-many' | 'one-to-one' | 'many-to-many';

/** How a junction table links the two ends of a many-to-many relationship. */
export interface Junction {
  table: string;
  /** FK from the junction to the origin, and its (junction column, origin column) pairs. */
  originConstraint: string;
  originColumns: [string, string][];
  /** FK from the junction to the target, and its (junction column, target column) pairs. */
  targetConstraint: string;
  targetColumns: [string, string][];
}

/**
 * A relationship seen from `table`: `select=foreignTable(*)` on `table` follows it. Views take
 * part through the columns they expose from their base tables.
 */
export interface Relationship {
  table: string;
  foreignTable: string;
  cardinality: Cardinality;
  /** The foreign key constraint; for many-to-many, the junction's FK to the target. */
  constraint: string;
  /** (column of table, column of foreignTable) pairs; empty for many-to-many. */
  columns: [string, string][];
  junction?: Junction;
  isSelf: boolean;
  tableIsView: boolean;
  foreignTableIsView: boolean;
  /**
   * A computed relationship (PostgREST's): the function that, given a row of `table`, returns
   * rows of `foreignTable`; embedded by its name. No columns: the function is the join.
   */
  computed?: string;
}

export interface RoutineParam {
  name: string;
  type: string;
  /** 'i' in, 'o' out, 'b' inout, 'v' variadic, 't' table column. */
  mode: 'i' | 'o' | 'b' | 'v' | 't';
  /** An input without a default. */
  required: boolean;
}

export interface Routine {
  schema: string;
  name: string;
  /** 'i' immutable, 's' stable, 'v' volatile. */
  volatility: 'i' | 's' | 'v';
  returnsSet: boolean;
  returnType: string;
  returnTypeName: string;
  /** pg_type.typtype of the return type ('c' for composite, 'p' for pseudo such as void/record). */
  returnTypeKind: string;
  /** When the function returns rows of a relation of the lease (`RETURNS SETOF films`). */
  returnRelation: string | null;
  variadic: boolean;
  description: string | null;
  /** All parameters in declaration order, inputs and outputs. */
  params: RoutineParam[];
  /** Whether each role (lease role, anonymous role) may EXECUTE it. */
  privileges: Record<string, boolean>;
}

export interface SchemaCache {
  schema: string;
  relations: Map<string, Relation>;
  /** Relationships by origin relation name. */
  relationships: Map<string, Relationship[]>;
  /** Overloads by function name. */
  routines: Map<string, Routine[]>;
  enums: Map<string, string[]>;
  /**
   * Whether any SQL of the schema may read settings (current_setting, pg_settings, SHOW): when
   * none does, requests need not publish PostgREST's request.* settings, only switch role.
   */
  readsRequestSettings: boolean;
  /** Date.now() when the introspection ran. */
  loadedAt: number;
  /** About how much memory the cache holds (../schema/schema-caches.ts bounds their sum). */
  estimatedBytes: number;
}
