/**
 * The eviction of the REST API's bounded caches (schema caches, compiled reads, each connection's
 * prepared statements): a hit stamps its entry with a counter, and only an insertion past the bound
 * scans for the smallest stamp. Keeping a Map in use order instead (delete and set again on every
 * hit) is two hash operations per hit and a Map that keeps growing its table of deleted entries
 * until it compacts; a request made three such hits, on three different Maps per lease once
 * traffic spreads over leases (issue 20), while insertions past a bound happen only on a miss
 * (a schema load, a compile, a Parse), which costs far more than the scan.
 */

/** The key of the entry used longest ago (the smallest `used`). */
export function leastRecentlyUsed<K>(entries: Map<K, { used: number }>): K {
  let oldest: K | undefined;
  let oldestUse = Infinity;
  for (const [key, entry] of entries) {
    if (entry.used < oldestUse) {
      oldest = key;
      oldestUse = entry.used;
    }
  }
  return oldest as K;
}
