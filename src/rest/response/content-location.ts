/**
 * Content-Location of a read, as PostgREST sends it: the relation with the request's query string
 * in canonical form, so that caches see `/films?b=eq.2&a=eq.1` and `/films?a=eq.1&b=eq.2` as one
 * resource. Canonical: the parameters decoded, sorted by name (a name's repeats keep their order),
 * and encoded again as a query string is (space as `+`; all but letters, digits and `-_.~` as %XX).
 */
import { splitQueryString } from '../request/query-params.js';

const UNRESERVED = /^[A-Za-z0-9\-_.~]$/;

function encodeQueryComponent(text: string): string {
  let encoded = '';
  for (const char of text) {
    if (UNRESERVED.test(char)) encoded += char;
    else if (char === ' ') encoded += '+';
    else for (const byte of Buffer.from(char, 'utf8')) encoded += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return encoded;
}

export function contentLocation(relationName: string, rawQuery: string): string {
  const pairs = splitQueryString(rawQuery).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const path = `/${encodeURIComponent(relationName)}`;
  if (pairs.length === 0) return path;
  return `${path}?${pairs.map(([key, value]) => `${encodeQueryComponent(key)}=${encodeQueryComponent(value)}`).join('&')}`;
}
