/**
 * The REST API's pipeline for one HTTP request, end to end:
 *
 *   lease lookup (cached) → role from the token → request/ (parse) → schema/ (cache) → plan/
 *   → query/ (SQL) → executor/ (one round trip as the lease's authenticator) → response/
 *
 * and the state it shares across requests: the lease directory, the per-lease connection pools and
 * the schema caches, kept fresh by Postgres notifications (./notifications.ts).
 */
import pg from 'pg';
import { isAdminToken } from '../auth/caller.js';
import { isLeaseToken } from '../auth/lease-token.js';
import { JwtError, JwtVerifiers, type JwtVerifiersOptions, type VerifiedJwt } from '../auth/jwt.js';
import { leaseRequestRoles, leaseRoleFor } from '../auth/roles.js';
import { endPool } from '../db/end-pool.js';
import type { Host } from '../db/host.js';
import { buildApiRequest, parseTarget, type RawRequest } from './request/api-request.js';
import type { ApiRequest, Preferences } from './request/types.js';
import { findRelation, planRead } from './plan/read-plan.js';
import type { ReadPlan } from './plan/types.js';
import { RestError } from './response/errors.js';
import { readResponse, type RestResponse } from './response/read-response.js';
import { loadSchemaCache } from './schema/load.js';
import { SchemaCaches } from './schema/schema-caches.js';
import type { SchemaCache } from './schema/types.js';
import { LeaseDirectory, type LeaseAccess } from './executor/lease-directory.js';
import { isServerError, LeasePools, type LeasePoolOptions } from './executor/lease-pools.js';
import { requestSteps } from './executor/request-settings.js';
import { compileRead, runRead } from './executor/run-read.js';
import { CompiledReads, readShape, type CompiledRead } from './query/compiled-reads.js';
import { contentLocation } from './response/content-location.js';
import { callShape, CompiledWrites, type CallShape, type CompiledCall } from './query/compiled-writes.js';
import type { Payload } from './request/body.js';
import type { ServerTiming } from './response/server-timing.js';
import { executeRpc, rpcPayload, serveRpc } from './rpc-service.js';
import { executeWrite, rejectBareParameters, serveWrite, writePayload, WRITE_METHODS } from './write-service.js';
import { planRequestOf, serveExplain } from './explain-service.js';
import { SERVICE_SESSION_OPTIONS } from '../db/service-session.js';

export interface RestServiceOptions {
  pools?: LeasePoolOptions;
  /** The memory schema caches may hold together, estimated (./schema/schema-caches.ts); 64 MB by default. */
  schemaCacheBytes?: number;
  /** The admin token also acts as any lease's token. */
  adminToken?: string;
  jwt?: JwtVerifiersOptions;
  /** Told how long each schema cache load took (for /metrics). */
  onSchemaLoad?: (seconds: number) => void;
  log?: (message: string) => void;
}

/** Who the request runs as. */
export interface Caller {
  lease: LeaseAccess;
  role: string;
  authenticated: boolean;
  /** The token was the admin token: its headers must not reach the lease's SQL. */
  viaAdminToken: boolean;
  /** request.jwt.claims as JSON: a JWT's claims; undefined: `{"role": <role>}`. */
  claims?: string;
  /** A database lease's schema the request is for (Accept-Profile, Content-Profile; public by default). */
  profile?: string;
}

/** An HTTP request under `{rest_url}`, as the route hands it over. */
export interface RestHttpRequest extends Omit<RawRequest, 'authenticated'> {
  leaseId: string;
  /** The bearer token or apikey, null when none was sent. */
  token: string | null;
  /** The request body as text (writes and RPC), undefined when there is none. */
  body?: string;
  /** Set when PGLEASE_SERVER_TIMING is on: each step marks the phase it ends. */
  timing?: ServerTiming;
}

/** Schema-cache misses that a fresh introspection may cure. */
const CACHE_MISS_CODES = new Set(['PGRST200', 'PGRST202', 'PGRST204', 'PGRST205']);

/** Schema loads at once; more wait for one of these. */
const INTROSPECTION_CONNECTIONS = 4;

export class RestService {
  readonly directory: LeaseDirectory;
  readonly pools: LeasePools;
  readonly schemas: SchemaCaches;
  private readonly compiledReads = new CompiledReads();
  readonly compiledWrites = new CompiledWrites();
  private readonly adminToken: string | undefined;
  private readonly adminTokenChecks = new Map<string, boolean>();
  private readonly schemaWatchers = new Set<(schema: string | null) => void>();
  private readonly jwtVerifiers: JwtVerifiers;
  private timeZoneNames: Promise<Set<string>> | undefined;
  /**
   * Connections of their own for schema introspection: a lease can make its loads wait (a view it
   * keeps locked makes each wait out its lock_timeout, sql/rest.sql), and many leases doing so
   * must not take the service pool, which the control API needs, nor other leases' lookups.
   */
  private readonly introspection: pg.Pool;
  /** Database leases served here, by name (lease_<hex>), for their schemas' loads. */
  private readonly databaseLeases = new Map<string, LeaseAccess>();
  /** Each database lease's exposed schemas (exposedSchemas). */
  private readonly databaseSchemas = new Map<string, Promise<string[]>>();

  constructor(
    private readonly host: Host,
    options: RestServiceOptions = {},
  ) {
    this.directory = new LeaseDirectory(host.pool);
    this.pools = new LeasePools(host.databaseUrl, host.authenticatorKey, options.pools, options.log);
    this.introspection = new pg.Pool({
      connectionString: host.databaseUrl,
      options: SERVICE_SESSION_OPTIONS,
      max: INTROSPECTION_CONNECTIONS,
      idleTimeoutMillis: 30_000,
      connectionTimeoutMillis: host.timeoutMs,
      query_timeout: host.timeoutMs,
      application_name: 'pglease-rest-schema',
    });
    this.introspection.on('error', (error) => options.log?.(`REST introspection pool: idle connection lost (${error.message})`));
    const onSchemaLoad = options.onSchemaLoad;
    this.schemas = new SchemaCaches(
      onSchemaLoad
        ? async (key, roles) => {
            const started = performance.now();
            const cache = await this.loadSchema(key, roles);
            onSchemaLoad((performance.now() - started) / 1000);
            return cache;
          }
        : (key, roles) => this.loadSchema(key, roles),
      options.schemaCacheBytes,
    );
    this.adminToken = options.adminToken;
    this.jwtVerifiers = new JwtVerifiers(options.jwt);
    this.pools.onDatabaseDdl = (leaseName) => this.schemaChanged(leaseName);
  }

  /**
   * The key of a request's schema cache: a schema lease's schema, or for a database lease
   * `lease_<hex>/<schema>` (every lease database has a public schema, so the lease is part of it).
   */
  schemaKey(caller: Pick<Caller, 'lease' | 'profile'>): string {
    return caller.lease.kind === 'database' ? `${caller.lease.name}/${caller.profile ?? 'public'}` : caller.lease.schema;
  }

  /** Introspects the schema of a cache key (schemaKey): in the lease database, or in a database lease's own. */
  private loadSchema(key: string, roles: string[]): Promise<SchemaCache> {
    const slash = key.indexOf('/');
    if (slash < 0) return loadSchemaCache(this.introspection, key, roles);
    const lease = this.databaseLeases.get(key.slice(0, slash));
    if (!lease) return Promise.reject(new RestError('PGRST002', undefined, `no live database lease ${key.slice(0, slash)} is known here`));
    return loadSchemaCache({ query: (query) => this.pools.query(lease, query) }, key.slice(slash + 1), roles);
  }

  /**
   * The schemas a database lease's REST API serves (PostgREST's db-schemas): its own, not the
   * system's nor pglease's, `public` first. Read as the lease, in its database; kept until DDL
   * there (the same notification drops its schema caches).
   */
  private exposedSchemas(lease: LeaseAccess): Promise<string[]> {
    let known = this.databaseSchemas.get(lease.name);
    if (!known) {
      known = this.pools
        .query<{ names: string[] }>(lease, {
          name: 'pglease.rest-exposed-schemas',
          text: `SELECT coalesce(array_agg(n.nspname::text ORDER BY n.nspname <> 'public', n.nspname), '{}') AS names
                   FROM pg_catalog.pg_namespace n
                  WHERE n.nspname NOT IN ('information_schema', 'pglease', 'pglease_admin') AND n.nspname !~ '^pg_'`,
        })
        .then(({ rows }) => rows[0]!.names);
      known.catch(() => this.databaseSchemas.delete(lease.name));
      this.databaseSchemas.set(lease.name, known);
      if (this.databaseSchemas.size > 10_000) this.databaseSchemas.delete(this.databaseSchemas.keys().next().value as string);
    }
    return known;
  }

  /**
   * The lease and role of a request: 404 for no live lease; a JWT that does not verify answers
   * PostgREST's 401 PGRST301 (src/auth/jwt.ts), one naming a role the lease lacks 401 22023.
   */
  async caller(leaseId: string, token: string | null): Promise<Caller> {
    return this.callerOf(leaseId, await this.directory.find(leaseId), token);
  }

  /**
   * The caller without waiting when it can be told at once: no token, the lease's token, the
   * admin token, or a JWT this process verified already (the hot path of a JWT read).
   */
  private callerOf(leaseId: string, lease: LeaseAccess | undefined, token: string | null): Caller | Promise<Caller> {
    if (!lease) throw leaseNotFound(leaseId);
    if (lease.kind === 'database' && this.databaseLeases.get(lease.name) !== lease) this.databaseLeases.set(lease.name, lease);
    if (token === null) return { lease, role: lease.anonRole, authenticated: false, viaAdminToken: false };
    // a JWT verified before is known at once (it cannot be the lease token, which has no dots)
    const known = lease.jwtVerifier?.cached(token);
    if (known) return jwtCaller(lease, known);
    if (isLeaseToken(lease, token)) return { lease, role: lease.role, authenticated: true, viaAdminToken: false };
    if (this.isAdmin(token)) return { lease, role: lease.role, authenticated: true, viaAdminToken: true };
    // one verifier per lease and settings (its token cache survives the lookup's refreshes)
    const verifier = (lease.jwtVerifier ??= this.jwtVerifiers.of(lease.id, {
      secret: lease.jwtSecret,
      ...(lease.apiSettings.jwt_jwks === undefined ? {} : { jwks: lease.apiSettings.jwt_jwks }),
      ...(lease.apiSettings.jwt_aud === undefined ? {} : { audience: lease.apiSettings.jwt_aud }),
      ...(lease.apiSettings.jwt_role_claim_key === undefined ? {} : { roleClaimKey: lease.apiSettings.jwt_role_claim_key }),
    }));
    return verifier.verify(token).then(
      (jwt) => jwtCaller(lease, jwt),
      (error: unknown) => {
        throw error instanceof JwtError ? jwtRestError(error) : error;
      },
    );
  }

  /** Whether a token is the admin token, remembered per token string (the comparison hashes both). */
  private isAdmin(token: string): boolean {
    let known = this.adminTokenChecks.get(token);
    if (known === undefined) {
      known = isAdminToken(token, this.adminToken);
      this.adminTokenChecks.set(token, known);
      if (this.adminTokenChecks.size > 1000) this.adminTokenChecks.delete(this.adminTokenChecks.keys().next().value as string);
    }
    return known;
  }

  /**
   * Prefer: timezone= is applied only when it names one of the server's time zones
   * (pg_timezone_names, loaded once); otherwise it is an invalid preference, as in PostgREST.
   */
  async checkTimezone(preferences: Preferences): Promise<void> {
    const timezone = preferences.timezone;
    if (timezone === undefined) return;
    this.timeZoneNames ??= this.host.pool
      .query<{ name: string }>({ name: 'pglease.rest-time-zones', text: 'SELECT name FROM pg_catalog.pg_timezone_names' })
      .then(({ rows }) => new Set(rows.map((row) => row.name)))
      .catch((error: unknown) => {
        this.timeZoneNames = undefined;
        throw error;
      });
    if (!(await this.timeZoneNames).has(timezone)) {
      delete preferences.timezone;
      preferences.invalid.push(`timezone=${timezone}`);
    }
  }

  /** The lease's schema cache: cached, or loaded now. */
  schema(caller: Caller): Promise<SchemaCache> | SchemaCache {
    // privileges are reported for every role a request may run as (the OpenAPI document shows them)
    return this.schemas.get(this.schemaKey(caller), leaseRequestRoles(caller.lease));
  }

  /**
   * Plans with the cached schema; when the plan names something the cache lacks, reloads the
   * lease's schema once (introspected after the request started) and plans again.
   */
  async withSchema<T>(caller: Caller, startedAt: number, plan: (cache: SchemaCache) => T): Promise<T> {
    const cache = await this.schema(caller);
    try {
      return plan(cache);
    } catch (error) {
      if (!(error instanceof RestError) || !CACHE_MISS_CODES.has(error.code) || cache.loadedAt >= startedAt) throw error;
      const fresh = await this.schemas.reload(this.schemaKey(caller), leaseRequestRoles(caller.lease), startedAt);
      return plan(fresh);
    }
  }

  handle(received: RestHttpRequest): Promise<RestResponse> {
    return this.serve(received).catch((error: unknown) => this.failure(received.leaseId, error));
  }

  /**
   * A request failed in a way a lease that just ended causes (its sessions terminated, its roles
   * or schema gone): when the lease is indeed no longer live, the answer is 404 like for any
   * request after its end, not the error. The lease's end reaches this process's cache by a
   * notification, which a request can overtake (or that another process sent a moment ago).
   */
  private async failure(leaseId: string, error: unknown): Promise<never> {
    if (error instanceof RestError || !mayMeanLeaseEnded(error)) throw error;
    // a release cuts the lease's sessions before it commits: a cut session waits for its outcome
    const cut = !isServerError(error) || (error as { code?: unknown }).code === '57P01';
    this.directory.invalidate(leaseId);
    const lease = await (cut ? this.directory.settled(leaseId) : this.directory.find(leaseId)).catch(() => null);
    if (lease === undefined) throw leaseNotFound(leaseId);
    throw error;
  }

  private async serve(received: RestHttpRequest): Promise<RestResponse> {
    const startedAt = Date.now();
    // most requests find their lease and schema cached: no waiting (and no promise) for either
    const known = this.directory.cached(received.leaseId);
    const found = known === null ? this.caller(received.leaseId, received.token) : this.callerOf(received.leaseId, known, received.token);
    const caller = found instanceof Promise ? await found : found;
    received.timing?.mark('lease');
    // request.headers is published to the lease's SQL: never with the admin token in it
    const http = caller.viaAdminToken ? { ...received, headers: withoutCredentials(received.headers) } : received;
    if (caller.lease.kind === 'database') {
      caller.profile = chooseProfile(http, await this.exposedSchemas(caller.lease));
    } else {
      checkProfile(http, caller.lease.schema);
    }
    if (http.method === 'OPTIONS') return this.options(caller, http.path, startedAt);
    // Accept: application/vnd.pgrst.plan…: the read's EXPLAIN, when the lease allows it
    const planRequest = caller.lease.apiSettings.db_plan_enabled === true && (http.method === 'GET' || http.method === 'HEAD') ? planRequestOf(http.headers.accept) : undefined;
    if (planRequest) {
      const target = parseTarget(http.path);
      if (target.kind !== 'relation') throw new RestError('PGRST107', 'None of these media types are available: application/vnd.pgrst.plan (pglease explains reads of tables and views)');
      return serveExplain(this, caller, http, target.name, planRequest);
    }
    const maxRows = caller.lease.apiSettings.db_max_rows;
    const aggregatesEnabled = caller.lease.apiSettings.db_aggregates_enabled === true;
    const shape = http.method === 'GET' || http.method === 'HEAD' ? readShape(http) : undefined;
    // a read compiled under other settings has another LIMIT, or was refused
    if (shape && (maxRows !== undefined || aggregatesEnabled)) shape.key += `\u0000max-rows=${maxRows}\u0000aggregates=${aggregatesEnabled}`;
    let parsed: { payload: Payload | undefined } | undefined;
    const loading = this.schema(caller);
    const cache = loading instanceof Promise ? await loading : loading;
    http.timing?.mark('schema');
    if (shape) {
      const compiled = this.compiledReads.get(cache, shape);
      if (compiled) {
        http.timing?.mark('plan', 'cached');
        return this.read(caller, http, compiled);
      }
    } else {
      const writeShape = callShape(http, caller.authenticated);
      // a call compiled under other settings has another LIMIT, or was refused
      if (maxRows !== undefined || aggregatesEnabled) writeShape.key += `\u0000max-rows=${maxRows}\u0000aggregates=${aggregatesEnabled}`;
      const templates = this.compiledWrites.known(cache, writeShape);
      if (templates !== undefined) {
        // the rest of the request is known to be valid: only the body is new
        parsed = { payload: bodyOf(templates.kind, http, writeShape) };
        const compiled = this.compiledWrites.fill(templates, writeShape, parsed.payload);
        if (compiled) {
          http.timing?.mark('plan', 'cached');
          return compiled.kind === 'write' ? executeWrite(this, caller, http, compiled) : executeRpc(this, caller, http, compiled);
        }
      }
    }
    const request = buildApiRequest({ ...http, authenticated: caller.authenticated, maxRows, aggregatesEnabled });
    await this.checkTimezone(request.preferences);
    checkPreferences(request.preferences);
    if (request.target.kind === 'routine') return serveRpc(this, caller, http, request, request.target.name, startedAt, parsed);
    if (request.target.kind !== 'relation') {
      // {rest_url}/ is answered in routes.ts (the OpenAPI document); nothing else is a resource
      throw new RestError('PGRST125');
    }
    const relationName = request.target.name;
    if (WRITE_METHODS.has(request.method)) return serveWrite(this, caller, http, request, relationName, startedAt, parsed);
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      throw new RestError('PGRST117', `Unsupported HTTP method: ${request.method}`);
    }
    // `?id=5` on a table is a filter without an operator, not something to ignore (PGRST100)
    rejectBareParameters(request);
    const compiled = await this.withSchema(caller, startedAt, (cache) => {
      const plan: ReadPlan = planRead(cache, request, relationName);
      if (shape && !this.compiledReads.has(cache, shape)) this.compiledReads.set(cache, shape, compileShape(cache, http, request, shape.sentinelQuery, relationName, { maxRows, aggregatesEnabled }));
      return readOf(cache, request, plan);
    });
    http.timing?.mark('plan');
    return this.read(caller, http, compiled);
  }

  /**
   * The lease's db_pre_request alone, as the caller, in a read-only transaction, for the root
   * document that pglease builds from the catalogs: PostgREST runs it before its root too (its
   * runQuery: setPgLocals, runPreReq, then openApiQuery), so a pre-request that refuses a caller
   * refuses the document as well.
   */
  async preRequestOnly(caller: Caller, http: { method: string; path: string; headers: RestHttpRequest['headers'] }): Promise<void> {
    if (caller.lease.apiSettings.db_pre_request === undefined) return;
    const headers = caller.viaAdminToken ? withoutCredentials(http.headers) : http.headers;
    await this.pools.run(caller.lease, requestSteps(caller.lease, { role: caller.role, claims: caller.claims, method: http.method, path: http.path, headers, readOnly: true }));
  }

  /** OPTIONS: the methods a resource answers, in `Allow`, as PostgREST reports them. */
  private async options(caller: Caller, path: string, startedAt: number): Promise<RestResponse> {
    const target = parseTarget(path);
    let allow = 'OPTIONS,GET,HEAD';
    if (target.kind === 'relation') {
      const relation = await this.withSchema(caller, startedAt, (cache) => findRelation(cache, target.name));
      if (relation.insertable) allow += ',POST';
      if (relation.updatable) allow += ',PUT,PATCH';
      if (relation.deletable) allow += ',DELETE';
    } else if (target.kind === 'routine') {
      const routines = (await this.schema(caller)).routines.get(target.name) ?? [];
      allow = routines.length > 0 && routines.every((routine) => routine.volatility === 'v') ? 'OPTIONS,POST' : 'OPTIONS,GET,HEAD,POST';
    }
    return { status: 200, headers: { Allow: allow }, body: null };
  }

  /** Runs a compiled read as the caller and shapes its response. */
  private async read(caller: Caller, http: RestHttpRequest, compiled: CompiledRead): Promise<RestResponse> {
    const preamble = requestSteps(caller.lease, {
      role: caller.role,
      claims: caller.claims,
      method: http.method,
      path: http.path,
      headers: http.headers,
      readOnly: true,
      publish: compiled.publishRequest,
      ...(compiled.timezone === undefined ? {} : { timezone: compiled.timezone }),
    });
    const result = await runRead(this.pools, caller.lease, preamble, compiled.plan, compiled.steps);
    http.timing?.mark('transaction');
    const response = readResponse(compiled.plan, result, compiled.preferenceApplied);
    response.headers['Content-Location'] = contentLocation(compiled.plan.root.relation.name, http.query);
    http.timing?.mark('response');
    return response;
  }

  /**
   * A lease ended or changed (./notifications.ts): forgets its lookup at once. Returns whether a
   * connection pool of it is open here, whose fate needs a lookup (recheckLease).
   */
  leaseChanged(leaseId: string): boolean {
    if (this.directory.holds(leaseId)) this.directory.invalidate(leaseId);
    return this.pools.has(leaseId);
  }

  /** Looks a changed lease up again; once it has ended, closes its pool. */
  async recheckLease(leaseId: string): Promise<void> {
    if (!(await this.directory.find(leaseId))) {
      this.pools.close(leaseId);
      for (const [name, lease] of this.databaseLeases) {
        if (lease.id === leaseId.toLowerCase()) {
          this.databaseLeases.delete(name);
          this.schemaChanged(name);
        }
      }
      this.jwtVerifiers.forget(leaseId.toLowerCase());
    }
  }

  /** DDL in a lease schema (or a database lease's database): drop that lease's schema caches, and tell who watches schemas. */
  schemaChanged(schema: string): void {
    if (this.schemas.has(schema)) this.schemas.invalidate(schema);
    if (this.databaseLeases.has(schema)) {
      this.databaseSchemas.delete(schema);
      this.schemas.invalidateWhere((key) => key.startsWith(`${schema}/`));
    }
    for (const watcher of this.schemaWatchers) watcher(schema);
  }

  /** Notifications may have been missed (listener reconnected): forget everything cached. */
  forgetAll(): void {
    this.directory.clear();
    this.schemas.clear();
    this.databaseSchemas.clear();
    for (const watcher of this.schemaWatchers) watcher(null);
  }

  /**
   * Calls `watcher` with each schema a DDL notification names (null: any schema may have changed,
   * notifications were missed). It runs on the notification's turn: it must cost a map look-up
   * (see ./notifications.ts, a lease can send hundreds of thousands). Returns the unsubscribe.
   */
  watchSchemas(watcher: (schema: string | null) => void): () => void {
    this.schemaWatchers.add(watcher);
    return () => this.schemaWatchers.delete(watcher);
  }

  async close(): Promise<void> {
    await this.pools.closeAll();
    await endPool(this.introspection);
  }
}

/** The body of a write or call whose shape is known, read as the planner would read it. */
function bodyOf(kind: CompiledCall['kind'], http: RestHttpRequest, shape: CallShape): Payload | undefined {
  return kind === 'rpc' ? rpcPayload(http, shape.columnsGiven, shape.mediaType) : writePayload(http, shape.columnsGiven, shape.mediaType);
}

/** The caller a verified JWT makes: the role its claims name, if the lease has it. */
function jwtCaller(lease: LeaseAccess, jwt: VerifiedJwt): Caller {
  const role = leaseRoleFor(lease, jwt.role);
  if (role === undefined) throw new RestError('22023', `role "${jwt.role}" does not exist`);
  return { lease, role, authenticated: role !== lease.anonRole, viaAdminToken: false, claims: jwt.claimsJson };
}

/** PostgREST's answer to a JWT it refuses, `WWW-Authenticate` header included (RFC 6750). */
function jwtRestError(error: JwtError): RestError {
  if (error.code === 'PGRST300') return new RestError('PGRST300', error.message);
  return new RestError('PGRST301', error.message, null, null, {
    headers: { 'WWW-Authenticate': `Bearer error="invalid_token", error_description=${JSON.stringify(error.message)}` },
  });
}

function leaseNotFound(leaseId: string): RestError {
  return new RestError('PGLEASE_NOT_FOUND', `No live lease ${leaseId}: it does not exist, was released or has expired`);
}

/**
 * Errors a lease's end can cause mid-request: a lost connection, a terminated session (class 57),
 * a dropped authenticator (28), schema (3F000), role (42704) or relation (42P01).
 */
function mayMeanLeaseEnded(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (!isServerError(error)) return true;
  return typeof code === 'string' && (code.startsWith('57') || code.startsWith('28') || code === '3F000' || code === '42704' || code === '42P01');
}

/**
 * Accept-Profile (reads) and Content-Profile (writes, calls) name the schema a request is for, as
 * in PostgREST; the lease's schema is the only one served, so any other is refused (PGRST106),
 * rather than, say, a write meant for another schema landing in this one.
 */
function checkProfile(http: RestHttpRequest, schema: string): void {
  const reads = http.method === 'GET' || http.method === 'HEAD' || http.method === 'OPTIONS';
  const header = http.headers[reads ? 'accept-profile' : 'content-profile'];
  if (header === undefined) return;
  const profile = Array.isArray(header) ? header.join(',') : header;
  if (profile.trim() !== schema) throw new RestError('PGRST106', `The schema must be one of the following: ${schema}`);
}

/**
 * A database lease's schema for a request (PostgREST's db-schemas): Accept-Profile for reads,
 * Content-Profile for writes and calls, else the first of `exposed` (public); one it does not
 * serve is refused with PGRST106 (406), as PostgREST does.
 */
function chooseProfile(http: RestHttpRequest, exposed: string[]): string {
  const reads = http.method === 'GET' || http.method === 'HEAD' || http.method === 'OPTIONS';
  const header = http.headers[reads ? 'accept-profile' : 'content-profile'];
  if (header === undefined) return exposed[0] ?? 'public';
  const profile = (Array.isArray(header) ? header.join(',') : header).trim();
  if (!exposed.includes(profile)) throw new RestError('PGRST106', `The schema must be one of the following: ${exposed.join(', ')}`);
  return profile;
}

function withoutCredentials(headers: RestHttpRequest['headers']): RestHttpRequest['headers'] {
  const { authorization: _authorization, apikey: _apikey, ...rest } = headers;
  return rest;
}

/** A planned read with what its execution and response need. */
function readOf(cache: SchemaCache, request: ApiRequest, plan: ReadPlan): CompiledRead {
  const read: CompiledRead = { plan, steps: compileRead(plan), preferenceApplied: preferenceApplied(request), publishRequest: cache.readsRequestSettings };
  if (request.preferences.timezone !== undefined) read.timezone = request.preferences.timezone;
  return read;
}

/** The template of a read shape: its sentinel request compiled (undefined if that fails). */
function compileShape(
  cache: SchemaCache,
  http: RestHttpRequest,
  request: ApiRequest,
  sentinelQuery: string,
  relationName: string,
  settings: { maxRows: number | undefined; aggregatesEnabled: boolean },
): CompiledRead | undefined {
  try {
    const sentinelRequest = buildApiRequest({ ...http, query: sentinelQuery, authenticated: true, ...settings });
    // headers are those of the request, already checked (time zone included)
    return readOf(cache, request, planRead(cache, sentinelRequest, relationName));
  } catch {
    return undefined;
  }
}

/** `Prefer: handling=strict` with a preference we do not understand → PGRST122. */
export function checkPreferences(preferences: Preferences): void {
  if (preferences.handling === 'strict' && preferences.invalid.length > 0) {
    throw new RestError('PGRST122', undefined, `Invalid preferences: ${preferences.invalid.join(', ')}`);
  }
}

/** The Preference-Applied header of a read. */
export function preferenceApplied(request: ApiRequest): string[] {
  const applied: string[] = [];
  if (request.preferences.count) applied.push(`count=${request.preferences.count}`);
  if (request.preferences.handling) applied.push(`handling=${request.preferences.handling}`);
  if (request.preferences.timezone) applied.push(`timezone=${request.preferences.timezone}`);
  return applied;
}
