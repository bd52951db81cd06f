/**
 * Figures the benchmarks summarise with: the median of a list (the mean of the middle two for an
 * even count). Values that are not numbers (a ratio to a missing step) are left out; none left: NaN.
 */
export function median(values: number[]): number {
  const sorted = values.filter((value) => !Number.isNaN(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
