/**
 * Leases for tests: find a pglease (PGLEASE_URL, else localhost:8080, else one started in-process),
 * register a template if asked, hand out leases that release themselves.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_SERVER, PgleaseApiError, PgleaseClient, type CreatedLeaseJson } from './client.js';
import type { LocalOptions, LocalPglease } from './local.js';
export { workerDatabaseUrl } from './worker-url.js';

/** Seed SQL given inline, or as a file (relative paths from the working directory). */
export type TemplateSpec = { name: string; sql: string } | { name: string; file: string };

export interface ConnectOptions {
  /** pglease base URL; default $PGLEASE_URL, else http://localhost:8080. */
  server?: string;
  /** Admin token; default $PGLEASE_ADMIN_TOKEN. Without one, templates are registered privately. */
  adminToken?: string;
  /**
   * 'auto' (default): use the server if it answers /readyz, else start pglease in this process;
   * 'never': fail when the server does not answer; 'always': always start one in-process.
   */
  local?: 'auto' | 'never' | 'always';
  /** Options of the in-process pglease. */
  localOptions?: LocalOptions;
}

export interface PgleaseConnection {
  client: PgleaseClient;
  adminToken: string | undefined;
  /** Set when pglease was started in this process; stop it with close(). */
  local: LocalPglease | undefined;
  close: () => Promise<void>;
}

export async function connectPglease(options: ConnectOptions = {}): Promise<PgleaseConnection> {
  const explicit = options.server ?? process.env.PGLEASE_URL;
  const server = explicit ?? DEFAULT_SERVER;
  if (!/^https?:\/\/[^/]/i.test(server)) {
    const source = options.server !== undefined ? 'server option' : 'PGLEASE_URL';
    throw new Error(`pglease: ${source} ${JSON.stringify(server)} is not an http(s) URL (e.g. http://localhost:8080)`);
  }
  const mode = options.local ?? 'auto';
  if (mode !== 'always') {
    const client = new PgleaseClient({ server });
    if (await client.ready()) {
      return { client, adminToken: options.adminToken ?? process.env.PGLEASE_ADMIN_TOKEN, local: undefined, close: async () => undefined };
    }
    if (mode === 'never') throw new Error(`pglease: no pglease answers at ${server} (set PGLEASE_URL, or allow an in-process one with local: 'auto')`);
    if (explicit) process.stderr.write(`pglease: ${server} does not answer; starting pglease in this process instead\n`);
  }
  const local = await acquireLocal(options.localOptions);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await releaseLocal();
  };
  return { client: new PgleaseClient({ server: local.server }), adminToken: local.adminToken, local, close };
}

/**
 * One in-process pglease per process, shared by every connection that needs it and stopped when
 * the last one closes (so a script's process can exit, and sequential withLease calls in one
 * test share it while any lease is open).
 */
let sharedLocal: { started: Promise<LocalPglease>; users: number } | undefined;

/**
 * ./local.js, loaded only when a pglease is started in-process: it brings the whole service. The
 * specifier is a variable so that the CommonJS build (scripts/build-cjs.mjs), which cannot load
 * the service (an ES module), leaves it out; there the import fails and says what to do instead.
 */
const LOCAL_MODULE = './local.js';

async function startLocal(options: LocalOptions | undefined): Promise<LocalPglease> {
  let local: typeof import('./local.js');
  try {
    local = (await import(LOCAL_MODULE)) as typeof import('./local.js');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error;
    throw new Error(
      'pglease: no pglease answers, and the CommonJS build of pglease/testing cannot start one in this process: ' +
        "run `npx pglease serve`, or let jest's globalSetup (pglease/testing/jest-global-setup) start one for the run",
    );
  }
  return local.startLocalPglease(options);
}

async function acquireLocal(options: LocalOptions | undefined): Promise<LocalPglease> {
  sharedLocal ??= { started: startLocal(options), users: 0 };
  sharedLocal.users++;
  try {
    return await sharedLocal.started;
  } catch (error) {
    sharedLocal = undefined;
    throw error;
  }
}

async function releaseLocal(): Promise<void> {
  if (!sharedLocal || --sharedLocal.users > 0) return;
  const { started } = sharedLocal;
  sharedLocal = undefined;
  await (await started).stop();
}

/** A template ready to lease from, and the token that may use it. */
export interface PreparedTemplate {
  name: string;
  /** Token to send when creating leases from it (admin, or the owner lease's). */
  token: string | undefined;
  sha256: string;
  /** Removes what registering needed (the owner lease of a private template). */
  dispose: () => Promise<void>;
  /** Moves the owner lease's expiry to now + ttl (a no-op for a global template). */
  renew: (ttl: number) => Promise<void>;
}

/**
 * A template whose seed SQL failed, named with where it came from: a test run's setup has no other
 * trace of which template, or which file, it was registering.
 */
function seedFailure(error: unknown, spec: TemplateSpec): unknown {
  if (!(error instanceof PgleaseApiError) || error.code !== 'PGLEASE_TEMPLATE_INVALID') return error;
  const source = 'file' in spec ? path.resolve(spec.file) : 'its SQL';
  const where = error.postgres?.line === undefined ? '' : `:${error.postgres.line}${error.postgres.column === undefined ? '' : `:${error.postgres.column}`}`;
  const reason = error.postgres ? `${error.postgres.message} (SQLSTATE ${error.postgres.code})` : error.message;
  return new PgleaseApiError(error.status, error.code, `template "${spec.name}" (${source}${where}) failed to apply: ${reason}`, error.field, error.postgres);
}

/** A template's SQL from its file; a file that cannot be read is named with the option that names it. */
async function readTemplateFile(spec: { name: string; file: string }): Promise<string> {
  const file = path.resolve(spec.file);
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new Error(`pglease: template "${spec.name}": cannot read its file (template.file: ${JSON.stringify(spec.file)}, ${file}): ${reason}`);
  }
}

/**
 * Registers a template: globally with the admin token, else privately under a small owner lease
 * whose token then creates the leases (the owner lives as long as `ttl`).
 */
export async function prepareTemplate(connection: PgleaseConnection, spec: TemplateSpec, ttl: number): Promise<PreparedTemplate> {
  const sql = 'sql' in spec ? spec.sql : await readTemplateFile(spec);
  if (connection.adminToken) {
    const template = await connection.client
      .withToken(connection.adminToken)
      .registerTemplate(spec.name, sql)
      .catch((error: unknown) => Promise.reject(seedFailure(error, spec)));
    return { name: spec.name, token: connection.adminToken, sha256: template.sha256, dispose: async () => undefined, renew: async () => undefined };
  }
  const owner = await connection.client.createLease({ ttl, name: `template owner: ${spec.name}` });
  const ownerClient = connection.client.withToken(owner.token);
  try {
    const template = await ownerClient.registerTemplate(spec.name, sql).catch((error: unknown) => Promise.reject(seedFailure(error, spec)));
    return {
      name: spec.name,
      token: owner.token,
      sha256: template.sha256,
      dispose: () => releaseQuietly(ownerClient, owner.id),
      renew: async (renewTtl) => void (await ownerClient.renewLease(owner.id, renewTtl)),
    };
  } catch (error) {
    await releaseQuietly(ownerClient, owner.id);
    throw error;
  }
}

/** Releases a lease; one already gone (released, expired) is not an error. */
export async function releaseQuietly(client: PgleaseClient, id: string): Promise<void> {
  try {
    await client.releaseLease(id);
  } catch (error) {
    if (!(error instanceof PgleaseApiError && error.status === 404)) throw error;
  }
}

export interface LeaseOptions extends ConnectOptions {
  /** Seconds until the lease expires (default 600): the safety net when release() is never called. */
  ttl?: number;
  name?: string;
  /** A registered template's name, or seed SQL to register first. */
  template?: string | TemplateSpec;
  /** Token sent when creating the lease (to use a private template); default $PGLEASE_TOKEN. */
  token?: string;
  /**
   * 'database': a database of its own (its public schema, extensions, schemas: what ORMs'
   * migrations expect); default the server's (PGLEASE_DEFAULT_KIND, schema unless set).
   */
  kind?: 'schema' | 'database';
}

export interface Lease extends CreatedLeaseJson {
  /** Drops the lease (sessions cut, schema and role gone). Safe to call twice. */
  release: () => Promise<void>;
  /**
   * Declares a role the lease's JWTs may name: `declareRole('authenticated')` makes the Postgres
   * role `<role>_authenticated` (the answer's `role`), to GRANT to and write policies for.
   */
  declareRole: (name: string) => Promise<{ name: string; role: string }>;
  /**
   * A JWT for one of the lease's users, signed (HS256) with the lease's secret by the server:
   * `jwt({ role: 'authenticated', sub: 'alice' })`, sent as `Authorization: Bearer <jwt>` to
   * rest_url; `expiresInSeconds` 3600 by default, null for no `exp`. (`mintJwt` of
   * `pglease/testing` signs locally with `jwt_secret`, without the round trip.)
   */
  jwt: (claims: Record<string, unknown>, options?: { expiresInSeconds?: number | null }) => Promise<string>;
  /**
   * Keeps a copy of a database lease's database as it is now (after its migrations and seed, say),
   * under `name` (default "snapshot"), for restore(). Its open sessions are ended for the copy: take
   * it before the test's pool connects, or let the pool reconnect.
   */
  snapshot: (name?: string) => Promise<void>;
  /**
   * Resets a database lease to its snapshot `name` (default "snapshot") in about one CREATE
   * DATABASE: same URL, roles and password. Open sessions are ended (they saw the old contents):
   * pools reconnect on their next query (node-postgres's Pool does; a lone Client must connect again).
   */
  restore: (name?: string) => Promise<void>;
}

/**
 * A fresh lease. When pglease had to be started in-process for it, release() stops that too once
 * no lease made through it is left.
 */
export async function lease(options: LeaseOptions = {}): Promise<Lease> {
  const connection = await connectPglease(options);
  const ttl = options.ttl ?? 600;
  let template: PreparedTemplate | undefined;
  try {
    let templateName: string | undefined;
    let token = options.token ?? process.env.PGLEASE_TOKEN ?? connection.adminToken;
    if (typeof options.template === 'object') {
      template = await prepareTemplate(connection, options.template, ttl);
      [templateName, token] = [template.name, template.token];
    } else {
      templateName = options.template;
    }
    const created = await connection.client.withToken(token).createLease({ ttl, name: options.name, template: templateName, ...(options.kind ? { kind: options.kind } : {}) });
    const own = connection.client.withToken(created.token);
    let released: Promise<void> | undefined;
    return {
      ...created,
      declareRole: (name) => own.declareRole(created.id, name),
      jwt: async (claims, mintOptions) => (await own.mintJwt(created.id, claims, mintOptions?.expiresInSeconds)).token,
      snapshot: async (name) => void (await own.snapshotLease(created.id, name)),
      restore: async (name) => void (await own.restoreLease(created.id, name)),
      release: () =>
        (released ??= (async () => {
          try {
            await releaseQuietly(own, created.id);
            await template?.dispose();
          } finally {
            await connection.close();
          }
        })()),
    };
  } catch (error) {
    await template?.dispose().catch(() => undefined);
    await connection.close();
    throw error;
  }
}

/**
 * Runs `fn` with a fresh lease and releases it afterwards, also when `fn` throws. When both fail,
 * `fn`'s error is the one thrown (it is the test's failure); the lease then ends with its TTL.
 */
export async function withLease<T>(fn: (lease: Lease) => Promise<T> | T, options: LeaseOptions = {}): Promise<T> {
  const leased = await lease(options);
  let result: T;
  try {
    result = await fn(leased);
  } catch (error) {
    await leased.release().catch(() => undefined);
    throw error;
  }
  await leased.release();
  return result;
}
