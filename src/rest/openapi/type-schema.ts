/**
 * Postgres types → JSON Schema, as the REST API writes values of that type in JSON
 * (Postgres's own to_json). A standard format is used where the JSON text matches it (`uuid`,
 * `date`, `date-time` for timestamptz, `int32`, `int64`, `double`, ...); otherwise the format is
 * the Postgres type's name, as PostgREST writes it, which tools that know Postgres can read.
 * Columns add nullability, defaults, length limits and their COMMENT ON text.
 */
import type { Column, SchemaCache } from '../schema/types.js';
import { componentName, schemaRef } from './names.js';
import type { JsonSchema, JsonType, Schema } from './types.js';

/** Built-in types by the name format_type() gives them, without type modifiers. */
const BUILTIN: Record<string, JsonSchema> = {
  smallint: { type: 'integer', format: 'int16' },
  integer: { type: 'integer', format: 'int32' },
  bigint: { type: 'integer', format: 'int64' },
  oid: { type: 'integer', format: 'oid' },
  real: { type: 'number', format: 'float' },
  'double precision': { type: 'number', format: 'double' },
  numeric: { type: 'number', format: 'decimal' },
  boolean: { type: 'boolean' },
  text: { type: 'string' },
  'character varying': { type: 'string' },
  character: { type: 'string' },
  '"char"': { type: 'string' },
  name: { type: 'string' },
  citext: { type: 'string' },
  uuid: { type: 'string', format: 'uuid' },
  date: { type: 'string', format: 'date' },
  'timestamp with time zone': { type: 'string', format: 'date-time' },
  // Postgres writes these without an RFC 3339 offset: not `date-time` / `time`
  'timestamp without time zone': { type: 'string', format: 'timestamp without time zone' },
  'time without time zone': { type: 'string', format: 'time without time zone' },
  'time with time zone': { type: 'string', format: 'time with time zone' },
  interval: { type: 'string', format: 'interval' },
  // any JSON value: no `type`
  json: { format: 'json' },
  jsonb: { format: 'jsonb' },
  bytea: { type: 'string', format: 'bytea', description: 'Hex-encoded: \\x followed by two hex digits per byte.' },
  money: { type: 'string', format: 'money' },
  inet: { type: 'string', format: 'inet' },
  cidr: { type: 'string', format: 'cidr' },
  macaddr: { type: 'string', format: 'macaddr' },
  macaddr8: { type: 'string', format: 'macaddr8' },
  bit: { type: 'string', format: 'bit' },
  'bit varying': { type: 'string', format: 'bit varying' },
  tsvector: { type: 'string', format: 'tsvector' },
  tsquery: { type: 'string', format: 'tsquery' },
  xml: { type: 'string', format: 'xml' },
  // composite values of unknown shape are JSON objects
  record: { type: 'object' },
};

/** What the generator knows about the lease while mapping types. */
export interface TypeContext {
  cache: SchemaCache;
}

/** `lease_x."My Type"` → ['lease_x', 'My Type']; an unqualified name → [null, name]. */
function splitQualified(spelling: string): [string | null, string] {
  const parts: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < spelling.length; i++) {
    const char = spelling[i]!;
    if (char === '"') {
      if (quoted && spelling[i + 1] === '"') {
        current += '"';
        i++;
      } else quoted = !quoted;
    } else if (char === '.' && !quoted) {
      parts.push(current);
      current = '';
    } else current += char;
  }
  parts.push(current);
  return parts.length > 1 ? [parts[parts.length - 2]!, parts[parts.length - 1]!] : [null, parts[0]!];
}

/**
 * The schema of a value of a type as format_type() spells it: 'integer', 'character varying(20)',
 * 'timestamp(3) with time zone', 'text[]', 'lease_x.mood', 'lease_x.films' (a row type).
 */
export function typeSchema(spelling: string, context: TypeContext): Schema {
  const trimmed = spelling.trim();
  if (trimmed.endsWith('[]')) return { type: 'array', items: typeSchema(trimmed.slice(0, -2), context) };
  const builtin = BUILTIN[trimmed.replace(/\(\d+(?:,\d+)?\)/g, '')];
  if (builtin) return { ...builtin };
  const [schema, name] = splitQualified(trimmed);
  if (schema === null || schema === context.cache.schema) {
    const labels = context.cache.enums.get(name);
    if (labels) return { type: 'string', format: name, enum: [...labels] };
    if (context.cache.relations.has(name)) return schemaRef(componentName(name));
  }
  // ranges, geometric types, types of extensions: Postgres writes them as text
  return { type: 'string', format: trimmed };
}

/** Makes a schema accept null as well (JSON Schema 2020-12 style). */
export function orNull(schema: Schema): Schema {
  if ('$ref' in schema) return { oneOf: [schema, { type: 'null' }] };
  if (schema.oneOf) return { ...schema, oneOf: [...schema.oneOf, { type: 'null' }] };
  if (schema.type === undefined) return schema; // any JSON value already includes null
  const types: JsonType[] = Array.isArray(schema.type) ? schema.type : [schema.type];
  const nullable: JsonSchema = { ...schema, type: types.includes('null') ? types : [...types, 'null'] };
  if (schema.enum && !schema.enum.includes(null)) nullable.enum = [...schema.enum, null];
  return nullable;
}

/** A default expression that is a plain literal, as its JSON value; undefined for `now()` and the like. */
export function literalDefault(expression: string, schema: Schema): unknown {
  if ('$ref' in schema) return undefined;
  const types = Array.isArray(schema.type) ? schema.type : schema.type === undefined ? [] : [schema.type];
  let text = expression.trim();
  while (/^\(.*\)$/.test(text)) text = text.slice(1, -1).trim();
  if ((types.includes('integer') || types.includes('number')) && /^-?\d+(\.\d+)?$/.test(text)) return Number(text);
  if (types.includes('boolean') && (text === 'true' || text === 'false')) return text === 'true';
  const quoted = /^'((?:[^']|'')*)'(?:::[\w ."]+(?:\(\d+(?:,\d+)?\))?(?:\[\])?)?$/.exec(text);
  if (!quoted) return undefined;
  const value = quoted[1]!.replace(/''/g, "'");
  if (types.includes('string')) return value;
  if (types.includes('array') && value === '{}') return [];
  if (types.includes('integer') || types.includes('number')) return /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : undefined;
  if (schema.format === 'json' || schema.format === 'jsonb') {
    try {
      return JSON.parse(value) as unknown;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Primary key and foreign key notes as PostgREST writes them into column descriptions. */
export interface ColumnNotes {
  primaryKey: boolean;
  /** The (table, column) this column references, when it is part of a foreign key. */
  references: { table: string; column: string } | null;
}

/** A column's schema in a row as the API returns it. */
export function columnSchema(column: Column, context: TypeContext, notes: ColumnNotes): Schema {
  let schema: Schema;
  if (column.enumValues) schema = { type: 'string', format: column.typeName, enum: [...column.enumValues] };
  else if (column.typeKind === 'd' && column.baseType) schema = typeSchema(column.baseType, context);
  else if (column.typeKind === 'c') schema = { type: 'object', format: column.typeName };
  else schema = typeSchema(column.type, context);
  if ('$ref' in schema) schema = { oneOf: [schema] };

  if (column.maxLength !== null && schema.type === 'string') schema.maxLength = column.maxLength;
  const description: string[] = [];
  if (column.description) description.push(column.description);
  if (notes.primaryKey) description.push('Note:\nThis is a Primary Key.<pk/>');
  if (notes.references) {
    const { table, column: target } = notes.references;
    description.push(`Note:\nThis is a Foreign Key to \`${table}.${target}\`.<fk table='${table}' column='${target}'/>`);
  }
  if (column.default !== null) {
    const value = literalDefault(column.default, schema);
    if (value !== undefined) schema.default = value;
    else description.push(`Default: \`${column.default}\``);
  }
  if (description.length > 0) schema.description = description.join('\n\n');
  if (column.generated) schema.readOnly = true;
  return column.nullable ? orNull(schema) : schema;
}
