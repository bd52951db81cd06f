/**
 * response.headers and response.status: what the request's SQL asked of the answer, as PostgREST
 * takes them (references/transactions.rst, "Response Headers" and "Response Status Code"). The
 * main statement reads both last (query/sql.ts, RESPONSE_SETTINGS_SQL), so a db_pre_request
 * function, a view, a trigger or a called function may set them with set_config.
 *
 *   response.headers  a JSON array of single-key objects with string values, e.g.
 *                     '[{"Cache-Control": "public"}, {"Cache-Control": "max-age=259200"}]'; each
 *                     replaces a header pglease gives of that name (Content-Type, Location, ...),
 *                     a name given twice is sent once with its values joined by ", ". Anything
 *                     else is 500 PGRST111.
 *   response.status   a status code; anything that is not one (100-599) is 500 PGRST112.
 * Unset, or '' (what a setting of an earlier transaction leaves), changes nothing.
 */
import { RestError } from './errors.js';
import type { RestResponse } from './read-response.js';

/** The two settings as the main statement read them (NULL when never set). */
export interface ResponseSettings {
  responseHeaders: string | null;
  responseStatus: string | null;
}

function headersOf(text: string): [string, string][] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new RestError('PGRST111');
  }
  if (!Array.isArray(value)) throw new RestError('PGRST111');
  return value.map((item: unknown): [string, string] => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw new RestError('PGRST111');
    const entries = Object.entries(item as Record<string, unknown>);
    if (entries.length !== 1 || typeof entries[0]![1] !== 'string') throw new RestError('PGRST111');
    return entries[0] as [string, string];
  });
}

/** `response` with the headers and status the SQL set; throws PGRST111/PGRST112 for malformed ones. */
export function withResponseSettings(response: RestResponse, settings: ResponseSettings): RestResponse {
  const headersText = settings.responseHeaders;
  const statusText = settings.responseStatus;
  const noHeaders = headersText === null || headersText === '';
  const noStatus = statusText === null || statusText === '';
  if (noHeaders && noStatus) return response;
  let status = response.status;
  if (!noStatus) {
    if (!/^\d{3}$/.test(statusText.trim()) || Number(statusText) < 100 || Number(statusText) > 599) throw new RestError('PGRST112');
    status = Number(statusText);
  }
  const headers = { ...response.headers };
  if (!noHeaders) {
    const given = new Map<string, { name: string; values: string[] }>();
    for (const [name, value] of headersOf(headersText)) {
      const key = name.toLowerCase();
      const entry = given.get(key) ?? { name, values: [] };
      entry.values.push(value);
      given.set(key, entry);
    }
    for (const [key, { name, values }] of given) {
      for (const existing of Object.keys(headers)) if (existing.toLowerCase() === key) delete headers[existing];
      headers[name] = values.join(', ');
    }
  }
  return { ...response, status, headers };
}
