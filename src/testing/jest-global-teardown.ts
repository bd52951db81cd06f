/** jest `globalTeardown` entry (see ./jest.ts). */
export { jestGlobalTeardown as default } from './jest.js';
