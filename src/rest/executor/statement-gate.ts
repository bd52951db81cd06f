/**
 * How many REST statements run on a host at once, over all its leases (issue 20).
 *
 * A lease's pool grows when its requests queue (connection-pool.ts), so traffic spread over many
 * leases ran as many statements at once as there were HTTP requests in flight: 50 at 50 client
 * connections, on up to 236 backends, whose number nothing bounded but the connection budget, and
 * none of whom waited behind another lease's requests: a lease could fill every backend's run
 * queue with slow statements. On a quiet 2-core machine the gate at its default (16 there) served
 * as many requests as no gate (bench:rest-many; 8 served 5-10% fewer over 50 leases); under load
 * the figures vary more than that.
 *
 * So requests pass this gate before they take a connection: at most `limit` at once, the others
 * wait in arrival order (fair across leases: one lease's burst waits behind the requests that came
 * before it, as a queue in front of the server would).
 *
 * A statement that runs longer than `slowMs` (a lease's pg_sleep, a lock wait, a big report) gives
 * its place up while it goes on: it no longer uses the CPU that the limit rations, and a lease must
 * not be able to stop every other lease's requests by keeping a few slow ones running. Passing costs
 * a counter and a small ticket on the hot path; only a request that has to wait makes a promise,
 * and one timer, armed while requests wait, looks for slow statements.
 */

/** A request that passed the gate; give it back to `leave`. */
export interface GateTicket {
  since: number;
  /** It ran past slowMs and no longer counts against the limit. */
  released: boolean;
}

interface Waiting {
  enter: (ticket: GateTicket) => void;
}

export class StatementGate {
  /** Statements counted against the limit. */
  private counted = 0;
  /** Statements counted, oldest first (a Set keeps insertion order). */
  private readonly running = new Set<GateTicket>();
  private readonly queue: Waiting[] = [];
  /** Index of the first request still waiting in `queue` (those before it went in). */
  private head = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Statements that gave their place up because they ran past slowMs (for /metrics and tests). */
  slowReleased = 0;

  constructor(
    /** Statements at once (a request's round trip, from taking a connection to its answer). */
    readonly limit: number,
    /** How long a statement holds its place at most. */
    private readonly slowMs = 20,
  ) {}

  /** Requests waiting now. */
  get waiting(): number {
    return this.queue.length - this.head;
  }

  /** Statements counted against the limit now. */
  get inFlight(): number {
    return this.counted;
  }

  /** A ticket at once, or the promise of one. */
  enter(): GateTicket | Promise<GateTicket> {
    if (this.counted < this.limit && this.waiting === 0) return this.admit();
    return new Promise<GateTicket>((resolve) => {
      this.queue.push({ enter: resolve });
      this.timer ??= setTimeout(this.releaseSlow, this.slowMs);
    });
  }

  /** The statement is done: its place goes to the first waiting request. */
  leave(ticket: GateTicket): void {
    if (!ticket.released) {
      ticket.released = true;
      this.running.delete(ticket);
      this.counted--;
    }
    this.admitWaiting();
  }

  private admit(): GateTicket {
    const ticket: GateTicket = { since: Date.now(), released: false };
    this.running.add(ticket);
    this.counted++;
    return ticket;
  }

  private admitWaiting(): void {
    while (this.counted < this.limit && this.waiting > 0) {
      const next = this.queue[this.head]!;
      this.queue[this.head++] = undefined as unknown as Waiting;
      next.enter(this.admit());
    }
    if (this.waiting === 0) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }

  /** While requests wait: statements running past slowMs give their places to them. */
  private readonly releaseSlow = (): void => {
    this.timer = undefined;
    if (this.waiting === 0) return;
    const now = Date.now();
    let next = this.slowMs;
    for (const ticket of this.running) {
      const age = now - ticket.since;
      if (age < this.slowMs) {
        next = this.slowMs - age;
        break;
      }
      ticket.released = true;
      this.running.delete(ticket);
      this.counted--;
      this.slowReleased++;
    }
    this.admitWaiting();
    if (this.waiting > 0) this.timer = setTimeout(this.releaseSlow, Math.max(1, next));
  };
}
