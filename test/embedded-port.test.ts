/**
 * The embedded Postgres is only taken for started when the server answering on its port is its own:
 * another server there that lets anyone in (trust authentication, common on developer machines)
 * once passed for it while pglease's own had failed to bind the port, and pglease made its lease
 * database, its roles and its leases on that stranger's server.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { startEmbedded, type EmbeddedServer } from '../src/db/embedded.js';
import { freePort } from './support/free-port.js';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

it('refuses a port where another Postgres, one that trusts everyone, answers', async () => {
  const port = await freePort();
  const strangerDir = await mkdtemp(path.join(tmpdir(), 'pglease-stranger-'));
  let stranger: EmbeddedServer | undefined;
  cleanups.push(async () => {
    await stranger?.stop();
    await rm(strangerDir, { recursive: true, force: true });
  });
  stranger = await startEmbedded({ dataDir: strangerDir, port, listen: 'localhost' });
  // the stranger lets anyone in, with any password
  await writeFile(path.join(strangerDir, 'pg', 'pg_hba.conf'), 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n');
  const admin = new pg.Client({ connectionString: stranger.url('postgres') });
  await admin.connect();
  await admin.query('SELECT pg_reload_conf()');
  await admin.end();

  const ownDir = await mkdtemp(path.join(tmpdir(), 'pglease-own-'));
  cleanups.push(() => rm(ownDir, { recursive: true, force: true }));
  await expect(startEmbedded({ dataDir: ownDir, port, listen: 'localhost' })).rejects.toThrow(/another Postgres server answers on this port|the port is in use|exited during start/);
}, 120_000);

/**
 * A port held the way a busy test suite holds one: as the local port of an outgoing connection,
 * which the OS takes from the same range as listen(0)'s ports and which blocks a later bind.
 */
async function portOfAnOutgoingConnection(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = createServer((socket) => socket.on('error', () => undefined));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || !address) throw new Error('no address');
  const client: Socket = await new Promise((resolve, reject) => {
    const socket = connect(address.port, '127.0.0.1', () => resolve(socket)).once('error', reject);
  });
  return {
    port: client.localPort!,
    close: async () => {
      client.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('a port taken between its choice and the postmaster’s bind', () => {
  it('is named on the first line of the error when the port was given', async () => {
    const held = await portOfAnOutgoingConnection();
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-taken-'));
    cleanups.push(async () => {
      await held.close();
      await rm(dataDir, { recursive: true, force: true });
    });
    const error: Error = await startEmbedded({ dataDir, port: held.port, listen: 'localhost' }).then(
      async (server) => {
        await server.stop();
        throw new Error(`started on port ${held.port}, which a connection holds`);
      },
      (failure: Error) => failure,
    );
    // the test helpers' one-line report shows this line only (src/testing/worker-leases.ts)
    const [first] = error.message.split('\n');
    expect(first).toMatch(new RegExp(`port ${held.port}.*in use|could not create any TCP/IP sockets`));
    expect(error.message).toMatch(/PGLEASE_PG_PORT/);
  }, 120_000);

  it('is given up for another when pglease chose it (port 0), and the server answers there', async () => {
    const held = await portOfAnOutgoingConnection();
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pglease-retry-'));
    const events: string[] = [];
    const offered: number[] = [];
    let server: EmbeddedServer | undefined;
    cleanups.push(async () => {
      await server?.stop();
      await held.close();
      await rm(dataDir, { recursive: true, force: true });
    });
    server = await startEmbedded({
      dataDir,
      port: 0,
      listen: 'localhost',
      log: (message) => events.push(message),
      // the first port offered is taken; then the real chooser's
      choosePort: async (host) => {
        offered.push(offered.length === 0 ? held.port : await freePort(host));
        return offered.at(-1)!;
      },
    });
    expect(offered).toHaveLength(2);
    expect(server.port).toBe(offered[1]);
    expect(events).toContain(`port ${held.port} was taken before embedded Postgres bound it; starting it on port ${offered[1]}`);
    const client = new pg.Client({ connectionString: server.url('postgres') });
    await client.connect();
    expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    await client.end();
  }, 120_000);
});

it('chooses ports outside the range of outgoing connections\' local ports', async () => {
  const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  for (let i = 0; i < 20; i++) {
    const port = await freePort();
    expect(port < low! || port > high!, `port ${port} is in ${low}-${high}`).toBe(true);
  }
});
