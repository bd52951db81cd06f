/**
 * What the CLI prints of text it did not write (lease names from the server): control characters
 * are shown as escapes, never sent to the terminal, and wide characters keep tables aligned.
 */
import { describe, expect, it } from 'vitest';
import { printable, table } from '../src/cli/format.js';
import { leaseInfoText } from '../src/cli/lease-info.js';

describe('printable', () => {
  it('turns control characters into visible escapes and leaves other text alone', () => {
    expect(printable('evil\u001b]0;pwned\u0007\u001b[2J')).toBe('evil\\u001b]0;pwned\\u0007\\u001b[2J');
    expect(printable('two\nlines\ttab\u009b')).toBe('two\\u000alines\\u0009tab\\u009b');
    expect(printable('日本語 ✓ café')).toBe('日本語 ✓ café');
  });
});

describe('table', () => {
  it('aligns columns by terminal width: wide characters take two columns, colour codes none', () => {
    const out = table(['NAME', 'STATE'], [['日本語テスト', 'active'], ['plain', '\u001b[32mactive\u001b[39m']]).split('\n');
    // the STATE column starts at the same terminal column on every line
    const columns = (text: string) => [...text].reduce((sum, character) => sum + (/[\u3000-\u9fff\uff00-\uff60]/.test(character) ? 2 : 1), 0);
    const starts = out.map((line) => columns(line.slice(0, line.search(/STATE|active|\u001b/))));
    expect(new Set(starts).size).toBe(1);
  });
});

describe('pglease info', () => {
  const now = new Date('2026-01-31T12:00:00Z');
  const lease = {
    id: '3f2c9a1e-0000-4000-8000-000000000001', name: 'checkout', url: 'postgresql://lease_0123456789abcdef@localhost:55432/pglease',
    schema: 'lease_0123456789abcdef', role: 'lease_0123456789abcdef', anon_role: 'lease_0123456789abcdef_anon', database: 'pglease',
    host: 'localhost', port: 55432, rest_url: 'http://localhost:8080/v1/leases/3f2c9a1e-0000-4000-8000-000000000001/rest',
    created_at: '2026-01-31T11:50:00Z', expires_at: '2026-01-31T12:20:00Z', ended_at: null, state: 'active' as const, plan: 'network', connection_limit: 20,
  };
  const info = {
    id: lease.id, name: 'checkout', plan: 'network', status: 'available' as const, status_since: '2026-01-31T11:50:01Z', state: 'active' as const,
    connections: 1, connection_limit: 20, pg_version: '17.6', size_bytes: 6_606_028, size_limit_bytes: 104_857_600, tables: 3, rows: 9_000,
    rows_limit: 10_000, compliance: 'In compliance' as const, created_at: lease.created_at, expires_at: lease.expires_at, kind: 'plain',
    host: 'localhost:55432', observed_at: '2026-01-31T11:59:58Z', restriction_error: null,
  };
  const stats = { id: lease.id, state: 'active' as const, expires_at: lease.expires_at, connections: 1, connection_limit: 20, tables: 3, rows: 9_000, rows_exact: true, size_bytes: 6_606_028, size_exact: true, template: null };

  it('prints Heroku\'s pg:info layout: plan, status, connections, size and rows against the plan', () => {
    expect(leaseInfoText(lease, info, stats, now)).toBe(
      [
        '=== lease 3f2c9a1e-0000-4000-8000-000000000001 (checkout)',
        'Plan:        network',
        'Status:      available (observed just now)',
        'State:       active',
        'Connections: 1/20',
        'PG Version:  17.6',
        'Data Size:   6.3 MB/100 MB',
        'Tables:      3',
        'Rows:        9,000/10,000 (In compliance)',
        'Created:     10 minutes ago (2026-01-31T11:50:00Z)',
        'Expires:     in 20 minutes (2026-01-31T12:20:00Z)',
        'Kind:        plain',
        'Template:    -',
        'Host:        localhost:55432',
        'Schema:      lease_0123456789abcdef',
        'URL:         postgresql://lease_0123456789abcdef@localhost:55432/pglease',
      ].join('\n'),
    );
  });

  it('says "Over plan" and why writes are refused', () => {
    const over = leaseInfoText(lease, { ...info, status: 'over_quota', compliance: 'Over plan', restriction_error: null }, { ...stats, rows: 12_500 }, now);
    expect(over).toContain('Status:      over_quota (observed just now)');
    expect(over).toContain('Rows:        12,500/10,000 (Over plan)');
    const noRowLimit = leaseInfoText(lease, { ...info, plan: 'default', rows_limit: null, size_limit_bytes: 1 << 30 }, stats, now);
    expect(noRowLimit).toContain('Rows:        9,000\n');
    expect(noRowLimit).toContain('Data Size:   6.3 MB/1.0 GB');
  });
});
