/**
 * The HTTP answer to a write, as PostgREST 12 gives it: 201 for inserts (200 when an upsert with
 * merge-duplicates inserted nothing), 200/201 or 204 for PUT, 200 with a representation or 204 for
 * updates and deletes; Content-Range with the affected count, Location for a single inserted row
 * (return=headers-only), Preference-Applied. And the checks that undo a write which already ran
 * (PGRST115, PGRST116, PGRST124, PGRST110): they throw inside the transaction.
 */
import type { WritePlan } from '../plan/write-plan.js';
import { CONTENT_TYPE } from '../request/headers.js';
import { RestError } from './errors.js';
import { contentRange, type RestResponse } from './read-response.js';
import { withResponseSettings, type ResponseSettings } from './response-settings.js';

export interface WriteResult extends ResponseSettings {
  /** Rows written (or, with a representation, rows in it). */
  page: number;
  body: string | null;
  /** JSON object of the first row's primary key (return=headers-only inserts). */
  location: string | null;
  /** Rows inserted rather than merged, when the plan asked. */
  inserted: number | null;
}

/** Whether the result must be checked before the transaction commits. */
export function needsCheck(plan: WritePlan): boolean {
  return (
    plan.representation.media.kind === 'object' ||
    (plan.kind === 'insert' && plan.put !== undefined) ||
    (plan.kind !== 'insert' && (plan.maxAffected !== undefined || plan.limit?.range.limit !== undefined))
  );
}

/** Throws the error that makes PostgREST roll a write back. */
export function checkWrite(plan: WritePlan, result: WriteResult): void {
  if (plan.kind === 'insert' && plan.put) {
    if (result.page !== 1) throw new RestError('PGRST115');
    return;
  }
  if (plan.representation.media.kind === 'object' && result.page !== 1) {
    throw new RestError('PGRST116', undefined, `The result contains ${result.page} rows`);
  }
  if (plan.kind === 'insert') return;
  if (plan.maxAffected !== undefined && result.page > plan.maxAffected) {
    throw new RestError('PGRST124', undefined, `The query affects ${result.page} rows`);
  }
  const limit = plan.limit?.range.limit;
  if (limit !== undefined && result.page > limit) {
    throw new RestError('PGRST110', undefined, `Results contain ${result.page} rows changed but the maximum number allowed is ${limit}`);
  }
}

/** http-types' query encoding (PostgREST's Location): unreserved bytes as is, space as +, the rest %XX. */
function queryEncode(text: string): string {
  let encoded = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const char = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.~]/.test(char)) encoded += char;
    else if (char === ' ') encoded += '+';
    else encoded += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return encoded;
}

/** `/films?id=eq.1`: the inserted row by its primary key. */
export function locationHeader(relationName: string, primaryKey: string): string {
  const values = JSON.parse(primaryKey) as Record<string, unknown>;
  const pairs = Object.entries(values).map(([name, value]) => {
    const filter = value === null ? 'is.null' : `eq.${typeof value === 'object' ? JSON.stringify(value) : String(value)}`;
    return `${queryEncode(name)}=${queryEncode(filter)}`;
  });
  return `/${encodeURIComponent(relationName)}?${pairs.join('&')}`;
}

/** The answer to a write, with what its SQL set in response.headers and response.status. */
export function writeResponse(plan: WritePlan, result: WriteResult): RestResponse {
  return withResponseSettings(writeAnswer(plan, result), result);
}

function writeAnswer(plan: WritePlan, result: WriteResult): RestResponse {
  const headers: Record<string, string> = {};
  const total = plan.count ? result.page : null;
  const represent = plan.returnPreference === 'representation';
  let status: number;
  if (plan.kind === 'insert' && plan.put) {
    status = represent ? ((result.inserted ?? 0) > 0 ? 201 : 200) : 204;
  } else if (plan.kind === 'insert') {
    if (plan.locationColumns.length > 0 && result.page === 1 && result.location !== null) {
      headers.Location = locationHeader(plan.relation.name, result.location);
    }
    headers['Content-Range'] = contentRange(1, 0, total);
    const mergedOnly = plan.countInserted && (result.inserted ?? 0) <= 0;
    status = mergedOnly ? 200 : 201;
  } else {
    headers['Content-Range'] = plan.kind === 'update' ? contentRange(0, result.page, total) : contentRange(1, 0, total);
    status = represent ? 200 : 204;
  }
  if (plan.preferenceApplied.length > 0) headers['Preference-Applied'] = plan.preferenceApplied.join(', ');
  if (!represent) return { status, headers, body: null };
  headers['Content-Type'] = CONTENT_TYPE[plan.representation.media.kind];
  return { status, headers, body: result.body };
}
