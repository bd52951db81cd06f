/**
 * Login passwords made ahead of the creates that take them (src/leases/credentials.ts,
 * LoginSecrets): each secret is handed out once, its verifier is the password's, and a lease made
 * from a stocked secret logs in with the password its create answered, on a real server.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoginSecrets } from '../src/leases/credentials.js';
import { createLease, queryUrl, startTestService, superuserDatabaseUrl, type TestService } from './support/service.js';

let service: TestService;

beforeAll(async () => {
  service = await startTestService({ PGLEASE_LEASE_POOL: '0' });
});

afterAll(async () => {
  await service?.close();
});

describe('login secrets made ahead', () => {
  it('hand out each secret once, and each verifier lets its own password log in, ready or made on the spot', async () => {
    const secrets = new LoginSecrets(4096, 4);
    // the first takes find the stock empty and make their own; later ones find it filled
    const first = await Promise.all(Array.from({ length: 3 }, () => secrets.take()));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const later = await Promise.all(Array.from({ length: 6 }, () => secrets.take()));
    const all = [...first, ...later];
    expect(new Set(all.map((secret) => secret.password)).size).toBe(all.length);
    expect(new Set(all.map((secret) => secret.verifier)).size).toBe(all.length);
    for (const secret of all) expect(secret.verifier).toMatch(/^SCRAM-SHA-256\$4096:/);

    // Postgres takes each verifier and lets its password in (and no other's)
    const admin = new pg.Client({ connectionString: superuserDatabaseUrl(service) });
    await admin.connect();
    const roles: string[] = [];
    try {
      for (const secret of [first[0]!, later[0]!, later[5]!]) {
        const role = `login_secret_${randomBytes(6).toString('hex')}`;
        roles.push(role);
        await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${secret.verifier}'`);
        // the lease database is closed to PUBLIC (src/db/superuser-setup.ts)
        await admin.query(`GRANT CONNECT ON DATABASE ${admin.escapeIdentifier(service.config.leaseDatabase)} TO ${role}`);
        const url = new URL(superuserDatabaseUrl(service));
        url.username = role;
        url.password = secret.password;
        expect(await queryUrl<{ who: string }>(url.toString(), 'SELECT current_user AS who')).toEqual([{ who: role }]);
        url.password = first[1]!.password;
        await expect(queryUrl(url.toString(), 'SELECT 1')).rejects.toThrow(/password authentication failed/);
      }
    } finally {
      for (const role of roles) await admin.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
      await admin.end();
    }
  });

  it('give back-to-back creates working, distinct passwords', async () => {
    const leases = [];
    for (let i = 0; i < 12; i++) leases.push(await createLease(service));
    expect(new Set(leases.map((lease) => new URL(lease.url).password)).size).toBe(leases.length);
    for (const lease of leases) {
      expect(await queryUrl<{ who: string }>(lease.url, 'SELECT current_user AS who')).toEqual([{ who: lease.role }]);
    }
  });
});
