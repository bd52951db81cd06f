/**
 * `pglease info` in the layout of Heroku's pg:info: plan and status from the observer (GET
 * /v1/leases/:id/info), live connections, rows and size from GET /v1/leases/:id/stats (counted
 * as the lease, so they are exact while the observer's are up to one interval old), each against
 * the plan's limit. A pure function of the three answers and the time, so its output is tested
 * against a golden text.
 */
import type { LeaseInfoJson, LeaseJson, LeaseStatsJson } from '../testing/client.js';
import { fields, formatBytes, formatCount, isoSeconds, printable, relativeTime } from './format.js';

export interface InfoColors {
  bold: (text: string) => string;
  green: (text: string) => string;
  yellow: (text: string) => string;
}

const plain: InfoColors = { bold: (text) => text, green: (text) => text, yellow: (text) => text };

function when(iso: string, now: Date): string {
  const at = new Date(iso);
  return `${relativeTime(at, now)} (${isoSeconds(at)})`;
}

export function leaseInfoText(lease: LeaseJson, info: LeaseInfoJson, stats: LeaseStatsJson, now: Date = new Date(), colors: InfoColors = plain): string {
  const { bold, green, yellow } = colors;
  const live = lease.state === 'active';
  const overRows = info.rows_limit !== null && stats.rows > info.rows_limit;
  const overSize = stats.size_bytes > info.size_limit_bytes;
  const compliance = info.compliance === 'Over plan' || overRows || overSize ? yellow('Over plan') : 'In compliance';
  const status = !live ? '-' : info.status === 'available' ? green(info.status) : yellow(info.status);
  const rows = `${formatCount(stats.rows)}${info.rows_limit === null ? '' : `/${formatCount(info.rows_limit)}`}${stats.rows_exact ? '' : ' (estimated)'}`;
  return [
    bold(`=== lease ${lease.id}${lease.name ? ` (${printable(lease.name)})` : ''}`),
    fields([
      ['Plan', info.plan],
      ['Status', `${status}${live && info.observed_at !== null ? ` (observed ${relativeTime(new Date(info.observed_at), now)})` : ''}`],
      ['State', live ? green(lease.state) : yellow(lease.state)],
      ['Connections', `${stats.connections}${stats.connection_limit !== null && stats.connection_limit >= 0 ? `/${stats.connection_limit}` : ''}`],
      ['PG Version', info.pg_version],
      ['Data Size', `${formatBytes(stats.size_bytes)}${stats.size_exact === false ? ' (estimated)' : ''}/${formatBytes(info.size_limit_bytes)}`],
      ['Tables', formatCount(stats.tables)],
      // Heroku's "Rows: 0/10000 (In compliance)"; a plan without a row limit shows the count alone
      ['Rows', info.rows_limit === null && compliance === 'In compliance' ? rows : `${rows} (${compliance})`],
      ['Created', when(lease.created_at, now)],
      [live ? 'Expires' : 'Ended', live ? (lease.expires_at === null ? 'never' : when(lease.expires_at, now)) : lease.ended_at ? relativeTime(new Date(lease.ended_at), now) : '-'],
      ['Kind', info.kind],
      ['Template', stats.template ?? '-'],
      ['Host', info.host],
      ['Schema', lease.schema],
      ['URL', lease.url],
    ]),
    ...(info.restriction_error ? [yellow(`! ${info.restriction_error}`)] : []),
  ].join('\n');
}
