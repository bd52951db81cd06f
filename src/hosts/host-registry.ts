/**
 * The registry of lease hosts, in the control database (pglease.host_registry, migration 0018):
 * one row per host, the control database's own server included (url NULL). Only the service role
 * reads it (schema pglease is closed to PUBLIC), since host URLs carry passwords. Every statement
 * here touches that table only: no lease object is planned or run.
 */
import type pg from 'pg';

export type HostState = 'available' | 'uncertain' | 'down';
export type HostTlsMode = 'disable' | 'require' | 'verify-full';

/** The name the control database's own server has in the registry. */
export const CONTROL_HOST_NAME = 'control';

export interface HostEntry {
  id: number;
  name: string;
  /** null: the control database's own server. */
  url: string | null;
  capacity: number;
  weight: number;
  draining: boolean;
  public_host: string | null;
  public_port: number | null;
  tls: HostTlsMode;
  ca_pem: string | null;
  state: HostState;
  state_since: Date;
  last_error: string | null;
  live_leases: number;
  placed: number;
  probed_at: Date | null;
  created_at: Date;
}

/** A host name: 1 to 63 lower-case letters, digits, _ and -. */
export const HOST_NAME_PATTERN = '^[a-z0-9][a-z0-9_-]{0,62}$';

/** The TLS mode a host gets when none is asked: the URL's sslmode, else none on this machine, else verify-full. */
export function defaultTls(url: URL): HostTlsMode {
  const mode = url.searchParams.get('sslmode');
  if (mode === 'disable' || mode === 'require' || mode === 'verify-full') return mode;
  return ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname) ? 'disable' : 'verify-full';
}

export interface NewHost {
  name: string;
  url: string;
  capacity?: number;
  weight?: number;
  publicHost?: string;
  publicPort?: number;
  tls: HostTlsMode;
  caPem?: string;
}

export interface HostChange {
  capacity?: number;
  weight?: number;
  draining?: boolean;
}

export class HostRegistry {
  constructor(private readonly pool: pg.Pool) {}

  /** Adds the control host's row unless it is there (the first start after migration 0018). */
  async ensureControl(): Promise<void> {
    await this.pool.query(`INSERT INTO pglease.host_registry (name, url, tls) VALUES ($1, NULL, 'disable') ON CONFLICT DO NOTHING`, [CONTROL_HOST_NAME]);
  }

  async list(): Promise<HostEntry[]> {
    const { rows } = await this.pool.query<HostEntry>('SELECT * FROM pglease.host_registry ORDER BY id');
    return rows;
  }

  async find(name: string): Promise<HostEntry | undefined> {
    const { rows } = await this.pool.query<HostEntry>('SELECT * FROM pglease.host_registry WHERE name = $1', [name]);
    return rows[0];
  }

  /** Inserts the host; undefined when its name is taken. */
  async insert(host: NewHost): Promise<HostEntry | undefined> {
    const { rows } = await this.pool.query<HostEntry>(
      `INSERT INTO pglease.host_registry (name, url, capacity, weight, public_host, public_port, tls, ca_pem)
       VALUES ($1, $2, coalesce($3, 1000), coalesce($4, 1), $5, $6, $7, $8)
       ON CONFLICT (name) DO NOTHING RETURNING *`,
      [host.name, host.url, host.capacity ?? null, host.weight ?? null, host.publicHost ?? null, host.publicPort ?? null, host.tls, host.caPem ?? null],
    );
    return rows[0];
  }

  async update(name: string, change: HostChange): Promise<HostEntry | undefined> {
    const { rows } = await this.pool.query<HostEntry>(
      `UPDATE pglease.host_registry SET capacity = coalesce($2, capacity), weight = coalesce($3, weight), draining = coalesce($4, draining)
        WHERE name = $1 RETURNING *`,
      [name, change.capacity ?? null, change.weight ?? null, change.draining ?? null],
    );
    return rows[0];
  }

  async remove(id: number): Promise<boolean> {
    const { rowCount } = await this.pool.query('DELETE FROM pglease.host_registry WHERE id = $1 AND url IS NOT NULL', [id]);
    return rowCount === 1;
  }

  /** One create's host among `usable` (sql/hosts.sql, pglease.place_lease); undefined when none has room. */
  async place(usable: number[]): Promise<number | undefined> {
    const { rows } = await this.pool.query<{ id: number | null }>({ name: 'pglease.place-lease', text: 'SELECT pglease.place_lease($1) AS id', values: [usable] });
    return rows[0]?.id ?? undefined;
  }

  /** What a probe found (pglease.record_host_probe); `live` undefined when the host was not reached. */
  async recordProbe(id: number, state: HostState, error: string | null, live: number | undefined, placedBefore: number | undefined): Promise<void> {
    await this.pool.query({
      name: 'pglease.record-host-probe',
      text: 'SELECT pglease.record_host_probe($1, $2, $3, $4, $5)',
      values: [id, state, error, live ?? null, placedBefore ?? null],
    });
  }
}
