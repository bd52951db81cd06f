/**
 * A small client for the control API (/v1/leases, /v1/templates), used by the CLI and the test
 * helpers. Every failure is a PgleaseApiError carrying the server's code and message, or a
 * PgleaseUnreachableError saying which URL could not be reached.
 */
import http from 'node:http';
import https from 'node:https';
import type { LeaseJson } from '../control/schemas.js';
import type { TemplateJson } from '../control/template-routes.js';
import type { LeaseStatsJson } from '../control/lease-stats-routes.js';
import type { LeaseInfoJson } from '../control/observation-routes.js';
import type { PlanJson } from '../control/plan-routes.js';
import type { HostJson } from '../control/host-routes.js';
import { caDirectory, needsRootCertificate, saveCa, withRootCertificate } from '../tls/client-ca.js';

export type { LeaseJson, TemplateJson, LeaseStatsJson, LeaseInfoJson, PlanJson, HostJson };

/** A lease as POST /v1/leases answers it: with its password in `url` and its token. */
export type CreatedLeaseJson = LeaseJson & { token: string };

export const DEFAULT_SERVER = 'http://localhost:8080';

/** The server answered with an error: its `{ code, message }` body and HTTP status. */
export class PgleaseApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
    readonly postgres?: { code: string; message: string; position?: number; line?: number; column?: number; detail?: string; hint?: string },
  ) {
    super(message);
    this.name = 'PgleaseApiError';
  }
}

/** No answer at all from the server (refused, timed out, DNS). */
export class PgleaseUnreachableError extends Error {
  constructor(
    readonly server: string,
    readonly reason: string,
    /** The request was sent but no answer came in time: the server may still carry it out. */
    readonly timedOut = false,
  ) {
    super(timedOut ? `no answer from pglease at ${server} (${reason}); it may still carry the request out` : `cannot reach pglease at ${server} (${reason})`);
    this.name = 'PgleaseUnreachableError';
  }
}

export interface CreateLeaseOptions {
  /** Seconds, or a duration ("10m", "2h": src/duration.ts); null (admin token only) never expires. */
  ttl?: number | string | null;
  name?: string;
  template?: string;
  /** A plan (GET /v1/plans): the admin may choose any, a lease token one that allows it. */
  plan?: string;
  /** 'schema' (the server's default, PGLEASE_DEFAULT_KIND) or 'database': a database of its own. */
  kind?: 'schema' | 'database';
}

export interface ListLeasesOptions {
  limit?: number;
  cursor?: string;
  state?: LeaseJson['state'];
}

function reasonOf(error: unknown): string {
  const { code, message } = error as { code?: string; message?: string };
  if (code && code !== 'ABORT_ERR') return code;
  if ((error as Error).name === 'TimeoutError') return 'timed out';
  return message ?? String(error);
}

/**
 * One HTTP exchange on node:http(s), not fetch: loading fetch's implementation (undici) costs a
 * process about 150 ms, more than the whole of `pglease lease` otherwise does before its request.
 */
function send(url: URL, options: { method: string; headers: Record<string, string>; body: string | undefined; signal: AbortSignal }): Promise<{ status: number; statusText: string; text: string }> {
  const transport = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const request = transport.request(url, { method: options.method, headers: options.headers, signal: options.signal }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => {
        const status = response.statusCode ?? 0;
        resolve({ status, statusText: response.statusMessage ?? http.STATUS_CODES[status] ?? '', text: Buffer.concat(chunks).toString('utf8') });
      });
    });
    request.on('error', (error) => reject(options.signal.aborted ? options.signal.reason : error));
    request.end(options.body);
  });
}

export interface PgleaseClientOptions {
  server?: string;
  token?: string;
  timeoutMs?: number;
  /** Where the server's TLS CA is saved for lease URLs (default: src/tls/client-ca.ts's caDirectory). */
  caDirectory?: string;
}

export class PgleaseClient {
  /** Base URL without a trailing slash, e.g. http://localhost:8080 */
  readonly server: string;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;
  private readonly caDirectory: string;
  /** The saved CA file of this server, fetched once per client (and shared with withToken's). */
  private caFile: { promise: Promise<string | undefined> | undefined };

  constructor(options: PgleaseClientOptions = {}, caFile: { promise: Promise<string | undefined> | undefined } = { promise: undefined }) {
    this.server = (options.server ?? DEFAULT_SERVER).replace(/\/+$/, '');
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.caDirectory = options.caDirectory ?? caDirectory();
    this.caFile = caFile;
  }

  /** The same client acting with another token. */
  withToken(token: string | undefined): PgleaseClient {
    return new PgleaseClient({ server: this.server, token, timeoutMs: this.timeoutMs, caDirectory: this.caDirectory }, this.caFile);
  }

  /** The server's CA certificate (GET /v1/ca.pem), or undefined when its lease host has no TLS. */
  async caCertificate(): Promise<string | undefined> {
    let response: { status: number; statusText: string; text: string };
    try {
      response = await send(new URL(this.server + '/v1/ca.pem'), { method: 'GET', headers: {}, body: undefined, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (error) {
      throw new PgleaseUnreachableError(this.server, reasonOf(error));
    }
    if (response.status === 404) return undefined;
    if (response.status !== 200 || !response.text.includes('-----BEGIN CERTIFICATE-----')) {
      throw new PgleaseApiError(response.status, 'NOT_PGLEASE', `${this.server} answered GET /v1/ca.pem with ${response.status} ${response.statusText}, not a certificate`);
    }
    return response.text;
  }

  /**
   * A lease whose URL asks for sslmode=verify-full, with sslrootcert naming the server's CA saved
   * on this machine (src/tls/client-ca.ts); other leases as they are.
   */
  private async withCa<T extends { url: string }>(lease: T): Promise<T> {
    if (!needsRootCertificate(lease.url)) return lease;
    this.caFile.promise ??= this.caCertificate().then((pem) => (pem === undefined ? undefined : saveCa(this.caDirectory, pem)));
    let file: string | undefined;
    try {
      file = await this.caFile.promise;
    } catch (error) {
      this.caFile.promise = undefined; // try again with the next lease
      throw error;
    }
    return file === undefined ? lease : { ...lease, url: withRootCertificate(lease.url, file) };
  }

  private async request<T>(method: string, path: string, body?: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    return (await this.exchange<T>(method, path, body, timeoutMs)).body;
  }

  /** A request and its answer's status (2xx) and parsed body; any failure throws. */
  private async exchange<T>(method: string, path: string, body?: unknown, timeoutMs = this.timeoutMs): Promise<{ status: number; body: T }> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let response: { status: number; statusText: string; text: string };
    try {
      response = await send(new URL(this.server + path), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      const timedOut = (error as Error).name === 'TimeoutError';
      throw new PgleaseUnreachableError(this.server, timedOut ? `timed out after ${timeoutMs / 1000} s` : reasonOf(error), timedOut);
    }
    const text = response.text;
    if (response.status < 200 || response.status > 299) {
      let parsed: { code?: string; message?: string; field?: string; postgres?: PgleaseApiError['postgres'] } = {};
      try {
        parsed = JSON.parse(text) as typeof parsed;
      } catch {
        // not one of our error bodies (a proxy's page, say): keep the status line
      }
      throw new PgleaseApiError(
        response.status,
        parsed.code ?? `HTTP_${response.status}`,
        parsed.message ?? `${response.status} ${response.statusText}`,
        parsed.field,
        parsed.postgres,
      );
    }
    if (text === '') return { status: response.status, body: undefined as T };
    try {
      return { status: response.status, body: JSON.parse(text) as T };
    } catch {
      // another kind of server on that address (a web page, a proxy's answer)
      throw new PgleaseApiError(response.status, 'NOT_PGLEASE', `${this.server} answered ${method} ${path} with something other than JSON: is it a pglease server?`);
    }
  }

  /** Throws as any request does (unreachable, not pglease) unless /healthz answers pglease's "ok". */
  async alive(): Promise<void> {
    const body = await this.request<{ status?: unknown } | undefined>('GET', '/healthz');
    if (body?.status !== 'ok') throw new PgleaseApiError(200, 'NOT_PGLEASE', `${this.server} answered GET /healthz, but not as pglease does: is it a pglease server?`);
  }

  /**
   * True when /readyz answers ready within `timeoutMs`: pglease's own answer, not any server's
   * 200 (another service on the port would otherwise be taken for pglease).
   */
  async ready(timeoutMs = 2000): Promise<boolean> {
    try {
      const body = await this.request<{ status?: unknown } | undefined>('GET', '/readyz', undefined, timeoutMs);
      return body?.status === 'ready';
    } catch {
      return false;
    }
  }

  async createLease(options: CreateLeaseOptions = {}): Promise<CreatedLeaseJson> {
    return this.withCa(await this.request<CreatedLeaseJson>('POST', '/v1/leases', options));
  }

  async getLease(id: string): Promise<LeaseJson> {
    return this.withCa(await this.request<LeaseJson>('GET', `/v1/leases/${encodeURIComponent(id)}`));
  }

  leaseStats(id: string): Promise<LeaseStatsJson> {
    return this.request('GET', `/v1/leases/${encodeURIComponent(id)}/stats`);
  }

  /** pg:info of a lease: its plan, status and the observer's view of it against the plan's limits. */
  leaseInfo(id: string): Promise<LeaseInfoJson> {
    return this.request('GET', `/v1/leases/${encodeURIComponent(id)}/info`);
  }

  listPlans(): Promise<{ items: PlanJson[] }> {
    return this.request('GET', '/v1/plans');
  }

  putPlan(name: string, limits: Record<string, unknown>): Promise<PlanJson> {
    return this.request('PUT', `/v1/plans/${encodeURIComponent(name)}`, limits);
  }

  async deletePlan(name: string): Promise<void> {
    await this.request('DELETE', `/v1/plans/${encodeURIComponent(name)}`);
  }

  /** The lease hosts with their latest observation (admin): `registry` is the hosts API's view of each. */
  listHosts(): Promise<{ items: { name: string; status: string; leases: number | null; registry?: HostJson }[] }> {
    return this.request('GET', '/v1/hosts');
  }

  addHost(host: Record<string, unknown>): Promise<HostJson> {
    return this.request('POST', '/v1/hosts', host, Math.max(this.timeoutMs, 120_000));
  }

  updateHost(name: string, change: Record<string, unknown>): Promise<HostJson> {
    return this.request('PATCH', `/v1/hosts/${encodeURIComponent(name)}`, change);
  }

  async removeHost(name: string): Promise<void> {
    await this.request('DELETE', `/v1/hosts/${encodeURIComponent(name)}`);
  }

  async renewLease(id: string, ttl: number | null): Promise<LeaseJson> {
    return this.withCa(await this.request<LeaseJson>('POST', `/v1/leases/${encodeURIComponent(id)}/renew`, { ttl }));
  }

  /** Declares a role the lease's JWTs may name (`editor` runs as `<role>_editor`). */
  declareRole(id: string, name: string): Promise<{ name: string; role: string }> {
    return this.request('POST', `/v1/leases/${encodeURIComponent(id)}/roles`, { name });
  }

  /** A new JWT secret for the lease; JWTs signed with the old one stop working. */
  rotateJwtSecret(id: string): Promise<{ jwt_secret: string }> {
    return this.request('POST', `/v1/leases/${encodeURIComponent(id)}/jwt-secret`);
  }

  /** A JWT with `claims` signed by the server with the lease's secret (expiresIn seconds, 3600 by default; null: no exp). */
  mintJwt(id: string, claims: Record<string, unknown>, expiresIn?: number | null): Promise<{ token: string }> {
    return this.request('POST', `/v1/leases/${encodeURIComponent(id)}/jwt`, { claims, ...(expiresIn === undefined ? {} : { expires_in: expiresIn }) });
  }

  /** Changes the lease's REST API settings (null: back to the default). */
  async updateSettings(id: string, settings: Record<string, unknown>): Promise<LeaseJson> {
    return this.withCa(await this.request<LeaseJson>('PATCH', `/v1/leases/${encodeURIComponent(id)}/settings`, settings));
  }

  /** A new password for the lease (its `url` has it); `cutSessions` also ends the sessions opened with the old one. */
  async resetCredentials(id: string, options: { cutSessions?: boolean } = {}): Promise<LeaseJson> {
    return this.withCa(await this.request<LeaseJson>('POST', `/v1/leases/${encodeURIComponent(id)}/credentials`, { cut_sessions: options.cutSessions === true }));
  }

  /** A new database lease holding a copy of lease `id` (a database lease) as it is now. */
  forkLease(id: string, options: { ttl?: number; name?: string } = {}): Promise<CreatedLeaseJson & { forked_from: string; source_sessions_ended: number; copied_from_snapshot: string | null }> {
    return this.request('POST', `/v1/leases/${encodeURIComponent(id)}/fork`, options);
  }

  /** Keeps a copy of database lease `id` as it is now, under `name` (default "snapshot"). */
  snapshotLease(id: string, name?: string): Promise<{ name: string; created_at: string; sessions_ended: number }> {
    return this.request('POST', `/v1/leases/${encodeURIComponent(id)}/snapshots`, name === undefined ? {} : { name });
  }

  /** Resets database lease `id` to its snapshot `name` (default "snapshot"): same URL, sessions ended. */
  restoreLease(id: string, name?: string): Promise<{ restored_from: string; sessions_ended: number }> {
    return this.request('POST', `/v1/leases/${encodeURIComponent(id)}/restore`, name === undefined ? {} : { name });
  }

  async releaseLease(id: string): Promise<void> {
    await this.request('DELETE', `/v1/leases/${encodeURIComponent(id)}`);
  }

  async listLeases(options: ListLeasesOptions = {}): Promise<{ items: LeaseJson[]; next: string | null }> {
    const query = new URLSearchParams();
    if (options.limit !== undefined) query.set('limit', String(options.limit));
    if (options.cursor) query.set('cursor', options.cursor);
    if (options.state) query.set('state', options.state);
    const suffix = query.size > 0 ? `?${query}` : '';
    const page = await this.request<{ items: LeaseJson[]; next: string | null }>('GET', `/v1/leases${suffix}`);
    return { ...page, items: await Promise.all(page.items.map((lease) => this.withCa(lease))) };
  }

  registerTemplate(name: string, sql: string): Promise<TemplateJson> {
    return this.request('POST', '/v1/templates', { name, sql });
  }

  /** Registers a template and says whether the name's current version changed (201) or already was this SQL (200). */
  async registerTemplateVersion(name: string, sql: string): Promise<{ template: TemplateJson; changed: boolean }> {
    const { status, body } = await this.exchange<TemplateJson>('POST', '/v1/templates', { name, sql });
    return { template: body, changed: status === 201 };
  }

  listTemplates(): Promise<{ items: TemplateJson[] }> {
    return this.request('GET', '/v1/templates');
  }

  async removeTemplate(name: string): Promise<void> {
    await this.request('DELETE', `/v1/templates/${encodeURIComponent(name)}`);
  }
}
