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
 * When none is left, `reclaim` may close an idle connection of some pool to make room.
 */
export class ConnectionBudget {
  private used = 0;
  /** Pools whose requests wait for a connection the budget could not give yet, first come first. */
  private readonly starving = new Set<() => boolean>();

  constructor(
    readonly max: number,
    private readonly reclaim: () => boolean,
  ) {}

  get inUse(): number {
    return this.used;
  }

  private reclaiming = false;

  take(): boolean {
    if (this.used >= this.max) {
      // the place a reclaimed connection frees is this taker's, not a starving pool's
      this.reclaiming = true;
      try {
        this.reclaim();
      } finally {
        this.reclaiming = false;
      }
    }
    if (this.used >= this.max) return false;
    this.used++;
    return true;
  }

  give(): void {
    this.used--;
    if (this.reclaiming) return;
    // the first pool still short of a connection takes the place
    for (const retry of this.starving) {
      this.starving.delete(retry);
      if (retry()) break;
    }
  }

  /** Whether some pool waits for a place: a connection going idle should make room instead. */
  get starved(): boolean {
    return this.starving.size > 0;
  }

  /** Calls `retry` when a connection is given back; it answers whether it took the place. */
  waitFor(retry: () => boolean): void {
    this.starving.add(retry);
  }
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
}

interface Waiter {
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
        resolve,
        reject,
        timer: setTimeout(() => {
          this.removeWaiter(waiter);
          reject(new Error('timeout exceeded when trying to connect'));
        }, this.options.connectionTimeoutMs),
      };
      this.waiters.push(waiter);
      if (this.clients.size < this.options.max) this.open();
    });
  }

  /** Gives a connection back; `broken`: it must not be used again. */
  release(client: pg.Client, broken?: Error): void {
    // a connection that failed meanwhile was dropped already
    if (!this.clients.has(client)) return;
    if (broken || this.ending) {
      this.drop(client);
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.resolve(client);
      return;
    }
    // another lease's requests wait for a place in the budget: this one is not needed here now
    if (this.options.budget?.starved) {
      void this.drop(client);
      return;
    }
    this.idle.push(client);
  }

  /** Closes idle connections now and the others as they come back; waiting requests fail. */
  async end(): Promise<void> {
    this.ending = true;
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

  /** The budget has room again: open a connection if requests still wait for one. */
  private readonly retryOpen = (): boolean => !this.ending && this.waiters.length > 0 && this.clients.size < this.options.max && this.open();

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

  /** Opens a connection when the budget allows (whether it did); otherwise waiters wait for one. */
  private open(): boolean {
    if (this.options.budget && !this.options.budget.take()) {
      this.options.budget.waitFor(this.retryOpen);
      return false;
    }
    const client = new pg.Client(this.config);
    this.clients.add(client);
    client.on('error', (error: Error) => {
      // a request's own connection errors reach the request; this is an idle (or dying) one
      if (this.idle.includes(client)) this.options.onIdleError(error);
      void this.drop(client);
    });
    client.connect().then(
      () => this.release(client),
      (error: Error) => {
        if (this.clients.delete(client)) this.options.budget?.give();
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
    if (known) this.options.budget?.give();
    if (known && !this.ending && this.waiters.length > 0 && this.clients.size < this.options.max) this.open();
    return known ? client.end().catch(() => undefined) : Promise.resolve();
  }
}
