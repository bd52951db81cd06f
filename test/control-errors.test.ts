/**
 * How the control API words errors that are not its own: Postgres out of resources or out of
 * reach is a 503 with Retry-After, never a 500.
 */
import { Agent, request } from 'node:http';
import { describe, expect, it } from 'vitest';
import { toControlError } from '../src/server.js';
import { createLease, startTestService } from './support/service.js';

function pgError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

describe('toControlError', () => {
  it('answers 503 with Retry-After when Postgres is out of resources or unreachable', () => {
    const locks = toControlError(pgError('53200', 'out of shared memory'));
    expect(locks.status).toBe(503);
    expect(locks.code).toBe('PGLEASE_NOT_READY');
    expect(locks.message).toContain('out of shared memory');
    expect(locks.headers['Retry-After']).toBeGreaterThan(0);
    const down = toControlError(pgError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432'));
    expect(down.status).toBe(503);
    expect(down.headers['Retry-After']).toBeGreaterThan(0);
    expect(toControlError(new Error('a bug')).status).toBe(500);
  });
});

describe('a server that is closing', () => {
  it('answers requests still reaching it with 503 and Retry-After in each API\'s format, not a reset connection', async () => {
    const service = await startTestService();
    const lease = await createLease(service);
    const agent = new Agent({ keepAlive: true, maxSockets: 2 });
    const get = (url: string) =>
      new Promise<{ status: number; headers: Record<string, unknown>; body: Record<string, unknown> }>((resolve, reject) => {
        request(url, { agent, headers: { authorization: `Bearer ${lease.token}` } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) as Record<string, unknown> }));
        })
          .on('error', reject)
          .end();
      });
    try {
      // two connections are open (keep-alive) when the close begins; both requests go at once, well
      // within the close's grace (250 ms), even on a loaded machine
      const opened = await Promise.all([get(`${service.baseUrl}/v1/leases/${lease.id}`), get(`${service.baseUrl}/v1/leases/${lease.id}`)]);
      expect(opened.map((answer) => answer.status)).toEqual([200, 200]);
      const closed = service.close();
      await new Promise((resolve) => setTimeout(resolve, 30));
      const [control, rest] = await Promise.all([get(`${service.baseUrl}/v1/leases/${lease.id}`), get(`${service.baseUrl}/v1/leases/${lease.id}/rest/anything`)]);
      expect(control.status).toBe(503);
      expect(control.body).toMatchObject({ code: 'PGLEASE_NOT_READY' });
      expect(control.headers['retry-after']).toBe('5');
      expect(rest.status).toBe(503);
      expect(rest.body).toMatchObject({ code: 'PGRST000', details: 'pglease is shutting down' });
      expect(rest.headers['retry-after']).toBe('5');
      await closed;
    } finally {
      agent.destroy();
      await service.close();
    }
  });
});
