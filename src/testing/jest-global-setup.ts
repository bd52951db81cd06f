/** jest `globalSetup` entry (see ./jest.ts). */
export { jestGlobalSetup as default } from './jest.js';
