/**
 * The HTTP answer to a read: status (200, 206 partial content, 416 out of range, 406 when a
 * single object was asked for and the result is not one row), Content-Range, Content-Type and the
 * body Postgres built, passed through untouched.
 */
import { CONTENT_TYPE } from '../request/headers.js';
import type { ReadPlan } from '../plan/types.js';
import { RestError } from './errors.js';
import { withResponseSettings, type ResponseSettings } from './response-settings.js';

export interface RestResponse {
  status: number;
  headers: Record<string, string>;
  /** Sent as is; null for HEAD and bodiless answers. */
  body: string | null;
}

/** PostgREST's Content-Range: `0-24/3573`, `*\/0` when nothing is on the page, `*` for an unknown total. */
export function contentRange(offset: number, pageCount: number, total: number | null): string {
  const upper = offset + pageCount - 1;
  const range = total !== 0 && offset <= upper ? `${offset}-${upper}` : '*';
  return `${range}/${total === null ? '*' : total}`;
}

export interface ReadResult extends ResponseSettings {
  total: number | null;
  page: number;
  body: string | null;
}

/** The answer to a read, with what its SQL set in response.headers and response.status. */
export function readResponse(plan: ReadPlan, result: ReadResult, preferenceApplied: string[]): RestResponse {
  return withResponseSettings(readAnswer(plan, result, preferenceApplied), result);
}

/** The answer to a read as pglease gives it (a call's answer too, before its own adjustments). */
export function readAnswer(plan: ReadPlan, result: ReadResult, preferenceApplied: string[]): RestResponse {
  const offset = plan.root.range.offset;
  const range = contentRange(offset, result.page, result.total);
  if (result.total !== null && offset > result.total) {
    throw new RestError('PGRST103', undefined, `An offset of ${offset} was requested, but there are only ${result.total} rows.`, null, {
      headers: { 'Content-Range': `*/${result.total}` },
    });
  }
  if (plan.media.kind === 'object' && result.page !== 1) {
    throw new RestError('PGRST116', undefined, `The result contains ${result.page} rows`);
  }
  const status = result.total !== null && result.page < result.total ? 206 : 200;
  const headers: Record<string, string> = {
    'Content-Type': CONTENT_TYPE[plan.media.kind],
    'Content-Range': range,
  };
  if (preferenceApplied.length > 0) headers['Preference-Applied'] = preferenceApplied.join(', ');
  return { status, headers, body: plan.headersOnly ? null : result.body };
}
