/**
 * pg-listen's subscriber factory, whichever loader runs us. pg-listen is CommonJS with
 * `exports.default`: Node's own ESM loader (the built service) hands us the exports object,
 * transpiling loaders (tsx, vitest) the function itself.
 */
import pgListen from 'pg-listen';

export type { Subscriber } from 'pg-listen';

type CreateSubscriber = typeof pgListen.default;
const loaded = pgListen as unknown as CreateSubscriber | { default: CreateSubscriber };

export const createSubscriber: CreateSubscriber = typeof loaded === 'function' ? loaded : loaded.default;
