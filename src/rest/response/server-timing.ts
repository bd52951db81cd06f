/**
 * `Server-Timing` (W3C Server Timing) for one REST request, when PGLEASE_SERVER_TIMING is on, as
 * PostgREST's `server-timing-enabled`: the phases the request went through, each measured from
 * the end of the one before, so that they add up to the time the handler took and never to more.
 *
 *   lease        the lease's lookup (cached or one query) and the caller's role from its token
 *   schema       the lease's schema cache (cached, or introspected now)
 *   plan         parse and plan, or `desc="cached"` when the request's shape was compiled before
 *   transaction  the round trip as the lease (SET ROLE, the statement, commit or rollback)
 *   response     shaping the result into status, headers and body
 *
 * Off, no object is made: each step's `timing?.mark()` is one property read of undefined
 * (bench:rest measures on against off in one run; docs/metrics.md has the figures).
 */
export type TimingPhase = 'lease' | 'schema' | 'plan' | 'transaction' | 'response' | 'document';

export class ServerTiming {
  private last = performance.now();
  private readonly phases: { phase: TimingPhase; ms: number; description?: string }[] = [];

  /** Ends `phase` now: its time is what went by since the previous mark (or the request's start). */
  mark(phase: TimingPhase, description?: string): void {
    const now = performance.now();
    this.phases.push(description === undefined ? { phase, ms: now - this.last } : { phase, ms: now - this.last, description });
    this.last = now;
  }

  /** The header's value: `lease;dur=0.05, schema;dur=0.01, plan;dur=0.02;desc="cached", …` (ms). */
  header(): string {
    return this.phases.map((entry) => `${entry.phase};dur=${entry.ms.toFixed(3)}${entry.description === undefined ? '' : `;desc="${entry.description}"`}`).join(', ');
  }
}
