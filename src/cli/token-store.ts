/**
 * The lease tokens this CLI has received, so that `pglease release ID` works later from any shell.
 * Kept in $PGLEASE_HOME/leases.json (default ~/.config/pglease, or $XDG_CONFIG_HOME/pglease),
 * readable by the user only, written atomically (temp file, then rename).
 */
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { UsageError } from './format.js';

export interface RememberedLease {
  id: string;
  /** The pglease base URL the lease came from. */
  server: string;
  token: string;
  name: string | null;
  created_at: string;
  expires_at: string | null;
}

interface StoreFile {
  version: 1;
  leases: RememberedLease[];
}

/** Entries whose lease expired this long ago are dropped on the next write. */
const KEEP_EXPIRED_MS = 24 * 3600 * 1000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function storeDirectory(env: Record<string, string | undefined>): string {
  if (env.PGLEASE_HOME) return env.PGLEASE_HOME;
  const config = env.XDG_CONFIG_HOME || path.join(env.HOME || homedir(), '.config');
  return path.join(config, 'pglease');
}

export class TokenStore {
  readonly file: string;

  constructor(env: Record<string, string | undefined>) {
    this.file = path.join(storeDirectory(env), 'leases.json');
  }

  private async read(): Promise<StoreFile> {
    try {
      const parsed = JSON.parse(await readFile(this.file, 'utf8')) as Partial<StoreFile>;
      return { version: 1, leases: Array.isArray(parsed.leases) ? parsed.leases : [] };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, leases: [] };
      throw new UsageError(`cannot read ${this.file}: ${(error as Error).message}`);
    }
  }

  private async write(store: StoreFile): Promise<void> {
    const now = Date.now();
    store.leases = store.leases.filter((lease) => lease.expires_at === null || Date.parse(lease.expires_at) > now - KEEP_EXPIRED_MS);
    await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const temporary = `${this.file}.${process.pid}.tmp`;
    await writeFile(temporary, JSON.stringify(store, null, 2) + '\n', { mode: 0o600 });
    await chmod(temporary, 0o600);
    await rename(temporary, this.file);
  }

  async remember(lease: RememberedLease): Promise<void> {
    const store = await this.read();
    store.leases = store.leases.filter((entry) => entry.id !== lease.id);
    store.leases.push(lease);
    await this.write(store);
  }

  async forget(id: string): Promise<void> {
    const store = await this.read();
    const before = store.leases.length;
    store.leases = store.leases.filter((entry) => entry.id !== id);
    if (store.leases.length !== before) await this.write(store);
  }

  async update(id: string, change: Partial<Pick<RememberedLease, 'expires_at'>>): Promise<void> {
    const store = await this.read();
    const entry = store.leases.find((lease) => lease.id === id);
    if (!entry) return;
    Object.assign(entry, change);
    await this.write(store);
  }

  async list(server: string): Promise<RememberedLease[]> {
    return (await this.read()).leases.filter((lease) => lease.server === server);
  }

  /**
   * A lease by full id or by a unique prefix of a remembered one (as git does with commits).
   * Returns the full id and the remembered entry, if any.
   */
  async resolve(server: string, idOrPrefix: string): Promise<{ id: string; remembered: RememberedLease | undefined }> {
    const wanted = idOrPrefix.toLowerCase();
    const known = await this.list(server);
    if (UUID.test(wanted)) return { id: wanted, remembered: known.find((lease) => lease.id === wanted) };
    if (!/^[0-9a-f-]{4,}$/.test(wanted)) throw new UsageError(`"${idOrPrefix}" is not a lease id (a uuid, or at least 4 of its first characters)`);
    const matches = known.filter((lease) => lease.id.startsWith(wanted));
    if (matches.length === 1) return { id: matches[0]!.id, remembered: matches[0] };
    if (matches.length > 1) throw new UsageError(`"${idOrPrefix}" matches ${matches.length} leases (${matches.map((lease) => lease.id.slice(0, 8)).join(', ')}): give more of the id`);
    throw new UsageError(`no lease made by this CLI on ${server} starts with "${idOrPrefix}": give the full id`);
  }
}
