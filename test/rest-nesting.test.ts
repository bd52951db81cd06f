/**
 * Malformed nesting and size in REST requests: embeds hundreds or thousands deep in `select=`,
 * deep `or=(and(or(...)))` trees, long JSON paths, thousands of select items, huge `in.(...)` and
 * column lists, deeply nested JSON bodies. Each answer is below 500, and an error is in PostgREST's
 * shape (`{code, message, details, hint}`); the nesting ones are PGRST100 "failed to parse ..."
 * (they once overflowed the parser's stack, 500 PGLEASE_INTERNAL, or reached Postgres, 500 54011).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FILM_SCHEMA, sendRest, startRestFixture, type RestAnswer, type RestFixture } from './support/rest-fixture.js';

let fixture: RestFixture;

beforeAll(async () => {
  fixture = await startRestFixture(`${FILM_SCHEMA}
    create function echo(body json) returns json language sql immutable as $$ select body $$;`);
});

afterAll(async () => {
  await fixture?.close();
});

const nested = (open: string, inner: string, close: string, depth: number) => open.repeat(depth) + inner + close.repeat(depth);
const many = (item: (i: number) => string, count: number, separator = ',') => Array.from({ length: count }, (_, i) => item(i)).join(separator);

function expectPostgrestError(answer: RestAnswer, what: string): Record<string, unknown> {
  expect(answer.status, `${what} → ${answer.status} ${answer.text.slice(0, 300)}`).toBeGreaterThanOrEqual(400);
  expect(answer.status, `${what} → ${answer.text.slice(0, 300)}`).toBeLessThan(500);
  const error = answer.json as Record<string, unknown>;
  expect(Object.keys(error).sort(), what).toEqual(['code', 'details', 'hint', 'message']);
  return error;
}

describe('deep nesting in the query string', () => {
  // unencoded where a URL allows it: Node refuses request heads over 16 KB (431) before we see them
  const parseErrors: [string, string][] = [
    ...[65, 500, 2_000, 5_000].map((depth): [string, string] => [`select embeds ${depth} deep`, `/films?select=${nested('t(', 'id', ')', depth)}`]),
    ...[65, 2_000].map((depth): [string, string] => [`spread embeds ${depth} deep`, `/films?select=${nested('...t(', 'id', ')', depth)}`]),
    ['existing relations embedded 65 deep', `/films?select=${nested('directors(films(', 'id', '))', 33)}`],
    ...[65, 1_000].map((depth): [string, string] => [`or/and trees ${depth} deep`, `/films?or=(${nested('and(or(', 'id.eq.1', '))', depth)})`]),
    ...[65, 3_000].map((depth): [string, string] => [`JSON paths ${depth} steps long in select`, `/films?select=data${'->a'.repeat(depth)}`]),
    ['a JSON path 3,000 steps long in a filter', `/films?data${'->a'.repeat(3_000)}=eq.1`],
    ['a JSON path 3,000 steps long in order', `/films?order=data${'->a'.repeat(3_000)}`],
    ['1,700 select items', `/films?select=${many(() => 'id', 1_700)}`],
    ['1,700 select items in an embed', `/films?select=id,directors(${many(() => 'id', 1_700)})`],
  ];

  for (const [what, path] of parseErrors) {
    it(`${what}: 400 PGRST100`, async () => {
      const answer = await sendRest(fixture, 'GET', path);
      const error = expectPostgrestError(answer, what);
      expect(error.code, what).toBe('PGRST100');
      expect(String(error.message), what).toMatch(/^"failed to parse /);
    });
  }

  it('still serves embeds, trees and JSON paths up to the limit', async () => {
    const embeds = await sendRest(fixture, 'GET', `/films?select=id,${nested('technical_specs(films(', 'id', '))', 32)}&id=eq.1`);
    expect(embeds.status, embeds.text.slice(0, 300)).toBe(200);
    const tree = await sendRest(fixture, 'GET', `/films?select=id&or=(${nested('and(or(', 'id.eq.1', '))', 31)})`);
    expect(tree.status, tree.text.slice(0, 300)).toBe(200);
    expect(tree.json).toEqual([{ id: 1 }]);
    const path = await sendRest(fixture, 'GET', `/films?select=data${'->a'.repeat(64)}&id=eq.1`);
    expect(path.status, path.text.slice(0, 300)).toBe(200);
    const body = await sendRest(fixture, 'POST', '/rpc/echo', `{"body":${nested('[', '"[{"', ']', 999)}}`, { 'content-type': 'application/json' });
    expect(body.status, body.text.slice(0, 300)).toBe(200);
  });
});

describe('size without nesting', () => {
  const sized: [string, string, string, unknown?][] = [
    ['GET', 'an in. list of 1,500 values', `/films?select=id&id=in.(${many((i) => String(i), 1_500)})`],
    ['GET', '2,000 order terms', `/films?select=id&order=${many(() => 'id', 2_000)}`],
    ['GET', '2,000 filters', `/films?select=id&${many(() => 'id=gt.0', 2_000, '&')}`],
    ['POST', 'a columns list of 2,000 names', `/films?columns=${many((i) => `c${i}`, 2_000)}`, { id: 99 }],
    ['POST', 'a body nested 100,000 arrays deep', '/films', nested('[', '', ']', 100_000)],
    ['POST', 'an object nested 50,000 deep', '/rpc/echo', `{"body":${nested('{"a":', '1', '}', 50_000)}}`],
    ['POST', 'an object nested 50,000 deep with columns=', '/rpc/echo?columns=body', `{"body":${nested('{"a":', '1', '}', 50_000)}}`],
  ];
  for (const [method, what, path, body] of sized) {
    it(`${what}: below 500`, async () => {
      const answer = await sendRest(fixture, method, path, body, typeof body === 'string' ? { 'content-type': 'application/json' } : {});
      if (answer.status >= 400) expectPostgrestError(answer, what);
      expect(answer.status, `${what} → ${answer.text.slice(0, 300)}`).toBeLessThan(500);
    });
  }
});
