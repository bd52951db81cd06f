import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // one embedded Postgres for the whole run; each test file gets its own lease database on it
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // 2-core machines: a few files at a time keep Postgres and Node from starving each other
    maxWorkers: 3,
    pool: 'forks',
  },
});
