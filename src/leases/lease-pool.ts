/**
 * This process's warm pools: leases provisioned ahead of demand (plain ones, and seeded ones per
 * global template) and handed out by one UPDATE (sql/pool.sql), so that a create does no DDL and
 * no password work. Each pooled lease got its password when it was made, here; the password
 * exists only in this process's memory, so only this process (its `holder` id) can hand the lease
 * out. While the process runs it extends its leases' expiry (the heartbeat); when it stops it
 * releases them; when it dies they expire within HOLD_SECONDS and the reaper drops them.
 *
 * Refills are one provisioning at a time, and wait until no lease has been handed out for
 * REFILL_QUIET_MS: the client that just got a lease is about to log in and run its first query,
 * and on a small machine a refill (several ms of Postgres CPU, far more for a seeded template)
 * would compete with it. A burst beyond the pool provisions in the request, as without a pool.
 * Each refill ends with a rehearsal of the new lease's claim, rolled back: the refill's CREATE
 * SCHEMA made Postgres drop every cached plan, and the next claim should not pay for planning.
 */
import { randomUUID } from 'node:crypto';
import type { CreateLimits } from '../config.js';
import type { CreatedLease, CreateLeaseInput, LeaseStore, PooledLease } from './lease-store.js';

export interface LeasePoolOptions {
  /** Plain leases kept ready (PGLEASE_LEASE_POOL; 0: none). */
  plainSize: number;
  /** Seeded leases kept ready per global template (PGLEASE_TEMPLATE_POOL; 0: none). */
  templateSize: number;
  /**
   * Database leases kept ready (PGLEASE_DATABASE_LEASE_POOL; 0: none), from the first create of
   * one on, or from the start with `databaseFromStart` (database leases are the default kind).
   */
  databaseSize?: number;
  databaseFromStart?: boolean;
  /**
   * The throttle limits of a client that is not the admin. When set, each new pooled lease's
   * claim is rehearsed with them and rolled back before the lease can be claimed, so that the
   * next real claim finds its plans ready (LeaseStore.prepareClaim).
   */
  rehearseWith?: CreateLimits;
  log?: (message: string) => void;
}

/**
 * A refill starts once no lease has been handed out for this long. Measured on a 2-core machine:
 * a client logs in and answers its first query about 5 ms after its lease is created; 150 ms
 * leaves room for a client that takes a few leases in a row (a test runner's workers).
 */
const REFILL_QUIET_MS = 150;
/** Under a steady stream of creates a refill still starts this long after it was first due. */
const REFILL_MAX_WAIT_MS = 1000;
/** How long a shutdown waits for a refill in flight. */
const CLOSE_WAIT_MS = 2_000;
/** A pooled lease expires this long after its holder's last heartbeat. */
const HOLD_SECONDS = 60;
/** Three heartbeats per hold: a missed one (a busy database) does not lose the pool. */
const HEARTBEAT_MS = (HOLD_SECONDS * 1000) / 3;
/** Back-off after a failed refill (the database unreachable, say), doubling up to the maximum. */
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30_000;

/**
 * The keys of the plain pools, one per kind of lease (a database lease costs a CREATE DATABASE, so
 * its pool is what makes its create as quick as a schema lease's); a template's pool is keyed by
 * the template's id (schema leases: a seeded database lease is made in its create).
 */
const PLAIN = 'plain';
const DATABASE = 'database';

/** The pool key of a create's input; undefined when such leases are not pooled. */
function poolKey(input: CreateLeaseInput): string | undefined {
  if (input.kind === 'database') return input.template ? undefined : DATABASE;
  return input.template ? input.template.id : PLAIN;
}

/** SQLSTATEs meaning a template pool can no longer be filled (sql/pool.sql, sql/templates.sql). */
const TEMPLATE_GONE = new Set(['PGLTS', 'PGLTF']);

interface Pool {
  target: number;
  /** Leases parked in Postgres for this pool, with their passwords, oldest first. */
  ready: PooledLease[];
  /** Claims in flight: each has reserved one of `ready`. */
  claiming: number;
}

export class LeasePool {
  /** Who holds this process's pooled leases (pglease.lease_pool.holder): new at every start. */
  readonly holder = randomUUID();
  private readonly pools = new Map<string, Pool>();
  private readonly log: (message: string) => void;
  private lastHandedOutAt = 0;
  private holdDue = false;
  private worker: Promise<void> | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private wakeSleeper: (() => void) | undefined;
  private started = false;
  private closed = false;

  /** Creates served from a ready lease (hits) and provisioned in the request (misses), for /metrics. */
  readonly creates = { hits: 0, misses: 0 };

  constructor(
    private readonly store: LeaseStore,
    private readonly options: LeasePoolOptions,
  ) {
    this.log = options.log ?? (() => undefined);
    if (options.plainSize > 0) this.pools.set(PLAIN, { target: options.plainSize, ready: [], claiming: 0 });
    if ((options.databaseSize ?? 0) > 0 && options.databaseFromStart) this.pools.set(DATABASE, { target: options.databaseSize!, ready: [], claiming: 0 });
  }

  /** Fills the pools and starts the heartbeat. */
  start(): void {
    this.started = true;
    this.heartbeat = setInterval(() => {
      this.holdDue = true;
      this.wake();
    }, HEARTBEAT_MS).unref();
    this.wake();
  }

  /** Leases ready in this process: in the plain pool, and in all template pools together. */
  readyCounts(): { plain: number; template: number; database: number } {
    let template = 0;
    for (const [key, pool] of this.pools) if (key !== PLAIN && key !== DATABASE) template += pool.ready.length;
    return { plain: this.pools.get(PLAIN)?.ready.length ?? 0, template, database: this.pools.get(DATABASE)?.ready.length ?? 0 };
  }

  /** How many leases of a pool are ready in this process (null: the plain pool of `kind`). */
  readySize(templateId: string | null = null, kind: 'schema' | 'database' = 'schema'): number {
    return this.pools.get(templateId ?? (kind === 'database' ? DATABASE : PLAIN))?.ready.length ?? 0;
  }

  /**
   * A lease for `input`: claimed from this process's pool when one is ready (same throttling,
   * one round trip), else provisioned in this call. Either way the pool is refilled later.
   */
  async create(input: CreateLeaseInput): Promise<CreatedLease> {
    try {
      const claimed = await this.claimReady(input);
      if (claimed) {
        this.creates.hits++;
        return claimed;
      }
      this.creates.misses++;
      return await this.store.create(input);
    } finally {
      this.handedOut();
    }
  }

  /**
   * A lease for `input` if this process has one ready that can be claimed; undefined otherwise,
   * with nothing made. Also undefined when the input's template is no longer the current version
   * of its name: the caller took it from a cache and resolves the name again.
   */
  async claim(input: CreateLeaseInput): Promise<CreatedLease | undefined> {
    try {
      return await this.claimReady(input);
    } finally {
      this.handedOut();
    }
  }

  private async claimReady(input: CreateLeaseInput): Promise<CreatedLease | undefined> {
    const key = poolKey(input);
    if (key === undefined) return undefined;
    if (key !== PLAIN && key !== DATABASE && input.template?.pooled && this.options.templateSize > 0 && !this.pools.has(key)) {
      this.pools.set(key, { target: this.options.templateSize, ready: [], claiming: 0 });
    }
    if (key === DATABASE && (this.options.databaseSize ?? 0) > 0 && !this.pools.has(key) && !this.closed) {
      this.pools.set(key, { target: this.options.databaseSize!, ready: [], claiming: 0 });
      this.wake();
    }
    const pool = input.template && !input.template.pooled ? undefined : this.pools.get(key);
    if (!pool || pool.ready.length <= pool.claiming) return undefined;
    pool.claiming++;
    let claimed: CreatedLease | undefined;
    try {
      // every ready lease is a candidate: concurrent claims skip each other's (SKIP LOCKED)
      claimed = await this.store.claim(this.holder, [...pool.ready], input);
    } catch (error) {
      // superseded since it was resolved: its pool is forgotten at the next heartbeat
      if ((error as { code?: string }).code === 'PGLTS') return undefined;
      throw error;
    } finally {
      pool.claiming--;
    }
    if (claimed) {
      pool.ready = pool.ready.filter((pooled) => pooled.id !== claimed.lease.id);
      return claimed;
    }
    // none could be claimed: gone (reaped, released with an old template version) or locked
    // for a moment; the heartbeat tells which, and the pool forgets those that are gone
    this.holdDue = true;
    return undefined;
  }

  /** A create or claim just ended: refills wait for quiet, then run. */
  private handedOut(): void {
    this.lastHandedOutAt = Date.now();
    this.wake();
  }

  /** Keeps a global template's pool filled from now on (at registration: its first lease is warm too). */
  want(templateId: string): void {
    if (this.options.templateSize === 0 || this.closed) return;
    if (!this.pools.has(templateId)) this.pools.set(templateId, { target: this.options.templateSize, ready: [], claiming: 0 });
    this.wake();
  }

  /** Stops filling, waits for a refill in flight, and releases this process's unclaimed leases. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.started) return;
    clearInterval(this.heartbeat);
    this.wakeSleeper?.();
    // a refill seeding a large template can take up to the statement timeout: shutdown does not
    // wait for it (a lease it still makes has no holder and expires within HOLD_SECONDS)
    await Promise.race([this.worker, new Promise((resolve) => setTimeout(resolve, CLOSE_WAIT_MS).unref())]);
    this.pools.clear();
    try {
      await this.store.releasePooled(this.holder);
    } catch (error) {
      this.log(`lease pool: could not release the unclaimed leases at shutdown (${(error as Error).message}); they expire within ${HOLD_SECONDS} s`);
    }
  }

  /** Runs the worker unless it runs already: refills and heartbeats, one at a time. */
  private wake(): void {
    if (!this.started || this.closed || this.worker) return;
    this.worker = this.work().finally(() => {
      this.worker = undefined;
      // a claim that came while the worker was finishing found it still running
      if (this.holdDue || this.shortPool() !== undefined) this.wake();
    });
  }

  private async work(): Promise<void> {
    let failures = 0;
    while (!this.closed) {
      if (this.holdDue) {
        this.holdDue = false;
        await this.hold().catch((error: Error) => this.log(`lease pool: heartbeat failed (${error.message})`));
        continue;
      }
      if (this.shortPool() === undefined) return;
      await this.quiet();
      const key = this.shortPool();
      if (this.closed || key === undefined) return;
      try {
        const templateId = key === PLAIN || key === DATABASE ? null : key;
        const kind = key === DATABASE ? 'database' : 'schema';
        const pooled = await this.store.provisionPooled(this.holder, templateId, HOLD_SECONDS, kind);
        // a failed rehearsal costs the next claim its prepared plans, nothing more
        if (this.options.rehearseWith) await this.store.prepareClaim(this.holder, pooled.id, templateId, this.options.rehearseWith, kind).catch(() => undefined);
        const pool = this.pools.get(key);
        if (pool && !this.closed) pool.ready.push(pooled);
        // dropped meanwhile (a template gone, or shutdown): no one will claim it
        else await this.store.releasePooled(this.holder, [pooled.id]);
        failures = 0;
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (key !== PLAIN && key !== DATABASE && code !== undefined && TEMPLATE_GONE.has(code)) {
          // a newer version was registered, the template removed, or its seed fails now: its
          // pool stops here and starts again if a create asks for the template
          this.pools.delete(key);
          continue;
        }
        if (this.closed) return;
        if (failures === 0) this.log(`lease pool: refill failed (${(error as Error).message}); retrying`);
        await this.sleep(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** failures++));
      }
    }
  }

  /** The key of a pool below its target, if any (the plain pool first). */
  private shortPool(): string | undefined {
    for (const [key, pool] of this.pools) if (pool.ready.length < pool.target) return key;
    return undefined;
  }

  /** Waits until no lease has been handed out for REFILL_QUIET_MS, at most REFILL_MAX_WAIT_MS. */
  private async quiet(): Promise<void> {
    const deadline = Date.now() + REFILL_MAX_WAIT_MS;
    for (;;) {
      const wait = Math.min(this.lastHandedOutAt + REFILL_QUIET_MS, deadline) - Date.now();
      if (wait <= 0 || this.closed) return;
      await this.sleep(wait);
    }
  }

  /**
   * The heartbeat: extends the expiry of this process's pooled leases and forgets those that are
   * no longer pooled. A pooled lease whose password this process does not know (its provisioning
   * committed but the answer was lost) can never be handed out: it is released.
   */
  private async hold(): Promise<void> {
    if (this.pools.size === 0) return;
    const held = await this.store.holdPooled(this.holder, HOLD_SECONDS);
    const known = new Set<string>();
    for (const pool of this.pools.values()) {
      pool.ready = pool.ready.filter((pooled) => held.has(pooled.id));
      for (const pooled of pool.ready) known.add(pooled.id);
    }
    const unknown = [...held].filter((id) => !known.has(id));
    if (unknown.length > 0) await this.store.releasePooled(this.holder, unknown);
  }

  /** setTimeout that close() cuts short. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeSleeper = done;
    });
  }
}
