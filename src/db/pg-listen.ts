/**
 * pg-listen's subscriber factory, whichever loader runs us. pg-listen is CommonJS with
 * `exports.default`: Node's own ESM loader (the built service) hands us the exports object,
 * transpiling loaders (tsx, vitest) the function itself.
 */
import pgListen, { type Subscriber } from 'pg-listen';

export type { Subscriber };

type CreateSubscriber = typeof pgListen.default;
const loaded = pgListen as unknown as CreateSubscriber | { default: CreateSubscriber };

export const createSubscriber: CreateSubscriber = typeof loaded === 'function' ? loaded : loaded.default;

/**
 * Subscribes `handler` to a channel's notifications. Any session of the database may NOTIFY any
 * channel, a lease's included, with any payload or none (pg-listen then passes undefined): the
 * handler gets a string, and what it throws is logged, never left to end the process.
 */
export function onNotification(
  subscriber: Subscriber,
  channel: string,
  handler: (payload: string) => void,
  log: (message: string) => void,
): void {
  subscriber.notifications.on(channel, (payload: unknown) => {
    try {
      handler(typeof payload === 'string' ? payload : '');
    } catch (error) {
      log(`notification on ${channel}: ${(error as Error).message}`);
    }
  });
}
