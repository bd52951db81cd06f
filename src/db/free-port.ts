/**
 * A free TCP port for a server that binds it a moment later (an embedded Postgres, a test's).
 *
 * The port the OS hands out for `listen(0)` comes from the ephemeral range (Linux: 32768-60999,
 * /proc/sys/net/ipv4/ip_local_port_range), the range every outgoing connection's local port is
 * taken from too. Such a connection blocks a later bind of its port, SO_REUSEADDR or not: a test
 * suite that opens thousands of connections took a port this way in the seconds between choosing
 * it and the postmaster's bind after initdb, and Postgres exited with "could not create any TCP/IP
 * sockets" (CI, session 14). A port below that range is never given to an outgoing connection, so
 * only a server binding it on purpose can take it meanwhile.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Where chosen ports start: below it are the well-known and commonly configured ones. */
const LOWEST = 10_000;
const ATTEMPTS = 50;

/** The ephemeral port range, or undefined where the OS does not tell. */
function ephemeralRange(): { low: number; high: number } | undefined {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return Number.isInteger(low) && Number.isInteger(high) ? { low: low!, high: high! } : undefined;
  } catch {
    return undefined;
  }
}

/** Resolves the port `host:port` was bound to and released, or undefined where it is taken. */
function tryBind(host: string, port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen({ port, host, exclusive: true }, () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : undefined));
    });
  });
}

/**
 * A port that was free on `host` a moment ago: outside the ephemeral range where the OS tells what
 * it is and leaves room below it, else whatever the OS picks.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const range = ephemeralRange();
  // ports between LOWEST and the range's start, or above its end if the range starts too low
  const [from, to] = range === undefined ? [0, 0] : range.low - LOWEST >= 1_000 ? [LOWEST, range.low - 1] : [range.high + 1, 65_535];
  if (to - from >= 1_000) {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const port = await tryBind(host, from + Math.floor(Math.random() * (to - from + 1)));
      if (port !== undefined) return port;
    }
  }
  const port = await tryBind(host, 0);
  if (port === undefined) throw new Error(`no free TCP port on ${host}`);
  return port;
}
