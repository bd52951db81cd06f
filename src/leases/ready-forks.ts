/**
 * Forks made in advance, this process's stock (sql/ready-forks.sql says what they are and when a
 * fork may take one). At most one per source lease: a fork that took a snapshot's copy is followed
 * by the next one's preparation (src/leases/lease-store.ts), so a suite forking a seeded lease for
 * each worker finds one ready for every fork after the first. A ready fork's password exists only
 * here: a ready fork this process forgets (a restart) expires after its hold and is reaped.
 */
import { randomUUID } from 'node:crypto';
import type { ParkedFork } from './lease-fork.js';

/**
 * How long a ready fork waits for its fork. A fork takes it only with 10 s of this left
 * (pglease.take_ready_fork); one not taken costs a database (~7 MB and the lease's data) until then.
 */
export const READY_FORK_HOLD_SECONDS = 300;

/** A ready fork held here: its parked lease, its password, and the snapshot it is a copy of. */
export interface ReadyFork {
  lease: ParkedFork['fork'];
  password: string;
  snapshot: string;
  /** Date.now() past which it is no longer offered (its hold, less a margin for the take). */
  offerUntil: number;
}

export class ReadyForks {
  /** Who holds this process's ready forks (pglease.ready_forks.holder): new at every start. */
  readonly holder = randomUUID();
  private readonly bySource = new Map<string, ReadyFork>();
  /** Sources whose next ready fork is being made right now. */
  private readonly making = new Set<string>();

  /** The ready fork of `sourceId`, taken out of the stock; undefined when none is held (or its hold is nearly over). */
  take(sourceId: string): ReadyFork | undefined {
    const ready = this.bySource.get(sourceId);
    if (ready === undefined) return undefined;
    this.bySource.delete(sourceId);
    return ready.offerUntil > Date.now() ? ready : undefined;
  }

  /** Puts a ready fork back (a fork did not take it: the source had changed); answers one it replaces, to drop. */
  put(sourceId: string, ready: ReadyFork): ReadyFork | undefined {
    const before = this.bySource.get(sourceId);
    this.bySource.set(sourceId, ready);
    return before === ready ? undefined : before;
  }

  /** Whether a ready fork of `sourceId` for `snapshot` is held or being made: none needs making then. */
  covers(sourceId: string, snapshot: string): boolean {
    return this.making.has(sourceId) || this.bySource.get(sourceId)?.snapshot === snapshot;
  }

  startMaking(sourceId: string): void {
    this.making.add(sourceId);
  }

  doneMaking(sourceId: string): void {
    this.making.delete(sourceId);
  }

  /** Every ready fork held, taken out of the stock (at shutdown, to drop them). */
  takeAll(): ReadyFork[] {
    const all = [...this.bySource.values()];
    this.bySource.clear();
    return all;
  }
}
