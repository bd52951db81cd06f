/**
 * The globalSetup file that pglease() (./vitest.ts) adds to a vitest config; its options arrive
 * through the config's `provide: { pgleaseOptions }`.
 */
import { pgleaseGlobalSetup } from './vitest.js';

export default pgleaseGlobalSetup();
