/**
 * The hosts this process leases from, and which one a lease or a create goes to.
 *
 * - The control host (DATABASE_URL's server, or the embedded one) is always there; with no other
 *   host registered a create goes straight to it, with not one statement more than before.
 * - Extra hosts come from the registry in the control database (src/hosts/host-registry.ts), read
 *   again every probe interval, so a host another process added is served here within one interval.
 * - A lease's host is in its id (src/hosts/lease-id.ts): no lookup on any request.
 * - Placement: one statement on the control database (pglease.place_lease) picks a host among those
 *   this process last found reachable, then the create is one transaction on that host. A create
 *   that fails there with a connection error marks the host uncertain and is tried once on another
 *   host; it left nothing behind on the first (its transaction never committed).
 * - Each interval every extra host is probed (its live leases, and its own observer's verdict):
 *   one failure makes it uncertain, two down; either way it gets no new leases. Its leases answer
 *   503 meanwhile. When it answers again it is available, and its own scheduler (whose pool
 *   reconnects) runs its reaper and cleanup-orphans there.
 * The registry holds host URLs with passwords; only the service role reads it (migration 0018).
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Config } from '../config.js';
import { openHost } from '../db/host.js';
import { HostRegistry, CONTROL_HOST_NAME, type HostEntry, type HostState, type NewHost, type HostChange } from './host-registry.js';
import { hostTagOfLease } from './lease-id.js';
import { openHostServices, type HostServices, type HostServicesOptions } from './host-services.js';

/** How long opening a host (connect, migrate, install) may take before it counts as unreachable. */
const OPEN_TIMEOUT_MS = 60_000;
/** How long a probe waits for its host's answer. */
const PROBE_TIMEOUT_MS = 3_000;

/** One host as this process knows it. */
interface HostSlot {
  entry: HostEntry;
  /** Open services; undefined until the host was first reached. */
  services: HostServices | undefined;
  /** Reachability as this process saw it last (the control host: always available). */
  state: HostState;
  failures: number;
  lastError: string | null;
  opening: Promise<void> | undefined;
  /** It can never serve as this registry's host (HostRefused): not tried again. */
  refused?: boolean;
}

/** A lease's host, or why it cannot serve: `unavailable` names the host and its state. */
export type LeaseHost =
  | { kind: 'ready'; services: HostServices; name: string }
  | { kind: 'unavailable'; name: string; state: HostState; since: Date; error: string | null }
  | { kind: 'unknown' };

export class NoHostWithRoom extends Error {
  constructor() {
    super('every lease host is full, draining or unreachable');
    this.name = 'NoHostWithRoom';
  }
}

/** A host given to add() that cannot serve as one; `field` names the input at fault. */
export class HostRefused extends Error {
  constructor(
    message: string,
    readonly field: string,
    readonly conflict = false,
  ) {
    super(message);
    this.name = 'HostRefused';
  }
}

export interface FleetOptions extends HostServicesOptions {
  config: Config;
  probeIntervalMs: number;
  warmPools: boolean;
}

/** Errors that say the host (not the statement) failed: the create may go elsewhere. */
export function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: string }).code ?? '';
  const message = error instanceof Error ? error.message : '';
  return (
    code.startsWith('08') ||
    code === '57P01' ||
    code === '57P02' ||
    code === '57P03' ||
    ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND'].includes(code) ||
    /Connection terminated|timeout exceeded when trying to connect|Query read timeout|connection.*(closed|ended)/i.test(message)
  );
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`${what}: no answer within ${ms / 1000} s`), { code: 'ETIMEDOUT' })), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The URL pglease connects to a registered host with: its TLS mode, and its CA saved to a file. */
export async function connectUrl(entry: Pick<HostEntry, 'url' | 'tls' | 'ca_pem'>): Promise<string> {
  const url = new URL(entry.url!);
  url.searchParams.set('sslmode', entry.tls);
  if (entry.tls === 'disable') {
    url.searchParams.delete('sslrootcert');
  } else if (entry.ca_pem) {
    const dir = path.join(tmpdir(), 'pglease-host-ca');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, createHash('sha256').update(entry.ca_pem).digest('hex').slice(0, 16) + '.pem');
    await writeFile(file, entry.ca_pem, { mode: 0o600 });
    url.searchParams.set('sslrootcert', file);
  } else if (entry.tls === 'verify-full' && !url.searchParams.has('sslrootcert')) {
    url.searchParams.set('sslrootcert', 'system');
  }
  return url.toString();
}

export class Fleet {
  private readonly slots = new Map<number, HostSlot>();
  private timer: NodeJS.Timeout | undefined;
  private probing: Promise<void> | undefined;
  /** Hosts add() is opening: a registry read meanwhile leaves them to it. */
  private readonly adding = new Set<number>();
  private closed = false;
  /** Counts this process's changes to the registry (add, update, remove): readers that keep a copy of it compare. */
  registryChanges = 0;

  private constructor(
    readonly control: HostServices,
    private readonly controlEntry: HostEntry,
    readonly registry: HostRegistry,
    private readonly options: FleetOptions,
  ) {
    this.slots.set(controlEntry.id, { entry: controlEntry, services: control, state: 'available', failures: 0, lastError: null, opening: undefined });
  }

  /** The fleet of `control`: its registry row made (once), every registered host opened (or tried). */
  static async open(control: HostServices, options: FleetOptions): Promise<Fleet> {
    const registry = new HostRegistry(control.host.pool);
    await markLeaseDatabase(control, 0);
    await registry.ensureControl();
    const controlEntry = (await registry.find(CONTROL_HOST_NAME))!;
    const fleet = new Fleet(control, controlEntry, registry, options);
    // PGLEASE_HOSTS: registered unless a host has the name; one that is down now is tried at each probe
    for (const host of options.config.staticHosts) {
      if (!(await registry.insert(host))) continue;
      options.log(`host ${host.name}: registered from PGLEASE_HOSTS`);
    }
    await fleet.refresh();
    return fleet;
  }

  /** Serves warm pools and probes from now on. */
  start(): void {
    for (const slot of this.slots.values()) slot.services?.start({ warmPools: this.options.warmPools });
    this.timer = setInterval(() => void this.probe(), this.options.probeIntervalMs);
    this.timer.unref();
  }

  /** Hosts with services open here, control first. */
  openServices(): HostServices[] {
    return [...this.slots.values()].flatMap((slot) => (slot.services ? [slot.services] : []));
  }

  /** Hosts other than `except` with services open here and not found down. */
  reachableServices(except: HostServices): HostServices[] {
    return [...this.slots.values()].flatMap((slot) => (slot.services && slot.services !== except && slot.state !== 'down' ? [slot.services] : []));
  }

  /** Whether there is any host but the control one (creates then need placement). */
  get spread(): boolean {
    return this.slots.size > 1;
  }

  /** The host of lease `id`: ready, unavailable (with its state), or unknown (no such host). */
  leaseHost(id: string): LeaseHost {
    const tag = hostTagOfLease(id);
    const slot = tag === 0 ? this.slots.get(this.controlEntry.id) : this.slots.get(tag);
    if (!slot || (slot.entry.url === null && tag !== 0)) return { kind: 'unknown' };
    if (slot.services && slot.state !== 'down') return { kind: 'ready', services: slot.services, name: slot.entry.name };
    return { kind: 'unavailable', name: slot.entry.name, state: slot.state === 'available' ? 'down' : slot.state, since: slot.entry.state_since, error: slot.lastError };
  }

  /**
   * Runs `create` on the host placement picks (the control host when it is the only one). A
   * connection failure there marks that host uncertain and the create runs once more elsewhere.
   */
  async place<T>(create: (services: HostServices) => Promise<T>): Promise<{ result: T; services: HostServices }> {
    if (!this.spread) return { result: await create(this.control), services: this.control };
    const excluded = new Set<number>();
    for (let attempt = 1; ; attempt++) {
      const usable = [...this.slots.values()].filter((slot) => slot.services && slot.state === 'available' && !excluded.has(slot.entry.id)).map((slot) => slot.entry.id);
      const id = usable.length === 0 ? undefined : await this.registry.place(usable);
      const slot = id === undefined ? undefined : this.slots.get(id);
      if (!slot?.services) throw new NoHostWithRoom();
      try {
        return { result: await create(slot.services), services: slot.services };
      } catch (error) {
        if (!isConnectionError(error) || slot.entry.url === null || attempt >= 2) throw error;
        excluded.add(slot.entry.id);
        this.failed(slot, error);
        void this.registry.recordProbe(slot.entry.id, slot.state, slot.lastError, undefined, undefined).catch(() => undefined);
      }
    }
  }

  /** Every registered host, read from the registry now, with its services when this process has them open. */
  async list(): Promise<{ entry: HostEntry; services: HostServices | undefined }[]> {
    const entries = await this.registry.list();
    return entries.map((entry) => {
      const slot = this.slots.get(entry.id);
      return { entry, services: slot && slot.state !== 'down' ? slot.services : undefined };
    });
  }

  /**
   * Registers a host: connects to it, installs pglease's lease database there (migrations, sql/,
   * the template of database leases), marks it as this registry's host, and serves it. The row is
   * written first (its id is the host's tag) and removed again if the host cannot be installed.
   */
  async add(host: NewHost): Promise<HostEntry> {
    const entry = await this.registry.insert(host);
    this.registryChanges++;
    if (!entry) throw new HostRefused(`a host named "${host.name}" is registered already`, 'name', true);
    this.adding.add(entry.id);
    try {
      // a registry read that came between the insert and this line has opened it already
      const opened = this.slots.get(entry.id);
      if (opened) {
        await opened.opening;
        if (!opened.services) throw new Error(opened.lastError ?? 'it could not be opened');
        return entry;
      }
      const services = await this.openEntry(entry);
      this.slots.set(entry.id, { entry, services, state: 'available', failures: 0, lastError: null, opening: undefined });
      if (this.timer) services.start({ warmPools: this.options.warmPools });
      return entry;
    } catch (error) {
      const slot = this.slots.get(entry.id);
      this.slots.delete(entry.id);
      await slot?.services?.close().catch(() => undefined);
      await this.registry.remove(entry.id);
      throw error instanceof HostRefused ? error : new HostRefused(`the host cannot serve: ${error instanceof Error ? error.message : String(error)}`, 'url');
    } finally {
      this.adding.delete(entry.id);
    }
  }

  async update(name: string, change: HostChange): Promise<HostEntry | undefined> {
    const entry = await this.registry.update(name, change);
    this.registryChanges++;
    const slot = entry && this.slots.get(entry.id);
    if (slot && entry) slot.entry = entry;
    return entry;
  }

  /**
   * Removes an extra host that holds no lease (any state: the history goes with the host) and no
   * pooled lease but this process's own (released first). 'busy' with the count otherwise.
   */
  async remove(name: string): Promise<'removed' | 'unknown' | 'control' | { busy: number }> {
    const entry = await this.registry.find(name);
    if (!entry) return 'unknown';
    if (entry.url === null) return 'control';
    const slot = this.slots.get(entry.id);
    if (!slot?.services) return { busy: -1 };
    await slot.services.leasePool.close();
    const { rows } = await slot.services.host.pool.query<{ live: number }>(`SELECT count(*)::int AS live FROM pglease.leases WHERE state IN ('active', 'provisioning')`);
    if (rows[0]!.live > 0) return { busy: rows[0]!.live };
    // the lease database may be added again (here or to another registry) under a new tag
    await slot.services.host.pool.query('DELETE FROM pglease.lease_id_tag');
    if (!(await this.registry.remove(entry.id))) return 'unknown';
    this.registryChanges++;
    this.slots.delete(entry.id);
    await slot.services.close().catch(() => undefined);
    return 'removed';
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.probing;
    await Promise.all([...this.slots.values()].map((slot) => slot.opening));
    // the control host last: the others' state lives in its registry
    await Promise.all(
      [...this.slots.values()].filter((slot) => slot.services && slot.services !== this.control).map((slot) => slot.services!.close().catch(() => undefined)),
    );
    await this.control.close();
  }

  /** Reads the registry: new hosts are opened (or tried), removed ones closed, changed rows kept. */
  async refresh(): Promise<void> {
    const entries = await this.registry.list();
    const seen = new Set<number>();
    for (const entry of entries) {
      seen.add(entry.id);
      const slot = this.slots.get(entry.id);
      if (slot) {
        slot.entry = entry;
        continue;
      }
      if (entry.url === null || this.adding.has(entry.id)) continue;
      const fresh: HostSlot = { entry, services: undefined, state: 'down', failures: 0, lastError: null, opening: undefined };
      this.slots.set(entry.id, fresh);
      await this.tryOpen(fresh);
    }
    for (const [id, slot] of this.slots) {
      if (seen.has(id) || slot.entry.url === null || this.adding.has(id)) continue;
      this.slots.delete(id);
      await slot.services?.close().catch(() => undefined);
    }
  }

  private async openEntry(entry: HostEntry): Promise<HostServices> {
    const { config, log } = this.options;
    const host = await withTimeout(
      openHost({
        serverUrl: await connectUrl(entry),
        leaseDatabase: config.leaseDatabase,
        publicHost: entry.public_host ?? undefined,
        publicPort: entry.public_port ?? undefined,
        timeoutMs: config.databaseTimeoutSeconds * 1000,
        log: (message) => log(`host ${entry.name}: ${message}`),
      }),
      OPEN_TIMEOUT_MS,
      `opening host "${entry.name}"`,
    );
    try {
      await markLeaseDatabase({ host }, entry.id);
      return await openHostServices(host, { ...this.options, observeDiskPath: undefined, localServer: false, log: (message) => log(`host ${entry.name}: ${message}`) });
    } catch (error) {
      await host.close().catch(() => undefined);
      throw error;
    }
  }

  private async tryOpen(slot: HostSlot): Promise<void> {
    slot.opening ??= (async () => {
      try {
        const services = await this.openEntry(slot.entry);
        if (this.closed || this.slots.get(slot.entry.id) !== slot) {
          await services.close();
          return;
        }
        slot.services = services;
        slot.state = 'available';
        slot.failures = 0;
        slot.lastError = null;
        if (this.timer) services.start({ warmPools: this.options.warmPools });
      } catch (error) {
        this.failed(slot, error);
        slot.refused = error instanceof HostRefused;
        this.options.log(`host ${slot.entry.name}: cannot be opened (${slot.lastError})${slot.refused ? ': remove it (DELETE /v1/hosts/' + slot.entry.name + ')' : ''}`);
      } finally {
        slot.opening = undefined;
      }
    })();
    await slot.opening;
  }

  private failed(slot: HostSlot, error: unknown): void {
    slot.failures++;
    slot.lastError = error instanceof Error ? error.message : String(error);
    const state: HostState = slot.failures >= 2 || !slot.services ? 'down' : 'uncertain';
    if (state !== slot.state) this.options.log(`host ${slot.entry.name}: ${state} (${slot.lastError})`);
    slot.state = state;
  }

  /** One probe of every extra host, then the registry read again. Runs one at a time. */
  private probe(): Promise<void> {
    this.probing ??= (async () => {
      try {
        await this.refresh();
        // alone, the control host needs no count: placement only starts with a second host
        if (this.spread) await Promise.all([...this.slots.values()].map((slot) => this.probeOne(slot)));
      } catch (error) {
        this.options.log(`host probe failed: ${error instanceof Error ? error.message : String(error)}`);
      } finally {
        this.probing = undefined;
      }
    })();
    return this.probing;
  }

  private async probeOne(slot: HostSlot): Promise<void> {
    if (this.closed) return;
    const placedBefore = slot.entry.placed;
    let live: number | undefined;
    if (!slot.services) {
      if (slot.entry.url !== null && !slot.refused) void this.tryOpen(slot);
    } else {
      try {
        // live leases, and the host's own observer's verdict (connections or disk nearly used up)
        const { rows } = await withTimeout(
          slot.services.host.pool.query<{ live: number; observed_uncertain: boolean }>({
            name: 'pglease.probe-host',
            text: `SELECT (SELECT count(*)::int FROM pglease.leases WHERE state = 'active') AS live,
                          coalesce((SELECT status <> 'available' FROM pglease.hosts WHERE id = $1), false) AS observed_uncertain`,
            values: [slot.services.host.id],
          }),
          PROBE_TIMEOUT_MS,
          `probing host "${slot.entry.name}"`,
        );
        live = rows[0]!.live;
        if (rows[0]!.observed_uncertain && slot.entry.url !== null) {
          slot.state = 'uncertain';
          slot.lastError = 'its observer finds connections or disk nearly used up';
        } else {
          if (slot.state !== 'available') this.options.log(`host ${slot.entry.name}: available`);
          slot.state = 'available';
          slot.lastError = null;
        }
        slot.failures = 0;
      } catch (error) {
        if (slot.entry.url === null) return;
        this.failed(slot, error);
      }
    }
    if (slot.state !== slot.entry.state || live !== undefined) {
      await this.registry.recordProbe(slot.entry.id, slot.state, slot.lastError, live, live === undefined ? undefined : placedBefore).catch(() => undefined);
    }
  }
}

/**
 * Marks a lease database as host `tag` of this registry (0: the control database), so that its new
 * leases' ids name it (migration 0018). A database already marked otherwise is refused: it is the
 * control database, or another registry's host, and its leases' ids would name the wrong host.
 */
async function markLeaseDatabase(services: Pick<HostServices, 'host'>, tag: number): Promise<void> {
  const pool = services.host.pool;
  await pool.query('INSERT INTO pglease.lease_id_tag (tag) VALUES ($1) ON CONFLICT (only_row) DO NOTHING', [tag]);
  const { rows } = await pool.query<{ tag: number }>('SELECT tag FROM pglease.lease_id_tag');
  const marked = rows[0]!.tag;
  if (marked !== tag) {
    throw new HostRefused(
      marked === 0
        ? 'this lease database is a pglease control database: a host must be another server (or another PGLEASE_DATABASE)'
        : `this lease database already serves as host #${marked} of a pglease registry`,
      'url',
      true,
    );
  }
}
