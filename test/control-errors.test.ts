/**
 * How the control API words errors that are not its own: Postgres out of resources or out of
 * reach is a 503 with Retry-After, never a 500.
 */
import { describe, expect, it } from 'vitest';
import { toControlError } from '../src/server.js';

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
