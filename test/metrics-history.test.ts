/**
 * The dashboard's traffic history (src/metrics/history.ts): p95 estimated from histogram buckets as
 * Prometheus's histogram_quantile does, and windows computed from the difference of cumulative
 * readings; the live-leases chart built backwards from the count now. Pure functions: no database.
 */
import { describe, expect, it } from 'vitest';
import { activityBetween, bucketQuantileMs, type ActivityTotals } from '../src/metrics/history.js';
import { catalogHistory } from '../src/web/dashboard/dashboard-data.js';

const BOUNDS = [0.001, 0.01, 0.1, 1];

describe('bucketQuantileMs', () => {
  it('interpolates within the bucket that holds the rank', () => {
    // 100 requests: 50 under 1 ms, 50 between 1 and 10 ms; p95 is the 95th: 45/50 of the way into the second bucket
    expect(bucketQuantileMs(BOUNDS, [50, 50, 0, 0, 0], 0.95)).toBeCloseTo(1 + 9 * (45 / 50), 6);
    expect(bucketQuantileMs(BOUNDS, [100, 0, 0, 0, 0], 0.5)).toBeCloseTo(0.5, 6);
  });

  it('says null without requests, and the last bound for requests past it', () => {
    expect(bucketQuantileMs(BOUNDS, [0, 0, 0, 0, 0], 0.95)).toBeNull();
    expect(bucketQuantileMs(BOUNDS, [0, 0, 0, 0, 10], 0.95)).toBe(1000);
  });
});

describe('activityBetween', () => {
  it('counts what happened between two cumulative readings', () => {
    const from: ActivityTotals = { restRequests: 100, restBuckets: [10, 60, 90, 100, 100], createsByOutcome: { '201': 5, '429': 1 } };
    const to: ActivityTotals = { restRequests: 300, restBuckets: [10, 260, 290, 300, 300], createsByOutcome: { '201': 9, '429': 4, '4xx': 2 } };
    const point = activityBetween(BOUNDS, from, to, 0, 10_000);
    expect(point.restRequests).toBe(200);
    expect(point.restPerSecond).toBe(20);
    expect(point.creates).toBe(4);
    expect(point.refused).toBe(3);
    // the 200 new requests: 200 in (1 ms, 10 ms]; p95 is 190/200 of the way through it
    expect(point.restP95Ms).toBeCloseTo(1 + 9 * (190 / 200), 6);
  });
});

describe('catalogHistory (the dashboard’s live-leases chart)', () => {
  it('walks back from the live count now: a bucket starts with its creates taken off and its ends put back', () => {
    const now = Date.parse('2026-12-06T12:07:30Z');
    const bucket = (iso: string) => Date.parse(iso) / 1000;
    const points = catalogHistory(
      now,
      5,
      [{ at: bucket('2026-12-06T12:05:00Z'), n: 2 }, { at: bucket('2026-12-06T12:00:00Z'), n: 4 }],
      [{ at: bucket('2026-12-06T12:05:00Z'), n: 1 }],
    );
    expect(points).toHaveLength(72);
    expect(points.at(-1)).toEqual({ at: '2026-12-06T12:05:00.000Z', creates: 2, ended: 1, live: 5 });
    // at the end of 12:00-12:05 there were 5 - 2 + 1
    expect(points.at(-2)).toEqual({ at: '2026-12-06T12:00:00.000Z', creates: 4, ended: 0, live: 4 });
    expect(points.at(-3)).toEqual({ at: '2026-12-06T11:55:00.000Z', creates: 0, ended: 0, live: 0 });
  });
});
