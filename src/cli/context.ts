/**
 * What every CLI command needs: its streams, the server it talks to, the tokens it may use.
 */
import type { Command } from 'commander';
import { DEFAULT_SERVER, PgleaseClient } from '../testing/client.js';
import { UsageError, type Colors } from './format.js';
import { colorsFor, type CliIo } from './io.js';
import { TokenStore, type RememberedLease } from './token-store.js';

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
    const server = (option ?? this.io.env.PGLEASE_URL ?? DEFAULT_SERVER).replace(/\/+$/, '');
    if (!/^https?:\/\/[^/]+/.test(server)) throw new UsageError(`"${server}" is not an http(s) URL of a pglease server (--server or PGLEASE_URL)`);
    return server;
  }

  get adminToken(): string | undefined {
    return this.io.env.PGLEASE_ADMIN_TOKEN || undefined;
  }

  client(command: Command, token?: string): PgleaseClient {
    return new PgleaseClient({ server: this.server(command), token });
  }

  /** A lease's full id and its own token: the one this CLI remembered for it, else $PGLEASE_TOKEN. */
  private async ownToken(command: Command, idOrPrefix: string): Promise<{ server: string; id: string; token: string | undefined; remembered: RememberedLease | undefined }> {
    const server = this.server(command);
    const { id, remembered } = await this.store.resolve(server, idOrPrefix);
    return { server, id, token: remembered?.token ?? (this.io.env.PGLEASE_TOKEN || undefined), remembered };
  }

  private noTokenFor(id: string, remedy: string): UsageError {
    return new UsageError(`no token for lease ${id}: it was not created by this CLI (tokens are kept in ${this.store.file}). ${remedy}`);
  }

  /** The token to act on a lease with: its own (see ownToken), else the admin token. */
  async leaseAccess(command: Command, idOrPrefix: string): Promise<{ id: string; client: PgleaseClient; remembered: RememberedLease | undefined }> {
    const { server, id, token, remembered } = await this.ownToken(command, idOrPrefix);
    const access = token ?? this.adminToken;
    if (!access) throw this.noTokenFor(id, 'Set PGLEASE_TOKEN to its token, or PGLEASE_ADMIN_TOKEN.');
    return { id, client: new PgleaseClient({ server, token: access }), remembered };
  }

  /**
   * A client acting as the lease itself, for what only its own token can do: its private templates,
   * and leases seeded from them. The admin token is no stand-in: the server would act globally.
   */
  async asLease(command: Command, idOrPrefix: string): Promise<{ id: string; client: PgleaseClient }> {
    const { server, id, token } = await this.ownToken(command, idOrPrefix);
    if (!token) throw this.noTokenFor(id, 'Set PGLEASE_TOKEN to its token (the admin token does not act as a lease).');
    return { id, client: new PgleaseClient({ server, token }) };
  }
}
