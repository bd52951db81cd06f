/**
 * PostgREST's query-string grammar as small recursive-descent parsers: `select=`, filter values,
 * `order=`, `and=`/`or=` trees and the dotted keys of embedded parameters. Each parser reads a whole
 * string and throws a PGRST100 error naming the position and what it expected, as PostgREST does.
 */
import { queryParseError, RestError } from '../response/errors.js';
import {
  QUANTIFIABLE_OPERATORS,
  type AggregateFunction,
  type ComparisonOperator,
  type EmbedPath,
  type Field,
  type Filter,
  type FtsOperator,
  type JoinType,
  type JsonStep,
  type LogicTree,
  type Operation,
  type OrderTerm,
  type SelectItem,
} from './types.js';

const COMPARISON_OPERATORS: ReadonlySet<string> = new Set<ComparisonOperator>([
  'eq', 'neq', 'gt', 'gte', 'lt', 'lte', 'like', 'ilike', 'match', 'imatch',
  'cs', 'cd', 'ov', 'sl', 'sr', 'nxr', 'nxl', 'adj', 'isdistinct',
]);
const FTS_OPERATORS: ReadonlySet<string> = new Set<FtsOperator>(['fts', 'plfts', 'phfts', 'wfts']);

/**
 * How deep `select=` embeds and `and=`/`or=` trees may nest, and how many steps a JSON path may
 * take: 64 (a PGRST100 parse error past it). The parsers here recurse once per level, and so do the
 * planner and compiler after them: `select=t(t(...))` overflowed Node's stack at about 3,000
 * levels (500 PGLEASE_INTERNAL). In Postgres every level is a nested subquery or expression, which
 * its own stack limit (max_stack_depth, 2 MB) ends in a 500 too. No real request comes near:
 * PostgREST's documentation nests embeds 3 deep.
 */
export const MAX_NESTING = 64;
/**
 * Items a `select=` may name, embeds included, in all: Postgres refuses a select list of more than
 * 1,664 entries (54011, a 500), and the compiled query adds its own columns to the lease's.
 */
export const MAX_SELECT_ITEMS = 1_000;

export function isComparisonOperator(name: string): name is ComparisonOperator {
  return COMPARISON_OPERATORS.has(name);
}

export function isFtsOperator(name: string): name is FtsOperator {
  return FTS_OPERATORS.has(name);
}

/** Letters, digits, `_`, space and `$`: what PostgREST accepts in an unquoted name. */
const IDENTIFIER_CHAR = /[\p{L}\p{N}_ $]/u;

function isIdentifierChar(char: string): boolean {
  const code = char.charCodeAt(0);
  if (code < 128) {
    // ASCII fast path: a-z A-Z 0-9 _ space $
    return (code >= 97 && code <= 122) || (code >= 65 && code <= 90) || (code >= 48 && code <= 57) || code === 95 || code === 32 || code === 36;
  }
  return IDENTIFIER_CHAR.test(char);
}

class ParseFailure extends Error {
  constructor(
    readonly position: number,
    readonly details: string,
  ) {
    super(details);
  }
}

/** A position in one input string, with the primitives the grammars below are built from. */
class Cursor {
  position = 0;
  constructor(readonly input: string) {}

  get done(): boolean {
    return this.position >= this.input.length;
  }

  peek(offset = 0): string {
    return this.input[this.position + offset] ?? '';
  }

  startsWith(text: string): boolean {
    return this.input.startsWith(text, this.position);
  }

  /** Consumes `text` if it comes next. */
  accept(text: string): boolean {
    if (!this.startsWith(text)) return false;
    this.position += text.length;
    return true;
  }

  expect(text: string, what = `"${text}"`): void {
    if (!this.accept(text)) this.fail(what);
  }

  skipSpaces(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.position++;
  }

  /**
   * Fails at the current position. Parsec, whose messages PostgREST passes on, quotes the
   * unexpected character as a token ("c") or, where it expected one character class, as 'c'.
   */
  fail(expecting: string, quote: '"' | "'" = '"'): never {
    const next = this.done ? 'end of input' : `${quote}${this.peek()}${quote}`;
    throw new ParseFailure(this.position, `unexpected ${next} expecting ${expecting}`);
  }

  /** A keyword was expected here: the error names the first character that differs from `keyword`. */
  failKeyword(keyword: string, expecting: string): never {
    let i = 0;
    while (i < keyword.length && this.input[this.position + i] === keyword[i]) i++;
    const char = this.input[this.position + i];
    throw new ParseFailure(this.position, `unexpected ${char === undefined ? 'end of input' : `"${char}"`} expecting ${expecting}`);
  }

  failWith(details: string): never {
    throw new ParseFailure(this.position, details);
  }
}

/** Parses `text` (default: `input`); errors quote `input`, as PostgREST's messages do. */
function run<T>(what: string, input: string, parse: (cursor: Cursor) => T, text = input): T {
  const cursor = new Cursor(text);
  try {
    return parse(cursor);
  } catch (error) {
    if (error instanceof ParseFailure) throw queryParseError(what, input, error.position, error.details);
    throw error;
  }
}

const FIELD_NAME_EXPECTED = 'field name (* or [a..z0..9_$])';

/** `"quoted \" name"`: backslash escapes any character. */
function quotedValue(cursor: Cursor): string {
  cursor.expect('"');
  let value = '';
  for (;;) {
    if (cursor.done) cursor.fail('"\\"" (closing quote)');
    const char = cursor.peek();
    cursor.position++;
    if (char === '"') return value;
    if (char === '\\') {
      if (cursor.done) cursor.fail('any character after "\\"');
      value += cursor.peek();
      cursor.position++;
    } else {
      value += char;
    }
  }
}

/** One or more identifier characters, trimmed. */
function identifier(cursor: Cursor): string | undefined {
  const start = cursor.position;
  while (!cursor.done && isIdentifierChar(cursor.peek())) cursor.position++;
  if (cursor.position === start) return undefined;
  return cursor.input.slice(start, cursor.position).trim();
}

/** A column or relation name: quoted, or identifiers joined by dashes (`first-name`, not `a->b`). */
function fieldName(cursor: Cursor): string {
  if (cursor.peek() === '"') return quotedValue(cursor);
  const parts: string[] = [];
  for (;;) {
    const part = identifier(cursor);
    if (part === undefined) {
      if (parts.length === 0) cursor.fail(FIELD_NAME_EXPECTED);
      // a dash we consumed was not followed by a name: give it back
      cursor.position--;
      break;
    }
    parts.push(part);
    if (cursor.peek() === '-' && cursor.peek(1) !== '>') {
      cursor.position++;
      continue;
    }
    break;
  }
  return parts.join('-');
}

function atJsonOperandEnd(cursor: Cursor): boolean {
  return cursor.done || cursor.startsWith('->') || cursor.startsWith('::') || cursor.peek() === '.' || cursor.peek() === ',' || cursor.peek() === ')';
}

/** `->key`, `->>key`, `->0`, `->>-1`, repeated (at most MAX_NESTING times). */
function jsonPath(cursor: Cursor): JsonStep[] {
  const steps: JsonStep[] = [];
  for (;;) {
    if (steps.length === MAX_NESTING && cursor.startsWith('->')) cursor.failWith(`JSON path longer than ${MAX_NESTING} steps`);
    let arrow: JsonStep['arrow'];
    if (cursor.accept('->>')) arrow = '->>';
    else if (cursor.accept('->')) arrow = '->';
    else return steps;
    const start = cursor.position;
    const index = /^-?\d+/.exec(cursor.input.slice(start));
    if (index) {
      cursor.position += index[0].length;
      if (atJsonOperandEnd(cursor)) {
        steps.push({ arrow, operand: { kind: 'index', index: Number(index[0]) } });
        continue;
      }
      cursor.position = start;
    }
    steps.push({ arrow, operand: { kind: 'key', key: fieldName(cursor) } });
  }
}

/** A column with an optional JSON path, surrounded by optional spaces. */
function field(cursor: Cursor): Field {
  cursor.skipSpaces();
  const name = fieldName(cursor);
  const path = jsonPath(cursor);
  cursor.skipSpaces();
  return { name, jsonPath: path };
}

// ---------------------------------------------------------------- select=

function embedParams(cursor: Cursor): { hint?: string; joinType?: JoinType } {
  const result: { hint?: string; joinType?: JoinType } = {};
  for (let i = 0; i < 2 && cursor.peek() === '!'; i++) {
    cursor.position++;
    const name = fieldName(cursor);
    if (name === 'inner' || name === 'left') result.joinType = name;
    else result.hint = name;
  }
  return result;
}

function atSelectItemEnd(cursor: Cursor): boolean {
  return cursor.done || cursor.peek() === ',' || cursor.peek() === ')';
}

/** Where a select parser is: how deep in embeds, and how many items it has read. */
interface SelectDepth {
  level: number;
  items: { count: number };
}

function selectItem(cursor: Cursor, depth: SelectDepth): SelectItem {
  cursor.skipSpaces();
  if (++depth.items.count > MAX_SELECT_ITEMS) cursor.failWith(`more than ${MAX_SELECT_ITEMS} items selected`);
  if (cursor.accept('...')) {
    const relation = fieldName(cursor);
    const params = embedParams(cursor);
    const children = embedChildren(cursor, depth);
    return { kind: 'embed', relation, ...params, spread: true, children };
  }
  if (cursor.peek() === '*') {
    cursor.position++;
    cursor.skipSpaces();
    if (!atSelectItemEnd(cursor)) cursor.fail('")", "," or end of input');
    return { kind: 'star' };
  }
  let name = fieldName(cursor);
  let alias: string | undefined;
  if (cursor.peek() === ':' && cursor.peek(1) !== ':') {
    cursor.position++;
    alias = name;
    cursor.skipSpaces();
    name = fieldName(cursor);
  }
  // aggregates (`count()`, `amount.sum()`): the planner refuses them unless the lease enables them
  const aggregate = name === 'count' && cursor.startsWith('()') ? 'count' : /^\.(sum|avg|min|max|count)\(\)/.exec(cursor.input.slice(cursor.position))?.[1];
  if (aggregate !== undefined) {
    const bare = name === 'count' && aggregate === 'count' && cursor.startsWith('()');
    cursor.position += bare ? 2 : aggregate.length + 3;
    let cast: string | undefined;
    if (cursor.accept('::')) {
      cast = identifier(cursor);
      if (cast === undefined) cursor.fail('letter or digit');
    }
    cursor.skipSpaces();
    if (!atSelectItemEnd(cursor)) cursor.fail('"::", ")", "," or end of input', "'");
    return {
      kind: 'aggregate',
      fn: aggregate as AggregateFunction,
      ...(bare ? {} : { field: { name, jsonPath: [] } }),
      ...(alias === undefined ? {} : { alias }),
      ...(cast === undefined ? {} : { cast }),
    };
  }
  if (cursor.peek() === '!' || cursor.peek() === '(') {
    const params = embedParams(cursor);
    const children = embedChildren(cursor, depth);
    return { kind: 'embed', relation: name, ...(alias === undefined ? {} : { alias }), ...params, spread: false, children };
  }
  const path = jsonPath(cursor);
  let cast: string | undefined;
  if (cursor.accept('::')) {
    cast = identifier(cursor);
    if (cast === undefined) cursor.fail('letter or digit');
  }
  cursor.skipSpaces();
  if (!atSelectItemEnd(cursor)) {
    const expecting = cast !== undefined
      ? '")", "," or end of input'
      : path.length > 0
        ? '"->", "::", ")", "," or end of input'
        : 'letter, digit, "-", "!", "(", "->>", "->", "::", ")", "," or end of input';
    cursor.fail(expecting, "'");
  }
  return { kind: 'field', field: { name, jsonPath: path }, ...(alias === undefined ? {} : { alias }), ...(cast === undefined ? {} : { cast }) };
}

/** `(item, item)`; empty parentheses embed a resource only to filter by it. */
function embedChildren(cursor: Cursor, depth: SelectDepth): SelectItem[] {
  if (depth.level === MAX_NESTING) cursor.failWith(`embedded resources nested too deeply (more than ${MAX_NESTING} levels)`);
  cursor.expect('(');
  cursor.skipSpaces();
  if (cursor.accept(')')) return [];
  const items = selectList(cursor, { level: depth.level + 1, items: depth.items });
  cursor.expect(')', '")"');
  cursor.skipSpaces();
  return items;
}

function selectList(cursor: Cursor, depth: SelectDepth): SelectItem[] {
  const items = [selectItem(cursor, depth)];
  for (;;) {
    cursor.skipSpaces();
    if (!cursor.accept(',')) return items;
    items.push(selectItem(cursor, depth));
  }
}

export function parseSelect(input: string): SelectItem[] {
  return run('select parameter', input, (cursor) => {
    if (input.trim() === '') return [];
    const items = selectList(cursor, { level: 0, items: { count: 0 } });
    if (!cursor.done) cursor.fail('"," or end of input');
    return items;
  });
}

// ---------------------------------------------------------------- filters

/** Reads the value after an operator: the rest of the input, or up to `,`/`)` inside a logic tree. */
type ValueReader = (cursor: Cursor) => string;

const restOfInput: ValueReader = (cursor) => {
  const value = cursor.input.slice(cursor.position);
  cursor.position = cursor.input.length;
  return value;
};

/** A value inside `or=(...)`: quoted, a `{...}` array literal, or anything up to `,` or `)`. */
const logicTreeValue: ValueReader = (cursor) => {
  const start = cursor.position;
  if (cursor.peek() === '"') {
    try {
      const value = quotedValue(cursor);
      if (cursor.done || cursor.peek() === ',' || cursor.peek() === ')') return value;
    } catch (error) {
      if (!(error instanceof ParseFailure)) throw error;
    }
    cursor.position = start;
  }
  if (cursor.peek() === '{') {
    const close = cursor.input.indexOf('}', start);
    const inner = close === -1 ? '' : cursor.input.slice(start + 1, close);
    if (close !== -1 && !inner.includes('{')) {
      cursor.position = close + 1;
      return cursor.input.slice(start, close + 1);
    }
  }
  while (!cursor.done && cursor.peek() !== ',' && cursor.peek() !== ')') cursor.position++;
  return cursor.input.slice(start, cursor.position);
};

/** `(a,"b,c",d)` of `in.`: quoted elements may hold commas and parentheses. */
function listValue(cursor: Cursor): string[] {
  cursor.skipSpaces();
  cursor.expect('(', '"("');
  cursor.skipSpaces();
  const values: string[] = [];
  for (;;) {
    const start = cursor.position;
    let value: string | undefined;
    if (cursor.peek() === '"') {
      try {
        const quoted = quotedValue(cursor);
        if (cursor.peek() === ',' || cursor.peek() === ')') value = quoted;
      } catch (error) {
        if (!(error instanceof ParseFailure)) throw error;
      }
      if (value === undefined) cursor.position = start;
    }
    if (value === undefined) {
      while (!cursor.done && cursor.peek() !== ',' && cursor.peek() !== ')') cursor.position++;
      value = cursor.input.slice(start, cursor.position);
    }
    values.push(value);
    if (cursor.accept(',')) continue;
    cursor.expect(')', '")" or ","');
    cursor.skipSpaces();
    return values;
  }
}

function trileanValue(cursor: Cursor): 'null' | 'true' | 'false' | 'unknown' {
  for (const value of ['null', 'unknown', 'true', 'false'] as const) {
    if (cursor.input.slice(cursor.position, cursor.position + value.length).toLowerCase() === value) {
      cursor.position += value.length;
      return value;
    }
  }
  return cursor.fail('null or trilean value (unknown, true, false)');
}

/** `[not.]operator.value` */
function operationExpression(cursor: Cursor, readValue: ValueReader): { negated: boolean; operation: Operation } {
  const negated = cursor.startsWith('not.') ? (cursor.position += 4, true) : false;
  return { negated, operation: operation(cursor, readValue) };
}

function operation(cursor: Cursor, readValue: ValueReader): Operation {
  if (cursor.accept('in.')) return { kind: 'in', values: listValue(cursor) };
  if (cursor.accept('is.')) return { kind: 'is', value: trileanValue(cursor) };
  const start = cursor.position;
  // fts operators take an optional language: fts(english).value
  const fts = /^(fts|plfts|phfts|wfts)(\(([\p{L}\p{N}_ $]+)\))?\./u.exec(cursor.input.slice(start));
  if (fts) {
    cursor.position += fts[0].length;
    const language = fts[3]?.trim();
    return { kind: 'fts', operator: fts[1] as FtsOperator, ...(language ? { language } : {}), value: readValue(cursor) };
  }
  const dot = cursor.input.indexOf('.', start);
  if (dot === -1) {
    // where PostgREST's parser stops: after the operator's letters (`abc` → expecting the
    // delimiter), or at once when there are none (`5`, a bare `?id=5`: expecting an operator)
    const letters = /^\p{L}*/u.exec(cursor.input.slice(start))![0].length;
    if (letters === 0) return cursor.fail('"not" or operator (eq, gt, ...)');
    cursor.position = start + letters;
    return cursor.fail('delimiter (.)');
  }
  const name = cursor.input.slice(start, dot);
  cursor.position = dot + 1;
  const quantified = /^([a-z]+)\((any|all)\)$/.exec(name);
  if (quantified && isComparisonOperator(quantified[1]!) && QUANTIFIABLE_OPERATORS.has(quantified[1]!)) {
    return { kind: 'quantified', operator: quantified[1], quantifier: quantified[2] as 'any' | 'all', value: readValue(cursor) };
  }
  if (!isComparisonOperator(name)) cursor.failWith(`unknown single value operator ${name}`);
  return { kind: 'compare', operator: name, value: readValue(cursor) };
}

/** The value of a filter parameter: `eq.1`, `not.in.(1,2)`, `fts(english).cat`, `like(any).{a*,b*}`. */
export function parseFilterExpression(value: string): { negated: boolean; operation: Operation } {
  return run('filter', value, (cursor) => operationExpression(cursor, restOfInput));
}

/** `a.b.c` of a parameter key: embed path ['a', 'b'] and the field c (with an optional JSON path). */
export function parseTreePath(key: string): { path: EmbedPath; field: Field } {
  return run('tree path', key, (cursor) => {
    const names = [fieldName(cursor)];
    while (cursor.accept('.')) names.push(fieldName(cursor));
    const path = jsonPath(cursor);
    if (!cursor.done) cursor.fail('"." , "->" or end of input');
    const last = names.pop()!;
    return { path: names, field: { name: last, jsonPath: path } };
  });
}

/** Embed path of `a.b.order` / `a.b.limit` keys: ['a', 'b']. */
export function parseEmbedPath(key: string): EmbedPath {
  return run('tree path', key, (cursor) => {
    const names = [fieldName(cursor)];
    while (cursor.accept('.')) names.push(fieldName(cursor));
    if (!cursor.done) cursor.fail('"." or end of input');
    names.pop();
    return names;
  });
}

// ---------------------------------------------------------------- order=

function orderTerm(cursor: Cursor): OrderTerm {
  cursor.skipSpaces();
  const start = cursor.position;
  let term: OrderTerm;
  const name = fieldName(cursor);
  if (cursor.peek() === '(') {
    cursor.position++;
    const inner = field(cursor);
    cursor.expect(')', '")"');
    term = { relation: name, field: inner };
  } else {
    cursor.position = start;
    term = { field: field(cursor) };
  }
  if (cursor.peek() === '.') {
    cursor.position++;
    if (cursor.accept('asc')) term.direction = 'asc';
    else if (cursor.accept('desc')) term.direction = 'desc';
    else if (cursor.accept('nullsfirst')) term.nulls = 'first';
    else if (cursor.accept('nullslast')) term.nulls = 'last';
    else cursor.failKeyword('asc', '"asc", "desc", "nullsfirst" or "nullslast"');
    if (term.direction !== undefined && cursor.peek() === '.') {
      cursor.position++;
      if (cursor.accept('nullsfirst')) term.nulls = 'first';
      else if (cursor.accept('nullslast')) term.nulls = 'last';
      else cursor.failKeyword('nullsfirst', '"nullsfirst" or "nullslast"');
    }
  }
  cursor.skipSpaces();
  if (!cursor.done && cursor.peek() !== ',') {
    const expecting = term.nulls !== undefined
      ? '"," or end of input'
      : term.direction !== undefined
        ? 'delimiter (.), "," or end of input'
        : 'letter, digit, "-", "->>", "->", delimiter (.), "," or end of input';
    cursor.fail(expecting, "'");
  }
  return term;
}

export function parseOrder(value: string): OrderTerm[] {
  return run('order', value, (cursor) => {
    const terms = [orderTerm(cursor)];
    while (cursor.accept(',')) terms.push(orderTerm(cursor));
    return terms;
  });
}

// ---------------------------------------------------------------- and= / or=

const LOGIC_ELEMENT_EXPECTED = 'field name (* or [a..z0..9_$]), negation operator (not) or logic operator (and, or)';

/** `and(...)` / `or(...)` after an optional `not.`, with the cursor on the operator. */
function logicExpression(cursor: Cursor, depth: number, negated: boolean): LogicTree {
  let operator: 'and' | 'or';
  if (cursor.accept('and')) operator = 'and';
  else if (cursor.accept('or')) operator = 'or';
  else return cursor.failKeyword('and', 'logic operator (and, or)');
  cursor.expect('(', '"("');
  const children = [logicTree(cursor, depth + 1)];
  for (;;) {
    cursor.skipSpaces();
    if (cursor.accept(',')) {
      children.push(logicTree(cursor, depth + 1));
      continue;
    }
    cursor.expect(')', '")" or ","');
    cursor.skipSpaces();
    return { kind: 'logic', operator, negated, children };
  }
}

/**
 * One element of a logic tree: a filter (`a.eq.1`) or a nested tree (`not.and(...)`). Like
 * PostgREST, it tries a filter first and otherwise reads a tree; an error is reported where the
 * tree reading failed once it has read `not.` or an operator, else where the filter did.
 */
function logicTree(cursor: Cursor, depth: number): LogicTree {
  if (depth > MAX_NESTING) cursor.failWith(`logic tree nested too deeply (more than ${MAX_NESTING} levels)`);
  cursor.skipSpaces();
  const start = cursor.position;
  if (cursor.peek() === ')' || cursor.peek() === ',') cursor.fail(LOGIC_ELEMENT_EXPECTED);
  try {
    const filterField = field(cursor);
    cursor.expect('.', 'delimiter (.)');
    const expression = operationExpression(cursor, logicTreeValue);
    return { kind: 'filter', filter: { field: filterField, ...expression } };
  } catch (filterError) {
    if (!(filterError instanceof ParseFailure)) throw filterError;
    cursor.position = start;
    const negated = cursor.accept('not.');
    if (!negated && !cursor.startsWith('and') && !cursor.startsWith('or')) throw filterError;
    return logicExpression(cursor, depth, negated);
  }
}

/**
 * `or=(...)` under key `[path.][not.]or`: `operator` is 'and'/'or', `negated` from the key.
 * Positions in errors count from the operator, as PostgREST parses `or(...)` / `not.or(...)`.
 */
export function parseLogicTree(operator: 'and' | 'or', negated: boolean, value: string): LogicTree {
  const prefix = `${negated ? 'not.' : ''}${operator}`;
  return run('logic tree', value, (cursor) => {
    cursor.position = negated ? 'not.'.length : 0;
    const tree = logicExpression(cursor, 0, negated);
    if (!cursor.done) cursor.fail('end of input');
    return tree;
  }, prefix + value);
}

/** `columns=a,b` and `on_conflict=a,b`. */
export function parseColumnList(what: string, value: string): string[] {
  return run(what, value, (cursor) => {
    const names: string[] = [];
    for (;;) {
      cursor.skipSpaces();
      names.push(fieldName(cursor));
      cursor.skipSpaces();
      if (cursor.accept(',')) continue;
      if (!cursor.done) cursor.fail('"," or end of input');
      return names;
    }
  });
}
