/**
 * The reaper, through the real scheduler: expired leases end on time, a lease that cannot be
 * dropped is retried without holding up the others, and an ended lease stays visible as expired.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { inject } from 'vitest';
import { ADMIN_TOKEN, createLease, startTestService, type TestService } from './support/service.js';
import { sleep, waitFor } from './support/wait.js';

let service: TestService;

beforeAll(async () => {
  // the default reaper schedule (every 10 s): short leases must still end at their expiry
  service = await startTestService({ PGLEASE_REAPER_BATCH: '5' });
});
afterAll(async () => {
  await service?.close();
});

async function leaseState(id: string): Promise<{ state: string; ended_at: Date | null; expires_at: Date; last_error: string | null; reap_attempts: number }> {
  const { rows } = await service.host.pool.query('SELECT state, ended_at, expires_at, last_error, reap_attempts FROM pglease.leases WHERE id = $1', [id]);
  return rows[0];
}

async function objectsLeft(base: string): Promise<string[]> {
  const { rows } = await service.host.pool.query<{ name: string }>(
    `SELECT rolname AS name FROM pg_roles WHERE rolname IN ($1::text, $1::text || '_anon', $1::text || '_auth')
     UNION ALL SELECT nspname FROM pg_namespace WHERE nspname = $1::text`,
    [base],
  );
  return rows.map((row) => row.name).sort();
}

describe('reap-expired', () => {
  it('ends a 1-second lease within seconds although the reaper runs every 10 s', async () => {
    // connected first, then cut to 1 s: under load a lease made with ttl 1 was reaped before its
    // first login (beside a second suite on a slower 2-core machine)
    const lease = await createLease(service, { ttl: 600 });
    const client = new pg.Client({ connectionString: lease.url });
    await client.connect();
    client.on('error', () => undefined); // the reaper terminates this session
    const renewed = await fetch(`${service.baseUrl}/v1/leases/${lease.id}/renew`, {
      method: 'POST',
      headers: { authorization: `Bearer ${lease.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ttl: 1 }),
    });
    expect(renewed.status).toBe(200);

    const ended = await waitFor('the lease to expire', async () => {
      const row = await leaseState(lease.id);
      return row.state === 'expired' ? row : undefined;
    });
    const overshootMs = ended.ended_at!.getTime() - ended.expires_at.getTime();
    expect(overshootMs).toBeLessThan(5000);
    expect(await objectsLeft(lease.schema)).toEqual([]);

    // GET still answers (history retention), saying expired
    const response = await fetch(`${service.baseUrl}/v1/leases/${lease.id}`, { headers: { authorization: `Bearer ${lease.token}` } });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ id: lease.id, state: 'expired' });

    // the open session was terminated and the URL no longer logs in
    await expect(client.query('SELECT 1')).rejects.toThrow();
    const again = new pg.Client({ connectionString: lease.url });
    await expect(again.connect()).rejects.toThrow(/password authentication failed|does not exist/);
    await again.end().catch(() => undefined);

    const events = await service.host.pool.query('SELECT kind FROM pglease.lease_events WHERE lease_id = $1 ORDER BY id', [lease.id]);
    expect(events.rows.map((row) => row.kind)).toEqual(['created', 'renewed', 'expired']);
    // the run that reaped it records itself when it ends, which may be a moment after the reap
    const runs = await waitFor('the reaping run to be recorded', async () => {
      const { rows } = await service.host.pool.query(
        `SELECT outcome, rows_affected::int AS rows FROM pglease.job_runs WHERE job_name = 'reap-expired' AND rows_affected > 0`,
      );
      return rows.length > 0 ? rows : undefined;
    });
    expect(runs).toEqual([{ outcome: 'succeeded', rows: 1 }]);
  });

  it('reaps more leases than one batch holds, and leaves unexpired ones alone', async () => {
    const short = await Promise.all(Array.from({ length: 12 }, () => createLease(service, { ttl: 1 }, { authorization: `Bearer ${ADMIN_TOKEN}` })));
    const long = await createLease(service, { ttl: 600 });
    await waitFor('all 12 leases to expire', async () => {
      const { rows } = await service.host.pool.query<{ live: number }>(
        `SELECT count(*)::int AS live FROM pglease.leases WHERE id = ANY ($1) AND state <> 'expired'`,
        [short.map((lease) => lease.id)],
      );
      return rows[0]!.live === 0 ? true : undefined;
    });
    for (const lease of short) expect(await objectsLeft(lease.schema)).toEqual([]);
    expect((await leaseState(long.id)).state).toBe('active');
    expect(await objectsLeft(long.schema)).toHaveLength(4);
  });

  it('keeps going when one lease cannot be dropped, records the error, and retries it', async () => {
    // made for 10 minutes and cut to 1 s once the blocker stands: made with ttl 1, `stuck` was
    // reaped before the blocker's CREATE DATABASE named its role (beside a second suite)
    const stuck = await createLease(service, { ttl: 600 });
    const fine = await createLease(service, { ttl: 600 });
    // a database owned by the lease's role makes DROP ROLE fail (DROP OWNED leaves databases alone)
    const admin = new pg.Client({ connectionString: inject('serverUrl') });
    await admin.connect();
    const blocker = `${service.config.leaseDatabase}_blocker`;
    try {
      await admin.query(`CREATE DATABASE ${blocker} OWNER ${stuck.role}`);
      for (const lease of [stuck, fine]) {
        const renewed = await fetch(`${service.baseUrl}/v1/leases/${lease.id}/renew`, {
          method: 'POST',
          headers: { authorization: `Bearer ${lease.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ ttl: 1 }),
        });
        expect(renewed.status).toBe(200);
      }

      await waitFor('the healthy lease to expire', async () => ((await leaseState(fine.id)).state === 'expired' ? true : undefined));
      const failing = await waitFor('the failure to be recorded', async () => {
        const row = await leaseState(stuck.id);
        return row.last_error !== null ? row : undefined;
      });
      expect(failing.state).toBe('active');
      expect(failing.last_error).toMatch(/reaping failed: .*cannot be dropped/);
      expect(failing.reap_attempts).toBeGreaterThanOrEqual(1);
      // the failed attempt rolled back: nothing of the lease was half-dropped
      expect(await objectsLeft(stuck.schema)).toHaveLength(4);

      await admin.query(`DROP DATABASE ${blocker}`);
      // retried after a short backoff (2 s, then 4 s...)
      const ended = await waitFor('the retry to reap it', async () => {
        const row = await leaseState(stuck.id);
        return row.state === 'expired' ? row : undefined;
      }, 20_000);
      expect(ended.last_error).toBeNull();
      expect(await objectsLeft(stuck.schema)).toEqual([]);
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${blocker}`).catch(() => undefined);
      await admin.end();
    }
  }, 60_000); // waits for two expiries, a failure and a retry after backoff: ~10 s alone, 30 s+ on a loaded machine

  it('does not reap a lease renewed before its expiry', async () => {
    const lease = await createLease(service, { ttl: 2 });
    const renewed = await fetch(`${service.baseUrl}/v1/leases/${lease.id}/renew`, {
      method: 'POST',
      headers: { authorization: `Bearer ${lease.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ttl: 600 }),
    });
    expect(renewed.status).toBe(200);
    await sleep(3000);
    expect((await leaseState(lease.id)).state).toBe('active');
    const client = new pg.Client({ connectionString: lease.url });
    await client.connect();
    await client.end();
  });
});
