/**
 * The two kinds of lease (issue 14): a schema and its roles in the shared lease database (the
 * default and the cheapest: a few catalog rows), or a database of its own, `lease_<hex>`, cloned
 * from the lease template (src/db/lease-template.ts): about 6.6 MB of catalog on disk and
 * 100-150 ms to make, but the lease owns it, its public schema, and the trusted extensions it adds.
 * Its own module so that configuration and the CLI can name the kinds without loading the store.
 */
export type LeaseKind = 'schema' | 'database';
export const LEASE_KINDS: readonly LeaseKind[] = ['schema', 'database'];
