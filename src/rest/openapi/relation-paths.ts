/**
 * One relation (table, view, ...) → its schemas in `components` (the row as returned, the body
 * of an insert, the body of an update), its column filter parameters, and its path item with the
 * operations the role may perform there: GET with SELECT, POST with INSERT, PATCH with UPDATE,
 * DELETE with DELETE (each only where Postgres can write through the relation), and PUT (upsert
 * of one row by primary key) with INSERT and UPDATE on a relation that has a primary key.
 */
import type { Relation, SchemaCache } from '../schema/types.js';
import { componentName, parameterRef, responseRef, schemaRef } from './names.js';
import { CONTENT_RANGE, FILTER_PATTERN, RESERVED_PARAMETERS } from './parameters.js';
import { columnSchema, type ColumnNotes } from './type-schema.js';
import type { MediaTypeObject, Parameter, PathItem, Reference, Response, Schema } from './types.js';

export interface RelationComponents {
  schemas: Record<string, Schema>;
  parameters: Record<string, Parameter>;
}

/** PostgREST's convention for COMMENT ON: the first line is a summary, the rest the description. */
export function splitComment(comment: string | null): { summary?: string; description?: string } {
  if (!comment) return {};
  const [first, ...rest] = comment.split('\n');
  const description = rest.join('\n').trim();
  return description === '' ? { summary: first!.trim() } : { summary: first!.trim(), description };
}

function columnNotes(relation: Relation, cache: SchemaCache): Map<string, ColumnNotes> {
  const notes = new Map<string, ColumnNotes>();
  for (const column of relation.columns) notes.set(column.name, { primaryKey: relation.primaryKey.includes(column.name), references: null });
  for (const relationship of cache.relationships.get(relation.name) ?? []) {
    if (relationship.cardinality !== 'many-to-one' && relationship.cardinality !== 'one-to-one') continue;
    if (relationship.tableIsView || relationship.foreignTableIsView) continue;
    for (const [column, foreignColumn] of relationship.columns) {
      const note = notes.get(column);
      // a one-to-one is seen from both ends: only the end holding the FK references the other
      if (note && note.references === null && relationship.cardinality === 'many-to-one') note.references = { table: relationship.foreignTable, column: foreignColumn };
    }
  }
  return notes;
}

export function relationComponents(relation: Relation, cache: SchemaCache): RelationComponents {
  const name = componentName(relation.name);
  const notes = columnNotes(relation, cache);
  const context = { cache };
  const row: Record<string, Schema> = {};
  const writable: Record<string, Schema> = {};
  const requiredOnInsert: string[] = [];
  for (const column of relation.columns) {
    const schema = columnSchema(column, context, notes.get(column.name)!);
    row[column.name] = schema;
    if (column.generated) continue;
    writable[column.name] = defaultAsText(schema);
    if (!column.nullable && column.default === null && !column.identity) requiredOnInsert.push(column.name);
  }
  const { summary, description } = splitComment(relation.description);
  const title = summary ?? relation.name;
  const schemas: Record<string, Schema> = {
    [name]: {
      type: 'object',
      title,
      ...(description ? { description } : {}),
      'x-pglease-kind': relation.kind,
      required: relation.columns.map((column) => column.name),
      properties: row,
    },
    [`${name}.insert`]: {
      type: 'object',
      title: `${relation.name} (insert)`,
      description: 'A row to insert: columns with a default or that accept null may be left out.',
      ...(requiredOnInsert.length > 0 ? { required: requiredOnInsert } : {}),
      properties: writable,
    },
    [`${name}.update`]: {
      type: 'object',
      title: `${relation.name} (update)`,
      description: 'The columns to change.',
      properties: writable,
    },
  };

  const parameters: Record<string, Parameter> = {};
  for (const column of relation.columns) {
    if (RESERVED_PARAMETERS.has(column.name)) continue;
    parameters[filterKey(relation, column.name)] = {
      name: column.name,
      in: 'query',
      description: `Filter on \`${column.name}\` (${column.type}): \`[not.]operator.value\`, e.g. \`eq.…\`, \`in.(…)\`, \`is.null\` (operators: see the API description).`,
      required: false,
      schema: { type: 'string', pattern: FILTER_PATTERN },
    };
  }
  return { schemas, parameters };
}

/**
 * A body property whose default is told in words, not as `default`: openapi-typescript (by
 * default) makes a property with a `default` required, which would oblige clients to send
 * exactly the columns they may leave out.
 */
function defaultAsText(schema: Schema): Schema {
  if ('$ref' in schema || schema.default === undefined) return schema;
  const { default: value, ...rest } = schema;
  const note = `Default: \`${JSON.stringify(value)}\``;
  return { ...rest, description: rest.description ? `${rest.description}\n\n${note}` : note };
}

function filterKey(relation: Relation, column: string): string {
  return `rowFilter.${componentName(relation.name)}.${componentName(column)}`;
}

function filterRefs(relation: Relation): Reference[] {
  return relation.columns.filter((column) => !RESERVED_PARAMETERS.has(column.name)).map((column) => parameterRef(filterKey(relation, column.name)));
}

/** Rows in the media types the REST API answers with: a JSON array, one object, or CSV. */
export function rowsContent(row: Schema): Record<string, MediaTypeObject> {
  return {
    'application/json': { schema: { type: 'array', items: row } },
    'application/vnd.pgrst.object+json': { schema: row },
    'text/csv': { schema: { type: 'string' } },
  };
}

const ERRORS: Record<string, Reference> = { '4XX': responseRef('ClientError'), '5XX': responseRef('ServerError') };

function rowsResponse(description: string, row: Schema): Response {
  return { description, headers: CONTENT_RANGE, content: rowsContent(row) };
}

/**
 * Operations the role may perform on the relation; null when it may perform none. With
 * `ignorePrivileges` (openapi-mode ignore-privileges) every operation the relation allows.
 */
export function relationPathItem(relation: Relation, role: string, ignorePrivileges = false): PathItem | null {
  const granted = new Set(ignorePrivileges ? ['SELECT', 'INSERT', 'UPDATE', 'DELETE'] : (relation.privileges[role] ?? []));
  const name = componentName(relation.name);
  const row = schemaRef(name);
  const tags = [relation.name];
  const { summary } = splitComment(relation.description);
  const item: PathItem = {};
  const filters = filterRefs(relation);
  const select = parameterRef('select');
  const writeResponses = (done: string): Record<string, Response | Reference> => ({
    '200': rowsResponse(`${done}; the rows as they are now (\`Prefer: return=representation\`).`, row),
    '204': responseRef('NoContent'),
    ...ERRORS,
  });

  if (granted.has('SELECT')) {
    item.get = {
      operationId: `${name}.get`,
      summary: summary ?? `Read ${relation.name}`,
      tags,
      parameters: [select, ...filters, parameterRef('order'), parameterRef('limit'), parameterRef('offset'), parameterRef('or'), parameterRef('and'),
        parameterRef('range'), parameterRef('rangeUnit'), parameterRef('preferRead')],
      responses: {
        '200': rowsResponse('The rows.', row),
        '206': rowsResponse('Part of the rows (`Range`, or `limit` with `Prefer: count=…`).', row),
        ...ERRORS,
      },
    };
  }
  if (granted.has('INSERT') && relation.insertable) {
    const insert = schemaRef(`${name}.insert`);
    item.post = {
      operationId: `${name}.post`,
      summary: `Insert into ${relation.name}`,
      description: 'One row (an object) or many (an array). With `on_conflict` and `Prefer: resolution=…`, an upsert.',
      tags,
      parameters: [select, parameterRef('columns'), parameterRef('on_conflict'), parameterRef('preferInsert')],
      requestBody: {
        required: true,
        content: {
          'application/json': { schema: { oneOf: [insert, { type: 'array', items: insert }] } },
          'text/csv': { schema: { type: 'string' } },
        },
      },
      responses: {
        '201': {
          description: 'Inserted; the body holds the rows with `Prefer: return=representation`, and is empty otherwise.',
          headers: CONTENT_RANGE,
          content: rowsContent(row),
        },
        ...ERRORS,
      },
    };
  }
  if (granted.has('INSERT') && granted.has('UPDATE') && relation.insertable && relation.updatable && relation.primaryKey.length > 0) {
    item.put = {
      operationId: `${name}.put`,
      summary: `Insert or replace one row of ${relation.name}`,
      description: `Filter on every primary key column with \`eq\` (${relation.primaryKey.map((column) => `\`${column}=eq.…\``).join(', ')}); the body is the whole row.`,
      tags,
      parameters: [select, ...filters, parameterRef('columns'), parameterRef('preferWrite')],
      requestBody: { required: true, content: { 'application/json': { schema: schemaRef(`${name}.insert`) } } },
      responses: writeResponses('Written'),
    };
  }
  if (granted.has('UPDATE') && relation.updatable) {
    item.patch = {
      operationId: `${name}.patch`,
      summary: `Update rows of ${relation.name}`,
      description: 'Changes every row the filters match.',
      tags,
      parameters: [select, ...filters, parameterRef('columns'), parameterRef('order'), parameterRef('limit'), parameterRef('preferWrite')],
      requestBody: { required: true, content: { 'application/json': { schema: schemaRef(`${name}.update`) } } },
      responses: writeResponses('Updated'),
    };
  }
  if (granted.has('DELETE') && relation.deletable) {
    item.delete = {
      operationId: `${name}.delete`,
      summary: `Delete rows of ${relation.name}`,
      description: 'Deletes every row the filters match.',
      tags,
      parameters: [select, ...filters, parameterRef('order'), parameterRef('limit'), parameterRef('preferWrite')],
      responses: writeResponses('Deleted'),
    };
  }
  return Object.keys(item).length > 0 ? item : null;
}
