/**
 * Templates as the service keeps them: registration (checked by seeding a scratch lease in its own
 * session, LeaseStore.checkSeed), lookup of the version a new lease gets, listing and removal.
 *
 * A template is global (registered with the admin token) or private to the active lease whose
 * token registered it; a lease token sees its own private templates first, then the global ones.
 */
import type { LeaseKind } from '../leases/lease-kind.js';
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Host } from '../db/host.js';
import { hashToken } from '../leases/credentials.js';
import type { LeasePool } from '../leases/lease-pool.js';
import type { LeaseStore } from '../leases/lease-store.js';

export { leaseSeedError, TemplateSqlError } from './template-sql-error.js';

/** A row of pglease.templates as node-postgres returns it (without the SQL unless asked). */
export interface TemplateRow {
  id: string;
  name: string;
  owner_lease_id: string | null;
  sha256: string;
  bytes: number;
  created_at: Date;
  registered_at: Date;
  sql?: string;
}

/** Who registers or looks up templates: the admin (global scope) or a lease (its private scope). */
export type TemplateScope = { kind: 'global' } | { kind: 'lease'; leaseId: string };

/** A client has MAX_CHECKS_PER_CLIENT template checks running already (TemplateStore.withCheckSlot). */
export class TemplateChecksBusyError extends Error {
  constructor(readonly limit: number) {
    super(`${limit} template checks of this client are running already: wait for one to answer, then register again`);
    this.name = 'TemplateChecksBusyError';
  }
}

/** Template checks one client address (with lease tokens) may have running at once. */
const MAX_CHECKS_PER_CLIENT = 2;

export const TEMPLATE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

const TEMPLATE_COLUMNS = 'id::text, name, owner_lease_id, sha256, octet_length(sql) AS bytes, created_at, registered_at';
const NO_OWNER = '00000000-0000-0000-0000-000000000000';

export function sqlSha256(sql: string): string {
  return createHash('sha256').update(sql).digest('hex');
}

/** Names whose current global version a process remembers (templates are few; beyond, it starts over). */
const MAX_REMEMBERED_NAMES = 1000;

export class TemplateStore {
  /**
   * The current global version of each name, as this process last resolved or registered it, so
   * that a create from a global template can go straight to its claim: one round trip instead of
   * two. A hint, not the truth: another process may have registered a newer version or removed
   * the name since. A claim checks that its template is current (pglease.claim_pooled_lease), and
   * a create that does not claim resolves the name again (src/control/lease-routes.ts).
   */
  private readonly currentGlobals = new Map<string, TemplateRow>();

  /** Template checks running per client address (only for lease tokens: the admin is not bounded). */
  private readonly checksByClient = new Map<string, number>();

  constructor(
    private readonly host: Host,
    /** Checks new SQL against a scratch lease (LeaseStore.checkSeed). */
    private readonly leases: LeaseStore,
    /** Keeps global templates' leases ready (src/leases/lease-pool.ts). */
    private readonly leasePool: LeasePool,
    private readonly log: (message: string) => void = () => undefined,
  ) {}

  private get pool(): pg.Pool {
    return this.host.pool;
  }

  /** The active lease a token belongs to, if any: the owner of private templates. */
  async leaseOfToken(token: string): Promise<string | undefined> {
    const { rows } = await this.pool.query<{ id: string }>({
      name: 'pglease.lease-of-token',
      text: `SELECT id FROM pglease.leases WHERE token_hash = $1 AND state = 'active'`,
      values: [hashToken(token)],
    });
    return rows[0]?.id;
  }

  /**
   * Stores a version of a template. New SQL is first applied to a scratch lease (rolled back);
   * SQL that fails there throws TemplateSqlError and nothing is stored. `created` is false when
   * this SQL was already a version of the name (it becomes the current one again).
   */
  async register(input: { name: string; sql: string; kind?: LeaseKind; scope: TemplateScope; clientIp: string | null }): Promise<{ template: TemplateRow; created: boolean }> {
    const owner = input.scope.kind === 'lease' ? input.scope.leaseId : null;
    const sha256 = sqlSha256(input.sql);
    const existing = await this.touchVersion(owner, input.name, sha256);
    if (existing) {
      this.warmPool(existing.template);
      // an earlier version registered again is current from now on: a change, as a new one is
      return { template: existing.template, created: existing.madeCurrent };
    }

    // the SQL runs as a scratch lease of its own, never in a service session (LeaseStore.checkSeed)
    await this.withCheckSlot(input.scope, input.clientIp, () => this.leases.checkSeed(input.sql, input.kind ?? 'schema'));
    // registered_at is the time of the insert, not of the transaction's start (now()): a slow
    // check must not leave this version older than one registered while it ran, since the
    // newest is the current one, and this registration answers last
    const { rows } = await this.pool.query<TemplateRow>({
      name: 'pglease.insert-template',
      text: `INSERT INTO pglease.templates (name, owner_lease_id, sql, sha256, client_ip, registered_at)
             VALUES ($1, $2, $3, $4, $5, clock_timestamp())
             ON CONFLICT DO NOTHING
             RETURNING ${TEMPLATE_COLUMNS}`,
      values: [input.name, owner, input.sql, sha256, input.clientIp],
    });
    if (rows[0]) {
      this.warmPool(rows[0]);
      return { template: rows[0], created: true };
    }
    // registered by a concurrent request between our look-up and our insert
    return { template: (await this.touchVersion(owner, input.name, sha256))!.template, created: false };
  }

  /**
   * The id on `target` (a lease host other than the control one) of global template version
   * `template`, whose leases are placed there like any other create: the version's row is copied
   * from the control database once (name, SQL, SHA-256, registration time) and found by its
   * version from then on, one statement on that host. A host's copy only seeds leases made there
   * (never pooled: its leases are seeded in their create), so which version is current stays the
   * control database's to say. Both statements touch pglease.templates only: no lease code runs.
   */
  async copyTo(target: Host, template: TemplateRow): Promise<string> {
    const found = await target.pool.query<{ id: string }>({
      name: 'pglease.host-template-id',
      text: `SELECT id::text FROM pglease.templates WHERE owner_lease_id IS NULL AND name = $1 AND sha256 = $2`,
      values: [template.name, template.sha256],
    });
    if (found.rows[0]) return found.rows[0].id;
    const { rows } = await this.pool.query<{ sql: string }>({ name: 'pglease.template-sql-by-id', text: 'SELECT sql FROM pglease.templates WHERE id = $1', values: [template.id] });
    if (!rows[0]) throw Object.assign(new Error(`template ${template.id} no longer exists`), { code: 'PGLTS' });
    const copied = await target.pool.query<{ id: string }>({
      name: 'pglease.copy-template',
      text: `INSERT INTO pglease.templates (name, owner_lease_id, sql, sha256, registered_at) VALUES ($1, NULL, $2, $3, $4)
             ON CONFLICT (coalesce(owner_lease_id, '${NO_OWNER}'::uuid), name, sha256) DO UPDATE SET name = EXCLUDED.name
             RETURNING id::text`,
      values: [template.name, rows[0].sql, template.sha256, template.registered_at],
    });
    return copied.rows[0]!.id;
  }

  /**
   * Runs a template check, at most MAX_CHECKS_PER_CLIENT at once per client address for lease
   * tokens. A check holds a scratch lease and a session for as long as its SQL runs (up to the
   * lease statement timeout): without a bound, one client registering slow seeds in a loop could
   * hold as many as it liked. Other clients' checks never wait for these: each has its own lease.
   * Per process: with several replicas behind a balancer, a client gets this many on each.
   */
  private async withCheckSlot(scope: TemplateScope, clientIp: string | null, check: () => Promise<void>): Promise<void> {
    if (scope.kind === 'global') return check();
    const client = clientIp ?? 'unknown';
    const running = this.checksByClient.get(client) ?? 0;
    if (running >= MAX_CHECKS_PER_CLIENT) throw new TemplateChecksBusyError(MAX_CHECKS_PER_CLIENT);
    this.checksByClient.set(client, running + 1);
    try {
      await check();
    } finally {
      const left = (this.checksByClient.get(client) ?? 1) - 1;
      if (left > 0) this.checksByClient.set(client, left);
      else this.checksByClient.delete(client);
    }
  }

  /**
   * Makes an existing version current (a no-op when it already is) and returns it, and whether it
   * was not current before.
   */
  private async touchVersion(owner: string | null, name: string, sha256: string): Promise<{ template: TemplateRow; madeCurrent: boolean } | undefined> {
    const { rows } = await this.pool.query<TemplateRow>({
      name: 'pglease.touch-template-version',
      text: `UPDATE pglease.templates t
                SET registered_at = clock_timestamp()
              WHERE coalesce(owner_lease_id, '${NO_OWNER}') = coalesce($1::uuid, '${NO_OWNER}') AND name = $2 AND sha256 = $3
                AND registered_at < (SELECT max(registered_at) FROM pglease.templates c
                                      WHERE coalesce(c.owner_lease_id, '${NO_OWNER}') = coalesce($1::uuid, '${NO_OWNER}') AND c.name = $2)
              RETURNING ${TEMPLATE_COLUMNS}`,
      values: [owner, name, sha256],
    });
    if (rows[0]) return { template: rows[0], madeCurrent: true };
    const current = await this.pool.query<TemplateRow>({
      name: 'pglease.template-version',
      text: `SELECT ${TEMPLATE_COLUMNS} FROM pglease.templates
              WHERE coalesce(owner_lease_id, '${NO_OWNER}') = coalesce($1::uuid, '${NO_OWNER}') AND name = $2 AND sha256 = $3`,
      values: [owner, name, sha256],
    });
    return current.rows[0] && { template: current.rows[0], madeCurrent: false };
  }

  /**
   * The current version of `name` a caller may use: with a lease token, that lease's private
   * template first, then the global one; with none (or the admin token), the global one.
   */
  async resolve(name: string, ownerLeaseId: string | null, withSql = false): Promise<TemplateRow | undefined> {
    const { rows } = await this.pool.query<TemplateRow>({
      name: withSql ? 'pglease.resolve-template-sql' : 'pglease.resolve-template',
      text: `SELECT ${TEMPLATE_COLUMNS}${withSql ? ', sql' : ''} FROM pglease.templates t
              WHERE t.name = $1
                AND (t.owner_lease_id IS NULL
                     OR (t.owner_lease_id = $2::uuid
                         AND EXISTS (SELECT 1 FROM pglease.leases l WHERE l.id = t.owner_lease_id AND l.state = 'active')))
              ORDER BY t.owner_lease_id IS NULL, t.registered_at DESC
              LIMIT 1`,
      values: [name, ownerLeaseId],
    });
    const template = rows[0];
    if (template?.owner_lease_id === null) this.rememberGlobal(template);
    else if (ownerLeaseId === null) this.currentGlobals.delete(name);
    return template;
  }

  /** The current global version of `name` as last seen here (see currentGlobals), if any. */
  rememberedGlobal(name: string): TemplateRow | undefined {
    return this.currentGlobals.get(name);
  }

  private rememberGlobal(template: TemplateRow): void {
    if (this.currentGlobals.size >= MAX_REMEMBERED_NAMES && !this.currentGlobals.has(template.name)) this.currentGlobals.clear();
    // without the SQL text, which a create does not read
    const { sql: _sql, ...row } = template;
    this.currentGlobals.set(template.name, row);
  }

  /** Current versions visible in a scope (the admin sees the global ones). */
  async list(ownerLeaseId: string | null): Promise<TemplateRow[]> {
    const { rows } = await this.pool.query<TemplateRow>({
      name: 'pglease.list-templates',
      text: `SELECT DISTINCT ON (coalesce(owner_lease_id, '${NO_OWNER}'), name) ${TEMPLATE_COLUMNS}
               FROM pglease.templates
              WHERE owner_lease_id IS NULL OR owner_lease_id = $1::uuid
              ORDER BY coalesce(owner_lease_id, '${NO_OWNER}'), name, registered_at DESC`,
      values: [ownerLeaseId],
    });
    return rows;
  }

  /** Removes every version of a name in one scope; false when there was none. */
  async remove(name: string, scope: TemplateScope): Promise<boolean> {
    if (scope.kind === 'global') this.currentGlobals.delete(name);
    await this.pool.query({
      name: 'pglease.release-template-pool',
      text: `WITH pooled AS (DELETE FROM pglease.lease_pool p USING pglease.templates t
                                WHERE t.id = p.template_id AND t.name = $2
                                  AND coalesce(t.owner_lease_id, '${NO_OWNER}') = coalesce($1::uuid, '${NO_OWNER}')
                                RETURNING p.lease_id)
             SELECT pglease.release(lease_id) FROM pooled`,
      values: [scope.kind === 'lease' ? scope.leaseId : null, name],
    });
    const { rowCount } = await this.pool.query({
      name: 'pglease.remove-template',
      text: `DELETE FROM pglease.templates WHERE coalesce(owner_lease_id, '${NO_OWNER}') = coalesce($1::uuid, '${NO_OWNER}') AND name = $2`,
      values: [scope.kind === 'lease' ? scope.leaseId : null, name],
    });
    return (rowCount ?? 0) > 0;
  }

  /**
   * After a registration: a global template's current version gets a warm pool in this process,
   * and the pooled leases of its other versions, in every process, are released in the background
   * (new leases get the current version; their holders forget them at their next heartbeat).
   * Private templates live only as long as their owner lease: they get no pool.
   */
  private warmPool(template: TemplateRow): void {
    if (template.owner_lease_id !== null) return;
    this.rememberGlobal(template);
    this.leasePool.want(template.id);
    void this.pool
      .query({
        name: 'pglease.release-stale-template-pools',
        text: `WITH stale AS (DELETE FROM pglease.lease_pool p USING pglease.templates t
                                 WHERE t.id = p.template_id AND t.owner_lease_id IS NULL AND t.name = $1 AND t.id <> $2
                                 RETURNING p.lease_id)
               SELECT pglease.release(lease_id) FROM stale`,
        values: [template.name, template.id],
      })
      .catch((error: Error) => {
        if (!this.pool.ending) this.log(`template pool of "${template.name}": ${error.message}`);
      });
  }
}
