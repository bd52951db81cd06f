/**
 * Per-request log lines are opt-in (PGLEASE_LOG_REQUESTS): off, a request writes nothing to the
 * log; on, Fastify's request and response lines appear, with the request's id.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startService } from '../src/service.js';
import { createLogger } from '../src/log.js';

async function logLines(logRequests: boolean, run: (baseUrl: string) => Promise<void>, env: Record<string, string> = {}): Promise<Record<string, unknown>[]> {
  const lines: string[] = [];
  const config = loadConfig({
    DATABASE_URL: inject('serverUrl'),
    PGLEASE_DATABASE: `pglease_test_${randomBytes(4).toString('hex')}`,
    PGLEASE_ADMIN_TOKEN: 'test-admin-token',
    PGLEASE_LEASE_POOL: '0',
    PGLEASE_LOG_REQUESTS: String(logRequests),
    ...env,
  });
  const service = await startService(config, { logger: { level: 'info', stream: { write: (line) => void lines.push(line) } } });
  try {
    const address = await service.app.listen({ host: '127.0.0.1', port: 0 });
    await run(address);
  } finally {
    await service.close();
  }
  return lines.map((line) => JSON.parse(line) as Record<string, unknown>);
}

// each test starts a service of its own (migrations included): 23.5 s of the default 30 s once beside a second suite
describe('request logging', { timeout: 90_000 }, () => {
  it('writes no line per request by default', async () => {
    const lines = await logLines(false, async (baseUrl) => {
      expect((await fetch(`${baseUrl}/healthz`)).status).toBe(200);
    });
    expect(lines.filter((line) => line.msg === 'incoming request' || line.msg === 'request completed')).toEqual([]);
  });

  it('logs an expected 503 (the database full) as one warning, without a stack', async () => {
    const lines = await logLines(
      false,
      async (baseUrl) => {
        const headers = { authorization: 'Bearer test-admin-token' };
        expect((await fetch(`${baseUrl}/v1/leases`, { method: 'POST', headers })).status).toBe(201);
        expect((await fetch(`${baseUrl}/v1/leases`, { method: 'POST', headers })).status).toBe(503);
      },
      { PGLEASE_MAX_LEASES: '1' },
    );
    const full = lines.filter((line) => line.code === 'PGLEASE_CAPACITY');
    expect(full).toHaveLength(1);
    expect(full[0]).toMatchObject({ level: 40 });
    expect(full[0]!.err).toBeUndefined();
    expect(lines.filter((line) => (line.level as number) >= 50)).toEqual([]);
  });

  it('writes the request and response lines with PGLEASE_LOG_REQUESTS', async () => {
    const lines = await logLines(true, async (baseUrl) => {
      expect((await fetch(`${baseUrl}/healthz`)).status).toBe(200);
    });
    const incoming = lines.find((line) => line.msg === 'incoming request');
    expect(incoming?.reqId).toBeDefined();
    expect(lines.some((line) => line.msg === 'request completed' && line.reqId === incoming?.reqId)).toBe(true);
  });
});

describe('the logger of pglease serve (src/log.ts)', () => {
  const capture = (isTTY: boolean) => {
    const out = { text: '', isTTY, write: (chunk: string) => (out.text += chunk) };
    return out;
  };

  it('writes JSON records where stderr is no terminal, and short human lines where it is one', () => {
    const piped = capture(false);
    createLogger('info', piped).info({ job: 'reap-expired' }, 'applied migration 0004_templates');
    expect(JSON.parse(piped.text)).toMatchObject({ level: 30, msg: 'applied migration 0004_templates', job: 'reap-expired' });

    const terminal = capture(true);
    const logger = createLogger('info', terminal);
    logger.info({ job: 'reap-expired' }, 'applied migration 0004_templates');
    logger.warn('requests still running');
    logger.error({ err: new Error('boom') }, 'shutdown failed');
    logger.debug('not at this level');
    const lines = terminal.text.split('\n');
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d applied migration 0004_templates job=reap-expired$/);
    expect(lines[1]).toMatch(/^\d\d:\d\d:\d\d WARN requests still running$/);
    expect(lines[2]).toMatch(/^\d\d:\d\d:\d\d ERROR shutdown failed$/);
    expect(lines[3]).toBe('Error: boom');
    expect(terminal.text).not.toContain('{');
    expect(terminal.text).not.toContain('not at this level');
  });
});
