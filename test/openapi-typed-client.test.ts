/**
 * A typed client from a lease's document: openapi-typescript turns the document into types, a
 * small client on openapi-fetch uses them, `tsc` checks it (right column types, enum values and
 * nullability; a wrong column or a wrong type does not compile), and then it runs against the lease.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import openapiTS, { astToString } from 'openapi-typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectPath } from '../src/paths.js';
import { applyFixture, runAsLease } from './fixtures/openapi/fixture.js';
import { createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';

interface Outcome {
  status: number;
  data: unknown;
  error?: { code: string; message: string };
}

/** client.ts's exports, as this file uses them. */
interface TypedClient {
  readFilms(baseUrl: string, token: string): Promise<{ titles: string[]; feelings: (string | null)[]; directors: (number | null)[] }>;
  callGreet(baseUrl: string, token: string): Promise<Outcome>;
  insertDirector(baseUrl: string, token: string, name: string): Promise<Outcome>;
  renameDirector(baseUrl: string, token: string, id: number, name: string): Promise<Outcome>;
}

let service: TestService;
let lease: CreatedLeaseJson;
// under the project so that `openapi-fetch` resolves from its node_modules
const workDir = projectPath('test/artifacts', `typed-client-${process.pid}`);

/** The client a person would write with the generated types. */
const CLIENT_SOURCE = `
import createClient from 'openapi-fetch';
import type { components, paths } from './lease-api.js';

type Film = components['schemas']['films'];

export function leaseClient(baseUrl: string, token: string) {
  return createClient<paths, 'application/json'>({ baseUrl, headers: { Authorization: 'Bearer ' + token } });
}

export async function readFilms(baseUrl: string, token: string) {
  const client = leaseClient(baseUrl, token);
  const { data, error } = await client.GET('/films', {
    params: { query: { select: 'id,title,feeling,director_id,released', director_id: 'eq.1', order: 'id' } },
  });
  if (error) throw new Error(error.message);
  const titles: string[] = data.map((film) => film.title);
  const feelings: ('sad' | 'ok' | 'happy' | null)[] = data.map((film) => film.feeling);
  const directors: (number | null)[] = data.map((film) => film.director_id);
  return { titles, feelings, directors };
}

export async function callGreet(baseUrl: string, token: string) {
  const { data, error, response } = await leaseClient(baseUrl, token).POST('/rpc/greet', { body: { name: 'typed' } });
  const greeting: string | undefined = data;
  return { status: response.status, data: greeting, error };
}

export async function insertDirector(baseUrl: string, token: string, name: string) {
  const { data, error, response } = await leaseClient(baseUrl, token).POST('/directors', {
    body: { name, born: '1970-01-01' },
    params: { header: { Prefer: 'return=representation' } },
  });
  return { status: response.status, data, error };
}

export async function renameDirector(baseUrl: string, token: string, id: number, name: string) {
  const { data, error, response } = await leaseClient(baseUrl, token).PATCH('/directors', {
    params: { query: { id: 'eq.' + id }, header: { Prefer: 'return=representation' } },
    body: { name },
  });
  const names: string[] | undefined = data?.map((director) => director.name);
  return { status: response.status, data: names, error };
}

/** Never called: what must compile. Columns with a default or that accept null may be left out. */
export async function leaveOut(client: ReturnType<typeof leaseClient>) {
  await client.POST('/films', { body: { title: 'Only a title' } });
  await client.POST('/films', { body: [{ title: 'Many' }, { title: 'at once', feeling: 'sad', rating: 7.5 }] });
  await client.PATCH('/films', { params: { query: { id: 'eq.1' } }, body: { released: true } });
}

/** Never called: what must not compile. */
export async function mistakes(client: ReturnType<typeof leaseClient>) {
  const { data } = await client.GET('/films');
  // @ts-expect-error: no such column
  data?.map((film) => film.no_such_column);
  // @ts-expect-error: a title is a string
  const title: number | undefined = data?.[0]?.title;
  // @ts-expect-error: not one of the enum's values
  const feeling: Film['feeling'] = 'angry';
  // @ts-expect-error: greet takes a name
  await client.POST('/rpc/greet', { body: { nom: 'x' } });
  // @ts-expect-error: name is required on insert
  await client.POST('/directors', { body: { born: '1970-01-01' } });
  // @ts-expect-error: generated columns cannot be written
  const generated: components['schemas']['films.insert'] = { title: 'x', title_length: 1 };
  // @ts-expect-error: no such table
  await client.GET('/no_such_table');
  return { title, feeling, generated };
}

export type { Film };
`;

beforeAll(async () => {
  service = await startTestService();
  lease = await createLease(service);
  await applyFixture(lease);
  await runAsLease(
    lease,
    `INSERT INTO directors (name) VALUES ('Agnès Varda'); -- id 1
     INSERT INTO films (title, director_id, feeling) VALUES ('Cléo from 5 to 7', 1, 'happy'), ('Vagabond', 1, NULL), ('Elsewhere', NULL, 'sad');`,
  );
});

afterAll(async () => {
  await service?.close();
  rmSync(workDir, { recursive: true, force: true });
});

describe('typed client from the lease document', () => {
  it('generates types that type-check a client, which then reads the lease', async () => {
    const response = await fetch(`${service.baseUrl}/v1/leases/${lease.id}/openapi.json`, { headers: { authorization: `Bearer ${lease.token}` } });
    const document = (await response.json()) as Parameters<typeof openapiTS>[0];
    const types = astToString(await openapiTS(document));
    expect(types).toContain('"/films"');
    mkdirSync(workDir, { recursive: true });
    writeFileSync(path.join(workDir, 'lease-api.ts'), types);
    writeFileSync(path.join(workDir, 'client.ts'), CLIENT_SOURCE);

    const tsc = await promisify(execFile)(
      process.execPath,
      [projectPath('node_modules/typescript/bin/tsc'), '--noEmit', '--strict', '--noUncheckedIndexedAccess', '--skipLibCheck',
        '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', path.join(workDir, 'client.ts')],
      { cwd: workDir },
    ).catch((error: { stdout?: string; stderr?: string }) => ({ stdout: error.stdout ?? '', stderr: error.stderr ?? '', failed: true }));
    expect('failed' in tsc ? tsc.stdout + tsc.stderr : '').toBe('');

    const client = (await import(path.join(workDir, 'client.ts'))) as TypedClient;
    const films = await client.readFilms(lease.rest_url, lease.token);
    expect(films.titles).toEqual(['Cléo from 5 to 7', 'Vagabond']);
    expect(films.feelings).toEqual(['happy', null]);
    expect(films.directors).toEqual([1, 1]);

    // Writes and RPC are issue 5: until they land, the REST API refuses them (405 PGRST117 / 404
    // PGRST125) and only the compile-time half of these checks runs
    const greeted = await client.callGreet(lease.rest_url, lease.token);
    if (greeted.status === 404 && greeted.error?.code === 'PGRST125') console.warn('typed client: RPC not served yet (issue 5)');
    else expect(greeted).toMatchObject({ status: 200, data: 'hello typed' });

    const inserted = await client.insertDirector(lease.rest_url, lease.token, 'Chantal Akerman');
    if (inserted.status === 405 && inserted.error?.code === 'PGRST117') console.warn('typed client: POST not served yet (issue 5)');
    else {
      expect(inserted.status).toBe(201);
      expect(inserted.data).toEqual([expect.objectContaining({ name: 'Chantal Akerman', born: '1970-01-01' })]);
      const id = (inserted.data as { id: number }[])[0]!.id;
      expect(await client.renameDirector(lease.rest_url, lease.token, id, 'C. Akerman')).toMatchObject({ status: 200, data: ['C. Akerman'] });
    }
    // (the TypeScript compiler, in-process: over 30 s beside a second suite on a slower 2-core machine)
  }, 120_000);
});
