/**
 * One small connection pool per lease, logging in as the lease's own authenticator role
 * (`<lease>_auth`, password derived from the host key: src/leases/credentials.ts).
 *
 * Why per-lease authenticators rather than one per host (as the issue first put it): SET ROLE is
 * checked against the session user, so a host-wide authenticator that may become every lease's
 * role would let one lease's own function or view run set_config('role', '<another lease>') and
 * read another lease's data. A lease's authenticator can become that lease's two roles and nothing
 * else, so Postgres itself keeps leases apart.
 *
 * Pools are bounded in size and number (least recently used closed first), share one budget of
 * connections (so that many leases' pools cannot take all the server allows), are closed when their
 * lease ends, and when no request used them for a while (a sweep, rather than pg-pool's idle timer:
 * that one is set and cleared on every checkout and release, a cost on every request).
 *
 * A database lease's pool connects to its own database (issue 14), and beside it one session of the
 * same authenticator LISTENs there for the DDL event trigger's notifications (sql/admin/
 * event-triggers.sql): NOTIFY reaches only the sessions of its own database, so the service's
 * listener on the lease database never hears them. One session per database lease with an open
 * pool, closed with it; it is outside the connection budget (the lease's authenticator may open
 * 10: 5 for the pool, 1 for this).
 */
import { availableParallelism } from 'node:os';
import pg from 'pg';
import { authenticatorPassword } from '../../leases/credentials.js';
import { closeIdleConnectionOf, ConnectionBudget, ConnectionPool, STALE_IDLE_MS, type UsedPool } from './connection-pool.js';
import type { LeaseAccess } from './lease-directory.js';
import { Pipeline, type PipelineStep, type StepRows } from './pipeline.js';
import { StatementGate } from './statement-gate.js';

/** An error Postgres reported (it has a severity), as opposed to a broken connection. */
export function isServerError(error: unknown): boolean {
  return error instanceof Error && 'severity' in error;
}

/**
 * Whether a connection that met this error must not be used again: the connection failed (not an
 * error the server reported), or the server ended the session (FATAL, PANIC: e.g. the lease was
 * released). Any other server error only ends the statement or transaction.
 */
export function breaksConnection(error: unknown): boolean {
  if (!isServerError(error)) return true;
  const severity = (error as { severity?: string }).severity;
  return severity === 'FATAL' || severity === 'PANIC';
}

export interface LeasePoolOptions {
  /** Connections per lease (at most: a pool opens one when a request finds none idle). */
  maxConnections?: number;
  idleTimeoutMs?: number;
  /** Pools kept open at once. */
  maxPools?: number;
  /** Connections of all pools together (an idle one of another lease is closed to make room). */
  maxTotalConnections?: number;
  connectionTimeoutMs?: number;
  /** Statements of all pools at once (./statement-gate.ts); the others wait their turn. */
  maxActiveStatements?: number;
}

type PoolEntry = UsedPool;

/**
 * Statements at once by default: 8 per core of this machine, at least 16. On a quiet 2-core
 * machine (bench:rest-many, 2 passes each, 50 client connections) 16 served as many requests as no
 * gate (50 leases 0.89x of one lease against 0.90-0.99x, 200 leases 0.84x against 0.72-0.84x),
 * and 8 fewer over 50 leases (0.83-0.84x). Postgres on another host has cores of its own, which
 * PGLEASE_REST_ACTIVE_STATEMENTS tells.
 */
const DEFAULT_ACTIVE_STATEMENTS = Math.max(16, 8 * availableParallelism());

/** The channel of the DDL event trigger (src/rest/notifications.ts listens on it in the lease database). */
const DDL_CHANNEL = 'pglease_rest_ddl';

export class LeasePools {
  private readonly pools = new Map<string, PoolEntry>();
  private readonly options: Required<LeasePoolOptions>;
  private sweeper: NodeJS.Timeout | undefined;
  readonly budget: ConnectionBudget;
  readonly gate: StatementGate;
  /** The DDL listeners of database leases' pools, by lease id. */
  private readonly listeners = new Map<string, pg.Client>();
  /**
   * Told the name of a database lease when DDL ran in its database, or when its listener started
   * or was lost (a change may then have gone unheard).
   */
  onDatabaseDdl: (leaseName: string) => void = () => undefined;

  constructor(
    private readonly databaseUrl: string,
    private readonly authenticatorKey: Buffer,
    options: LeasePoolOptions = {},
    private readonly log: (message: string) => void = () => undefined,
  ) {
    this.options = {
      maxConnections: options.maxConnections ?? 5,
      idleTimeoutMs: options.idleTimeoutMs ?? 15_000,
      // a pool without connections is a few objects: the budget, not this, bounds the sessions
      maxPools: options.maxPools ?? 10_000,
      maxTotalConnections: options.maxTotalConnections ?? 64,
      connectionTimeoutMs: options.connectionTimeoutMs ?? 10_000,
      maxActiveStatements: options.maxActiveStatements ?? DEFAULT_ACTIVE_STATEMENTS,
    };
    this.gate = new StatementGate(this.options.maxActiveStatements);
    this.budget = new ConnectionBudget(this.options.maxTotalConnections, (connections, lastOnes) =>
      closeIdleConnectionOf(this.pools.values(), connections, lastOnes, Date.now() - STALE_IDLE_MS),
    );
  }

  /** Connections of all pools that are idle now (for /metrics). */
  get idleConnections(): number {
    let idle = 0;
    for (const entry of this.pools.values()) idle += entry.pool.idleCount;
    return idle;
  }

  get size(): number {
    return this.pools.size;
  }

  /** The lease's pool, opened on first use. */
  pool(lease: LeaseAccess): ConnectionPool {
    const now = Date.now();
    const existing = this.pools.get(lease.id);
    if (existing) {
      existing.lastUsed = now;
      return existing.pool;
    }
    const url = new URL(this.databaseUrl);
    url.username = encodeURIComponent(lease.authRole);
    url.password = encodeURIComponent(authenticatorPassword(this.authenticatorKey, lease.authRole));
    if (lease.kind === 'database') {
      url.pathname = '/' + encodeURIComponent(lease.name);
      this.listen(lease, url.toString());
    }
    const pool = new ConnectionPool(
      { connectionString: url.toString(), application_name: 'pglease-rest', connectionTimeoutMillis: this.options.connectionTimeoutMs },
      {
        max: this.options.maxConnections,
        budget: this.budget,
        connectionTimeoutMs: this.options.connectionTimeoutMs,
        // connections die when their lease is released (pg_terminate_backend): not a process error
        onIdleError: (error) => this.log(`lease ${lease.id}: idle REST connection lost (${error.message})`),
      },
    );
    this.pools.set(lease.id, { pool, lastUsed: now });
    if (this.pools.size > this.options.maxPools) this.close(this.leastRecentlyUsed());
    this.sweeper ??= setInterval(() => this.closeIdle(), Math.max(100, this.options.idleTimeoutMs / 3)).unref();
    return pool;
  }

  /** LISTENs for DDL in a database lease's database (see the module comment). */
  private listen(lease: LeaseAccess, url: string): void {
    const listener = new pg.Client({ connectionString: url, application_name: 'pglease-rest-ddl' });
    this.listeners.set(lease.id, listener);
    const lost = () => {
      if (this.listeners.get(lease.id) !== listener) return;
      this.listeners.delete(lease.id);
      this.onDatabaseDdl(lease.name);
      listener.end().catch(() => undefined);
    };
    listener.on('error', lost);
    listener.on('end', lost);
    listener.on('notification', (message) => {
      if (message.channel === DDL_CHANNEL) this.onDatabaseDdl(lease.name);
    });
    listener
      .connect()
      .then(() => listener.query(`LISTEN ${DDL_CHANNEL}`))
      // a change made before the LISTEN took effect may be cached already: forget it
      .then(() => this.onDatabaseDdl(lease.name))
      .catch(lost);
  }

  /**
   * One statement on a connection of the lease's pool, as its authenticator (no SET ROLE): the
   * introspection of a database lease's schemas, which only its own sessions can read.
   */
  async query<T extends pg.QueryResultRow>(lease: LeaseAccess, query: pg.QueryConfig): Promise<pg.QueryResult<T>> {
    const entered = this.gate.enter();
    const ticket = entered instanceof Promise ? await entered : entered;
    try {
      return await this.queryPassed<T>(lease, query);
    } finally {
      this.gate.leave(ticket);
    }
  }

  private async queryPassed<T extends pg.QueryResultRow>(lease: LeaseAccess, query: pg.QueryConfig): Promise<pg.QueryResult<T>> {
    const pool = this.pool(lease);
    const acquired = pool.acquire();
    const client = acquired instanceof Promise ? await acquired : acquired;
    let broken: Error | undefined;
    try {
      return await client.query<T>(query);
    } catch (error) {
      if (breaksConnection(error)) broken = error as Error;
      throw error;
    } finally {
      pool.release(client, broken);
    }
  }

  private leastRecentlyUsed(): string {
    let oldest: [string, number] | undefined;
    for (const [id, entry] of this.pools) if (!oldest || entry.lastUsed < oldest[1]) oldest = [id, entry.lastUsed];
    return oldest![0];
  }

  /** Closes the pools no request used within the idle timeout. */
  private closeIdle(): void {
    const before = Date.now() - this.options.idleTimeoutMs;
    for (const [id, entry] of this.pools) if (entry.lastUsed < before) this.close(id);
    if (this.pools.size === 0 && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /**
   * Runs the steps in one round trip on a connection of the lease's pool. Steps normally run in
   * the implicit transaction that ends at Sync; with `explicitTransaction` they start with BEGIN
   * (and end with COMMIT or ROLLBACK), and a failure is rolled back before the connection is reused.
   */
  async run(lease: LeaseAccess, steps: PipelineStep[], options: { explicitTransaction?: boolean } = {}): Promise<StepRows[]> {
    const entered = this.gate.enter();
    const ticket = entered instanceof Promise ? await entered : entered;
    try {
      return await this.runPassed(lease, steps, options);
    } finally {
      this.gate.leave(ticket);
    }
  }

  private async runPassed(lease: LeaseAccess, steps: PipelineStep[], options: { explicitTransaction?: boolean }): Promise<StepRows[]> {
    const pool = this.pool(lease);
    const acquired = pool.acquire();
    const client = acquired instanceof Promise ? await acquired : acquired;
    let broken: Error | undefined;
    try {
      const pipeline = new Pipeline(steps);
      client.query(pipeline as unknown as pg.QueryConfig);
      return await pipeline.result;
    } catch (error) {
      if (breaksConnection(error)) {
        broken = error as Error;
      } else if (options.explicitTransaction) {
        await client.query('ROLLBACK').catch((rollbackError: Error) => (broken = rollbackError));
      }
      throw error;
    } finally {
      pool.release(client, broken);
    }
  }

  /** Whether the lease has a pool open here. */
  has(leaseId: string): boolean {
    return this.pools.has(leaseId);
  }

  close(leaseId: string): void {
    const listener = this.listeners.get(leaseId);
    this.listeners.delete(leaseId);
    listener?.end().catch(() => undefined);
    const entry = this.pools.get(leaseId);
    if (!entry) return;
    this.pools.delete(leaseId);
    entry.pool.end().catch(() => undefined);
  }

  async closeAll(): Promise<void> {
    const entries = [...this.pools.values()];
    this.pools.clear();
    const listeners = [...this.listeners.values()];
    this.listeners.clear();
    await Promise.all(listeners.map((listener) => listener.end().catch(() => undefined)));
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    await Promise.all(entries.map((entry) => entry.pool.end().catch(() => undefined)));
  }
}
