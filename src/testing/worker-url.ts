/**
 * Which lease is this test worker's: the global setups (vitest and jest) put one URL per worker
 * in PGLEASE_DATABASE_URLS, and each runner numbers its workers from 1 (VITEST_POOL_ID,
 * JEST_WORKER_ID). jest-setup.cts repeats these lines in CommonJS, for jest without ESM support.
 */
export function workerDatabaseUrl(env: Record<string, string | undefined> = process.env): string | undefined {
  const urls = JSON.parse(env.PGLEASE_DATABASE_URLS ?? '[]') as string[];
  if (urls.length === 0) return undefined;
  const worker = Number(env.VITEST_POOL_ID ?? env.JEST_WORKER_ID ?? '1');
  return urls[((Number.isInteger(worker) && worker > 0 ? worker : 1) - 1) % urls.length];
}
