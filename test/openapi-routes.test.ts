/**
 * The documents over HTTP: the service's own /openapi.json, each lease's
 * /v1/leases/:id/openapi.json and {rest_url}/ (PostgREST's root), which follow DDL at once,
 * and the lease's Swagger UI page with its assets served from npm packages.
 */
import SwaggerParser from '@apidevtools/swagger-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenApiDocument } from '../src/rest/openapi/types.js';
import { applyFixture, runAsLease } from './fixtures/openapi/fixture.js';
import { ADMIN_TOKEN, createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';

let service: TestService;
let lease: CreatedLeaseJson;

async function leaseDocument(token?: string, id = lease.id): Promise<{ status: number; body: OpenApiDocument & { code?: string } }> {
  const response = await fetch(`${service.baseUrl}/v1/leases/${id}/openapi.json`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: response.status, body: (await response.json()) as OpenApiDocument & { code?: string } };
}

beforeAll(async () => {
  service = await startTestService();
  lease = await createLease(service);
  await applyFixture(lease);
});

afterAll(async () => {
  await service?.close();
});

describe('service document', () => {
  it('is valid OpenAPI 3.1 and describes the lease document route', async () => {
    const response = await fetch(`${service.baseUrl}/openapi.json`);
    expect(response.status).toBe(200);
    const document = (await response.json()) as OpenApiDocument;
    await expect(SwaggerParser.validate(document as never)).resolves.toBeTruthy();
    expect(document.openapi).toBe('3.1.0');
    expect(Object.keys(document.paths)).toEqual(expect.arrayContaining(['/v1/leases', '/v1/leases/{id}', '/v1/leases/{id}/openapi.json']));
    // the HTML page and the REST API itself are described elsewhere
    // (as whole path segments: /v1/leases/{id}/restore is a control route)
    expect(Object.keys(document.paths).filter((path) => /\/(docs|rest)(\/|$)/.test(path))).toEqual([]);
  });
});

describe('lease document', () => {
  it('is the lease role’s with the lease token and the anonymous role’s without', async () => {
    const owner = await leaseDocument(lease.token);
    expect(owner.status).toBe(200);
    await expect(SwaggerParser.validate(structuredClone(owner.body) as never)).resolves.toBeTruthy();
    expect(owner.body.servers[0]!.url).toBe(lease.rest_url);
    expect(Object.keys(owner.body.paths)).toEqual(expect.arrayContaining(['/films', '/directors', '/rpc/add_numbers']));

    const anonymous = await leaseDocument();
    expect(anonymous.status).toBe(200);
    await expect(SwaggerParser.validate(structuredClone(anonymous.body) as never)).resolves.toBeTruthy();
    expect(Object.keys(anonymous.body.paths).sort()).toEqual(['/', '/directors', '/rpc/greet']);

    // the admin token acts as the lease's owner
    expect(Object.keys((await leaseDocument(ADMIN_TOKEN)).body.paths)).toContain('/films');
  });

  it('answers 401 for another token and 404 for a lease that does not exist or has ended', async () => {
    const other = await createLease(service);
    const wrong = await leaseDocument(other.token);
    expect(wrong.status).toBe(401);
    expect(wrong.body.code).toBe('PGLEASE_UNAUTHORIZED');
    expect((await leaseDocument(undefined, '00000000-0000-4000-8000-000000000000')).body.code).toBe('PGLEASE_NOT_FOUND');
    expect((await leaseDocument(undefined, 'not-a-uuid')).status).toBe(404);
    const released = await fetch(`${service.baseUrl}/v1/leases/${other.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${other.token}` } });
    expect(released.status).toBe(204);
    expect((await leaseDocument(other.token, other.id)).status).toBe(404);
  });

  it('is also PostgREST’s root, {rest_url}/, for application/openapi+json and application/json', async () => {
    const expected = (await leaseDocument(lease.token)).body;
    for (const accept of ['application/openapi+json', 'application/json', '*/*']) {
      const response = await fetch(`${lease.rest_url}/`, { headers: { accept, authorization: `Bearer ${lease.token}` } });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe(accept === 'application/json' ? 'application/json; charset=utf-8' : 'application/openapi+json; charset=utf-8');
      expect(await response.json()).toEqual(expected);
    }
    const anonymous = await fetch(lease.rest_url, { headers: { accept: 'application/openapi+json' } });
    expect(Object.keys(((await anonymous.json()) as OpenApiDocument).paths).sort()).toEqual(['/', '/directors', '/rpc/greet']);
    const csv = await fetch(`${lease.rest_url}/`, { headers: { accept: 'text/csv' } });
    expect(csv.status).toBe(406);
    expect(((await csv.json()) as { code: string }).code).toBe('PGRST107');
  });

  it('follows DDL and GRANTs at once', async () => {
    await runAsLease(lease, 'CREATE TABLE reviews (id serial PRIMARY KEY, film_id bigint REFERENCES films (id), stars smallint NOT NULL)');
    const afterCreate = (await leaseDocument(lease.token)).body;
    expect(Object.keys(afterCreate.paths)).toContain('/reviews');
    expect(afterCreate.components.schemas['reviews.insert']).toMatchObject({ required: ['stars'] });
    // the REST root sees the same, right away
    const root = (await (await fetch(`${lease.rest_url}/`, { headers: { authorization: `Bearer ${lease.token}` } })).json()) as OpenApiDocument;
    expect(Object.keys(root.paths)).toContain('/reviews');

    await runAsLease(lease, `GRANT SELECT, INSERT ON reviews TO "${lease.anon_role}"`);
    expect(Object.keys((await leaseDocument()).body.paths['/reviews'] ?? {}).sort()).toEqual(['get', 'post']);

    await runAsLease(lease, 'DROP TABLE reviews');
    expect(Object.keys((await leaseDocument(lease.token)).body.paths)).not.toContain('/reviews');
  });
});

describe('lease docs page', () => {
  it('is Swagger UI on the lease document, with every asset served by pglease', async () => {
    const response = await fetch(`${service.baseUrl}/v1/leases/${lease.id}/docs`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await response.text();
    expect(html).toContain(`data-document-url="/v1/leases/${lease.id}/openapi.json"`);
    const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1]!);
    expect(assets.length).toBeGreaterThanOrEqual(3);
    for (const asset of assets) {
      expect(asset.startsWith('/'), `${asset} is served by pglease, not a CDN`).toBe(true);
      expect((await fetch(`${service.baseUrl}${asset}`)).status, asset).toBe(200);
    }
    expect((await fetch(`${service.baseUrl}/v1/leases/00000000-0000-4000-8000-000000000000/docs`)).status).toBe(404);
  });
});
