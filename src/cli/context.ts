/**
 * What every CLI command needs: its streams, the server it talks to, the tokens it may use.
 */
import type { Command } from 'commander';
import { DEFAULT_SERVER, PgleaseClient } from '../testing/client.js';
import { UsageError, type Colors } from './format.js';
import { colorsFor, type CliIo } from './io.js';
import { TokenStore, type RememberedLease } from './token-store.js';
import { caDirectory } from '../tls/client-ca.js';

/** What may be a lease id's prefix (TokenStore.resolve says more when it is not). */
const PREFIX = /^[0-9a-f-]{4,}$/i;
/** A prefix lookup on the server reads at most this many pages of 1,000 leases. */
const MAX_LISTING_PAGES = 20;

export class CliContext {
  readonly store: TokenStore;
  /** Colours for stdout and stderr (each enabled only when that stream is a terminal). */
  readonly out: Colors;
  readonly err: Colors;

  constructor(readonly io: CliIo) {
    this.store = new TokenStore(io.env);
    this.out = colorsFor(io, io.stdout);
    this.err = colorsFor(io, io.stderr);
  }

  /** --server, else $PGLEASE_URL, else http://localhost:8080; without a trailing slash. */
  server(command: Command): string {
    const option = (command.optsWithGlobals() as { server?: string }).server;
    // an empty variable counts as unset, as the token variables do
    const server = (option ?? (this.io.env.PGLEASE_URL || undefined) ?? DEFAULT_SERVER).replace(/\/+$/, '');
    if (!/^https?:\/\/[^/]+/.test(server)) throw new UsageError(`"${server}" is not an http(s) URL of a pglease server (--server or PGLEASE_URL)`);
    return server;
  }

  get adminToken(): string | undefined {
    return this.io.env.PGLEASE_ADMIN_TOKEN || undefined;
  }

  client(command: Command, token?: string): PgleaseClient {
    return new PgleaseClient({ server: this.server(command), token, caDirectory: caDirectory(this.io.env) });
  }

  /**
   * A lease's full id and its own token: the one this CLI remembered for it, else $PGLEASE_TOKEN.
   * With the admin token, a prefix of a lease this CLI did not make (one `pglease ls` printed) is
   * looked up on the server.
   */
  private async ownToken(command: Command, idOrPrefix: string): Promise<{ server: string; id: string; token: string | undefined; remembered: RememberedLease | undefined }> {
    const server = this.server(command);
    let resolved: { id: string; remembered: RememberedLease | undefined };
    try {
      resolved = await this.store.resolve(server, idOrPrefix);
    } catch (error) {
      if (!(error instanceof UsageError) || !this.adminToken || !PREFIX.test(idOrPrefix)) throw error;
      resolved = { id: await this.resolveOnServer(server, idOrPrefix.toLowerCase()), remembered: undefined };
    }
    const { id, remembered } = resolved;
    return { server, id, token: remembered?.token ?? (this.io.env.PGLEASE_TOKEN || undefined), remembered };
  }

  /** The one lease on the server whose id starts with `prefix` (admin listing, every state). */
  private async resolveOnServer(server: string, prefix: string): Promise<string> {
    const admin = new PgleaseClient({ server, token: this.adminToken, caDirectory: caDirectory(this.io.env) });
    const matches: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_LISTING_PAGES; page++) {
      const { items, next } = await admin.listLeases({ limit: 1000, ...(cursor ? { cursor } : {}) });
      for (const lease of items) if (lease.id.startsWith(prefix)) matches.push(lease.id);
      if (next === null) break;
      cursor = next;
    }
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) throw new UsageError(`"${prefix}" matches ${matches.length} leases on ${server} (${matches.map((id) => id.slice(0, 12)).join(', ')}): give more of the id`);
    throw new UsageError(`no lease on ${server} has an id starting with "${prefix}"`);
  }

  private noTokenFor(id: string, remedy: string): UsageError {
    return new UsageError(`no token for lease ${id}: it was not created by this CLI (tokens are kept in ${this.store.file}). ${remedy}`);
  }

  /**
   * The token to act on a lease with: its own (see ownToken), else the admin token; the admin token
   * first when `adminFirst` (what only the admin may do, such as making a lease never expire).
   */
  async leaseAccess(command: Command, idOrPrefix: string, adminFirst = false): Promise<{ id: string; client: PgleaseClient; remembered: RememberedLease | undefined }> {
    const { server, id, token, remembered } = await this.ownToken(command, idOrPrefix);
    const access = adminFirst ? (this.adminToken ?? token) : (token ?? this.adminToken);
    if (!access) throw this.noTokenFor(id, 'Set PGLEASE_TOKEN to its token, or PGLEASE_ADMIN_TOKEN.');
    return { id, client: new PgleaseClient({ server, token: access, caDirectory: caDirectory(this.io.env) }), remembered };
  }

  /**
   * A client acting as the lease itself, for what only its own token can do: its private templates,
   * and leases seeded from them. The admin token is no stand-in: the server would act globally.
   */
  async asLease(command: Command, idOrPrefix: string): Promise<{ id: string; client: PgleaseClient }> {
    const { server, id, token } = await this.ownToken(command, idOrPrefix);
    if (!token) throw this.noTokenFor(id, 'Set PGLEASE_TOKEN to its token (the admin token does not act as a lease).');
    return { id, client: new PgleaseClient({ server, token, caDirectory: caDirectory(this.io.env) }) };
  }
}
