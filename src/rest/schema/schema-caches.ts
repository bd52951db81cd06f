/**
 * The schema caches of all leases: loaded lazily on a lease's first request, bounded in number
 * (least recently used dropped first), dropped when the lease's schema changes (DDL notification),
 * and reloaded on demand when a request names something the cache does not have. Loads of one
 * lease are shared by its concurrent requests and never wait for another lease's.
 *
 * A request stamps its entry with a use counter; only a load past the bound looks for the least
 * recently used (../least-recently-used.ts).
 */
import { leastRecentlyUsed } from '../least-recently-used.js';
import type { SchemaCache } from './types.js';

export type SchemaLoader = (schema: string, roles: string[]) => Promise<SchemaCache>;

interface Entry {
  /** The use counter's value at the entry's last use. */
  used: number;
  cache?: SchemaCache;
  loading?: Promise<SchemaCache>;
  /** Date.now() when the running load started. */
  loadingSince: number;
}

export class SchemaCaches {
  private readonly entries = new Map<string, Entry>();
  private uses = 0;

  constructor(
    private readonly loader: SchemaLoader,
    private readonly maxEntries = 500,
  ) {}

  get size(): number {
    return this.entries.size;
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
    this.entries.delete(schema);
  }

  /** Forgets every schema whose key passes `test` (a database lease's schemas, after DDL in its database). */
  invalidateWhere(test: (key: string) => boolean): void {
    for (const key of [...this.entries.keys()]) if (test(key)) this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }

  private load(schema: string, roles: string[]): Promise<SchemaCache> {
    const entry: Entry = this.entries.get(schema) ?? { used: 0, loadingSince: 0 };
    entry.used = ++this.uses;
    const startedAt = Date.now();
    const loading = this.loader(schema, roles).then(
      (cache) => {
        // keep it only if nobody invalidated or reloaded the entry meanwhile
        if (this.entries.get(schema) === entry && entry.loading === loading) {
          entry.cache = cache;
          entry.loading = undefined;
        }
        return cache;
      },
      (error: unknown) => {
        if (entry.loading === loading) entry.loading = undefined;
        if (this.entries.get(schema) === entry && !entry.cache) this.entries.delete(schema);
        throw error;
      },
    );
    entry.loading = loading;
    entry.loadingSince = startedAt;
    this.entries.set(schema, entry);
    while (this.entries.size > this.maxEntries) this.entries.delete(leastRecentlyUsed(this.entries));
    return loading;
  }
}

