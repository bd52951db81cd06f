/**
 * A small pool of node-postgres clients: one per lease, logged in as the lease's authenticator.
 *
 * Why not pg-pool: it hands out even an idle connection on the next tick, through its queue, with
 * a timeout timer armed and cleared around it; on the REST API's hot path that is measurable per
 * request. Here an idle connection is handed out at once, and only a request that has to wait for
 * one gets a promise and a timer. The rest is what pg-pool does: at most `max` connections, opened
 * on demand; a connection that fails is dropped (and replaced if requests wait); idle ones are
 * watched for errors (a lease's release terminates its sessions); `end` closes everything.
 */
import pg from 'pg';

/**
 * Connections shared by all the pools of a process, so that many leases' pools together cannot
 * take every connection the server allows (and starve leases' own clients and the service).
 *
 * How the places are spent when traffic spreads over more leases than there are places (issue 20:
 * closing the least recently used lease's idle connection for every new one made each request pay
 * a connect, ~5 ms, and cut throughput to a fifth from 50 leases on):
 *
 * - a lease's first connection comes before another lease's second: when the budget is full,
 *   `reclaim` closes an idle connection of a lease that has several (a surplus) before it closes
 *   any lease's last one, and a pool that grows (it has a connection, its requests queue on it)
 *   takes only a free place, a surplus, or the last connection of a lease that had no request for
 *   STALE_IDLE_MS (2 s): never the last connection of a lease in use (see closeIdleConnectionOf).
 *   Before session 10 it never took a last one, so after traffic over 200 leases a lease that got
 *   busy found the budget full of their idle connections and stayed at one or two for the 15 s
 *   they were kept (bench:rest-many's later rounds: 4,092-4,752 req/s against 7,175-7,467);
 * - while the budget holds a surplus, a lease that has no connection waits for one (the next
 *   connection of a lease with several given back is closed for it, before that lease's own
 *   requests queued on it), rather than closing another lease's only idle one: that lease then
 *   had none and took a third's at its next request, and so on for good. With 200 leases over 236
 *   places (bench:rest-many) that cascade opened 6-10 sessions a second, each ~9 ms of the
 *   server's CPU (fork, login, the first statements' parse and plan over cold caches), 60% of
 *   Postgres's CPU per request. Only when every place is some lease's only one (more leases want
 *   one than there are places), or after `patienceMs` without a surplus coming back, does a lease
 *   take another's only idle connection (least recently used first), unless that one is stale: a
 *   stale one it takes at once;
 * - an idle connection is kept until a waiting lease actually needs its place: a connection given
 *   back is closed only for a lease that has none, or that has at least two fewer than its pool;
 * - leases waiting for a place are served in the order they started waiting, those that have no
 *   connection first (they cannot run at all): a queue, not a race in which every request connects.
 */
export class ConnectionBudget {
  private used = 0;
  /** Pools that hold at least one place: the other `used - holders` places are surplus. */
  private holders = 0;
  /** Pools whose requests wait for a place the budget could not give yet, in arrival order, with Date.now() of their arrival. */
  private readonly starving = new Map<StarvingPool, number>();
  /** Armed while a pool without a connection waits for a surplus (see losePatience). */
  private patienceTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly max: number,
    /**
     * Closes an idle connection of some pool to free its place for a pool that has `connections`;
     * `lastOnes`: a pool's only connection may be the one (closeIdleConnectionOf).
     */
    private readonly reclaim: (connections: number, lastOnes: boolean) => boolean,
    /** How long a pool without a connection waits for a surplus before it takes another lease's only one. */
    private readonly patienceMs = 50,
  ) {}

  /** Places beyond each pool's first. */
  private get surplus(): number {
    return this.used - this.holders;
  }

  /** Pools waiting for a place. */
  get waiting(): number {
    return this.starving.size;
  }

  get inUse(): number {
    return this.used;
  }

  private reclaiming = false;

  /** A place for a pool that has `connections` already; whether it got one. */
  take(connections: number): boolean {
    if (this.used >= this.max) {
      // the place a reclaimed connection frees is this taker's, not a starving pool's
      this.reclaiming = true;
      try {
        this.reclaim(connections, connections === 0 && this.surplus === 0);
      } finally {
        this.reclaiming = false;
      }
    }
    if (this.used >= this.max) return false;
    this.used++;
    if (connections === 0) this.holders++;
    return true;
  }

  /** A place given back by a pool that has `connections` left. */
  give(connections: number): void {
    this.used--;
    if (connections === 0) this.holders--;
    if (this.reclaiming) return;
    // the first pool that has no connection takes the place, else the first that wants another
    for (const firstOnly of [true, false]) {
      for (const pool of this.starving.keys()) {
        if (firstOnly && pool.connections() > 0) continue;
        this.starving.delete(pool);
        if (pool.retry()) return;
      }
    }
  }

  /**
   * Whether a pool with `connections` should close one it gives back, to give its place to a
   * waiting pool; `queued`: its own requests wait for it (then only a pool without any connection
   * comes first, and only before a surplus).
   */
  wanted(connections: number, queued: boolean): boolean {
    if (this.starving.size === 0) return false;
    const now = Date.now();
    for (const [pool, since] of this.starving) {
      // its requests were served meanwhile (by its own connections): it no longer waits
      if (!pool.waits()) {
        this.starving.delete(pool);
        continue;
      }
      const theirs = pool.connections();
      if (theirs === 0 && (connections >= 2 || (!queued && (this.surplus === 0 || now - since >= this.patienceMs)))) return true;
      if (!queued && theirs + 1 < connections) return true;
    }
    return false;
  }

  /** Calls `pool.retry` when a place is given back; it answers whether it took the place. */
  waitFor(pool: StarvingPool): void {
    if (!this.starving.has(pool)) this.starving.set(pool, Date.now());
    if (pool.connections() === 0 && this.surplus > 0) this.patienceTimer ??= setTimeout(this.losePatience, this.patienceMs);
  }

  /**
   * A pool without a connection waited `patienceMs` for a surplus that did not come back (a lease
   * holds its connections in long statements): it takes some lease's only idle connection, as it
   * would if there were no surplus. Its place comes back through give(), which serves the pools
   * without a connection first.
   */
  private readonly losePatience = (): void => {
    this.patienceTimer = undefined;
    const now = Date.now();
    let wait: number | undefined;
    for (const [pool, since] of this.starving) {
      if (!pool.waits()) {
        this.starving.delete(pool);
        continue;
      }
      if (pool.connections() > 0) continue;
      const left = this.patienceMs - (now - since);
      if (left > 0) wait = Math.min(wait ?? left, left);
      // nothing idle to close: the next connection given back is closed for it (wanted)
      else if (!this.reclaim(0, true)) break;
    }
    if (wait !== undefined) this.patienceTimer ??= setTimeout(this.losePatience, wait);
  };
}

/** A pool waiting for a place in the budget. */
interface StarvingPool {
  /** Opens a connection if requests still wait for one; whether it took the place. */
  retry: () => boolean;
  /** Whether its requests still call for another connection. */
  waits: () => boolean;
  /** Connections the pool has (open or opening). */
  connections: () => number;
}

/** A pool and when a request last took a connection from it. */
export interface UsedPool {
  pool: ConnectionPool;
  /** Date.now() of the last checkout. */
  lastUsed: number;
}

/**
 * How long a lease may go without a request before a growing pool may close its only idle
 * connection (closeIdleConnectionOf). Long enough that a lease in use keeps its session: at 200
 * leases sharing ~5,000 req/s each has a request every ~40 ms, and a new session costs the server
 * ~9.5 ms of CPU (login, then its first statements over cold caches: ~60 warm requests), so a
 * lease whose session was closed after 2 s of quiet costs at most ~0.5% of a core when it comes
 * back. Short enough that a lease that gets busy is held back for a fraction of bench:rest-many's
 * 8 s of warm-up, not for the 15 s a pool is kept idle: with it, round 2's 1-lease step found the
 * 200-lease step's idle sessions in the budget and still measured on 5 sessions (2 s into its
 * warm-up), before it on 2; its pglease CPU per request 96-132 µs against 141-181 before (round
 * 1: 91-136), runs back to back at load 3.5-14 (docs/benchmarks.md, session 10).
 */
export const STALE_IDLE_MS = 2_000;

/**
 * Makes room in a budget (its `reclaim`) for a pool that has `connections`, by closing an idle
 * connection of another pool; whether it closed one. In this order:
 *
 * - a surplus: an idle connection of the pool with the most (the least recently used of those) if
 *   it has at least two more, so that a lease's surplus goes before any lease's only connection
 *   and a growing pool only evens out;
 * - a stale one: an idle connection of the least recently used pool, if no request used that pool
 *   since `staleBefore` (a Date.now() value, STALE_IDLE_MS ago) even if it is that lease's only
 *   one: a quiet lease gives its place up to one whose requests queue, rather than keep it until
 *   the idle timeout closes its pool; one used more recently is kept, so that closing it does not
 *   make its lease take a third lease's at its next request, and so on (the cascade of the budget);
 * - for a pool that has none and `lastOnes`, the least recently used pool's idle one, stale or not.
 */
export function closeIdleConnectionOf(pools: Iterable<UsedPool>, connections: number, lastOnes: boolean, staleBefore: number): boolean {
  let surplus: UsedPool | undefined;
  let leastRecent: UsedPool | undefined;
  for (const entry of pools) {
    const { pool } = entry;
    if (pool.idleCount === 0) continue;
    if (pool.size > Math.max(1, connections + 1) && (!surplus || pool.size > surplus.pool.size || (pool.size === surplus.pool.size && entry.lastUsed < surplus.lastUsed))) surplus = entry;
    if (!leastRecent || entry.lastUsed < leastRecent.lastUsed) leastRecent = entry;
  }
  const stale = leastRecent && leastRecent.lastUsed < staleBefore ? leastRecent : undefined;
  const victim = surplus ?? stale ?? (connections === 0 && lastOnes ? leastRecent : undefined);
  return victim ? victim.pool.closeIdleConnection() : false;
}

/** A pool that was closed (its lease ended, or it made room for others): answered as "retry". */
export class PoolClosedError extends Error {
  readonly code = 'PGLEASE_POOL_CLOSED';

  constructor() {
    super('the connection pool is closed');
  }
}

export interface ConnectionPoolOptions {
  max: number;
  /** Shared with other pools; a connection is opened only when the budget allows one. */
  budget?: ConnectionBudget;
  /** How long a request waits for a connection (to open, or to be released) before failing. */
  connectionTimeoutMs: number;
  /** An idle connection failed (not an error of any request). */
  onIdleError: (error: Error) => void;
  /** Requests waiting per connection past which the pool opens another (wantsAnother); 2 by default. */
  queuePerConnection?: number;
  /** How long the oldest request waits before the pool grows whatever the queue's length; SLOW_QUEUE_MS by default. */
  slowQueueMs?: number;
}

/**
 * How long a pool's oldest waiting request may wait before the pool opens another connection even
 * though fewer than `queuePerConnection` requests per connection wait: the connections it has are
 * held by slow statements (a pg_sleep, a lock wait, a report), which would otherwise hold up the
 * requests behind them for as long as they run. Well above a wait in a busy queue (bench:rest-many's
 * p99 is 10-15 ms at 50 client connections over 1 to 200 leases), so it does not make pools grow
 * under ordinary load; a connect costs ~5 ms.
 */
export const SLOW_QUEUE_MS = 50;

interface Waiter {
  /** performance.now() when it started waiting. */
  since: number;
  resolve: (client: pg.Client) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export class ConnectionPool {
  private readonly idle: pg.Client[] = [];
  private readonly waiters: Waiter[] = [];
  /** Every client opened or opening, idle or in use. */
  private readonly clients = new Set<pg.Client>();
  private ending = false;
  /** Connections being opened (connecting, not yet handed out). */
  private opening = 0;
  /** Armed while requests wait and the pool did not grow for them: see SLOW_QUEUE_MS. */
  private slowQueueTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly options: ConnectionPoolOptions,
  ) {}

  /** An idle connection now, or the promise of one. */
  acquire(): pg.Client | Promise<pg.Client> {
    if (this.ending) return Promise.reject(new PoolClosedError());
    const client = this.idle.pop();
    if (client) return client;
    return new Promise<pg.Client>((resolve, reject) => {
      const waiter: Waiter = {
        since: performance.now(),
        resolve,
        reject,
        timer: setTimeout(() => {
          this.removeWaiter(waiter);
          reject(new Error('timeout exceeded when trying to connect'));
        }, this.options.connectionTimeoutMs),
      };
      this.waiters.push(waiter);
      if (this.wantsAnother()) this.open();
      else if (this.clients.size < this.options.max) this.slowQueueTimer ??= setTimeout(this.checkSlowQueue, this.options.slowQueueMs ?? SLOW_QUEUE_MS);
    });
  }

  /**
   * The oldest waiting request may have waited SLOW_QUEUE_MS (the timer was armed when a request
   * queued without the pool growing): open another connection if one is called for, and look
   * again a SLOW_QUEUE_MS later while requests wait. One timer per pool at a time, left to fire
   * rather than cleared on the hot path; none while the pool waits for a place in the budget (the
   * budget calls it back in turn: a timer per starving pool, re-armed at once, spun through 500
   * leases' pools every millisecond, bench:rest-many).
   */
  private readonly checkSlowQueue = (): void => {
    this.slowQueueTimer = undefined;
    if (this.waiters.length === 0 || this.ending || this.clients.size >= this.options.max) return;
    if (this.wantsAnother() && !this.open()) return;
    if (this.waiters.length > 0 && this.clients.size < this.options.max) this.slowQueueTimer = setTimeout(this.checkSlowQueue, this.options.slowQueueMs ?? SLOW_QUEUE_MS);
  };

  /** Gives a connection back; `broken`: it must not be used again. */
  release(client: pg.Client, broken?: Error): void {
    // a connection that failed meanwhile was dropped already
    if (!this.clients.has(client)) return;
    if (broken || this.ending) {
      this.drop(client);
      return;
    }
    // another lease needs this place more than this lease needs this connection now
    if (this.options.budget?.wanted(this.clients.size, this.waiters.length > 0)) {
      void this.drop(client);
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.resolve(client);
      return;
    }
    this.idle.push(client);
  }

  /**
   * Whether waiting requests call for another connection: the first one, or one more while more
   * than `queuePerConnection` requests per connection wait (2 unless told). Each connection a
   * lease opens is one more backend that every request of every lease takes turns with, and a backend that ran other
   * leases' requests since its own last one is slower to wake (its caches are cold): growing at
   * the first request that found none idle made 50 leases' pools reach 5 connections each and
   * evict each other's (bench/rest-many.ts, before session 10); growing as soon as more requests
   * waited than there were connections still kept 162-179 backends for 50 leases, and waiting for
   * twice as many kept 116-132 and served 4-8% more requests a second (uniform k=50, 6,479-6,857
   * against 7,060-7,366 req/s, runs alternated, one lease unchanged at 8,911-9,330). One request
   * queued per connection waits ~0.3 ms, a connect costs ~5 ms. And one more, whatever the queue's
   * length, once its oldest request has waited SLOW_QUEUE_MS (slow statements hold the connections).
   */
  private wantsAnother(): boolean {
    const open = this.clients.size;
    if (this.ending || open >= this.options.max || this.waiters.length === 0) return false;
    if (open === 0 || this.waiters.length > (this.options.queuePerConnection ?? 2) * open) return true;
    // one connection at a time for a slow queue: the one being opened is for its oldest request
    return this.opening === 0 && performance.now() - this.waiters[0]!.since >= (this.options.slowQueueMs ?? SLOW_QUEUE_MS);
  }

  /** Closes idle connections now and the others as they come back; waiting requests fail. */
  async end(): Promise<void> {
    this.ending = true;
    clearTimeout(this.slowQueueTimer);
    this.slowQueueTimer = undefined;
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(new PoolClosedError());
    }
    await Promise.all(this.idle.splice(0).map((client) => this.drop(client)));
  }

  private removeWaiter(waiter: Waiter): void {
    const index = this.waiters.indexOf(waiter);
    if (index !== -1) this.waiters.splice(index, 1);
  }

  /** How this pool waits for a place in the budget. */
  private readonly starving = {
    retry: (): boolean => this.wantsAnother() && this.open(),
    waits: (): boolean => this.wantsAnother(),
    connections: (): number => this.clients.size,
  };

  /** Closes one idle connection (to give its place to another pool); whether there was one. */
  closeIdleConnection(): boolean {
    const client = this.idle.shift();
    if (!client) return false;
    void this.drop(client);
    return true;
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /** Connections open or opening, idle or in use. */
  get size(): number {
    return this.clients.size;
  }

  /** Opens a connection when the budget allows (whether it did); otherwise waiters wait for one. */
  private open(): boolean {
    if (this.options.budget && !this.options.budget.take(this.clients.size)) {
      this.options.budget.waitFor(this.starving);
      return false;
    }
    const client = new pg.Client(this.config);
    this.clients.add(client);
    client.on('error', (error: Error) => {
      // a request's own connection errors reach the request; this is an idle (or dying) one
      if (this.idle.includes(client)) this.options.onIdleError(error);
      void this.drop(client);
    });
    this.opening++;
    client.connect().then(
      () => {
        this.opening--;
        this.release(client);
      },
      (error: Error) => {
        this.opening--;
        if (this.clients.delete(client)) this.options.budget?.give(this.clients.size);
        const waiter = this.waiters.shift();
        if (waiter) {
          clearTimeout(waiter.timer);
          waiter.reject(error);
        }
      },
    );
    return true;
  }

  /** Forgets a connection and closes it; a waiting request gets a new one. */
  private drop(client: pg.Client): Promise<void> {
    const index = this.idle.indexOf(client);
    if (index !== -1) this.idle.splice(index, 1);
    const known = this.clients.delete(client);
    if (known) this.options.budget?.give(this.clients.size);
    if (known && this.wantsAnother()) this.open();
    return known ? client.end().catch(() => undefined) : Promise.resolve();
  }
}
