/**
 * What this process did over the last hours, for the dashboard's REST and create charts: every
 * SAMPLE_SECONDS the cumulative counts of src/metrics/metrics.ts are read (its REST tallies, and
 * prom-client's get() for creates; off the hot path) and the difference from the previous reading
 * is kept as one point.
 *
 * Guarantees:
 * - **Nothing on the hot path.** Requests only add to the metrics' counts as before; a sample
 *   reads them (about 60 numbers) every 10 s.
 * - **Bounded memory.** At most MAX_POINTS points (6 h at 10 s: 2,160 points of six numbers).
 * - **Per process.** Like the counters it reads: a replica's dashboard shows that replica's REST
 *   traffic. Catalog figures (live leases, creates of every replica) come from the database
 *   instead (src/web/dashboard/dashboard-data.ts).
 *
 * p95 is estimated from the histogram's buckets (linear within the bucket, as Prometheus's
 * histogram_quantile does), so it is as coarse as LATENCY_BUCKETS.
 */

/** Cumulative figures of this process at one moment. */
export interface ActivityTotals {
  restRequests: number;
  /** Cumulative REST latency bucket counts, one per bucket bound (seconds), plus +Inf last. */
  restBuckets: number[];
  createsByOutcome: Record<string, number>;
}

/** What happened between two samples. */
export interface ActivityPoint {
  /** The end of the window (ms since the epoch). */
  at: number;
  seconds: number;
  restRequests: number;
  restPerSecond: number;
  /** null: no request in the window. */
  restP95Ms: number | null;
  creates: number;
  refused: number;
}

export const SAMPLE_SECONDS = 10;
const MAX_POINTS = (6 * 3600) / SAMPLE_SECONDS;

/** The q-quantile of the requests counted in `counts` (per bucket, not cumulative), in ms. */
export function bucketQuantileMs(bounds: number[], counts: number[], q: number): number | null {
  const total = counts.reduce((sum, count) => sum + count, 0);
  if (total === 0) return null;
  const rank = q * total;
  let below = 0;
  for (let index = 0; index < counts.length; index++) {
    const count = counts[index]!;
    if (below + count >= rank && count > 0) {
      const lower = index === 0 ? 0 : bounds[index - 1]!;
      // past the last bound: the last bound is all that is known
      if (index >= bounds.length) return bounds[bounds.length - 1]! * 1000;
      const upper = bounds[index]!;
      return (lower + ((upper - lower) * (rank - below)) / count) * 1000;
    }
    below += count;
  }
  return bounds[bounds.length - 1]! * 1000;
}

export function activityBetween(bounds: number[], from: ActivityTotals, to: ActivityTotals, fromAt: number, toAt: number): ActivityPoint {
  const seconds = Math.max((toAt - fromAt) / 1000, 0.001);
  const perBucket: number[] = [];
  let previousFrom = 0;
  let previousTo = 0;
  for (let index = 0; index < to.restBuckets.length; index++) {
    const cumulativeTo = to.restBuckets[index]!;
    const cumulativeFrom = from.restBuckets[index] ?? 0;
    perBucket.push(Math.max(0, cumulativeTo - previousTo - (cumulativeFrom - previousFrom)));
    previousTo = cumulativeTo;
    previousFrom = cumulativeFrom;
  }
  const restRequests = Math.max(0, to.restRequests - from.restRequests);
  const created = (to.createsByOutcome['201'] ?? 0) - (from.createsByOutcome['201'] ?? 0);
  const refused = (to.createsByOutcome['429'] ?? 0) - (from.createsByOutcome['429'] ?? 0);
  return {
    at: toAt,
    seconds,
    restRequests,
    restPerSecond: restRequests / seconds,
    restP95Ms: bucketQuantileMs(bounds, perBucket, 0.95),
    creates: Math.max(0, created),
    refused: Math.max(0, refused),
  };
}

export class ActivityHistory {
  /** Cumulative totals at each sample, oldest first: points are the differences of neighbours. */
  private readonly samples: { at: number; totals: ActivityTotals }[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly bounds: number[],
    private readonly readTotals: () => Promise<ActivityTotals>,
  ) {}

  start(): void {
    if (this.timer) return;
    // a failed reading leaves a gap in the charts, nothing else
    const sample = () => void this.sample().catch(() => undefined);
    sample();
    this.timer = setInterval(sample, SAMPLE_SECONDS * 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async sample(): Promise<void> {
    const at = Date.now();
    this.samples.push({ at, totals: await this.readTotals() });
    if (this.samples.length > MAX_POINTS + 1) this.samples.splice(0, this.samples.length - MAX_POINTS - 1);
  }

  /** The points of the last `seconds`, oldest first. */
  since(seconds: number, now = Date.now()): ActivityPoint[] {
    const points: ActivityPoint[] = [];
    for (let index = 1; index < this.samples.length; index++) {
      const from = this.samples[index - 1]!;
      const to = this.samples[index]!;
      if (to.at > now - seconds * 1000) points.push(activityBetween(this.bounds, from.totals, to.totals, from.at, to.at));
    }
    return points;
  }

  /**
   * The last `seconds` as one window up to now (the latest sample older than that, or the oldest
   * kept, to this moment's totals): a request made a second ago is already counted.
   */
  async recent(seconds: number): Promise<ActivityPoint> {
    const now = Date.now();
    const totals = await this.readTotals();
    let base = this.samples[0];
    for (const sample of this.samples) if (sample.at <= now - seconds * 1000) base = sample;
    if (!base) return activityBetween(this.bounds, totals, totals, now - 1000, now);
    return activityBetween(this.bounds, base.totals, totals, base.at, now);
  }
}
