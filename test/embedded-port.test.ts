/**
 * The embedded Postgres is only taken for started when the server answering on its port is its own:
 * another server there that lets anyone in (trust authentication, common on developer machines)
 * once passed for it while pglease's own had failed to bind the port, and pglease made its lease
 * database, its roles and its leases on that stranger's server.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
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
  await expect(startEmbedded({ dataDir: ownDir, port, listen: 'localhost' })).rejects.toThrow(/another Postgres server answers on this port|exited during start/);
}, 60_000);
