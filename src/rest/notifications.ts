/**
 * Keeps the REST caches in step with the database: installs the notifiers of sql/rest.sql and
 * listens (pg-listen, reconnecting) for DDL in lease schemas and for lease state changes. Without a
 * superuser the DDL event trigger cannot exist; then schema caches are only refreshed when a
 * request names something they lack (see RestService.withSchema), which the log says once.
 */
import { createSubscriber, onNotification, type Subscriber } from '../db/pg-listen.js';
import type { Host } from '../db/host.js';
import type { RestService } from './rest-service.js';

export const DDL_CHANNEL = 'pglease_rest_ddl';
export const LEASE_CHANNEL = 'pglease_lease_change';

export interface CacheListener {
  /** Whether DDL notifications are available (the event trigger is installed). */
  ddlEvents: boolean;
  close: () => Promise<void>;
}

export async function listenForChanges(host: Host, service: RestService, log: (message: string) => void): Promise<CacheListener> {
  const { rows } = await host.pool.query<{ installed: boolean }>('SELECT pglease.rest_install_notifiers() AS installed');
  const ddlEvents = rows[0]?.installed === true;
  if (!ddlEvents) {
    log('REST schema cache: the service role is not a superuser, so no DDL event trigger; schemas reload when a request names an unknown table');
  }

  const subscriber: Subscriber = createSubscriber(
    { connectionString: host.databaseUrl },
    { parse: (payload: string) => payload, retryLimit: Infinity, retryTimeout: Infinity, paranoidChecking: 30_000 },
  );
  onNotification(subscriber, DDL_CHANNEL, (schema) => service.schemaChanged(schema), log);
  onNotification(subscriber, LEASE_CHANNEL, (leaseId) => service.leaseChanged(leaseId), log);
  subscriber.events.on('error', (error: Error) => log(`REST cache listener: ${error.message}`));
  // notifications sent while disconnected are lost: start from scratch
  subscriber.events.on('reconnect', () => service.forgetAll());
  await subscriber.connect();
  await subscriber.listenTo(DDL_CHANNEL);
  await subscriber.listenTo(LEASE_CHANNEL);
  return {
    ddlEvents,
    close: () => subscriber.close(),
  };
}
