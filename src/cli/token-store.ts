/**
 * The lease tokens this CLI has received, so that `pglease release ID` works later from any shell.
 * Kept in $PGLEASE_HOME/leases.json (default ~/.config/pglease, or $XDG_CONFIG_HOME/pglease),
 * readable by the user only, written atomically (temp file, then rename) under a lock file, so that
 * CLIs running at once (parallel CI jobs, `make -j`) never drop each other's records. Leases that ended stay
 * for a while (see KEEP_ENDED_MS), so their ids still resolve and `pglease ls --all` shows them.
 */
import { chmod, mkdir, open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from './format.js';
import { userConfigDirectory } from '../user-config-dir.js';

export interface RememberedLease {
  id: string;
  /** The pglease base URL the lease came from. */
  server: string;
  token: string;
  name: string | null;
  created_at: string;
  expires_at: string | null;
  /** When the lease ended, once this CLI knows (it released it, or the server said so); absent before. */
  ended_at?: string;
}

interface StoreFile {
  version: 1;
  leases: RememberedLease[];
}

/**
 * Records of ended leases (released, or past their expiry) are dropped on the next write once they
 * ended this long ago, or when newer ended ones fill MAX_ENDED_RECORDS. Their tokens are kept until
 * then: they no longer reach any data (the lease's roles are dropped), but the server still answers
 * them for the ended lease (GET says "released" or "expired", DELETE "it is released") until
 * PGLEASE_HISTORY_RETENTION prunes it, 7 days by default; after that they only get 404s.
 */
export const KEEP_ENDED_DAYS = 7;
const KEEP_ENDED_MS = KEEP_ENDED_DAYS * 86_400_000;
// a day of scratch leases; `ls --all` asks the server about each record, so not many more
const MAX_ENDED_RECORDS = 50;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function storeDirectory(env: Record<string, string | undefined>): string {
  return userConfigDirectory(env);
}

/** When the lease ended, as far as this record tells; undefined while it may be live. */
function endedTime(lease: RememberedLease, now: number): number | undefined {
  if (lease.ended_at !== undefined) return Date.parse(lease.ended_at);
  const expires = lease.expires_at === null ? undefined : Date.parse(lease.expires_at);
  return expires !== undefined && expires <= now ? expires : undefined;
}

/** The records of live leases, and those of the latest ended ones within KEEP_ENDED_MS. */
function bounded(leases: RememberedLease[], now: number): RememberedLease[] {
  const ended = leases
    .map((lease) => ({ lease, endedAt: endedTime(lease, now) }))
    .filter((entry): entry is { lease: RememberedLease; endedAt: number } => entry.endedAt !== undefined);
  const keptEnded = new Set(
    ended
      .filter((entry) => entry.endedAt > now - KEEP_ENDED_MS)
      .sort((a, b) => b.endedAt - a.endedAt)
      .slice(0, MAX_ENDED_RECORDS)
      .map((entry) => entry.lease),
  );
  return leases.filter((lease) => keptEnded.has(lease) || endedTime(lease, now) === undefined);
}

function isRecord(value: unknown): value is RememberedLease {
  const lease = value as Partial<RememberedLease> | null;
  return typeof lease === 'object' && lease !== null && typeof lease.id === 'string' && typeof lease.server === 'string' && typeof lease.token === 'string';
}

/** How long a CLI waits for another's lock, and the age at which a lock is taken as left by a killed CLI. */
const LOCK_WAIT_MS = 10_000;
const LOCK_STALE_MS = 10_000;

export class TokenStore {
  readonly file: string;

  constructor(env: Record<string, string | undefined>) {
    this.file = path.join(storeDirectory(env), 'leases.json');
  }

  /**
   * Fails now if the store could not take a record: before a lease is made, whose token would
   * otherwise be lost.
   */
  async check(): Promise<void> {
    await this.ensureDirectory();
    await this.read();
  }

  private async ensureDirectory(): Promise<void> {
    try {
      await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    } catch (error) {
      throw new UsageError(`cannot keep lease tokens in ${path.dirname(this.file)}: ${(error as Error).message} (set PGLEASE_HOME to a directory of yours)`);
    }
  }

  private async read(): Promise<StoreFile> {
    try {
      const parsed = JSON.parse(await readFile(this.file, 'utf8')) as Partial<StoreFile> | null;
      const leases = Array.isArray(parsed?.leases) ? parsed.leases : [];
      // records edited by hand or cut short: only whole ones count
      return { version: 1, leases: leases.filter(isRecord) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, leases: [] };
      throw new UsageError(`cannot read ${this.file}: ${(error as Error).message} (move it away to start a new one; its lease tokens are then forgotten)`);
    }
  }

  private async write(store: StoreFile): Promise<void> {
    store.leases = bounded(store.leases, Date.now());
    await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const temporary = `${this.file}.${process.pid}.tmp`;
    await writeFile(temporary, JSON.stringify(store, null, 2) + '\n', { mode: 0o600 });
    await chmod(temporary, 0o600);
    await rename(temporary, this.file);
  }

  /**
   * Runs a read-modify-write of the file holding its lock (`leases.json.lock`, created exclusively):
   * without it, two CLIs that read the same file each write back their own change only.
   */
  private async locked(change: (store: StoreFile) => boolean): Promise<void> {
    await this.ensureDirectory();
    const lock = `${this.file}.lock`;
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      try {
        await (await open(lock, 'wx', 0o600)).close();
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw new UsageError(`cannot lock ${this.file}: ${(error as Error).message}`);
      }
      // a lock older than any read-modify-write takes was left by a CLI that was killed
      const age = await stat(lock).then((info) => Date.now() - info.mtimeMs, () => 0);
      if (age > LOCK_STALE_MS && (await unlink(lock).then(() => true, () => false))) continue;
      if (Date.now() > deadline) throw new UsageError(`${lock} has been held for ${LOCK_WAIT_MS / 1000} s; if no other pglease command runs, delete it`);
      else await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
    }
    try {
      const store = await this.read();
      if (change(store)) await this.write(store);
    } finally {
      await unlink(lock).catch(() => undefined);
    }
  }

  async remember(lease: RememberedLease): Promise<void> {
    await this.locked((store) => {
      store.leases = store.leases.filter((entry) => entry.id !== lease.id);
      store.leases.push(lease);
      return true;
    });
  }

  /** Drops the records of leases the server no longer knows. */
  async forget(ids: string[]): Promise<void> {
    await this.locked((store) => {
      const before = store.leases.length;
      store.leases = store.leases.filter((entry) => !ids.includes(entry.id));
      return store.leases.length !== before;
    });
  }

  /** Notes when leases ended; a record that already has an end keeps it. */
  async markEnded(ended: { id: string; ended_at: string }[]): Promise<void> {
    await this.locked((store) => {
      let changed = false;
      for (const { id, ended_at } of ended) {
        const entry = store.leases.find((lease) => lease.id === id);
        if (entry && entry.ended_at === undefined) {
          entry.ended_at = ended_at;
          changed = true;
        }
      }
      return changed;
    });
  }

  async update(id: string, change: Partial<Pick<RememberedLease, 'expires_at'>>): Promise<void> {
    await this.locked((store) => {
      const entry = store.leases.find((lease) => lease.id === id);
      if (!entry) return false;
      Object.assign(entry, change);
      return true;
    });
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
    if (matches.length > 1) throw new UsageError(`"${idOrPrefix}" matches ${matches.length} leases (${matches.map((lease) => lease.id.slice(0, 13)).join(', ')}): give more of the id`);
    throw new UsageError(
      `no lease made by this CLI on ${server} starts with "${idOrPrefix}" (it forgets a lease ${KEEP_ENDED_DAYS} days after it ended): give the full id`,
    );
  }
}
