/**
 * Lease operations as the service performs them: each is one call of a SQL function of
 * sql/leases.sql or sql/pool.sql (or one query), with the secrets prepared here.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { CreateLimits, LeaseLimits } from '../config.js';
import { runDiscardingRows } from '../db/discard-rows.js';
import type { Host } from '../db/host.js';
import { templateSqlError, TemplateSqlError } from '../templates/template-sql-error.js';
import { durationMs } from '../duration.js';
import { authenticatorPassword, hashToken, LoginSecrets, newToken, scramVerifier } from './credentials.js';
import { dropQueuedDatabases, dropReleasedDatabase } from './database-drops.js';
import { CopySourceGone } from './copy-bracket.js';
import { copyLeaseDatabase, copySnapshotAfter, copySnapshotForFork, takeReadyFork } from './lease-fork.js';
import { READY_FORK_HEARTBEAT_MS, READY_FORK_HOLD_SECONDS, READY_FORK_MAX_AGE_SECONDS, ReadyForks, type ReadyFork } from './ready-forks.js';
import { oneAtATime } from './lease-snapshots.js';
import { databaseLeaseSetup, leaseDatabaseUrl, withLeaseSession } from './lease-session.js';
import type { ApiSettings } from './api-settings.js';
import type { LeaseKind } from './lease-kind.js';

export type { LeaseKind } from './lease-kind.js';

export type LeaseState = 'provisioning' | 'active' | 'released' | 'expired' | 'failed';

/** A row of pglease.leases as node-postgres returns it. */
export interface LeaseRow {
  id: string;
  label: string | null;
  host_id: number;
  kind: LeaseKind;
  /** The lease's name (lease_<hex>): its schema, or its database for a database lease. */
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
  /** The plan (pglease.plans) whose limits the lease lives within. */
  plan: string;
  /** CONNECTION LIMIT of the login role (pg_roles); null once the role is gone. */
  connection_limit: number | null;
  /** Short names of the roles the lease declared for its JWTs (sql/auth.sql). */
  user_roles: string[];
  api_settings: ApiSettings;
  /** The lease's JWT secret: only in the answer of the statement that created the lease. */
  jwt_secret?: string | null;
}

/**
 * Columns of pglease.leases that leave the database (never the token hash), and the login role's
 * connection limit: one lookup of pg_authid's name index per row, from the catalog only.
 */
const ROW_COLUMNS =
  'id, label, host_id, kind, schema_name, role_name, anon_role, auth_role, state, client_ip, created_at, expires_at, ended_at, last_error, plan, ' +
  'user_roles, api_settings';
const LEASE_COLUMNS = ROW_COLUMNS + ', (SELECT r.rolconnlimit FROM pg_catalog.pg_roles r WHERE r.rolname = role_name) AS connection_limit';

/** The columns of the answer to a create: the lease's JWT secret too, shown this once. */
const CREATED_COLUMNS = LEASE_COLUMNS + ', jwt_secret';

/**
 * The columns of a provision's answer, whose connection limit is the one its roles were just made
 * with (parameter 9 of pglease.provision): read from the pg_roles view it would be NULL (the
 * statement's snapshot predates the role), and planning that view costs ~40-80 us at every create.
 */
const PROVISIONED_COLUMNS = ROW_COLUMNS + ', $9::int AS connection_limit, jwt_secret';

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
  /** Schema (the default) or database (LeaseKind). */
  kind?: LeaseKind;
  /** null: never expires. */
  ttlSeconds: number | null;
  label: string | null;
  clientIp: string | null;
  /**
   * Seed the lease from this template (in the lease's own session, see LeaseStore.seed). `pooled`:
   * a global template, whose leases come from warm pools (src/leases/lease-pool.ts).
   */
  template?: { id: string; pooled?: boolean };
  /**
   * Throttling (0 disables a limit), checked as the transaction's last step so that concurrent
   * creates count each other exactly (sql/throttle.sql); over a limit the lease is rolled back.
   */
  limits?: CreateLimits;
}

/** A lease parked in a warm pool, with the password only the process that made it knows. */
export interface PooledLease {
  id: string;
  password: string;
}

/**
 * A seed's failure as the create reports it: Postgres's error, where in the template's SQL, and the
 * template's name. SQLSTATE PGLTF marks it (a warm pool stops filling from such a template).
 */
function seedFailure(templateName: string, error: TemplateSqlError): TemplateSqlError {
  return Object.assign(new TemplateSqlError({ ...error.postgres }), {
    message: `template "${templateName}" failed to apply: ${error.postgres.message}`,
    code: 'PGLTF',
  });
}

/** The client address a lease is charged to: the caller's, when per-client limits apply (sql/throttle.sql). */
function quotaIp(input: CreateLeaseInput): string | null {
  const limits = input.limits;
  return limits && (limits.perHour > 0 || limits.activePerClient > 0 || limits.connectionsPerClient > 0) ? input.clientIp : null;
}

/** The statement that hands out one of `candidates` (sql/pool.sql), without the throttle check. */
function claimQuery(holder: string, input: CreateLeaseInput, candidates: string[], tokenHash: Buffer): { name: string; text: string; values: unknown[] } {
  return {
    name: 'pglease.claim-pooled-lease',
    text: `SELECT ${CREATED_COLUMNS} FROM pglease.claim_pooled_lease($1, $2, $3, $4, make_interval(secs => $5), $6, $7, $8, $9)`,
    values: [holder, input.template?.id ?? null, candidates, tokenHash, input.ttlSeconds, input.label, input.clientIp, quotaIp(input), input.kind ?? 'schema'],
  };
}

/** A seeded lease waits at most this long (seconds) between its provisioning and its next step. */
const SEED_HOLD_SECONDS = 60;

/** The secrets and name of a lease about to be provisioned. */
interface NewLease {
  base: string;
  password: string;
  loginVerifier: string;
  authVerifier: string;
}

export class LeaseStore {
  /** Login passwords and their verifiers, made ahead of the creates that take them. */
  private readonly loginSecrets: LoginSecrets;
  /** Forks made in advance, for forks of a lease as its snapshot left it (sql/ready-forks.sql). */
  private readonly readyForks = new ReadyForks();
  /** The ready forks' heartbeat, while any is held. */
  private readyForkHeartbeat: NodeJS.Timeout | undefined;

  constructor(
    private readonly host: Host,
    private readonly limits: LeaseLimits,
  ) {
    this.loginSecrets = new LoginSecrets(limits.scramIterations);
  }

  get pool(): pg.Pool {
    return this.host.pool;
  }

  /**
   * Runs `provision` with a fresh name, password and verifiers. Names are random; a collision
   * (2^-60 per pair) surfaces as a duplicate role, schema or row and is retried with a new name.
   */
  private async withNewLease<T>(provision: (lease: NewLease) => Promise<T>): Promise<T> {
    const { password, verifier: loginVerifier } = await this.loginSecrets.take();
    for (let attempt = 0; ; attempt++) {
      const base = 'lease_' + randomBytes(8).toString('hex');
      // The authenticator's password is a 256-bit HMAC only pglease knows: one iteration loses
      // nothing, and saves 1.6 ms per lease (Postgres re-derives the verifier at CREATE ROLE).
      const authVerifier = await scramVerifier(authenticatorPassword(this.host.authenticatorKey, base + '_auth'), 1);
      try {
        return await provision({ base, password, loginVerifier, authVerifier });
      } catch (error) {
        const code = (error as { code?: string }).code;
        if ((code === '42710' || code === '42P06' || code === '23505') && attempt < 3) continue;
        throw error;
      }
    }
  }

  /** Provisions a lease in this call (the path without a warm pool). */
  async create(input: CreateLeaseInput): Promise<CreatedLease> {
    if (input.template || input.kind === 'database') return this.createSeeded(input);
    if (input.limits) await this.checkLimitsEarly(input.clientIp, input.limits);
    const token = newToken();
    return this.withNewLease(async ({ base, password, loginVerifier, authVerifier }) => {
      const provision = {
        name: 'pglease.provision',
        text: `SELECT ${PROVISIONED_COLUMNS} FROM pglease.provision($1, $2, $3, $4, make_interval(secs => $5), $6, $7, $8, $9, $10, $11)`,
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
      const { lease, quota } = await this.withLimits(this.pool, provision, input);
      return { lease: lease!, password, token, quota };
    });
  }

  /**
   * A lease seeded from the input's template, or a database lease, provisioned in this call: parked,
   * its database made and seeded (provisionSeeded), then activated for `input` with the same
   * throttling as any create, in one statement. A refusal by a limit drops the lease.
   */
  private async createSeeded(input: CreateLeaseInput): Promise<CreatedLease> {
    if (input.limits) await this.checkLimitsEarly(input.clientIp, input.limits);
    const token = newToken();
    const templateId = input.template?.id ?? null;
    const { lease: parked, password } = await this.provisionSeeded(templateId, SEED_HOLD_SECONDS, input.kind ?? 'schema');
    try {
      const { lease, quota } = await this.withLimits(this.pool, {
        name: 'pglease.activate-seeded-lease',
        text: `SELECT ${CREATED_COLUMNS} FROM pglease.activate_seeded_lease($1, $2, $3, make_interval(secs => $4), $5, $6, $7)`,
        values: [parked.id, templateId, hashToken(token), input.ttlSeconds, input.label, input.clientIp, quotaIp(input)],
      }, input);
      return { lease: lease!, password, token, quota };
    } catch (error) {
      await this.dropParked(parked.id);
      throw error;
    }
  }

  /**
   * A fork of active database lease `sourceId` (sql/fork.sql): a new database lease holding a copy
   * of the source's objects and data at this moment, owned by its own roles, activated for `input`
   * with the same throttling as any create. The source's sessions are ended for the copy (there is
   * no copy of a database with sessions on it): their number is in the answer. A failure drops
   * the fork; a source that is not an active database lease throws CopySourceGone (src/leases/copy-bracket.ts).
   */
  async fork(sourceId: string, input: CreateLeaseInput): Promise<CreatedLease & { sourceSessionsEnded: number; fromSnapshot: string | null }> {
    if (input.limits) await this.checkLimitsEarly(input.clientIp, input.limits);
    const token = newToken();
    let endedBefore = 0;
    const ready = this.readyForks.take(sourceId);
    if (ready !== undefined) {
      const taken = await this.forkFromReady(sourceId, ready, token, input);
      if ('lease' in taken) return taken;
      endedBefore = taken.sessionsEnded;
    }
    // the fork's roles are made first (copyLeaseDatabase waits for them before it closes the
    // source: made meanwhile, they were missing from the service's membership cache)
    const parking = this.withNewLease(async ({ base, password, loginVerifier, authVerifier }) => ({
      lease: await this.provisionParked({ base, loginVerifier, authVerifier }, SEED_HOLD_SECONDS, 'database'),
      password,
    }));
    const preparing = parking.then(async ({ lease }) => {
      const { rows } = await this.pool.query<{ roles: Record<string, string> }>({
        name: 'pglease.fork-declared-roles',
        text: 'SELECT pglease.fork_declared_roles($1, $2) AS roles',
        values: [sourceId, lease.id],
      });
      return { fork: lease, roles: rows[0]!.roles };
    });
    preparing.catch(() => undefined); // awaited below, or by the copy
    try {
      // No first session as the fork's own role, unlike a new database lease: what that session
      // sets (USAGE on public for the anonymous role, no EXECUTE for PUBLIC on new functions) is
      // in the copy, handed over to the fork's roles as the source had it.
      let copied = await oneAtATime(sourceId, () => copyLeaseDatabase(this.pool, this.host.databaseUrl, sourceId, preparing));
      if (copied.copyAfter !== undefined) {
        try {
          await copySnapshotAfter(this.pool, this.host.databaseUrl, sourceId, await preparing, copied.copyAfter);
        } catch (error) {
          // the snapshot was deleted or replaced since the bracket (3D000: no such template): the
          // fork copies the source as it is now instead
          if ((error as { code?: string }).code !== '3D000') throw error;
          const ended = copied.sessionsEnded;
          copied = await oneAtATime(sourceId, () => copyLeaseDatabase(this.pool, this.host.databaseUrl, sourceId, preparing, { live: true }));
          copied.sessionsEnded += ended;
        }
      }
      const sourceSessionsEnded = endedBefore + copied.sessionsEnded;
      const { lease: parked, password } = await parking;
      const forked = await this.activateFork(parked.id, sourceId, sourceSessionsEnded, token, input);
      if (copied.fromSnapshot !== null) this.prepareReadyForkLater(sourceId, copied.fromSnapshot);
      return { ...forked, password, sourceSessionsEnded, fromSnapshot: copied.fromSnapshot };
    } catch (error) {
      const parked = await parking.catch(() => undefined);
      if (parked) await this.dropParked(parked.lease.id);
      throw error;
    }
  }

  /** A parked fork, its database made and handed over, activated for `input` as any create is, and its source noted. */
  private async activateFork(forkId: string, sourceId: string, sourceSessionsEnded: number, token: string, input: CreateLeaseInput): Promise<Omit<CreatedLease, 'password'>> {
    const { lease, quota } = await this.withLimits(this.pool, {
      name: 'pglease.activate-seeded-lease',
      text: `SELECT ${CREATED_COLUMNS} FROM pglease.activate_seeded_lease($1, $2, $3, make_interval(secs => $4), $5, $6, $7)`,
      values: [forkId, null, hashToken(token), input.ttlSeconds, input.label, input.clientIp, quotaIp(input)],
    }, input);
    await this.pool.query({ name: 'pglease.note-fork', text: 'SELECT pglease.note_fork($1, $2, $3)', values: [forkId, sourceId, sourceSessionsEnded] });
    return { lease: lease!, token, quota };
  }

  /**
   * A fork that takes `ready`, made in advance, when the source still holds the snapshot it is a
   * copy of (sql/ready-forks.sql): the source's sessions ended, an UPDATE, and the activation. When
   * the source has changed since, the ready fork is kept (a restore from that snapshot makes it
   * good again), or dropped when it can never be taken, and the answer is how many sessions this
   * bracket ended, for the fork's own copy.
   */
  private async forkFromReady(sourceId: string, ready: ReadyFork, token: string, input: CreateLeaseInput): Promise<(CreatedLease & { sourceSessionsEnded: number; fromSnapshot: string | null }) | { sessionsEnded: number }> {
    let taken: { sessionsEnded: number; fromSnapshot: string | null; stale: boolean };
    try {
      taken = await oneAtATime(sourceId, () => takeReadyFork(this.pool, sourceId, ready.lease.id, this.readyForks.holder));
    } catch (error) {
      // the source is gone (its ready fork with it), or busy: this fork fails as any would
      if (error instanceof CopySourceGone) void this.dropParked(ready.lease.id);
      else this.keepReadyFork(sourceId, ready);
      throw error;
    }
    if (taken.fromSnapshot === null) {
      // stale: dropped, so that the next one is made for the snapshot as it is now
      if (taken.stale) void this.dropParked(ready.lease.id);
      else this.keepReadyFork(sourceId, ready);
      return { sessionsEnded: taken.sessionsEnded };
    }
    try {
      const forked = await this.activateFork(ready.lease.id, sourceId, taken.sessionsEnded, token, input);
      this.prepareReadyForkLater(sourceId, taken.fromSnapshot);
      return { ...forked, password: ready.password, sourceSessionsEnded: taken.sessionsEnded, fromSnapshot: taken.fromSnapshot };
    } catch (error) {
      await this.dropParked(ready.lease.id);
      throw error;
    }
  }

  private keepReadyFork(sourceId: string, ready: ReadyFork): void {
    const replaced = this.readyForks.put(sourceId, ready);
    if (replaced !== undefined) void this.dropParked(replaced.lease.id);
    this.readyForkHeartbeat ??= setInterval(() => void this.holdReadyForks().catch(() => undefined), READY_FORK_HEARTBEAT_MS).unref();
  }

  /** Extends the hold of the ready forks held here, and forgets those too old or gone (pglease.hold_ready_forks). */
  private async holdReadyForks(): Promise<void> {
    const ids = this.readyForks.ids();
    if (ids.length === 0) {
      clearInterval(this.readyForkHeartbeat);
      this.readyForkHeartbeat = undefined;
      return;
    }
    const offerUntil = Date.now() + (READY_FORK_HOLD_SECONDS - 15) * 1000;
    const { rows } = await this.pool.query<{ id: string }>({
      name: 'pglease.hold-ready-forks',
      text: 'SELECT id FROM pglease.hold_ready_forks($1, make_interval(secs => $2), make_interval(secs => $3)) id',
      values: [this.readyForks.holder, READY_FORK_HOLD_SECONDS, READY_FORK_MAX_AGE_SECONDS],
      // (all of this holder's: the SQL extends every young one; only those asked for are judged here)
    });
    this.readyForks.heldFor(ids, new Set(rows.map((row) => row.id)), offerUntil);
  }

  /**
   * After a fork of `sourceId` as its snapshot `snapshot` left it: makes the next such fork in
   * advance, in the background, unless one is held or being made (src/leases/ready-forks.ts). A
   * failure leaves no trace but a parked lease that the reaper drops.
   */
  private prepareReadyForkLater(sourceId: string, snapshot: string): void {
    if (this.readyForks.covers(sourceId, snapshot)) return;
    this.readyForks.startMaking(sourceId);
    setImmediate(() => {
      void this.makeReadyFork(sourceId, snapshot)
        .catch(() => undefined)
        .finally(() => this.readyForks.doneMaking(sourceId));
    });
  }

  private async makeReadyFork(sourceId: string, snapshot: string): Promise<void> {
    const { lease, password } = await this.withNewLease(async ({ base, password, loginVerifier, authVerifier }) => ({
      lease: await this.provisionParked({ base, loginVerifier, authVerifier }, READY_FORK_HOLD_SECONDS, 'database'),
      password,
    }));
    try {
      const { rows } = await this.pool.query<{ roles: Record<string, string> }>({
        name: 'pglease.fork-declared-roles',
        text: 'SELECT pglease.fork_declared_roles($1, $2) AS roles',
        values: [sourceId, lease.id],
      });
      const snapshotAt = await copySnapshotForFork(this.pool, this.host.databaseUrl, sourceId, { fork: lease, roles: rows[0]!.roles }, snapshot);
      const { rows: parked } = await this.pool.query<{ parked: boolean }>({
        name: 'pglease.park-ready-fork',
        text: 'SELECT pglease.park_ready_fork($1, $2, $3, $4, $5::timestamptz) AS parked',
        values: [lease.id, this.readyForks.holder, sourceId, snapshot, snapshotAt],
      });
      if (!parked[0]!.parked) throw new Error('the snapshot changed while its fork was made in advance');
      // offered until 15 s before its hold ends: a take needs 10 s of it left
      this.keepReadyFork(sourceId, { lease, password, snapshot, offerUntil: Date.now() + (READY_FORK_HOLD_SECONDS - 15) * 1000 });
    } catch (error) {
      await this.dropParked(lease.id);
      throw error;
    }
  }

  /** Drops the forks this process made in advance (at shutdown: no other process knows their passwords). */
  async dropReadyForks(): Promise<void> {
    clearInterval(this.readyForkHeartbeat);
    this.readyForkHeartbeat = undefined;
    for (const ready of this.readyForks.takeAll()) await this.dropParked(ready.lease.id);
  }

  /** A lease provisioned and parked (pglease.provision_parked): no one's, expiring after `holdSeconds`. */
  private async provisionParked(lease: Omit<NewLease, 'password'>, holdSeconds: number, kind: LeaseKind): Promise<LeaseRow> {
    const { rows } = await this.pool.query<LeaseRow>({
      name: 'pglease.provision-parked',
      text: `SELECT ${LEASE_COLUMNS} FROM pglease.provision_parked($1, $2, $3, $4, make_interval(secs => $5), $6, $7, $8, $9, $10)`,
      values: [
        lease.base,
        lease.loginVerifier,
        lease.authVerifier,
        // the hash of a token nobody is given: the next step sets the real one
        hashToken(newToken()),
        holdSeconds,
        this.host.id,
        this.limits.connectionLimit,
        this.limits.statementTimeout,
        this.limits.idleInTransactionTimeout,
        kind,
      ],
    });
    return rows[0]!;
  }

  /**
   * Provisions a lease and seeds it from `templateId`: the lease is made and committed parked
   * (pglease.provision_parked); a database lease's database is made next (openDatabase); then the
   * template's SQL runs in a session logged in as the lease's own role (seed), never in the
   * service's. A failing step drops the lease; a failing seed throws a TemplateSqlError naming the
   * template.
   */
  private async provisionSeeded(templateId: string | null, holdSeconds: number, kind: LeaseKind): Promise<{ lease: LeaseRow; password: string }> {
    const { lease, password } = await this.withNewLease(async ({ base, password, loginVerifier, authVerifier }) => ({
      lease: await this.provisionParked({ base, loginVerifier, authVerifier }, holdSeconds, kind),
      password,
    }));
    try {
      if (kind === 'database') await this.openDatabase(lease);
      if (templateId !== null) await this.seed(lease, password, templateId);
      else if (kind === 'database') await this.runSeed(lease, password, '');
    } catch (error) {
      await this.dropParked(lease.id);
      throw error;
    }
    return { lease, password };
  }

  /**
   * Makes a parked database lease's database: a clone of the lease template, owned by the lease's
   * login role, made with connections refused so that nobody gets in before its ACL is set: then
   * CONNECT for the lease's roles only (pglease.open_lease_database). Runs outside any transaction
   * (CREATE DATABASE cannot run in one); a crash here leaves a parked lease that expires and is
   * reaped, its database with it (src/leases/database-drops.ts).
   */
  private async openDatabase(lease: LeaseRow): Promise<void> {
    const { rows } = await this.pool.query<{ statement: string }>({
      name: 'pglease.lease-database-ddl',
      text: 'SELECT pglease.lease_database_ddl($1) AS statement',
      values: [lease.id],
    });
    await this.pool.query(rows[0]!.statement);
    await this.pool.query({ name: 'pglease.open-lease-database', text: 'SELECT pglease.open_lease_database($1)', values: [lease.id] });
  }

  /** Runs the SQL of template `templateId` in the lease's own session (runSeed). */
  private async seed(lease: LeaseRow, password: string, templateId: string): Promise<void> {
    const { rows } = await this.pool.query<{ name: string; sql: string }>({
      name: 'pglease.template-sql',
      text: 'SELECT name, sql FROM pglease.templates WHERE id = $1',
      values: [templateId],
    });
    const template = rows[0];
    if (!template) throw Object.assign(new Error(`template ${templateId} no longer exists`), { code: 'PGLTS' });
    try {
      await this.runSeed(lease, password, template.sql);
    } catch (error) {
      if (error instanceof TemplateSqlError) throw seedFailure(template.name, error);
      throw error;
    }
  }

  /**
   * Proves that `sql` seeds a fresh lease, exactly as a create will seed one: a scratch lease is
   * provisioned (parked: no one's, reaped if this process dies), seeded in its own session, then
   * dropped. The SQL never runs in a service session (src/leases/lease-session.ts), and checks
   * do not wait for each other: each has a lease of its own, in the group its name picks.
   * Throws the seed's TemplateSqlError when the SQL fails.
   */
  async checkSeed(sql: string, kind: LeaseKind = 'schema'): Promise<void> {
    const holdSeconds = Math.ceil(durationMs(this.limits.statementTimeout, { allowMs: true }) / 1000) + SEED_HOLD_SECONDS;
    const { lease, password } = await this.withNewLease(async ({ base, password, loginVerifier, authVerifier }) => ({
      lease: await this.provisionParked({ base, loginVerifier, authVerifier }, holdSeconds, kind),
      password,
    }));
    try {
      if (kind === 'database') await this.openDatabase(lease);
      await this.runSeed(lease, password, sql);
    } finally {
      await this.dropParked(lease.id);
    }
  }

  /**
   * Runs seed SQL in a session logged in as the lease's login role, in one transaction:
   * everything it does, including what it leaves to run at commit, has exactly the lease's rights,
   * and its objects land in the lease's schema (the role's search_path), or for a database lease
   * in its database, whose own first settings come first (DATABASE_LEASE_SETUP). The lease's statement
   * timeout bounds it from here too, since SQL can lift its own: past it the session is ended.
   * The SQL may not end the transaction itself (a COMMIT in it would commit half a seed): the
   * transaction's id before and after must be the same. Throws a TemplateSqlError pointing into
   * the SQL when it fails.
   */
  private async runSeed(lease: LeaseRow, password: string, sql: string): Promise<void> {
    let timedOut = false;
    let backendPid: number | undefined;
    let session: pg.Client | undefined;
    const deadline = setTimeout(() => {
      timedOut = true;
      // the backend may be busy for long after its client is gone: end it, then the session
      if (backendPid !== undefined) void this.pool.query('SELECT pg_terminate_backend($1)', [backendPid]).catch(() => undefined);
      void session?.end().catch(() => undefined);
    }, durationMs(this.limits.statementTimeout, { allowMs: true }));
    try {
      await withLeaseSession(leaseDatabaseUrl(this.host.databaseUrl, lease), { role: lease.role_name, password }, async (opened) => {
        session = opened;
        backendPid = (opened as unknown as { processID?: number }).processID;
        await opened.query('BEGIN');
        if (lease.kind === 'database') await opened.query(databaseLeaseSetup(lease.anon_role));
        const before = await opened.query<{ xid: string }>('SELECT pg_catalog.pg_current_xact_id()::text AS xid');
        // the rows it selects are dropped as they come: the SQL is the token holder's to write
        await runDiscardingRows(opened, sql);
        const after = await opened.query<{ xid: string | null }>('SELECT pg_catalog.pg_current_xact_id_if_assigned()::text AS xid');
        if (after.rows[0]?.xid !== before.rows[0]!.xid) {
          throw new TemplateSqlError({
            code: '0A000',
            message: 'template SQL cannot end its transaction (COMMIT, ROLLBACK): a seed runs in one transaction, all or nothing',
          });
        }
        await opened.query('COMMIT');
      }, 'pglease-seed');
    } catch (error) {
      if (timedOut) {
        throw new TemplateSqlError({ code: '57014', message: `canceling seed: it ran longer than the lease's statement timeout (${this.limits.statementTimeout})` });
      }
      if (error instanceof TemplateSqlError) throw error;
      throw templateSqlError(error, sql) ?? error;
    } finally {
      clearTimeout(deadline);
    }
  }

  /** Drops a lease that never left its parking (a failed seed or a refused activation). */
  private async dropParked(id: string): Promise<void> {
    await this.pool
      .query({ name: 'pglease.drop-parked', text: 'SELECT (pglease.release($1)).id', values: [id] })
      .catch(() => undefined); // it expires within SEED_HOLD_SECONDS and the reaper drops it
    await this.dropQueuedDatabases();
  }

  /** Finishes the ends of database leases (src/leases/database-drops.ts). */
  async dropQueuedDatabases(): Promise<void> {
    await dropQueuedDatabases(this.pool).catch(() => undefined); // the reaper and cleanup-orphans retry
  }

  /**
   * The early check, before any work (password hashing, DDL): a client already at a limit is
   * turned away at the cost of one query. The exact check is repeated in the provisioning
   * statement. A claim needs none: it does no such work, and its own statement checks exactly.
   */
  private async checkLimitsEarly(clientIp: string | null, limits: CreateLimits): Promise<void> {
    // Capacity alone (the admin's case) is left to the exact check in the provisioning statement:
    // this early check exists to turn a client away before any work, not to count the database.
    if (limits.perHour === 0 && limits.activePerClient === 0 && limits.connectionsPerClient === 0) return;
    await this.pool.query({
      name: 'pglease.check-create-limits',
      text: 'SELECT 1 FROM pglease.check_create_limits(NULL, $1, $2, $3, $4, $5)',
      values: [clientIp, limits.perHour, limits.activePerClient, limits.maxLeases, limits.connectionsPerClient],
    });
  }

  /**
   * Hands out `candidates` (leases of this holder's pool, for the input's template or none) with
   * the same throttling as create; undefined when none of them could be claimed (gone, or locked
   * by the reaper), and the caller provisions instead. No password work: the pooled lease already
   * has its password (sql/pool.sql).
   */
  async claim(holder: string, candidates: PooledLease[], input: CreateLeaseInput): Promise<CreatedLease | undefined> {
    const token = newToken();
    const { lease, quota } = await this.withLimits(this.pool, claimQuery(holder, input, candidates.map((pooled) => pooled.id), hashToken(token)), input);
    if (!lease) return undefined;
    const password = candidates.find((pooled) => pooled.id === lease.id)!.password;
    return { lease, password, token, quota };
  }

  /**
   * Runs the claim of `leaseId` (a pooled lease no real claim can pick yet: it is not among any
   * claim's candidates until this returns) as a client with `limits` would, and rolls it back.
   * Why: a CREATE or DROP SCHEMA (every refill and release) makes each session of the database
   * discard all its cached plans, so the next claim would plan its statement and the functions it
   * calls again, about 1 ms of a create. This plans them ahead, on the connection the next claim
   * gets: node-postgres's pool hands out the connection released last.
   */
  async prepareClaim(holder: string, leaseId: string, templateId: string | null, limits: CreateLimits, kind: LeaseKind = 'schema'): Promise<void> {
    // an address of TEST-NET-1 (RFC 5737): no client's, so it shares no throttle lock with one
    const input: CreateLeaseInput = { kind, ttlSeconds: 60, label: null, clientIp: '192.0.2.1', limits, template: templateId === null ? undefined : { id: templateId } };
    const client = await this.pool.connect();
    // a connection lost between the statements is reported by the next one; without a listener
    // its 'error' event would be an uncaught exception
    const ignore = () => undefined;
    client.on('error', ignore);
    let rolledBack = false;
    try {
      await client.query('BEGIN');
      try {
        await this.withLimits(client, claimQuery(holder, input, [leaseId], hashToken(newToken())), input);
      } finally {
        await client.query('ROLLBACK');
        rolledBack = true;
      }
    } finally {
      client.off('error', ignore);
      // a connection that may still be inside the transaction is closed, never handed out again
      client.release(rolledBack ? undefined : new Error('claim rehearsal: no rollback'));
    }
  }

  /**
   * Runs a statement that makes or claims a lease, and with `input.limits` the throttle check in
   * the same statement: one round trip and one implicit transaction. The lease is made, then
   * charged to its client and counted under the throttle's locks (sql/throttle.sql), which are
   * held only until this statement commits. A limit raised by the check undoes the lease. The
   * check reports the lease's connection limit, lowered to what is left of the client's budget
   * if need be: the statement's own columns, read with its snapshot, do not see a role it made.
   */
  private async withLimits(
    queryable: pg.Pool | pg.PoolClient,
    query: { name: string; text: string; values: unknown[] },
    input: CreateLeaseInput,
  ): Promise<{ lease: LeaseRow | undefined; quota: CreateQuota | undefined }> {
    if (!input.limits) return { lease: (await queryable.query<LeaseRow>(query)).rows[0], quota: undefined };
    const limits = input.limits;
    const offset = query.values.length;
    const { rows } = await queryable.query<LeaseRow & CreateQuota & { budgeted_limit: number | null }>({
      name: `${query.name}+limits`,
      // LATERAL: the check runs once per lease the statement produced, after it (none: no check);
      // it is given the lease's connection limit as the statement read it (a provision's own
      // parameter: PROVISIONED_COLUMNS), and reads pg_roles itself only when that is NULL
      text: `SELECT l.*, q.rate_limit, q.remaining, q.reset_seconds, q.connection_limit AS budgeted_limit
               FROM (${query.text}) AS l,
                    LATERAL pglease.check_create_limits(l.id, $${offset + 1}, $${offset + 2}, $${offset + 3}, $${offset + 4}, $${offset + 5}, l.connection_limit) AS q`,
      values: [...query.values, input.clientIp, limits.perHour, limits.activePerClient, limits.maxLeases, limits.connectionsPerClient],
    });
    if (!rows[0]) return { lease: undefined, quota: undefined };
    const { rate_limit, remaining, reset_seconds, budgeted_limit, ...lease } = rows[0];
    return { lease: { ...lease, connection_limit: budgeted_limit ?? lease.connection_limit }, quota: { rate_limit, remaining, reset_seconds } };
  }

  /**
   * Provisions a lease for `holder`'s warm pool (seeded from `templateId` unless null): parked,
   * expiring after `holdSeconds` unless the holder extends it. Its password is returned here and
   * nowhere else.
   */
  async provisionPooled(holder: string, templateId: string | null, holdSeconds: number, kind: LeaseKind = 'schema'): Promise<PooledLease> {
    if (templateId !== null || kind === 'database') {
      const { lease, password } = await this.provisionSeeded(templateId, holdSeconds, kind);
      try {
        await this.pool.query({
          name: 'pglease.park-seeded-lease',
          text: 'SELECT id FROM pglease.park_seeded_lease($1, $2, $3)',
          values: [lease.id, holder, templateId],
        });
      } catch (error) {
        await this.dropParked(lease.id);
        throw error;
      }
      return { id: lease.id, password };
    }
    return this.withNewLease(async ({ base, password, loginVerifier, authVerifier }) => {
      const { rows } = await this.pool.query<{ id: string }>({
        name: 'pglease.provision-pooled',
        text: 'SELECT id FROM pglease.provision_pooled($1, $2, make_interval(secs => $3), $4, $5, $6, $7, $8, $9, $10, $11)',
        values: [
          holder,
          templateId,
          holdSeconds,
          base,
          loginVerifier,
          authVerifier,
          // the hash of a token nobody is given: the claim sets the real one
          hashToken(newToken()),
          this.host.id,
          this.limits.connectionLimit,
          this.limits.statementTimeout,
          this.limits.idleInTransactionTimeout,
        ],
      });
      return { id: rows[0]!.id, password };
    });
  }

  /** The holder's heartbeat (pglease.hold_pooled_leases): ids of its pooled leases still held. */
  async holdPooled(holder: string, holdSeconds: number): Promise<Set<string>> {
    const { rows } = await this.pool.query<{ id: string }>({
      name: 'pglease.hold-pooled-leases',
      text: 'SELECT id FROM pglease.hold_pooled_leases($1, make_interval(secs => $2)) AS id',
      values: [holder, holdSeconds],
    });
    return new Set(rows.map((row) => row.id));
  }

  /** Drops the holder's pooled leases (those of `ids`, or all); returns how many. */
  async releasePooled(holder: string, ids: string[] | null = null): Promise<number> {
    const { rows } = await this.pool.query<{ released: number }>({
      name: 'pglease.release-pooled-leases',
      text: 'SELECT pglease.release_pooled_leases($1, $2) AS released',
      values: [holder, ids],
    });
    await this.dropQueuedDatabases();
    return rows[0]!.released;
  }

  /**
   * The lease with this id if the token is its own (or the caller is admin: token null). An
   * unclaimed pooled lease (state provisioning) is nobody's: not found, even by the admin.
   */
  async find(id: string, token: string | null): Promise<LeaseRow | undefined> {
    const { rows } = token === null
      ? await this.pool.query<LeaseRow>({
          name: 'pglease.lease-by-id',
          text: `SELECT ${LEASE_COLUMNS} FROM pglease.leases WHERE id = $1 AND state <> 'provisioning'`,
          values: [id],
        })
      : await this.pool.query<LeaseRow>({
          name: 'pglease.lease-by-token',
          text: `SELECT ${LEASE_COLUMNS} FROM pglease.leases WHERE id = $1 AND token_hash = $2 AND state <> 'provisioning'`,
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
    if (released?.kind === 'database') await dropReleasedDatabase(this.pool, released.schema_name);
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

  /**
   * A new password for an active lease's login role (sql/leases.sql, pglease.reset_password), and
   * with `cutSessions` its open sessions ended; undefined when the lease is not active.
   */
  async resetPassword(id: string, cutSessions: boolean): Promise<{ lease: LeaseRow; password: string } | undefined> {
    const { password, verifier } = await this.loginSecrets.take();
    const { rows } = await this.pool.query<LeaseRow>({
      name: 'pglease.reset-password',
      text: `SELECT ${LEASE_COLUMNS} FROM pglease.reset_password($1, $2, $3) WHERE id IS NOT NULL`,
      values: [id, verifier, cutSessions],
    });
    return rows[0] && { lease: rows[0], password };
  }

  async renew(id: string, ttlSeconds: number | null, clientIp: string | null): Promise<LeaseRow | undefined> {
    const { rows } = await this.pool.query<LeaseRow>({
      name: 'pglease.renew',
      text: `SELECT ${LEASE_COLUMNS} FROM pglease.renew($1, make_interval(secs => $2), $3) WHERE id IS NOT NULL`,
      values: [id, ttlSeconds, clientIp],
    });
    return rows[0];
  }

  /**
   * Declares `name` as a role the lease's JWTs may name (pglease.declare_lease_role): the role's
   * Postgres name, or undefined when the lease is not active. An invalid name fails with 22023.
   */
  async declareRole(id: string, name: string): Promise<string | undefined> {
    const { rows } = await this.pool.query<{ role: string | null }>({
      name: 'pglease.declare-lease-role',
      text: 'SELECT pglease.declare_lease_role($1, $2) AS role',
      values: [id, name],
    });
    return rows[0]?.role ?? undefined;
  }

  /** A new JWT secret for an active lease (pglease.rotate_jwt_secret); undefined when it is not active. */
  async rotateJwtSecret(id: string): Promise<string | undefined> {
    const { rows } = await this.pool.query<{ secret: string | null }>({
      name: 'pglease.rotate-jwt-secret',
      text: 'SELECT pglease.rotate_jwt_secret($1) AS secret',
      values: [id],
    });
    return rows[0]?.secret ?? undefined;
  }

  /** The JWT secret of an active lease; undefined when it is not active (or predates JWT secrets). */
  async jwtSecret(id: string): Promise<string | undefined> {
    const { rows } = await this.pool.query<{ jwt_secret: string | null }>({
      name: 'pglease.lease-jwt-secret',
      text: "SELECT jwt_secret FROM pglease.leases WHERE id = $1 AND state = 'active'",
      values: [id],
    });
    return rows[0]?.jwt_secret ?? undefined;
  }

  /** Merges settings into an active lease's (null removes one); the lease after, undefined when it is not active. */
  async setApiSettings(id: string, settings: Record<string, unknown>): Promise<LeaseRow | undefined> {
    const { rows } = await this.pool.query<{ settings: ApiSettings | null }>({
      name: 'pglease.set-api-settings',
      text: 'SELECT pglease.set_api_settings($1, $2) AS settings',
      values: [id, JSON.stringify(settings)],
    });
    return rows[0]?.settings ? this.find(id, null) : undefined;
  }

  /** Newest first; `cursor` is the id of the last lease of the previous page. Pooled leases are nobody's: not listed. */
  /** `cursorCreatedAt`: the cursor lease's created_at, when it lives on another host (src/hosts/). */
  async list(options: { limit: number; cursor: string | null; cursorCreatedAt?: Date; state: LeaseState | null }): Promise<{ items: LeaseRow[]; next: string | null }> {
    const { rows } = await this.pool.query<LeaseRow>({
      name: 'pglease.list-leases-after',
      text: `SELECT ${LEASE_COLUMNS} FROM pglease.leases l
              WHERE l.state <> 'provisioning'
                AND ($2::pglease.lease_state IS NULL OR l.state = $2)
                AND ($3::uuid IS NULL OR (l.created_at, l.id) < (coalesce($4::timestamptz, (SELECT c.created_at FROM pglease.leases c WHERE c.id = $3)), $3))
              ORDER BY l.created_at DESC, l.id DESC
              LIMIT $1`,
      values: [options.limit + 1, options.state, options.cursor, options.cursorCreatedAt ?? null],
    });
    const items = rows.slice(0, options.limit);
    return { items, next: rows.length > options.limit ? items[items.length - 1]!.id : null };
  }
}
