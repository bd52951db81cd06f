/**
 * Request bodies of writes and RPC → a Payload: JSON text that Postgres itself reads into typed rows
 * (json_to_record / json_to_recordset), and the keys it has, which name the columns to write or
 * the function's arguments. JSON is parsed here only to check it and find its keys, as PostgREST
 * does; with `columns=` it is passed through unparsed. CSV and HTML forms become the same JSON.
 * Errors are PostgREST's PGRST102 with its messages.
 */
import { RestError } from '../response/errors.js';

export interface Payload {
  /** JSON text, one bind parameter of the statement (a raw body's text as it came). */
  json: string;
  /** Whether `json` is one object or an array of objects (anything else became `[]`). */
  shape: 'object' | 'array';
  /**
   * The keys of the object, or of every object of the array; undefined when `columns=` names
   * them instead (the body then goes to Postgres unparsed).
   */
  keys: string[] | undefined;
  /** An HTML form's fields in order, repeated names included (RPC's VARIADIC arguments). */
  formFields?: [string, string][];
  /** A text/plain or text/xml body for a function's single unnamed text or xml parameter. */
  rawType?: 'text' | 'xml';
}

export interface PayloadOptions {
  /** `columns=` was given: the keys come from it and JSON is not parsed here. */
  columnsGiven: boolean;
  /** The body is a function's arguments: an empty body means no arguments (`{}`). */
  forRoutine: boolean;
}

const INVALID_JSON = 'Empty or invalid json';
const KEYS_MUST_MATCH = 'All object keys must match';
const FIELDS_MUST_MATCH = 'All lines must have same number of fields';
/**
 * How deep a JSON body may nest: Postgres reads the body (json_to_record, a function's json
 * argument) with a recursive parser that an object 50,000 levels deep took past max_stack_depth
 * (54001 "stack depth limit exceeded", a 500). 1,000 levels is far beyond any data and far below
 * that limit.
 */
export const MAX_JSON_NESTING = 1_000;

function invalidBody(message: string): RestError {
  return new RestError('PGRST102', message);
}

/** The media type of a Content-Type header, lower case and without parameters; JSON when absent. */
export function contentMediaType(header: string | string[] | undefined): string {
  if (header === 'application/json') return header;
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || value.trim() === '') return 'application/json';
  return value.split(';')[0]!.trim().toLowerCase();
}

export function parsePayload(body: string | undefined, mediaType: string, options: PayloadOptions): Payload {
  const text = body ?? '';
  switch (mediaType) {
    case 'application/json':
      return jsonPayload(text, options);
    case 'text/csv':
      return csvPayload(text);
    case 'application/x-www-form-urlencoded':
      return formPayload(text);
    case 'text/plain':
    case 'text/xml':
      if (!options.forRoutine) break;
      if (text.includes('\u0000')) throw invalidBody('The body contains a NUL character');
      return { json: text, shape: 'object', keys: [], rawType: mediaType === 'text/plain' ? 'text' : 'xml' };
  }
  throw invalidBody(`Content-Type not acceptable: ${mediaType}`);
}

/** The first character that is not JSON's insignificant whitespace decides object or array. */
function jsonShape(text: string): 'object' | 'array' {
  return /^[ \t\n\r]*\{/.test(text) ? 'object' : 'array';
}

function jsonPayload(text: string, options: PayloadOptions): Payload {
  if (text.includes('\u0000')) throw invalidBody(INVALID_JSON);
  if (nestingExceeds(text, MAX_JSON_NESTING)) throw new RestError('PGRST102', INVALID_JSON, `The JSON body nests more than ${MAX_JSON_NESTING} levels deep`);
  if (options.columnsGiven) return { json: text, shape: jsonShape(text), keys: undefined };
  if (text === '' && options.forRoutine) return { json: '{}', shape: 'object', keys: [] };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw invalidBody(INVALID_JSON);
  }
  return payloadOf(text, value, KEYS_MUST_MATCH);
}

/** Whether brackets and braces outside JSON strings nest deeper than `limit` (one pass, no parse). */
function nestingExceeds(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (inString) {
      if (code === 92) i++; // backslash: the next character is escaped
      else if (code === 34) inString = false;
    } else if (code === 34) {
      inString = true;
    } else if (code === 91 || code === 123) {
      if (++depth > limit) return true;
    } else if (code === 93 || code === 125) {
      depth--;
    }
  }
  return false;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Keys of an object or of an array of objects that all have the same keys; anything else is `[]`. */
function payloadOf(json: string, value: unknown, mismatch: string): Payload {
  if (isObject(value)) return { json, shape: 'object', keys: Object.keys(value) };
  if (!Array.isArray(value)) return { json: '[]', shape: 'array', keys: [] };
  if (value.length === 0) return { json, shape: 'array', keys: [] };
  const first = value[0];
  if (!isObject(first)) throw invalidBody(mismatch);
  const keys = Object.keys(first);
  const keySet = new Set(keys);
  for (let i = 1; i < value.length; i++) {
    const element = value[i];
    if (!isObject(element)) throw invalidBody(mismatch);
    const elementKeys = Object.keys(element);
    if (elementKeys.length !== keySet.size || !elementKeys.every((key) => keySet.has(key))) throw invalidBody(mismatch);
  }
  return { json, shape: 'array', keys };
}

/** RFC 4180 records: quoted fields may hold commas, quotes (doubled) and line breaks. */
export function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let field = '';
  let i = 0;
  let quoted = false;
  let atFieldStart = true;
  while (i < text.length) {
    const char = text[i]!;
    if (quoted) {
      if (char === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
      } else {
        field += char;
      }
      i++;
      continue;
    }
    if (char === '"' && atFieldStart) {
      quoted = true;
      atFieldStart = false;
      i++;
    } else if (char === ',') {
      record.push(field);
      field = '';
      atFieldStart = true;
      i++;
    } else if (char === '\n' || char === '\r') {
      record.push(field);
      records.push(record);
      record = [];
      field = '';
      atFieldStart = true;
      i += char === '\r' && text[i + 1] === '\n' ? 2 : 1;
    } else {
      field += char;
      atFieldStart = false;
      i++;
    }
  }
  if (quoted) throw invalidBody('parse error (unterminated quoted field)');
  if (!atFieldStart || field !== '' || record.length > 0) {
    record.push(field);
    records.push(record);
  }
  return records;
}

/** A CSV body: the header names the columns; `NULL` is SQL null, every other value a string. */
function csvPayload(text: string): Payload {
  const records = parseCsv(text);
  const header = records[0];
  if (header === undefined) throw invalidBody('parse error (expected a header line)');
  const rows: Record<string, string | null>[] = [];
  for (const record of records.slice(1)) {
    if (record.length !== header.length) throw invalidBody(FIELDS_MUST_MATCH);
    const row: Record<string, string | null> = {};
    header.forEach((name, index) => {
      const value = record[index]!;
      row[name] = value === 'NULL' ? null : value;
    });
    rows.push(row);
  }
  return rows.length === 0 ? { json: '[]', shape: 'array', keys: [] } : { json: JSON.stringify(rows), shape: 'array', keys: header };
}

function decodeFormComponent(text: string): string {
  const spaced = text.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(spaced);
  } catch {
    // an invalid escape is kept as it came, as lenient form decoders do
    return spaced;
  }
}

/** `a=1&b=two`: one object of strings (the last of a repeated name wins), fields kept for RPC. */
function formPayload(text: string): Payload {
  const formFields: [string, string][] = [];
  for (const part of text.split('&')) {
    if (part === '') continue;
    const equals = part.indexOf('=');
    const name = decodeFormComponent(equals === -1 ? part : part.slice(0, equals));
    const value = decodeFormComponent(equals === -1 ? '' : part.slice(equals + 1));
    formFields.push([name, value]);
  }
  const object: Record<string, string> = {};
  for (const [name, value] of formFields) object[name] = value;
  if (JSON.stringify(object).includes('\\u0000')) throw invalidBody('The form contains a NUL character');
  return { json: JSON.stringify(object), shape: 'object', keys: Object.keys(object), formFields };
}
