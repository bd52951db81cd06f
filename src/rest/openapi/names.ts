/**
 * Names inside the document. Component keys may only use `[A-Za-z0-9._-]`, while Postgres names
 * may hold anything: every other character (and `-` and `.` themselves) becomes `-<hex>-`, so
 * distinct Postgres names stay distinct, and `.` is left free to separate a name from a suffix
 * (`films.insert`, `rowFilter.films.title`).
 */
import type { Reference } from './types.js';

export function componentName(postgresName: string): string {
  let name = '';
  for (const char of postgresName) {
    name += /[A-Za-z0-9_]/.test(char) ? char : `-${char.codePointAt(0)!.toString(16)}-`;
  }
  return name;
}

export function schemaRef(key: string): Reference {
  return { $ref: `#/components/schemas/${key}` };
}

export function parameterRef(key: string): Reference {
  return { $ref: `#/components/parameters/${key}` };
}

export function responseRef(key: string): Reference {
  return { $ref: `#/components/responses/${key}` };
}

export function headerRef(key: string): Reference {
  return { $ref: `#/components/headers/${key}` };
}

/** The path of a relation or function below the lease's rest_url, percent-encoded as a client sends it. */
export function restPath(name: string, rpc = false): string {
  return (rpc ? '/rpc/' : '/') + encodeURIComponent(name);
}
