/**
 * The studio's change feed: `GET /v1/leases/:id/studio/events`, a text/event-stream that tells an
 * open studio when its lease's schema or rows changed, so that the page asks for the document or a
 * page of rows only then. It replaced a poll of the OpenAPI document every 2 s: 30 requests a minute
 * per idle tab, each introspecting the schema (~6 ms of the database's time) and sending the whole
 * document (176 kB for the OpenAPI fixture); an idle tab now costs one open connection and no request.
 *
 * Events (each `data` a JSON object):
 *   `ready`  the feed watches the lease (sent once its first reading is taken: a change after it is told);
 *   `schema` DDL in the lease's schema: ask for the document again;
 *   `rows`   `{ relations: [...] }`, tables whose rows changed;
 *   `gone`   `{ state }`, the lease is no longer active; the stream ends.
 * A comment line every KEEPALIVE_MS keeps proxies from closing a quiet stream.
 *
 * Where the changes come from, and what it trusts:
 *   - DDL: the REST layer's notifications (src/rest/notifications.ts, the event trigger's
 *     `pglease_rest_ddl`), told at once; any session may NOTIFY that channel, so schema events of a
 *     lease are coalesced to at most one per SCHEMA_EVENT_GAP_MS, whatever arrives.
 *   - Rows, and DDL where pglease has no event trigger (it was given no superuser): one statement
 *     every TICK_MS for all the leases watched by this process, on the service pool, reading
 *     catalogs and statistics only (pg_stat_all_tables' counters, the xmin of the schema's pg_class,
 *     pg_attribute and pg_constraint rows): it plans no lease object, as the security rule asks.
 *     Statistics reach pg_stat_all_tables when the writing session goes idle, at most once a second
 *     per session (Postgres's PGSTAT_MIN_INTERVAL), so a write elsewhere is told within about 1–2 s
 *     (up to ~10 s for a session writing several times a second: Postgres then flushes on its idle timer).
 *   - Nothing runs while no studio is open: the tick stops with the last stream.
 *
 * Who may listen: the lease's token or the admin token, as for the control API (a user's JWT gets
 * 401, and the studio then falls back to asking for the document with If-None-Match). Streams are
 * bounded: STREAMS_PER_LEASE per lease, STREAMS_IN_ALL per process (429 beyond).
 */
import { authorizedLease } from '../../control/lease-access.js';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type pg from 'pg';
import type { ServiceContext } from '../../service-context.js';
import type { RestService } from '../../rest/rest-service.js';
import type { RestServices } from '../../rest/routes.js';
import type { Host } from '../../db/host.js';
import { ControlError } from '../../control/errors.js';
import { ErrorSchema, LeaseParams } from '../../control/schemas.js';

/** How often rows (and DDL without an event trigger) are looked for while a studio is open. */
export const TICK_MS = 1_000;
const KEEPALIVE_MS = 25_000;
const SCHEMA_EVENT_GAP_MS = 200;
export const STREAMS_PER_LEASE = 16;
const STREAMS_IN_ALL = 500;


/** One reading of a lease: its state, a counter string per table, a fingerprint of its catalog rows. */
interface Reading {
  lease_id: string;
  state: string;
  rows: Record<string, string> | null;
  catalog: string | null;
}

/**
 * One reading of every watched lease. pg_class has no index that starts with relnamespace, so
 * its rows are read once for all the watched schemas (a hash of their oids), not once per lease;
 * each relation's columns and constraints by their relation's index (attrelid, conrelid); the
 * counters with pg_stat_all_tables' own functions on those rows.
 */
const READ_LEASES = `
  WITH watched AS (
    SELECT l.id, l.state, n.oid AS nsp
      FROM pglease.leases l LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = l.schema_name
     WHERE l.id = ANY($1::uuid[])
  ), rels AS (
    SELECT c.oid, c.relname, c.relkind, c.relnamespace,
           c.oid::text || ':' || c.xmin::text
             || '/' || coalesce((SELECT string_agg(a.attnum::text || ':' || a.xmin::text, ',' ORDER BY a.attnum)
                                   FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0), '')
             || '/' || coalesce((SELECT string_agg(k.oid::text || ':' || k.xmin::text, ',' ORDER BY k.oid)
                                   FROM pg_catalog.pg_constraint k WHERE k.conrelid = c.oid), '') AS fingerprint
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace IN (SELECT w.nsp FROM watched w WHERE w.nsp IS NOT NULL)
  )
  SELECT w.id::text AS lease_id, w.state::text AS state,
         (SELECT pg_catalog.json_object_agg(r.relname, concat_ws(':', pg_catalog.pg_stat_get_tuples_inserted(r.oid),
                   pg_catalog.pg_stat_get_tuples_updated(r.oid), pg_catalog.pg_stat_get_tuples_deleted(r.oid), pg_catalog.pg_stat_get_live_tuples(r.oid) = 0))
            FROM rels r WHERE r.relnamespace = w.nsp AND r.relkind IN ('r', 'm', 'p')) AS rows,
         pg_catalog.md5((SELECT string_agg(r.fingerprint, ',' ORDER BY r.oid) FROM rels r WHERE r.relnamespace = w.nsp)) AS catalog
    FROM watched w`;

interface Stream {
  reply: FastifyReply;
  keepalive: NodeJS.Timeout;
  /** Whether `ready` was sent (after the lease's first reading). */
  ready: boolean;
}

interface WatchedLease {
  schema: string;
  streams: Set<Stream>;
  /** The last reading; undefined until the first. */
  last?: Reading;
  schemaEventAt: number;
  schemaEventTimer?: NodeJS.Timeout;
}

export class ChangeFeed {
  private readonly leases = new Map<string, WatchedLease>();
  private readonly bySchema = new Map<string, WatchedLease>();
  private streamCount = 0;
  private ticker: NodeJS.Timeout | undefined;
  private reading = false;
  private readonly unwatch: () => void;
  /** Statements run by the tick (for the idle-cost figures). */
  ticks = 0;

  constructor(
    private readonly pool: pg.Pool,
    rest: RestService,
    private readonly log: (message: string) => void,
  ) {
    this.unwatch = rest.watchSchemas((schema) => {
      if (schema === null) for (const watched of this.leases.values()) this.schemaChanged(watched);
      else {
        const watched = this.bySchema.get(schema);
        if (watched) this.schemaChanged(watched);
      }
    });
  }

  get streams(): number {
    return this.streamCount;
  }

  /** Opens a stream on `reply` (already hijacked) for the lease; false when the bounds refuse it. */
  canOpen(leaseId: string): boolean {
    return this.streamCount < STREAMS_IN_ALL && (this.leases.get(leaseId)?.streams.size ?? 0) < STREAMS_PER_LEASE;
  }

  open(leaseId: string, schema: string, reply: FastifyReply): void {
    let watched = this.leases.get(leaseId);
    if (!watched) {
      watched = { schema, streams: new Set(), schemaEventAt: 0 };
      this.leases.set(leaseId, watched);
      this.bySchema.set(schema, watched);
    }
    const stream: Stream = { reply, ready: false, keepalive: setInterval(() => write(stream, ': keepalive\n\n'), KEEPALIVE_MS) };
    watched.streams.add(stream);
    this.streamCount++;
    reply.raw.on('close', () => this.remove(leaseId, stream));
    if (watched.last) {
      stream.ready = true;
      send(stream, 'ready', { tick_ms: TICK_MS });
    }
    this.ticker ??= setInterval(() => void this.tick(), TICK_MS);
    // the first reading now, not a tick later: `ready` says changes from here on are told
    if (!watched.last) void this.tick();
  }

  /** Ends every stream (the service is closing). */
  close(): void {
    this.unwatch();
    for (const [leaseId, watched] of this.leases) for (const stream of watched.streams) this.end(leaseId, stream);
    this.stopTicker();
  }

  private remove(leaseId: string, stream: Stream): void {
    const watched = this.leases.get(leaseId);
    if (!watched?.streams.delete(stream)) return;
    clearInterval(stream.keepalive);
    this.streamCount--;
    if (watched.streams.size === 0) {
      clearTimeout(watched.schemaEventTimer);
      this.leases.delete(leaseId);
      if (this.bySchema.get(watched.schema) === watched) this.bySchema.delete(watched.schema);
    }
    if (this.leases.size === 0) this.stopTicker();
  }

  private end(leaseId: string, stream: Stream): void {
    this.remove(leaseId, stream);
    stream.reply.raw.end();
  }

  private stopTicker(): void {
    clearInterval(this.ticker);
    this.ticker = undefined;
  }

  /** A schema event now, or once SCHEMA_EVENT_GAP_MS after the last one: a NOTIFY flood costs one event per gap. */
  private schemaChanged(watched: WatchedLease): void {
    if (watched.schemaEventTimer) return;
    const wait = watched.schemaEventAt + SCHEMA_EVENT_GAP_MS - Date.now();
    const emit = () => {
      watched.schemaEventTimer = undefined;
      watched.schemaEventAt = Date.now();
      for (const stream of watched.streams) if (stream.ready) send(stream, 'schema', {});
    };
    if (wait <= 0) emit();
    else watched.schemaEventTimer = setTimeout(emit, wait);
  }

  private async tick(): Promise<void> {
    // one reading at a time: a slow one (a loaded database) is not stacked up behind
    if (this.reading || this.leases.size === 0) return;
    this.reading = true;
    try {
      this.ticks++;
      const asked = [...this.leases.keys()];
      const { rows } = await this.pool.query<Reading>({ text: READ_LEASES, values: [asked] });
      const found = new Map(rows.map((reading) => [reading.lease_id, reading]));
      // a lease first watched during the statement waits for the next tick
      for (const leaseId of asked) {
        const watched = this.leases.get(leaseId);
        if (!watched) continue;
        const reading = found.get(leaseId);
        if (!reading || reading.state !== 'active') {
          for (const stream of [...watched.streams]) {
            send(stream, 'gone', { state: reading?.state ?? 'released' });
            this.end(leaseId, stream);
          }
          continue;
        }
        const last = watched.last;
        watched.last = reading;
        if (last) {
          if (last.catalog !== reading.catalog) this.schemaChanged(watched);
          const changed = changedTables(last.rows, reading.rows);
          if (changed.length > 0) for (const stream of watched.streams) if (stream.ready) send(stream, 'rows', { relations: changed });
        }
        for (const stream of watched.streams) {
          if (stream.ready) continue;
          stream.ready = true;
          send(stream, 'ready', { tick_ms: TICK_MS });
        }
      }
    } catch (error) {
      this.log(`studio change feed: ${(error as Error).message}`);
    } finally {
      this.reading = false;
    }
  }
}

/** A table's counters before its first row: a new empty table has changed no rows. */
const NO_ROWS = '0:0:0:t';

/** Tables whose counters moved (a table created or dropped is the schema event's news, unless it holds rows). */
function changedTables(before: Record<string, string> | null, after: Record<string, string> | null): string[] {
  const names = new Set([...Object.keys(before ?? {}), ...Object.keys(after ?? {})]);
  return [...names].filter((name) => (before?.[name] ?? NO_ROWS) !== (after?.[name] ?? NO_ROWS)).sort();
}

function write(stream: Stream, text: string): void {
  if (!stream.reply.raw.writableEnded) stream.reply.raw.write(text);
}

function send(stream: Stream, event: string, data: object): void {
  write(stream, `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

/**
 * The feed route. Each lease host has its own ChangeFeed (its tick reads that host's catalogs on
 * its service pool, and its schema events come from that host's REST service), made on the first
 * stream for one of its leases; `feedOf` gives the control host's at once (for the idle-cost figures).
 */
export async function studioFeedRoutes(app: FastifyInstance, context: ServiceContext, rest: RestServices): Promise<{ feedOf: (host: Host) => Promise<ChangeFeed> }> {
  const routes = app.withTypeProvider<TypeBoxTypeProvider>();
  const feeds = new Map<Host, ChangeFeed>();
  const feedOf = async (host: Host): Promise<ChangeFeed> => {
    const restOfHost = await rest.ofHost(host);
    let feed = feeds.get(host);
    if (!feed) {
      feed = new ChangeFeed(host.pool, restOfHost, (message) => app.log.warn(message));
      feeds.set(host, feed);
    }
    return feed;
  };
  await feedOf(context.host);
  // open streams would hold the server's close open: they end first
  app.addHook('preClose', async () => {
    for (const feed of feeds.values()) feed.close();
  });

  routes.get(
    '/v1/leases/:id/studio/events',
    {
      schema: {
        summary: 'Changes of a lease, as server-sent events (the studio’s feed)',
        description:
          'A `text/event-stream`: `ready` once watching, `schema` after DDL in the lease, `rows` with the tables whose rows changed ' +
          `(from Postgres’s statistics, within about 1–2 s), \`gone\` when the lease ends. At most ${STREAMS_PER_LEASE} streams per lease.`,
        tags: ['leases'],
        security: [{ bearer: [] }],
        params: LeaseParams,
        response: { 401: ErrorSchema, 404: ErrorSchema, 429: ErrorSchema },
      },
    },
    async (request, reply) => {
      const { lease, at } = await authorizedLease(context, request, request.params.id);
      if (lease.state !== 'active') throw new ControlError('PGLEASE_NOT_FOUND');
      const feed = await feedOf(at.host);
      if (!feed.canOpen(lease.id)) {
        throw new ControlError('PGLEASE_RATE_LIMITED', `At most ${STREAMS_PER_LEASE} change feeds per lease are open at once: close a studio tab`);
      }
      reply.hijack();
      reply.raw.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        'x-accel-buffering': 'no',
      });
      reply.raw.write(': pglease studio feed\n\n');
      feed.open(lease.id, lease.schema_name, reply);
    },
  );
  return { feedOf };
}
