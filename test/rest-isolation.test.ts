/**
 * The REST API runs a lease's own SQL (views, functions, policies) on the service's connections:
 * that SQL must not be able to climb to another lease, nor read the admin token.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';

let service: TestService;
let victim: CreatedLeaseJson;
let attacker: CreatedLeaseJson;

async function sql(lease: CreatedLeaseJson, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: lease.url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  service = await startTestService();
  victim = await createLease(service);
  attacker = await createLease(service);
  await sql(victim, `CREATE TABLE secrets (id int PRIMARY KEY, secret text); INSERT INTO secrets VALUES (1, 'victim secret')`);
  // Everything a lease can write that runs during its REST requests tries to become the victim.
  await sql(attacker, `
    CREATE FUNCTION steal() RETURNS text LANGUAGE plpgsql AS $$
    DECLARE v text;
    BEGIN
      PERFORM set_config('role', '${victim.role}', true);
      EXECUTE 'SELECT secret FROM ${victim.schema}.secrets' INTO v;
      RETURN v;
    END $$;
    CREATE FUNCTION seen_headers() RETURNS text LANGUAGE sql AS $$ SELECT current_setting('request.headers', true) $$;
    CREATE TABLE loot (headers text);
    CREATE FUNCTION keep_headers() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO loot VALUES (current_setting('request.headers', true)); RETURN NEW; END $$;
    CREATE TABLE bait (id int);
    CREATE TRIGGER keep BEFORE INSERT ON bait FOR EACH ROW EXECUTE FUNCTION keep_headers();
    CREATE VIEW sniff AS SELECT current_setting('request.headers', true) AS headers;
    GRANT EXECUTE ON FUNCTION steal() TO ${attacker.anon_role};
  `);
});

afterAll(async () => {
  await service?.close();
});

async function rest(lease: CreatedLeaseJson, path: string, init: { method?: string; token?: string | null; body?: unknown } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const token = init.token === undefined ? lease.token : init.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${lease.rest_url}${path}`, {
    method: init.method ?? 'GET',
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  return { status: response.status, text: await response.text() };
}

describe('a lease’s SQL run by the REST API', () => {
  it('cannot SET ROLE to another lease, as owner or as anonymous', async () => {
    for (const token of [attacker.token, null]) {
      const response = await rest(attacker, '/rpc/steal', { method: 'POST', body: {}, token });
      expect(response.status).toBeGreaterThanOrEqual(400);
      expect(response.status).toBeLessThan(500);
      expect(response.text).not.toContain('victim secret');
      expect(response.text).toContain('permission denied to set role');
    }
  });

  it('never sees the admin token in request.headers', async () => {
    const viaView = await rest(attacker, '/sniff', { token: ADMIN_TOKEN });
    expect(viaView.status).toBe(200);
    expect(viaView.text).not.toContain(ADMIN_TOKEN);
    const viaRpc = await rest(attacker, '/rpc/seen_headers', { method: 'POST', body: {}, token: ADMIN_TOKEN });
    expect(viaRpc.status).toBe(200);
    expect(viaRpc.text).not.toContain(ADMIN_TOKEN);
    expect((await rest(attacker, '/bait', { method: 'POST', body: { id: 1 }, token: ADMIN_TOKEN })).status).toBe(201);
    const client = new pg.Client({ connectionString: attacker.url });
    await client.connect();
    const loot = await client.query('SELECT headers FROM loot');
    await client.end();
    expect(loot.rows).toHaveLength(1);
    expect(loot.rows[0].headers).not.toContain(ADMIN_TOKEN);
    // the lease's own token is its own business: PostgREST passes it through, and so do we
    const own = await rest(attacker, '/sniff');
    expect(own.text).toContain(attacker.token);
  });
});
