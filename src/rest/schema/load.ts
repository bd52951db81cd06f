/**
 * Loads one lease's schema cache: a single call of pglease.rest_schema() (sql/rest.sql) on the
 * service pool, then relationships and view lineage computed here.
 */
import type pg from 'pg';
import { RestError } from '../response/errors.js';
import { buildRelationships, type ForeignKey, type ViewColumnOrigins } from './relationships.js';
import type { Column, Relation, RelationKind, Relationship, Routine, RoutineParam, SchemaCache } from './types.js';
import { parseViewLineage } from './view-lineage.js';

/** pglease.rest_schema()'s document, as JSON.parse gives it. */
interface SchemaDocument {
  schema: string;
  exists: boolean;
  relations: {
    name: string;
    kind: string;
    description: string | null;
    insertable: boolean;
    updatable: boolean;
    deletable: boolean;
    columns: Column[];
    primaryKey: string[];
    uniqueKeys: string[][];
    privileges: Record<string, string[]>;
    viewDefinition: string | null;
    oid: string | number;
  }[];
  foreignKeys: ForeignKey[];
  routines: (Omit<Routine, 'schema' | 'params'> & {
    argCount: number;
    defaultCount: number;
    /** The relation whose row is the function's one argument, if so. */
    argRelation?: string | null;
    /** Not SETOF, or declared ROWS 1. */
    singleRow?: boolean;
    params: { name: string; type: string; mode: RoutineParam['mode'] }[];
  })[];
  enums: Record<string, string[]>;
  readsRequestSettings?: boolean;
}

const RELATION_KINDS: Record<string, RelationKind> = {
  r: 'table',
  v: 'view',
  m: 'materialized_view',
  f: 'foreign_table',
  p: 'partitioned_table',
};

/**
 * PostgREST's computed relationships: a function taking one row of a relation of the lease and
 * returning rows of another (`CREATE FUNCTION top_review(books) RETURNS SETOF reviews`) is embedded
 * by its name, `books?select=title,top_review(*)`: to-one when it returns one row (not SETOF, or
 * ROWS 1), to-many otherwise.
 */
function addComputedRelationships(relationships: Map<string, Relationship[]>, relations: Map<string, Relation>, routines: SchemaDocument['routines']): void {
  for (const routine of routines) {
    const origin = routine.argRelation ? relations.get(routine.argRelation) : undefined;
    const target = routine.returnRelation ? relations.get(routine.returnRelation) : undefined;
    if (!origin || !target) continue;
    const relationship: Relationship = {
      table: origin.name,
      foreignTable: target.name,
      cardinality: routine.singleRow ? 'many-to-one' : 'one-to-many',
      constraint: routine.name,
      columns: [],
      isSelf: origin.name === target.name,
      tableIsView: origin.kind !== 'table' && origin.kind !== 'partitioned_table',
      foreignTableIsView: target.kind !== 'table' && target.kind !== 'partitioned_table',
      computed: routine.name,
    };
    const list = relationships.get(origin.name);
    if (list) list.push(relationship);
    else relationships.set(origin.name, [relationship]);
  }
}

/** Input parameters without defaults: the last `defaultCount` inputs have defaults. */
/** The types of a function's single unnamed parameter that PostgREST gives the whole request body. */
const WHOLE_BODY_TYPES = new Set(['json', 'jsonb', 'text', 'xml', 'bytea']);

/**
 * Whether PostgREST's schema cache keeps a function: every input parameter named, or a single
 * unnamed one of a type that takes the whole body. Others are left out (not callable, not
 * suggested, no overload to be ambiguous with), as PostgREST leaves them out. Computed
 * relationships, which take an unnamed row, come from the raw list and are not affected.
 */
function callableByName(params: SchemaDocument['routines'][number]['params']): boolean {
  const inputs = params.filter((param) => param.mode === 'i' || param.mode === 'b' || param.mode === 'v');
  if (inputs.every((param) => param.name !== '')) return true;
  return inputs.length === 1 && WHOLE_BODY_TYPES.has(inputs[0]!.type);
}

function routineParams(params: SchemaDocument['routines'][number]['params'], defaultCount: number): RoutineParam[] {
  const inputs = params.filter((param) => param.mode === 'i' || param.mode === 'b' || param.mode === 'v');
  const firstDefault = inputs.length - defaultCount;
  return params.map((param) => ({ ...param, required: inputs.indexOf(param) !== -1 && inputs.indexOf(param) < firstDefault }));
}

export function schemaCacheFromDocument(document: SchemaDocument, loadedAt = Date.now()): SchemaCache {
  const relations = new Map<string, Relation>();
  const byOid = new Map<number, SchemaDocument['relations'][number]>();
  for (const raw of document.relations) {
    byOid.set(Number(raw.oid), raw);
    relations.set(raw.name, {
      schema: document.schema,
      name: raw.name,
      kind: RELATION_KINDS[raw.kind] ?? 'table',
      description: raw.description,
      columns: raw.columns,
      columnsByName: new Map(raw.columns.map((column) => [column.name, column])),
      primaryKey: raw.primaryKey,
      uniqueKeys: raw.uniqueKeys,
      insertable: raw.insertable,
      updatable: raw.updatable,
      deletable: raw.deletable,
      privileges: raw.privileges,
    });
  }

  // View column → base table column, following views of views down to a table.
  const directOrigins = new Map<string, Map<string, { oid: number; column: number }>>();
  for (const raw of document.relations) {
    if (raw.viewDefinition === null) continue;
    const origins = new Map<string, { oid: number; column: number }>();
    for (const origin of parseViewLineage(raw.viewDefinition)) {
      const viewColumn = raw.columns.find((column) => column.position === origin.viewColumn);
      if (viewColumn && origin.relationOid !== 0) origins.set(viewColumn.name, { oid: origin.relationOid, column: origin.column });
    }
    directOrigins.set(raw.name, origins);
  }
  const views: ViewColumnOrigins = new Map();
  for (const [view, origins] of directOrigins) {
    const resolved = new Map<string, { table: string; column: string }>();
    for (const [viewColumn, start] of origins) {
      let origin: { oid: number; column: number } | undefined = start;
      for (let hops = 0; origin && hops < 16; hops++) {
        const base = byOid.get(origin.oid);
        const column = base?.columns.find((candidate) => candidate.position === origin!.column);
        if (!base || !column) break;
        if (base.viewDefinition === null) {
          resolved.set(viewColumn, { table: base.name, column: column.name });
          break;
        }
        origin = directOrigins.get(base.name)?.get(column.name);
      }
    }
    views.set(view, resolved);
  }

  for (const [viewName, origins] of views) {
    const view = relations.get(viewName);
    if (view && view.primaryKey.length === 0) view.primaryKey = viewPrimaryKey(view, origins, relations);
  }

  const routines = new Map<string, Routine[]>();
  for (const raw of document.routines) {
    if (!callableByName(raw.params)) continue;
    const routine: Routine = {
      schema: document.schema,
      name: raw.name,
      volatility: raw.volatility,
      returnsSet: raw.returnsSet,
      returnType: raw.returnType,
      returnTypeName: raw.returnTypeName,
      returnTypeKind: raw.returnTypeKind,
      returnRelation: raw.returnRelation,
      variadic: raw.variadic,
      description: raw.description,
      params: routineParams(raw.params, raw.defaultCount),
      privileges: raw.privileges,
    };
    const list = routines.get(raw.name);
    if (list) list.push(routine);
    else routines.set(raw.name, [routine]);
  }

  const relationships = buildRelationships(relations, document.foreignKeys, views);
  addComputedRelationships(relationships, relations, document.routines);

  return {
    schema: document.schema,
    relations,
    relationships,
    routines,
    enums: new Map(Object.entries(document.enums)),
    readsRequestSettings: document.readsRequestSettings ?? true,
    loadedAt,
    estimatedBytes: estimatedBytes(document),
  };
}

/**
 * What a schema cache built from `document` holds in memory, about: measured with V8's heap
 * (schema caches built from Postgres 15's documents, `--expose-gc`), 2,131 bytes for a lease of one
 * two-column table, 216,982 for one of 50 ten-column tables with 49 foreign keys: a base and ~430
 * bytes per column (its relation's share, relationships and lookups included). Routines' parameters
 * are counted as columns.
 */
function estimatedBytes(document: SchemaDocument): number {
  let columns = 0;
  for (const relation of document.relations) columns += relation.columns.length;
  for (const routine of document.routines) columns += routine.params.length + 1;
  return SCHEMA_BASE_BYTES + 430 * columns;
}

export const SCHEMA_BASE_BYTES = 2_048;

/**
 * The primary key a view takes from its tables, as PostgREST's schema cache gives it: for each
 * base table (in the order the view's columns first show one), the view columns that show that
 * table's whole primary key unchanged, concatenated. PUT, upserts and Location then work on a view
 * of a table as on the table. A table whose key the view shows only in part adds nothing: a part
 * of a key identifies no row.
 */
function viewPrimaryKey(view: Relation, origins: Map<string, { table: string; column: string }>, relations: Map<string, Relation>): string[] {
  const tables: string[] = [];
  for (const column of view.columns) {
    const origin = origins.get(column.name);
    if (origin && !tables.includes(origin.table)) tables.push(origin.table);
  }
  const key: string[] = [];
  for (const table of tables) {
    const base = relations.get(table);
    if (!base || base.kind === 'view' || base.primaryKey.length === 0) continue;
    // the first view column showing each key column (a self-join can show one twice)
    const shown = base.primaryKey.map((keyColumn) => view.columns.find((column) => {
      const origin = origins.get(column.name);
      return origin?.table === table && origin.column === keyColumn;
    })?.name);
    if (shown.every((name): name is string => name !== undefined)) key.push(...shown);
  }
  return key;
}

/**
 * Where pglease.rest_schema() runs: the service's pool for a schema lease; for a database lease, a
 * session of its own authenticator in its database (the lease template gives every lease database
 * the same function: src/db/lease-template.ts).
 */
export interface SchemaSource {
  query<T extends pg.QueryResultRow>(query: pg.QueryConfig): Promise<pg.QueryResult<T>>;
}

/**
 * Introspects `schema` with the service's pool (or a database lease's `SchemaSource`); `roles` are those whose privileges are reported.
 * A view the lease keeps locked makes the introspection give up (sql/rest.sql): PGRST002, 503.
 */
export async function loadSchemaCache(pool: SchemaSource, schema: string, roles: string[]): Promise<SchemaCache> {
  const loadedAt = Date.now();
  let document: SchemaDocument;
  try {
    const { rows } = await pool.query<{ document: SchemaDocument }>({
      name: 'pglease.rest-schema',
      text: 'SELECT pglease.rest_schema($1, $2) AS document',
      values: [schema, roles],
    });
    document = rows[0]!.document;
  } catch (error) {
    if ((error as { code?: string }).code !== LOCK_NOT_AVAILABLE) throw error;
    throw new RestError('PGRST002', undefined, (error as Error).message, 'A transaction of the lease holds a lock on one of its views; retry when it has ended', {
      headers: { 'Retry-After': '5' },
    });
  }
  return schemaCacheFromDocument(document, loadedAt);
}

const LOCK_NOT_AVAILABLE = '55P03';
