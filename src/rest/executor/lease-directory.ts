/**
 * Which lease a REST request is for, and as which role it runs: a short-lived in-memory cache of
 * pglease.leases rows (the hot path does not query that table on every request). Entries are
 * dropped when the lease's row changes (NOTIFY pglease_lease_change, see sql/rest.sql) and expire
 * after a few seconds in any case, so a released or expired lease stops answering promptly.
 */
import type { LeaseKind } from '../../leases/lease-kind.js';
import type { LeaseTokenHolder } from '../../auth/lease-token.js';
import type { ApiSettings } from '../../leases/api-settings.js';
import type { LeaseJwtVerifier } from '../../auth/jwt.js';
import type pg from 'pg';

export interface LeaseAccess extends LeaseTokenHolder {
  id: string;
  /** A schema lease's schema; a database lease's is chosen per request (Accept-Profile), public by default. */
  schema: string;
  kind: LeaseKind;
  /** lease_<hex>: its schema, or its database (a database lease). */
  name: string;
  /** The lease's login role: requests with its token run as this role. */
  role: string;
  /** The lease's anonymous role: requests without a token run as this role. */
  anonRole: string;
  /** The lease's own authenticator, which the REST API logs in as. */
  authRole: string;
  live: boolean;
  expiresAt: Date | null;
  /** The HMAC secret of the lease's JWTs (null for a lease made before leases had one). */
  jwtSecret: string | null;
  /** Short names of the roles the lease declared for its JWTs (`editor` is `<role>_editor`). */
  userRoles: string[];
  apiSettings: ApiSettings;
  /** The verifier of the lease's JWTs, made on first use (for as long as this lookup is cached). */
  jwtVerifier?: LeaseJwtVerifier;
}

interface Entry {
  lease: LeaseAccess | undefined;
  fetchedAt: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface LeaseDirectoryOptions {
  /** How long a found lease is trusted without asking the database again. */
  ttlMs?: number;
  /** How long "no such lease" is remembered. */
  missingTtlMs?: number;
  maxEntries?: number;
}

export class LeaseDirectory {
  private readonly entries = new Map<string, Entry>();
  private readonly pending = new Map<string, Promise<LeaseAccess | undefined>>();
  private readonly ttlMs: number;
  private readonly missingTtlMs: number;
  private readonly maxEntries: number;

  constructor(
    private readonly pool: pg.Pool,
    options: LeaseDirectoryOptions = {},
  ) {
    this.ttlMs = options.ttlMs ?? 5_000;
    this.missingTtlMs = options.missingTtlMs ?? 1_000;
    this.maxEntries = options.maxEntries ?? 10_000;
  }

  /** The live lease with this id, or undefined (unknown, released, expired). */
  find(id: string): Promise<LeaseAccess | undefined> {
    const known = this.cached(id);
    return known === null ? this.fetch(id.toLowerCase()).then((lease) => liveNow(lease, Date.now())) : Promise.resolve(known);
  }

  /**
   * The same answer without waiting when the cache has it (the hot path: no promise per request);
   * null when the database must be asked (use find).
   */
  cached(id: string): LeaseAccess | undefined | null {
    const entry = this.entries.get(id.toLowerCase());
    const now = Date.now();
    if (!entry || now - entry.fetchedAt >= (entry.lease ? this.ttlMs : this.missingTtlMs)) return null;
    return liveNow(entry.lease, now);
  }

  /**
   * The live lease with this id as of the end of a release in progress: a release holds the
   * lease's row (FOR UPDATE) from the moment it cuts the lease's sessions until it commits, and
   * this lookup (FOR KEY SHARE) waits for it. For a request whose session was just cut: was that
   * the lease's end?
   */
  settled(id: string): Promise<LeaseAccess | undefined> {
    this.invalidate(id);
    return this.fetch(id.toLowerCase(), true).then((lease) => liveNow(lease, Date.now()));
  }

  /**
   * Forgets the lease's lookup, and a lookup of it still running (which may have read the row
   * before the change: its answer is returned to its callers but not kept).
   */
  invalidate(id: string): void {
    const key = id.toLowerCase();
    this.entries.delete(key);
    this.pending.delete(key);
  }

  /** Whether anything about the lease (`id` in lower case) is cached or being looked up. */
  holds(id: string): boolean {
    return this.entries.has(id) || this.pending.has(id);
  }

  clear(): void {
    this.entries.clear();
  }

  private fetch(id: string, afterRelease = false): Promise<LeaseAccess | undefined> {
    if (!UUID.test(id)) return Promise.resolve(undefined);
    const running = afterRelease ? undefined : this.pending.get(id);
    if (running) return running;
    const fetchedAt = Date.now();
    const columns = 'kind, schema_name, role_name, anon_role, auth_role, token_hash, state, expires_at, jwt_secret, user_roles, api_settings';
    const query = this.pool
      .query<{
        kind: LeaseKind;
        schema_name: string;
        role_name: string;
        anon_role: string;
        auth_role: string;
        token_hash: Buffer;
        state: string;
        expires_at: Date | null;
        jwt_secret: string | null;
        user_roles: string[];
        api_settings: ApiSettings;
      }>(
        afterRelease
          ? { name: 'pglease.rest-lease-settled', text: `SELECT ${columns} FROM pglease.leases WHERE id = $1 FOR KEY SHARE`, values: [id] }
          : { name: 'pglease.rest-lease', text: `SELECT ${columns} FROM pglease.leases WHERE id = $1`, values: [id] },
      )
      .then(({ rows }) => {
        const row = rows[0];
        const current = this.pending.get(id) === query;
        const lease: LeaseAccess | undefined = row && {
          id,
          schema: row.kind === 'database' ? 'public' : row.schema_name,
          kind: row.kind,
          name: row.schema_name,
          role: row.role_name,
          anonRole: row.anon_role,
          authRole: row.auth_role,
          tokenHash: row.token_hash,
          live: row.state === 'active',
          expiresAt: row.expires_at,
          jwtSecret: row.jwt_secret,
          userRoles: row.user_roles,
          apiSettings: row.api_settings,
        };
        // invalidated meanwhile (or overtaken by a newer lookup): the answer may predate the change
        if (!current) return lease;
        this.entries.delete(id);
        this.entries.set(id, { lease, fetchedAt });
        while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
        return lease;
      })
      .finally(() => {
        if (this.pending.get(id) === query) this.pending.delete(id);
      });
    this.pending.set(id, query);
    return query;
  }
}

/** The lease if it is live at `now`. */
function liveNow(lease: LeaseAccess | undefined, now: number): LeaseAccess | undefined {
  if (!lease || !lease.live || (lease.expiresAt !== null && lease.expiresAt.getTime() <= now)) return undefined;
  return lease;
}
