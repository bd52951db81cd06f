/**
 * jest `setupFiles` entry: points DATABASE_URL at this worker's own lease (see ./jest.ts).
 * CommonJS, so that jest loads it without ESM support; the rule is workerDatabaseUrl's
 * (./worker-url.ts), repeated here because CommonJS cannot import that ES module.
 */
const urls = JSON.parse(process.env.PGLEASE_DATABASE_URLS ?? '[]') as string[];
const worker = Number(process.env.JEST_WORKER_ID ?? '1');
if (urls.length > 0) process.env.DATABASE_URL = urls[((Number.isInteger(worker) && worker > 0 ? worker : 1) - 1) % urls.length];
