/**
 * A TCP port that was free a moment ago, outside the range of outgoing connections' local ports
 * (the suite opens thousands of them, and one can take a port between its choice and its bind).
 */
export { freePort } from '../../src/db/free-port.js';
