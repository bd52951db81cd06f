/**
 * Keeps the REST caches in step with the database: installs the notifiers of sql/rest.sql and
 * listens (pg-listen, reconnecting) for DDL in lease schemas and for lease state changes. The DDL
 * event triggers are installed by a superuser at setup (src/db/superuser-setup.ts); pglease given
 * none has none, and then schema caches are only refreshed when a request names something they
 * lack (see RestService.withSchema), which the log says once.
 *
 * Any session of the database, a lease's included, can NOTIFY these channels with any payload, as
 * often as it likes: one lease sent 3 × 200,000 random lease ids in a few seconds, and when each
 * notification queued a lease lookup on the service pool, creates timed out at 45 s, /healthz went
 * unanswered for over 90 s and the process grew to ~900 MB. So a notification costs at most a few
 * map look-ups, whatever arrives:
 *   - payloads are validated first: a lease id is a UUID in the lower-case form the trigger sends
 *     (`NEW.id::text`), a schema is `lease_` and 16 lower-case hex digits; anything else is dropped.
 *     Lower case only, because Postgres folds identical notifications of one transaction into one:
 *     accepting `ABC…` for `abc…` would let a flood of case variants past that folding;
 *   - a notification about a lease or schema this process caches nothing of is dropped at once;
 *     forgetting a cached lookup or schema is a map delete, done on the spot;
 *   - the one costly reaction, looking a lease up to learn whether its connection pool must close,
 *     happens only for leases with a pool here; ids wait in a Set (duplicates coalesce) drained once
 *     per event-loop turn, LOOKUPS_AT_ONCE lookups at a time (a notification about a lease being
 *     looked up asks for one more lookup after it, as the first may have read the row before the
 *     change);
 *   - the Set is bounded (MAX_WAITING); past it every cache is dropped (lookups and schemas: one
 *     cheap action, after which requests look leases up afresh) and the waiting ids are forgotten,
 *     their pools left to the idle sweep (LeasePools), which closes them 15 s after their last use.
 */
import { createSubscriber, onNotification, type Subscriber } from '../db/pg-listen.js';
import type { Host } from '../db/host.js';
import type { RestService } from './rest-service.js';

export const DDL_CHANNEL = 'pglease_rest_ddl';
export const LEASE_CHANNEL = 'pglease_lease_change';

/** A lease id as the notifier writes it (`uuid::text`). */
const LEASE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** A lease schema (sql/leases.sql names them `lease_` and 16 hex digits). */
const LEASE_SCHEMA = /^lease_[0-9a-f]{16}$/;

/** Lease lookups at once: the service pool (10 connections) stays free for the control API. */
const LOOKUPS_AT_ONCE = 2;
/** Lease ids waiting for a lookup; more pools than this are rarely open (200 by default). */
const MAX_WAITING = 1024;

/** What the notifications act on: RestService's caches. */
export interface ChangeTarget {
  /** Forgets the lease's cached lookup; true when a pool of it is open here (then recheckLease). */
  leaseChanged(leaseId: string): boolean;
  /** Looks the lease up again, and closes its pool if it has ended. */
  recheckLease(leaseId: string): Promise<void>;
  /** Forgets the schema's cache, if any. */
  schemaChanged(schema: string): void;
  /** Forgets every cached lookup and schema. */
  forgetAll(): void;
}

export interface NotificationHandlersOptions {
  lookupsAtOnce?: number;
  maxWaiting?: number;
}

/** The handlers of the two channels, with the lookups they queue. */
export class ChangeNotifications {
  private readonly waiting = new Set<string>();
  private readonly lookingUp = new Set<string>();
  private drainScheduled = false;
  private readonly lookupsAtOnce: number;
  private readonly maxWaiting: number;
  /** Times the waiting Set overflowed (every cache dropped). */
  overflows = 0;

  constructor(
    private readonly target: ChangeTarget,
    options: NotificationHandlersOptions = {},
  ) {
    this.lookupsAtOnce = options.lookupsAtOnce ?? LOOKUPS_AT_ONCE;
    this.maxWaiting = options.maxWaiting ?? MAX_WAITING;
  }

  /** Lease ids waiting for or under a lookup. */
  get queued(): number {
    return this.waiting.size + this.lookingUp.size;
  }

  /** A notification on pglease_lease_change. */
  leaseChanged(payload: string): void {
    if (payload.length !== 36 || !LEASE_ID.test(payload)) return;
    if (!this.target.leaseChanged(payload) || this.waiting.has(payload)) return;
    if (this.waiting.size >= this.maxWaiting) {
      this.overflows++;
      this.waiting.clear();
      this.target.forgetAll();
      return;
    }
    this.waiting.add(payload);
    this.scheduleDrain();
  }

  /** A notification on pglease_rest_ddl. */
  schemaChanged(payload: string): void {
    if (payload.length !== 22 || !LEASE_SCHEMA.test(payload)) return;
    this.target.schemaChanged(payload);
  }

  private scheduleDrain(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    // after the notifications of this network read: they all land in the Set first
    setImmediate(() => {
      this.drainScheduled = false;
      this.drain();
    });
  }

  private drain(): void {
    for (const leaseId of this.waiting) {
      if (this.lookingUp.size >= this.lookupsAtOnce) return;
      // looked up again once the running lookup ends
      if (this.lookingUp.has(leaseId)) continue;
      this.waiting.delete(leaseId);
      this.lookingUp.add(leaseId);
      this.target
        .recheckLease(leaseId)
        .catch(() => undefined)
        .finally(() => {
          this.lookingUp.delete(leaseId);
          this.drain();
        });
    }
  }
}

export interface CacheListener {
  /** Whether DDL notifications are available (the event trigger is installed). */
  ddlEvents: boolean;
  handlers: ChangeNotifications;
  close: () => Promise<void>;
}

export async function listenForChanges(host: Host, service: RestService, log: (message: string) => void): Promise<CacheListener> {
  const { rows } = await host.pool.query<{ installed: boolean }>('SELECT pglease.rest_install_notifiers() AS installed');
  const ddlEvents = rows[0]?.installed === true;
  if (!ddlEvents) {
    log('REST schema cache: no DDL event triggers (pglease was given no superuser to install them: see docs/security.md); schemas reload when a request names an unknown table');
  }

  const handlers = new ChangeNotifications(service);
  const subscriber: Subscriber = createSubscriber(
    { connectionString: host.databaseUrl },
    { parse: (payload: string) => payload, retryLimit: Infinity, retryTimeout: Infinity, paranoidChecking: 30_000 },
  );
  onNotification(subscriber, DDL_CHANNEL, (schema) => handlers.schemaChanged(schema), log);
  onNotification(subscriber, LEASE_CHANNEL, (leaseId) => handlers.leaseChanged(leaseId), log);
  subscriber.events.on('error', (error: Error) => log(`REST cache listener: ${error.message}`));
  // notifications sent while disconnected are lost: start from scratch
  subscriber.events.on('reconnect', () => service.forgetAll());
  await subscriber.connect();
  await subscriber.listenTo(DDL_CHANNEL);
  await subscriber.listenTo(LEASE_CHANNEL);
  return {
    ddlEvents,
    handlers,
    close: () => subscriber.close(),
  };
}
