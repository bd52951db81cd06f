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
 * A ready fork expires this long after its holder's last heartbeat (pglease.hold_ready_forks), as
 * a warm pool's lease does: a process that dies leaves it for a minute at most.
 */
export const READY_FORK_HOLD_SECONDS = 60;
/** Three heartbeats per hold: one missed (a busy database) loses nothing. */
export const READY_FORK_HEARTBEAT_MS = (READY_FORK_HOLD_SECONDS * 1000) / 3;
/**
 * A ready fork not taken within this long is let go: it costs a database (the snapshot's size) and
 * three roles while it waits, for a fork that may never come.
 */
export const READY_FORK_MAX_AGE_SECONDS = 600;

/** A ready fork held here: its parked lease, its password, and the snapshot it is a copy of. */
export interface ReadyFork {
  lease: ParkedFork['fork'];
  password: string;
  snapshot: string;
  /**
   * Date.now() past which it is no longer offered: its hold as of the last heartbeat, less a margin
   * (a take needs 10 s of it left).
   */
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

  /** The ids of the ready forks held. */
  ids(): string[] {
    return [...this.bySource.values()].map((ready) => ready.lease.id);
  }

  /**
   * After a heartbeat for `asked`: those in `held` are offered for another hold, the other ones
   * asked for are forgotten (they expire). One put meanwhile was not asked for and stays as it is.
   */
  heldFor(asked: string[], held: Set<string>, offerUntil: number): void {
    const gone = new Set(asked.filter((id) => !held.has(id)));
    for (const [sourceId, ready] of this.bySource) {
      if (held.has(ready.lease.id)) ready.offerUntil = offerUntil;
      else if (gone.has(ready.lease.id)) this.bySource.delete(sourceId);
    }
  }

  /** Every ready fork held, taken out of the stock (at shutdown, to drop them). */
  takeAll(): ReadyFork[] {
    const all = [...this.bySource.values()];
    this.bySource.clear();
    return all;
  }
}
