/**
 * What every lease document shares: PostgREST's query parameters (`select`, `order`, `limit`,
 * `offset`, `or`/`and`, `on_conflict`, `columns`), its request headers (`Prefer`, `Range`,
 * `Range-Unit`), the `Content-Range` response header, its error body and the column filter
 * grammar. Accept is not a parameter in OpenAPI (a header parameter named Accept is ignored):
 * the media types an operation answers are its responses' `content` keys instead.
 */
import type { Example, Header, JsonSchema, Parameter, Response } from './types.js';
import { headerRef, schemaRef } from './names.js';

const QUANTIFIABLE = 'eq|neq|gt|gte|lt|lte|like|ilike|match|imatch';
const PLAIN = 'cs|cd|ov|sl|sr|nxr|nxl|adj|isdistinct|in|is';
const FTS = 'fts|plfts|phfts|wfts';

/** A filter value: `[not.]operator[(modifier)].operand`. */
export const FILTER_PATTERN = `^(not\\.)?((${QUANTIFIABLE})(\\((any|all)\\))?|${PLAIN}|(${FTS})(\\([^)]*\\))?)\\.`;

export const FILTER_GRAMMAR =
  'A filter: `operator.value`, optionally negated with `not.`: ' +
  '`eq` `neq` `gt` `gte` `lt` `lte`, `like` `ilike` (`*` for `%`), `match` `imatch` (POSIX regex), ' +
  '`in.(a,b,"c,d")`, `is.null|true|false|unknown`, `isdistinct`, ' +
  '`cs` `cd` `ov` (arrays, ranges, JSON: `cs.{1,2}`), `sl` `sr` `nxr` `nxl` `adj` (ranges), ' +
  '`fts` `plfts` `phfts` `wfts` with an optional language: `fts(english).cat`. ' +
  'The comparison operators take `(any)` / `(all)` with a list: `like(any).{a*,b*}`.';

/** Query string parameter names PostgREST reserves: columns with these names cannot be filtered by name. */
export const RESERVED_PARAMETERS: ReadonlySet<string> = new Set(['select', 'order', 'limit', 'offset', 'on_conflict', 'columns', 'or', 'and']);

function preferHeader(description: string, examples: Record<string, string>): Parameter {
  return {
    name: 'Prefer',
    in: 'header',
    description,
    required: false,
    schema: { type: 'string' },
    examples: Object.fromEntries(Object.entries(examples).map(([key, value]): [string, Example] => [key, { value }])),
  };
}

export const ERROR_SCHEMA: JsonSchema = {
  type: 'object',
  description: 'An error, in PostgREST’s format: `code` is a PostgREST code (`PGRST…`) or a Postgres SQLSTATE.',
  required: ['code', 'message', 'details', 'hint'],
  properties: {
    code: { type: 'string', examples: ['PGRST100', '42501', '23505'] },
    message: { type: 'string' },
    details: { description: 'More about the error: usually a string, null, or a list (candidate relationships).' },
    hint: { type: ['string', 'null'] },
  },
};

export const SHARED_PARAMETERS: Record<string, Parameter> = {
  select: {
    name: 'select',
    in: 'query',
    description:
      'Columns to return: `*`, `col`, `alias:col`, `col::text`, JSON paths `data->a->>b`, and related rows through ' +
      'foreign keys: `*,director(name)`, `actors!inner(*)`, `...director(name)`. Filters, `order` and `limit` apply ' +
      'to related rows as `director.name=eq.x`, `actors.order=name`.',
    required: false,
    schema: { type: 'string' },
    example: '*',
  },
  order: {
    name: 'order',
    in: 'query',
    description: 'Sort keys, comma separated: `col[.asc|.desc][.nullsfirst|.nullslast]`, e.g. `created_at.desc,id`.',
    required: false,
    schema: { type: 'string' },
  },
  limit: {
    name: 'limit',
    in: 'query',
    description: 'At most this many rows.',
    required: false,
    schema: { type: 'integer', minimum: 0 },
  },
  offset: {
    name: 'offset',
    in: 'query',
    description: 'Skip this many rows.',
    required: false,
    schema: { type: 'integer', minimum: 0 },
  },
  or: {
    name: 'or',
    in: 'query',
    description: 'Filters joined with OR, nestable: `(age.lt.18,and(age.gte.65,retired.is.true))`.',
    required: false,
    schema: { type: 'string' },
  },
  and: {
    name: 'and',
    in: 'query',
    description: 'Filters joined with AND, nestable: `(age.gte.18,or(student.is.true,age.lt.26))`.',
    required: false,
    schema: { type: 'string' },
  },
  on_conflict: {
    name: 'on_conflict',
    in: 'query',
    description: 'Comma-separated columns of a unique key for an upsert (with `Prefer: resolution=merge-duplicates`).',
    required: false,
    schema: { type: 'string' },
  },
  columns: {
    name: 'columns',
    in: 'query',
    description: 'Comma-separated columns to take from the body; other keys are ignored and missing ones get their default.',
    required: false,
    schema: { type: 'string' },
  },
  range: {
    name: 'Range',
    in: 'header',
    description: 'Rows to return, zero-based and inclusive: `0-24`, or `25-` for all from the 26th.',
    required: false,
    schema: { type: 'string', pattern: '^\\d+-\\d*$' },
  },
  rangeUnit: {
    name: 'Range-Unit',
    in: 'header',
    description: 'The unit of `Range`.',
    required: false,
    schema: { type: 'string', enum: ['items'] },
  },
  preferRead: preferHeader('Ask for a total count in `Content-Range`, e.g. `0-24/3573`.', {
    'count=exact': 'count=exact',
    'count=planned': 'count=planned',
    'count=estimated': 'count=estimated',
  }),
  preferInsert: preferHeader(
    'Comma-separated preferences: `return=minimal|headers-only|representation`, `resolution=merge-duplicates|ignore-duplicates` ' +
      '(upsert), `missing=default|null`, `count=exact`, `tx=commit|rollback`.',
    {
      'return=representation': 'return=representation',
      'return=minimal': 'return=minimal',
      upsert: 'resolution=merge-duplicates,return=representation',
      'missing=default': 'missing=default',
    },
  ),
  preferWrite: preferHeader('Comma-separated preferences: `return=minimal|headers-only|representation`, `count=exact`, `tx=commit|rollback`, `max-affected=n`.', {
    'return=representation': 'return=representation',
    'return=minimal': 'return=minimal',
  }),
  preferRpc: preferHeader('Comma-separated preferences: `count=exact|planned|estimated`, `tx=commit|rollback`, `params=single-object`.', {
    'count=exact': 'count=exact',
    'tx=rollback': 'tx=rollback',
  }),
};

export const SHARED_HEADERS: Record<string, Header> = {
  'Content-Range': {
    description: 'The rows returned and the total when counted: `0-24/3573`, `0-24/*`, `*/0`.',
    schema: { type: 'string' },
  },
  Location: {
    description: 'The created row, as a filter on its primary key (with `Prefer: return=headers-only`).',
    schema: { type: 'string' },
  },
};

const errorContent = { 'application/json': { schema: schemaRef('Error') } };

export const SHARED_RESPONSES: Record<string, Response> = {
  ClientError: {
    description:
      'The request cannot be answered: 400 (query string or body), 401/403 (privileges), 404 (no such table, ' +
      'column or function), 406 (media type, or not exactly one row for application/vnd.pgrst.object+json), ' +
      '409 (a constraint), 416 (range).',
    content: errorContent,
  },
  ServerError: { description: 'The database failed or is unavailable.', content: errorContent },
  NoContent: { description: 'Done; nothing returned (`Prefer: return=minimal`).' },
};

export const CONTENT_RANGE = { 'Content-Range': headerRef('Content-Range') };
