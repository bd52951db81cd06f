/**
 * The query-string grammar: what it parses, and PGRST100 errors worded and positioned as
 * PostgREST 12's (its parser's messages, from its specs and doctests).
 */
import { describe, expect, it } from 'vitest';
import { parseFilterExpression, parseLogicTree, parseOrder, parseSelect } from '../src/rest/request/grammar.js';
import { RestError } from '../src/rest/response/errors.js';

function errorOf(parse: () => unknown): { message: string; details: unknown } {
  try {
    parse();
  } catch (error) {
    if (error instanceof RestError) return { message: error.message, details: error.details };
    throw error;
  }
  throw new Error('expected a parse error');
}

describe('select', () => {
  it('parses fields, aliases, casts, JSON paths, embeds with hints and join types, and spreads', () => {
    expect(parseSelect('id,alias:name->a->>0::text,rel!hint!inner(*),...other(x),"quoted, name"')).toEqual([
      { kind: 'field', field: { name: 'id', jsonPath: [] } },
      {
        kind: 'field',
        field: { name: 'name', jsonPath: [{ arrow: '->', operand: { kind: 'key', key: 'a' } }, { arrow: '->>', operand: { kind: 'index', index: 0 } }] },
        alias: 'alias',
        cast: 'text',
      },
      { kind: 'embed', relation: 'rel', hint: 'hint', joinType: 'inner', spread: false, children: [{ kind: 'star' }] },
      { kind: 'embed', relation: 'other', spread: true, children: [{ kind: 'field', field: { name: 'x', jsonPath: [] } }] },
      { kind: 'field', field: { name: 'quoted, name', jsonPath: [] } },
    ]);
  });

  it('reports an unexpected character inside an embed', () => {
    expect(errorOf(() => parseSelect('id,clients(name[])'))).toEqual({
      message: '"failed to parse select parameter (id,clients(name[]))" (line 1, column 16)',
      details: `unexpected '[' expecting letter, digit, "-", "!", "(", "->>", "->", "::", ")", "," or end of input`,
    });
  });
});

describe('filters', () => {
  it('names an unknown operator', () => {
    expect(errorOf(() => parseFilterExpression('noop.0'))).toEqual({
      message: '"failed to parse filter (noop.0)" (line 1, column 6)',
      details: 'unknown single value operator noop',
    });
  });

  it('stops where PostgREST does on a value without an operator', () => {
    expect(errorOf(() => parseFilterExpression('5'))).toEqual({
      message: '"failed to parse filter (5)" (line 1, column 1)',
      details: 'unexpected "5" expecting "not" or operator (eq, gt, ...)',
    });
    expect(errorOf(() => parseFilterExpression('abc'))).toEqual({
      message: '"failed to parse filter (abc)" (line 1, column 4)',
      details: 'unexpected end of input expecting delimiter (.)',
    });
  });

  it('refuses is. with anything but null or a trilean', () => {
    expect(errorOf(() => parseFilterExpression('is.nil')).details).toBe('unexpected "n" expecting null or trilean value (unknown, true, false)');
  });
});

describe('order', () => {
  it.each([
    ['id.ac', 4, 'unexpected "c" expecting "asc", "desc", "nullsfirst" or "nullslast"'],
    ['id.descc', 8, `unexpected 'c' expecting delimiter (.), "," or end of input`],
    ['id.nulsfist', 4, 'unexpected "n" expecting "asc", "desc", "nullsfirst" or "nullslast"'],
    ['id.nullslasttt', 13, `unexpected 't' expecting "," or end of input`],
    ['id.smth34', 4, 'unexpected "s" expecting "asc", "desc", "nullsfirst" or "nullslast"'],
    ['id.asc.nlsfst', 8, 'unexpected "l" expecting "nullsfirst" or "nullslast"'],
    ['id.asc.nullslasttt', 17, `unexpected 't' expecting "," or end of input`],
    ['id.asc.smth34', 8, 'unexpected "s" expecting "nullsfirst" or "nullslast"'],
  ])('%s → column %i', (input, column, details) => {
    expect(errorOf(() => parseOrder(input))).toEqual({ message: `"failed to parse order (${input})" (line 1, column ${column})`, details });
  });

  it('parses directions, null placement, JSON paths and related orders', () => {
    expect(parseOrder('name.desc.nullsfirst,json_col->key.asc.nullslast,clients(name).desc,id')).toEqual([
      { field: { name: 'name', jsonPath: [] }, direction: 'desc', nulls: 'first' },
      { field: { name: 'json_col', jsonPath: [{ arrow: '->', operand: { kind: 'key', key: 'key' } }] }, direction: 'asc', nulls: 'last' },
      { relation: 'clients', field: { name: 'name', jsonPath: [] }, direction: 'desc' },
      { field: { name: 'id', jsonPath: [] } },
    ]);
  });
});

describe('logic trees', () => {
  it.each([
    ['or', '()', 4, 'unexpected ")" expecting field name (* or [a..z0..9_$]), negation operator (not) or logic operator (and, or)'],
    ['or', '(id.in.1,2,id.eq.3)', 10, 'unexpected "1" expecting "("'],
    ['or', ')(', 3, 'unexpected ")" expecting "("'],
    ['and', '(ord(id.eq.1,id.eq.1),id.eq.2)', 7, 'unexpected "d" expecting "("'],
    ['or', '(id.eq.1,not.xor(id.eq.2,id.eq.3))', 16, 'unexpected "x" expecting logic operator (and, or)'],
  ] as const)('%s=%s → column %i', (operator, value, column, details) => {
    expect(errorOf(() => parseLogicTree(operator, false, value))).toEqual({ message: `"failed to parse logic tree (${value})" (line 1, column ${column})`, details });
  });

  it('parses nested and negated trees with quoted values and arrays', () => {
    expect(parseLogicTree('or', true, '(a.eq."x,y",not.and(b.cs.{1,2},c.is.null))')).toEqual({
      kind: 'logic',
      operator: 'or',
      negated: true,
      children: [
        { kind: 'filter', filter: { field: { name: 'a', jsonPath: [] }, negated: false, operation: { kind: 'compare', operator: 'eq', value: 'x,y' } } },
        {
          kind: 'logic',
          operator: 'and',
          negated: true,
          children: [
            { kind: 'filter', filter: { field: { name: 'b', jsonPath: [] }, negated: false, operation: { kind: 'compare', operator: 'cs', value: '{1,2}' } } },
            { kind: 'filter', filter: { field: { name: 'c', jsonPath: [] }, negated: false, operation: { kind: 'is', value: 'null' } } },
          ],
        },
      ],
    });
  });
});
