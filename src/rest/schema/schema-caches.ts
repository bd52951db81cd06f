/**
 * The schema caches of all leases: loaded lazily on a lease's first request, bounded in memory
 * (least recently used dropped first), dropped when the lease's schema changes (DDL notification),
 * and reloaded on demand when a request names something the cache does not have. Loads of one
 * lease are shared by its concurrent requests and never wait for another lease's.
 *
 * Why a bound in bytes, not in caches: a one-table lease's cache is ~2 KB, a 50-table one's
 * ~220 KB. The bound was 500 caches, and 1,000 leases with a trickle of traffic each (a request
 * every 10 s, in turn: bench:rest-many --trickle) found their cache evicted at every request and
 * reloaded it (an introspection, 4-10 ms of Postgres's CPU): 2,758 requests answered in 40 s at
 * 100 a second asked, p50 711 ms; with room for all of them 3,671, p50 365 ms (one run each).
 * 64 MB hold ~30,000 one-table leases' caches or ~300 of 50 tables.
 *
 * A request stamps its entry with a use counter; only a load past the bound looks for the least
 * recently used (../least-recently-used.ts).
 */
import { leastRecentlyUsed } from '../least-recently-used.js';
import { SCHEMA_BASE_BYTES } from './load.js';
import type { SchemaCache } from './types.js';

/** PGLEASE_REST_SCHEMA_CACHE_MB's default: 64 MB. */
export const DEFAULT_SCHEMA_CACHE_BYTES = 64 * 1024 * 1024;

export type SchemaLoader = (schema: string, roles: string[]) => Promise<SchemaCache>;

interface Entry {
  /** The use counter's value at the entry's last use. */
  used: number;
  /** What it counts against the bound: its cache's estimatedBytes, SCHEMA_BASE_BYTES while it loads. */
  bytes: number;
  cache?: SchemaCache;
  loading?: Promise<SchemaCache>;
  /** Date.now() when the running load started. */
  loadingSince: number;
}

export class SchemaCaches {
  private readonly entries = new Map<string, Entry>();
  private uses = 0;
  /** The sum of the entries' bytes. */
  private bytes = 0;

  constructor(
    private readonly loader: SchemaLoader,
    private readonly maxBytes = DEFAULT_SCHEMA_CACHE_BYTES,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** The memory the caches are estimated to hold. */
  get estimatedBytes(): number {
    return this.bytes;
  }

  /** The cached schema, or a fresh load. `roles` are the roles whose privileges are reported. */
  get(schema: string, roles: string[]): Promise<SchemaCache> | SchemaCache {
    const entry = this.entries.get(schema);
    if (entry) {
      entry.used = ++this.uses;
      if (entry.cache) return entry.cache;
      if (entry.loading) return entry.loading;
    }
    return this.load(schema, roles);
  }

  /**
   * A schema introspected after `notBefore` (Date.now() of the request that met a miss), so
   * that an object created just before the request is seen. Shares a load that started late enough.
   */
  reload(schema: string, roles: string[], notBefore: number): Promise<SchemaCache> | SchemaCache {
    const entry = this.entries.get(schema);
    if (entry?.cache && entry.cache.loadedAt >= notBefore) return entry.cache;
    if (entry?.loading && entry.loadingSince >= notBefore) return entry.loading;
    return this.load(schema, roles);
  }

  /** Whether the schema is cached or being loaded. */
  has(schema: string): boolean {
    return this.entries.has(schema);
  }

  /** Forgets a schema (after DDL in it, or when its lease ends). */
  invalidate(schema: string): void {
    this.remove(schema);
  }

  /** Forgets every schema whose key passes `test` (a database lease's schemas, after DDL in its database). */
  invalidateWhere(test: (key: string) => boolean): void {
    for (const key of [...this.entries.keys()]) if (test(key)) this.remove(key);
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  private remove(schema: string): void {
    const entry = this.entries.get(schema);
    if (!entry) return;
    this.entries.delete(schema);
    this.bytes -= entry.bytes;
  }

  /** Drops the least recently used caches until the rest fit (the last one used always stays). */
  private evict(): void {
    while (this.bytes > this.maxBytes && this.entries.size > 1) this.remove(leastRecentlyUsed(this.entries));
  }

  private load(schema: string, roles: string[]): Promise<SchemaCache> {
    let entry = this.entries.get(schema);
    if (!entry) {
      entry = { used: 0, bytes: SCHEMA_BASE_BYTES, loadingSince: 0 };
      this.entries.set(schema, entry);
      this.bytes += entry.bytes;
    }
    const loaded = entry;
    loaded.used = ++this.uses;
    const startedAt = Date.now();
    const loading = this.loader(schema, roles).then(
      (cache) => {
        // keep it only if nobody invalidated or reloaded the entry meanwhile
        if (this.entries.get(schema) === loaded && loaded.loading === loading) {
          loaded.cache = cache;
          loaded.loading = undefined;
          this.bytes += cache.estimatedBytes - loaded.bytes;
          loaded.bytes = cache.estimatedBytes;
          this.evict();
        }
        return cache;
      },
      (error: unknown) => {
        if (loaded.loading === loading) loaded.loading = undefined;
        if (this.entries.get(schema) === loaded && !loaded.cache) this.remove(schema);
        throw error;
      },
    );
    loaded.loading = loading;
    loaded.loadingSince = startedAt;
    this.evict();
    return loading;
  }
}

