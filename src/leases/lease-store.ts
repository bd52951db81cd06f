/**
 * Lease operations as the service performs them: each is one call of a SQL function of
 * sql/leases.sql (or one query), with the secrets prepared here.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Host } from '../db/host.js';
import type { CreateLimits, LeaseLimits } from '../config.js';
import { authenticatorPassword, hashToken, newPassword, newToken, scramVerifier } from './credentials.js';

export type LeaseState = 'provisioning' | 'active' | 'released' | 'expired' | 'failed';

/** A row of pglease.leases as node-postgres returns it. */
export interface LeaseRow {
  id: string;
  label: string | null;
  host_id: number;
  schema_name: string;
  role_name: string;
  anon_role: string;
  auth_role: string;
  state: LeaseState;
  client_ip: string | null;
  created_at: Date;
  expires_at: Date | null;
  ended_at: Date | null;
  last_error: string | null;
}

/** Columns of pglease.leases that leave the database (never the token hash). */
const LEASE_COLUMNS = 'id, label, host_id, schema_name, role_name, anon_role, auth_role, state, client_ip, created_at, expires_at, ended_at, last_error';

export interface CreatedLease {
  lease: LeaseRow;
  password: string;
  token: string;
  /** The client's hourly creation quota after this create, when limits were checked. */
  quota?: CreateQuota;
}

/** What is left of a client's hourly creation quota (pglease.check_create_limits). */
export interface CreateQuota {
  rate_limit: number | null;
  remaining: number | null;
  reset_seconds: number | null;
}

export interface CreateLeaseInput {
  /** null: never expires. */
  ttlSeconds: number | null;
  label: string | null;
  clientIp: string | null;
  /**
   * Seed the lease from this template (sql/templates.sql, pglease.lease_from_template): a lease
   * from the template's warm pool when one is ready, else provisioned and seeded in this call.
   * `forPool`: make a lease for the pool instead (kept in state provisioning until claimed).
   */
  template?: { id: string; forPool?: boolean };
  /**
   * Throttling (0 disables a limit), checked as the transaction's last step so that concurrent
   * creates count each other exactly (sql/throttle.sql); over a limit the lease is rolled back.
   */
  limits?: CreateLimits;
}

export class LeaseStore {
  constructor(
    private readonly host: Host,
    private readonly limits: LeaseLimits,
  ) {}

  get pool(): pg.Pool {
    return this.host.pool;
  }

  async create(input: CreateLeaseInput): Promise<CreatedLease> {
    const password = newPassword();
    const token = newToken();
    // Names are random; a collision (2^-60 per pair) surfaces as a duplicate role and is retried.
    for (let attempt = 0; ; attempt++) {
      const base = 'lease_' + randomBytes(8).toString('hex');
      const [loginVerifier, authVerifier] = await Promise.all([
        scramVerifier(password, this.limits.scramIterations),
        // The authenticator's password is a 256-bit HMAC only pglease knows: one iteration loses
        // nothing, and saves 1.6 ms per lease (Postgres re-derives the verifier at CREATE ROLE).
        scramVerifier(authenticatorPassword(this.host.authenticatorKey, base + '_auth'), 1),
      ]);
      try {
        const provision = {
          name: 'pglease.provision',
          text: `SELECT ${LEASE_COLUMNS} FROM pglease.provision($1, $2, $3, $4, make_interval(secs => $5), $6, $7, $8, $9, $10, $11)`,
          values: [
            base,
            loginVerifier,
            authVerifier,
            hashToken(token),
            input.ttlSeconds,
            input.label,
            input.clientIp,
            this.host.id,
            this.limits.connectionLimit,
            this.limits.statementTimeout,
            this.limits.idleInTransactionTimeout,
          ],
        };
        const query = input.template
          ? {
              name: 'pglease.lease-from-template',
              text: `SELECT ${LEASE_COLUMNS} FROM pglease.lease_from_template($12, $13, $1, $2, $3, $4, make_interval(secs => $5), $6, $7, $8, $9, $10, $11)`,
              values: [...provision.values, input.template.id, input.template.forPool ?? false],
            }
          : provision;
        if (!input.limits) return { lease: (await this.pool.query<LeaseRow>(query)).rows[0]!, password, token, quota: undefined };
        // One statement, so one round trip and one implicit transaction: the lease is made, then
        // charged to its client and counted under the throttle's locks (sql/throttle.sql), which
        // are held only until this statement commits. A limit raised by the check undoes the lease.
        const limits = input.limits;
        const offset = query.values.length;
        const { rows } = await this.pool.query<LeaseRow & CreateQuota>({
          name: `${query.name}+limits`,
          text: `SELECT l.*, q.rate_limit, q.remaining, q.reset_seconds
                   FROM (${query.text}) AS l,
                        LATERAL pglease.check_create_limits(l.id, $${offset + 1}, $${offset + 2}, $${offset + 3}, $${offset + 4}) AS q`,
          values: [...query.values, input.clientIp, limits.perHour, limits.activePerClient, limits.maxLeases],
        });
        const { rate_limit, remaining, reset_seconds, ...lease } = rows[0]!;
        return { lease, password, token, quota: { rate_limit, remaining, reset_seconds } };
      } catch (error) {
        const code = (error as { code?: string }).code;
        if ((code === '42710' || code === '42P06' || code === '23505') && attempt < 3) continue;
        throw error;
      }
    }
  }

  /** The lease with this id if the token is its own (or the caller is admin: token null). */
  async find(id: string, token: string | null): Promise<LeaseRow | undefined> {
    const { rows } = token === null
      ? await this.pool.query<LeaseRow>({ name: 'pglease.lease-by-id', text: `SELECT ${LEASE_COLUMNS} FROM pglease.leases WHERE id = $1`, values: [id] })
      : await this.pool.query<LeaseRow>({
          name: 'pglease.lease-by-token',
          text: `SELECT ${LEASE_COLUMNS} FROM pglease.leases WHERE id = $1 AND token_hash = $2`,
          values: [id, hashToken(token)],
        });
    return rows[0];
  }

  /** Ends a live lease; undefined when it was not live (already released, expired, unknown). */
  async release(id: string, clientIp: string | null): Promise<LeaseRow | undefined> {
    const { rows } = await this.pool.query<LeaseRow>({
      name: 'pglease.release',
      text: `SELECT ${LEASE_COLUMNS} FROM pglease.release($1, 'released', $2) WHERE id IS NOT NULL`,
      values: [id, clientIp],
    });
    const released = rows[0];
    if (released) await this.cutStragglers();
    return released;
  }

  /**
   * A client that authenticated just before the release committed can hold a session whose role is
   * gone. Such sessions can do nothing useful, but they are closed here rather than left to linger.
   * Once the role is dropped pg_stat_activity no longer shows its name, so they are found by their
   * missing role (sql/reaper.sql).
   */
  private async cutStragglers(): Promise<void> {
    await this.pool.query({ name: 'pglease.cut-stragglers', text: 'SELECT pglease.terminate_orphan_sessions()' });
  }

  async renew(id: string, ttlSeconds: number | null, clientIp: string | null): Promise<LeaseRow | undefined> {
    const { rows } = await this.pool.query<LeaseRow>({
      name: 'pglease.renew',
      text: `SELECT ${LEASE_COLUMNS} FROM pglease.renew($1, make_interval(secs => $2), $3) WHERE id IS NOT NULL`,
      values: [id, ttlSeconds, clientIp],
    });
    return rows[0];
  }

  /** Newest first; `cursor` is the id of the last lease of the previous page. */
  async list(options: { limit: number; cursor: string | null; state: LeaseState | null }): Promise<{ items: LeaseRow[]; next: string | null }> {
    const { rows } = await this.pool.query<LeaseRow>({
      name: 'pglease.list-leases',
      text: `SELECT ${LEASE_COLUMNS} FROM pglease.leases l
              WHERE ($2::pglease.lease_state IS NULL OR l.state = $2)
                AND ($3::uuid IS NULL OR (l.created_at, l.id) < (SELECT c.created_at, c.id FROM pglease.leases c WHERE c.id = $3))
              ORDER BY l.created_at DESC, l.id DESC
              LIMIT $1`,
      values: [options.limit + 1, options.state, options.cursor],
    });
    const items = rows.slice(0, options.limit);
    return { items, next: rows.length > options.limit ? items[items.length - 1]!.id : null };
  }
}
