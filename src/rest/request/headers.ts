/**
 * The request headers PostgREST gives meaning to: `Prefer`, `Accept` (with content negotiation)
 * and `Range`/`Range-Unit`.
 */
import { RestError } from '../response/errors.js';
import type { CountPreference, MediaType, Preferences, Range } from './types.js';

type HeaderValue = string | string[] | undefined;

function headerList(value: HeaderValue): string[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

const ENUM_PREFERENCES: Record<string, readonly string[]> = {
  count: ['exact', 'planned', 'estimated'],
  return: ['minimal', 'headers-only', 'representation'],
  resolution: ['merge-duplicates', 'ignore-duplicates'],
  missing: ['default', 'null'],
  tx: ['commit', 'rollback'],
  handling: ['lenient', 'strict'],
  params: ['single-object'],
};

/** `Prefer: count=exact, return=representation` (one or several headers). The first of each kind wins. */
export function parsePreferences(header: HeaderValue): Preferences {
  const preferences: Preferences = { invalid: [] };
  const seen = new Set<string>();
  for (const line of headerList(header)) {
    for (const raw of line.split(',')) {
      const token = raw.trim();
      if (token === '') continue;
      const equals = token.indexOf('=');
      const name = equals === -1 ? token : token.slice(0, equals).trim();
      const value = equals === -1 ? '' : token.slice(equals + 1).trim();
      if (seen.has(name)) continue;
      if (ENUM_PREFERENCES[name]?.includes(value)) {
        seen.add(name);
        switch (name) {
          case 'count':
            preferences.count = value as CountPreference;
            break;
          case 'return':
            preferences.return = value as Preferences['return'];
            break;
          case 'resolution':
            preferences.resolution = value as Preferences['resolution'];
            break;
          case 'missing':
            preferences.missing = value as Preferences['missing'];
            break;
          case 'tx':
            preferences.tx = value as Preferences['tx'];
            break;
          case 'handling':
            preferences.handling = value as Preferences['handling'];
            break;
          case 'params':
            preferences.params = 'single-object';
            break;
        }
      } else if (name === 'max-affected') {
        // any max-affected= is understood (PostgREST ignores a value that is not a number)
        seen.add(name);
        if (/^\d+$/.test(value)) preferences.maxAffected = Number(value);
      } else if (name === 'timezone' && value !== '') {
        // checked against the server's time zone names later (RestService.checkTimezone)
        seen.add(name);
        preferences.timezone = value;
      } else {
        preferences.invalid.push(token);
      }
    }
  }
  return preferences;
}

/** The Accept header's media types, best first by `q`; `*\/*` when there is none. */
export function parseAccept(header: HeaderValue): string[] {
  const entries: { type: string; q: number; index: number }[] = [];
  let index = 0;
  for (const line of headerList(header)) {
    for (const raw of line.split(',')) {
      const [typePart, ...params] = raw.split(';');
      const mime = typePart!.trim().toLowerCase();
      if (mime === '') continue;
      let q = 1;
      const kept: string[] = [];
      for (const param of params) {
        const [name, value] = param.split('=').map((part) => part.trim());
        if (name?.toLowerCase() === 'q') q = Number(value) || 0;
        else if (name) kept.push(`${name.toLowerCase()}=${(value ?? '').toLowerCase()}`);
      }
      entries.push({ type: [mime, ...kept].join(';'), q, index: index++ });
    }
  }
  if (entries.length === 0) return ['*/*'];
  return entries.sort((a, b) => b.q - a.q || a.index - b.index).map((entry) => entry.type);
}

/** What each producible kind answers to in an Accept header. */
const KIND_OF_MIME: Record<string, MediaType['kind']> = {
  'application/json': 'json',
  'application/vnd.pgrst.array+json': 'json',
  'application/vnd.pgrst.object+json': 'object',
  'application/vnd.pgrst.object': 'object',
  'text/csv': 'csv',
  'application/openapi+json': 'openapi',
};

/**
 * Picks the first acceptable media type among those this action produces (`*\/*` and
 * `application/*` mean the first of them); 406 PGRST107 when there is none.
 */
export function negotiate(accept: string[], produces: readonly MediaType['kind'][]): MediaType {
  for (const entry of accept) {
    const [mime, ...params] = entry.split(';');
    const stripNulls = params.includes('nulls=stripped');
    if (mime === '*/*' || mime === 'application/*') return { kind: produces[0]!, stripNulls: false };
    const kind = KIND_OF_MIME[mime!];
    if (kind !== undefined && produces.includes(kind)) {
      // nulls=stripped is defined for the array and object types only
      return { kind, stripNulls: stripNulls && mime !== 'application/json' && kind !== 'csv' };
    }
  }
  throw new RestError('PGRST107', `None of these media types are available: ${accept.map((entry) => entry.split(';')[0]).join(', ')}`);
}

export const CONTENT_TYPE: Record<MediaType['kind'], string> = {
  json: 'application/json; charset=utf-8',
  object: 'application/vnd.pgrst.object+json; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
  openapi: 'application/openapi+json; charset=utf-8',
};

/** `Range: 0-9` (optionally `items=0-9`); an unparsable header is ignored, as PostgREST does. */
export function parseRangeHeader(header: HeaderValue): Range | undefined {
  const value = headerList(header)[0];
  if (value === undefined) return undefined;
  const match = /^\s*(?:[a-zA-Z]+=)?(\d+)-(\d*)\s*$/.exec(value);
  if (!match) return undefined;
  const lower = Number(match[1]);
  if (match[2] === '') return { offset: lower };
  const upper = Number(match[2]);
  if (lower > upper) {
    throw new RestError('PGRST103', undefined, 'The lower boundary must be lower than or equal to the upper boundary in the Range header.');
  }
  return { offset: lower, limit: upper - lower + 1 };
}
