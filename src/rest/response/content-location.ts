/**
 * Content-Location of a read, as PostgREST sends it: the relation with the request's query string
 * in canonical form, so that caches see `/films?b=eq.2&a=eq.1` and `/films?a=eq.1&b=eq.2` as one
 * resource. Canonical: the parameters decoded, sorted by name (a name's repeats keep their order),
 * and encoded again as a query string is (space as `+`; all but letters, digits and `-_.~` as %XX).
 */
import { splitQueryString } from '../request/query-params.js';

/** As a query string encodes: encodeURIComponent (native, fast), plus the five it leaves alone, and `+` for space. */
function encodeQueryComponent(text: string): string {
  const encoded = encodeURIComponent(text);
  return /[!'()*]|%20/.test(encoded) ? encoded.replace(/[!'()*]|%20/g, (match) => (match === '%20' ? '+' : `%${match.charCodeAt(0).toString(16).toUpperCase()}`)) : encoded;
}

export function contentLocation(relationName: string, rawQuery: string): string {
  const pairs = splitQueryString(rawQuery).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const path = `/${encodeURIComponent(relationName)}`;
  if (pairs.length === 0) return path;
  return `${path}?${pairs.map(([key, value]) => `${encodeQueryComponent(key)}=${encodeQueryComponent(value)}`).join('&')}`;
}
