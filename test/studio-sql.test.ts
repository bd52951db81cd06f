/**
 * The studio's SQL box (POST /v1/leases/:id/sql) runs lease-written SQL: it must do so as the lease
 * and nothing more. A lease holder who has read our source tries to leave its role (RESET ROLE,
 * SET ROLE to the service role, set_config('role') inside a SELECT), to read pglease's own tables,
 * to run a program through COPY, to smuggle a second statement, and to write without confirming:
 * each is refused, and the session is the lease's authenticator throughout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_ROWS } from '../src/web/studio/lease-sql.js';
import { runAsLease } from './fixtures/openapi/fixture.js';
import { ADMIN_TOKEN, createLease, queryUrl, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';

let service: TestService;
let lease: CreatedLeaseJson;
let authRole: string;

interface SqlAnswer {
  status: number;
  body: {
    code?: string;
    message?: string;
    postgres?: { code: string };
    command?: string | null;
    columns?: { name: string; type: string }[];
    rows?: unknown[][];
    row_count?: number | null;
    truncated?: boolean;
  };
}

async function runSql(sql: string, options: { write?: boolean; token?: string | null } = {}): Promise<SqlAnswer> {
  const token = options.token === undefined ? lease.token : options.token;
  const response = await fetch(`${service.baseUrl}/v1/leases/${lease.id}/sql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token === null ? {} : { authorization: `Bearer ${token}` }) },
    body: JSON.stringify({ sql, ...(options.write === undefined ? {} : { write: options.write }) }),
  });
  return { status: response.status, body: (await response.json()) as SqlAnswer['body'] };
}

describe('the studio SQL box', () => {
  beforeAll(async () => {
    service = await startTestService();
    lease = await createLease(service);
    await runAsLease(lease, `CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'one'), (2, 'two')`);
    authRole = (await queryUrl<{ auth_role: string }>(service.host.databaseUrl, 'SELECT auth_role FROM pglease.leases WHERE id = $1', [lease.id]))[0]!.auth_role;
  });

  afterAll(async () => {
    await service?.close();
  });

  it('runs a select as the lease role, on a session of the lease’s authenticator', async () => {
    const answer = await runSql('select session_user::text AS s, current_user::text AS c, id, body from notes order by id');
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({
      command: 'SELECT',
      columns: [{ name: 's', type: 'text' }, { name: 'c', type: 'text' }, { name: 'id', type: 'integer' }, { name: 'body', type: 'text' }],
      rows: [[authRole, lease.role, 1, 'one'], [authRole, lease.role, 2, 'two']],
      row_count: 2,
      truncated: false,
    });
  });

  it('reads at most MAX_ROWS rows of a long result', async () => {
    const answer = await runSql('select g from generate_series(1, 1000000) g');
    expect(answer.status).toBe(200);
    expect(answer.body.truncated).toBe(true);
    expect(answer.body.rows).toHaveLength(MAX_ROWS);
    expect(answer.body.rows![MAX_ROWS - 1]).toEqual([MAX_ROWS]);
  });

  it('is read-only unless the write is confirmed', async () => {
    const refused = await runSql(`update notes set body = 'changed' where id = 1`);
    expect(refused).toMatchObject({ status: 400, body: { code: 'PGLEASE_SQL_FAILED', postgres: { code: '25006' } } });
    expect(await queryUrl(lease.url, 'SELECT body FROM notes WHERE id = 1')).toEqual([{ body: 'one' }]);
    // a read-only transaction cannot be turned read-write from inside
    const lifted = await runSql(`select set_config('transaction_read_only', 'off', true)`);
    expect(lifted).toMatchObject({ status: 400, body: { code: 'PGLEASE_SQL_FAILED' } });

    const confirmed = await runSql(`update notes set body = 'changed' where id = 1 returning id, body`, { write: true });
    expect(confirmed.body).toMatchObject({ command: 'UPDATE', rows: [[1, 'changed']], row_count: 1 });
    expect(await queryUrl(lease.url, 'SELECT body FROM notes WHERE id = 1')).toEqual([{ body: 'changed' }]);
  });

  it('refuses RESET ROLE, SET ROLE, SET SESSION AUTHORIZATION and transaction control before running them', async () => {
    for (const sql of ['RESET ROLE', '  /* a comment */ -- and another\n reset role', 'SET ROLE postgres', `SET ROLE "${service.config.leaseDatabase}_service"`, 'SET SESSION AUTHORIZATION postgres', 'DISCARD ALL', 'COMMIT', 'BEGIN', 'ROLLBACK']) {
      const answer = await runSql(sql, { write: true });
      expect(answer, sql).toMatchObject({ status: 400, body: { code: 'PGLEASE_SQL_REFUSED', field: 'sql' } });
    }
  });

  it('refuses a role changed inside a statement, and a second statement', async () => {
    const disguised = await runSql(`select set_config('role', 'none', true), current_user`);
    expect(disguised).toMatchObject({ status: 400, body: { code: 'PGLEASE_SQL_REFUSED' } });
    const serviceRole = (await queryUrl<{ name: string }>(service.host.databaseUrl, 'SELECT current_user AS name'))[0]!.name;
    const toService = await runSql(`select set_config('role', '${serviceRole}', true)`);
    expect(toService).toMatchObject({ status: 400, body: { code: 'PGLEASE_SQL_FAILED', postgres: { code: '42501' } } });
    const smuggled = await runSql('select 1; reset role; select pg_catalog.current_user');
    expect(smuggled).toMatchObject({ status: 400, body: { code: 'PGLEASE_SQL_FAILED', postgres: { code: '42601' } } });
  });

  it('cannot read pglease’s tables nor run a program', async () => {
    const leases = await runSql('select * from pglease.leases');
    expect(leases).toMatchObject({ status: 400, body: { code: 'PGLEASE_SQL_FAILED', postgres: { code: '42501' } } });
    const program = await runSql(`copy (select 1) to program 'touch /tmp/pglease-studio-pwned'`, { write: true });
    expect(program).toMatchObject({ status: 400, body: { code: 'PGLEASE_SQL_FAILED', postgres: { code: '42501' } } });
    const file = await runSql(`select pg_read_file('/etc/passwd')`);
    expect(file).toMatchObject({ status: 400, body: { code: 'PGLEASE_SQL_FAILED', postgres: { code: '42501' } } });
  });

  it('answers a bad token, no token and a syntax error in the control API’s words', async () => {
    expect(await runSql('select 1', { token: 'pgl_wrong' })).toMatchObject({ status: 404, body: { code: 'PGLEASE_NOT_FOUND' } });
    expect(await runSql('select 1', { token: null })).toMatchObject({ status: 401, body: { code: 'PGLEASE_UNAUTHORIZED' } });
    const admin = await runSql('select current_user::text', { token: ADMIN_TOKEN });
    expect(admin.body.rows).toEqual([[lease.role]]);
    const syntax = await runSql('selec 1');
    expect(syntax).toMatchObject({ status: 400, body: { code: 'PGLEASE_SQL_FAILED', postgres: { code: '42601', position: 1, line: 1, column: 1 } } });
    expect(syntax.body.message).toContain('syntax error');
    expect(await runSql('  -- only a comment')).toMatchObject({ status: 400, body: { code: 'PGLEASE_SQL_REFUSED' } });
  });
});
