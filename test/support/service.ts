/**
 * A pglease service for one test file: its own lease database on the shared test cluster, the
 * HTTP server listening on a free port, and small helpers to call it.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { loadConfig, type Config } from '../../src/config.js';
import { startService, type Service } from '../../src/service.js';

export interface TestService extends Service {
  /** Base URL of the HTTP server, e.g. http://127.0.0.1:41234 */
  baseUrl: string;
  config: Config;
}

export const ADMIN_TOKEN = 'test-admin-token';

/** Starts a service; `env` overrides configuration variables (PGLEASE_*). */
export async function startTestService(env: Record<string, string> = {}): Promise<TestService> {
  const config = loadConfig({
    DATABASE_URL: inject('serverUrl'),
    PGLEASE_DATABASE: `pglease_test_${randomBytes(4).toString('hex')}`,
    PGLEASE_ADMIN_TOKEN: ADMIN_TOKEN,
    HOST: '127.0.0.1',
    PORT: '0',
    ...env,
  });
  const service = await startService(config);
  const address = await service.app.listen({ host: config.httpHost, port: 0 });
  return Object.assign(service, { baseUrl: address, config });
}

export interface CreatedLeaseJson {
  id: string;
  url: string;
  token: string;
  schema: string;
  role: string;
  anon_role: string;
  database: string;
  host: string;
  port: number;
  rest_url: string;
  created_at: string;
  expires_at: string | null;
  state: string;
}

/** POST /v1/leases and return the JSON (throws on a non-201). */
export async function createLease(service: TestService, body: Record<string, unknown> = {}, headers: Record<string, string> = {}): Promise<CreatedLeaseJson> {
  const response = await fetch(`${service.baseUrl}/v1/leases`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  if (response.status !== 201) throw new Error(`create lease: ${response.status} ${await response.text()}`);
  return (await response.json()) as CreatedLeaseJson;
}

/** Runs one statement on its own connection to `url` (a lease's, or the lease database's) and returns its rows. */
export async function queryUrl<T extends pg.QueryResultRow>(url: string, sql: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

/**
 * A superuser's URL of the service's lease database (the test cluster's superuser): for what a test
 * does behind pglease's back. The service itself runs as its service role (src/db/superuser-setup.ts),
 * whose URL is `service.host.databaseUrl`.
 */
export function superuserDatabaseUrl(service: TestService): string {
  const url = new URL(inject('serverUrl'));
  url.pathname = '/' + encodeURIComponent(service.config.leaseDatabase);
  return url.toString();
}
