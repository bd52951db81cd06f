/**
 * The scheduler's LISTEN connection (pg-listen): wakes it when a job changes (channel pglease_jobs)
 * and keeps reconnecting for as long as the service runs, so a Postgres restart costs a few
 * seconds of early wake-ups, never the process. The connection also proves the process alive to
 * other schedulers (pglease.job_holder_alive).
 */
import { createSubscriber, onNotification, type Subscriber } from '../db/pg-listen.js';

export const JOBS_CHANNEL = 'pglease_jobs';

export interface JobListener {
  close: () => Promise<void>;
}

export interface ListenOptions {
  connectionString: string;
  applicationName: string;
  /** A notification arrived (its payload), or the connection was (re)established ('connected'). */
  onWake: (payload: string) => void;
  log: (message: string) => void;
}

const RETRY_MAX_MS = 5000;

export function listenForJobs(options: ListenOptions): JobListener {
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let subscriber: Subscriber | undefined;

  const open = async (attempt: number): Promise<void> => {
    if (closed) return;
    const current = createSubscriber(
      { connectionString: options.connectionString, application_name: options.applicationName },
      {
        // pg-listen gives up after retryTimeout; 0 means never: a database down for minutes is
        // waited for, not turned into a dead listener
        retryTimeout: 0,
        retryInterval: (reconnect: number) => Math.min(250 * 2 ** reconnect, RETRY_MAX_MS),
        paranoidChecking: 10_000,
        // payloads are plain job names, not JSON
        parse: (payload: string) => payload,
      },
    );
    subscriber = current;
    current.events.on('connected', () => options.onWake('connected'));
    current.events.on('reconnect', (reconnect: number) => {
      if (reconnect === 1) options.log('job listener: connection lost, reconnecting');
    });
    current.events.on('error', (error: Error) => {
      // only a failed re-initialisation ends up here; start over with a fresh subscriber
      options.log(`job listener: ${error.message}`);
      void current.close().catch(() => undefined);
      if (!closed) retry = setTimeout(() => void open(1), RETRY_MAX_MS);
    });
    onNotification(current, JOBS_CHANNEL, (payload) => options.onWake(payload), options.log);
    try {
      await current.connect();
      await current.listenTo(JOBS_CHANNEL);
    } catch (error) {
      await current.close().catch(() => undefined);
      if (closed) return;
      if (attempt === 1) options.log(`job listener: cannot connect (${(error as Error).message}); retrying`);
      retry = setTimeout(() => void open(attempt + 1), Math.min(250 * 2 ** attempt, RETRY_MAX_MS));
    }
  };
  void open(1);

  return {
    close: async () => {
      closed = true;
      clearTimeout(retry);
      await subscriber?.close().catch(() => undefined);
    },
  };
}
