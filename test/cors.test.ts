/**
 * Browsers may call pglease from any origin, with PostgREST's CORS headers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, type TestService } from './support/service.js';

let service: TestService;
beforeAll(async () => {
  service = await startTestService();
});
afterAll(async () => {
  await service?.close();
});

describe('CORS', () => {
  it('answers a preflight permissively and caches it for a day', async () => {
    const response = await fetch(`${service.baseUrl}/v1/leases`, {
      method: 'OPTIONS',
      headers: { origin: 'http://example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'Content-Type,Prefer' },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    expect(response.headers.get('access-control-allow-methods')).toBe('GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD');
    expect(response.headers.get('access-control-allow-headers')).toBe('Authorization, Content-Type, Prefer, Accept, Accept-Language, Content-Language');
    expect(response.headers.get('access-control-max-age')).toBe('86400');
  });

  it('lets a page read the answer of a cross-origin request, errors included', async () => {
    const created = await fetch(`${service.baseUrl}/v1/leases`, { method: 'POST', headers: { origin: 'http://example.com' } });
    expect(created.status).toBe(201);
    expect(created.headers.get('access-control-allow-origin')).toBe('*');
    expect(created.headers.get('access-control-expose-headers')).toContain('Location');
    const missing = await fetch(`${service.baseUrl}/v1/leases/nope`, { headers: { origin: 'http://example.com', authorization: 'Bearer x' } });
    expect(missing.status).toBe(404);
    expect(missing.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('adds nothing to same-origin requests', async () => {
    const response = await fetch(`${service.baseUrl}/healthz`);
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
  });
});
