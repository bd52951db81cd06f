/**
 * The studio's change feed (`GET /v1/leases/:id/studio/events`, src/web/studio/change-feed.ts) over
 * real HTTP: it says `ready`, then `schema` after DDL made with psql, `rows` naming the tables whose
 * rows psql changed, and `gone` when the lease is released; a NOTIFY flood on the DDL channel costs
 * at most one schema event per 200 ms; streams are bounded per lease; only the lease's token (or the
 * admin token) may listen; the service closes with streams open. And the document's ETag: a 304 while
 * the schema is unchanged, a new document after DDL.
 */
import http from 'node:http';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintJwt } from '../src/auth/mint.js';
import { STREAMS_PER_LEASE } from '../src/web/studio/change-feed.js';
import { runAsLease } from './fixtures/openapi/fixture.js';
import { ADMIN_TOKEN, createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';
import { waitFor } from './support/wait.js';

/** Generous: the suite runs twice at once on two cores. */
const WAIT_MS = 20_000;

let service: TestService;
let lease: CreatedLeaseJson & { jwt_secret: string };

interface FeedEvent {
  event: string;
  data: Record<string, unknown>;
  at: number;
}

/** An open feed: the events read so far, and how to stop reading. */
interface Feed {
  events: FeedEvent[];
  ended: Promise<void>;
  close: () => void;
}

function feedUrl(leaseId: string): string {
  return `${service.baseUrl}/v1/leases/${leaseId}/studio/events`;
}

/**
 * A feed read with node:http, whose request is destroyed at the end (fetch's abort left undici
 * opening a spare connection that held the server's close for its 60 s header timeout).
 */
function openFeed(leaseId: string, token: string): Promise<Feed> {
  return new Promise((resolve, reject) => {
    const request = http.get(feedUrl(leaseId), { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' }, agent: false }, (response) => {
      try {
        expect(response.statusCode).toBe(200);
        expect(response.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      } catch (error) {
        request.destroy();
        return reject(error as Error);
      }
      const events: FeedEvent[] = [];
      let buffer = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event) events.push({ event, data: data ? (JSON.parse(data) as Record<string, unknown>) : {}, at: Date.now() });
        }
      });
      const ended = new Promise<void>((done) => {
        response.on('end', done);
        response.on('close', done);
      });
      resolve({ events, ended, close: () => request.destroy() });
    });
    request.on('error', reject);
  });
}

function waitForEvent(feed: Feed, what: string, match: (event: FeedEvent) => boolean, after = 0): Promise<FeedEvent> {
  return waitFor(what, async () => feed.events.slice(after).find(match), WAIT_MS);
}

beforeAll(async () => {
  service = await startTestService();
  lease = (await createLease(service)) as typeof lease;
  await runAsLease(lease, 'CREATE TABLE notes (id serial PRIMARY KEY, body text); INSERT INTO notes (body) VALUES (\'first\')');
});

afterAll(async () => {
  await service?.close();
});

describe('the studio change feed', { timeout: 90_000 }, () => {
  it('tells DDL and row changes made with psql', async () => {
    const feed = await openFeed(lease.id, lease.token);
    try {
      await waitForEvent(feed, 'ready', (event) => event.event === 'ready');
      let seen = feed.events.length;
      await runAsLease(lease, 'CREATE TABLE tags (id int PRIMARY KEY, label text)');
      await waitForEvent(feed, 'a schema event', (event) => event.event === 'schema', seen);

      seen = feed.events.length;
      await runAsLease(lease, "INSERT INTO notes (body) VALUES ('second')");
      const rows = await waitForEvent(feed, 'a rows event', (event) => event.event === 'rows', seen);
      expect(rows.data).toEqual({ relations: ['notes'] });

      seen = feed.events.length;
      await runAsLease(lease, "UPDATE tags SET label = 'x'; INSERT INTO tags VALUES (1, 'one')");
      expect((await waitForEvent(feed, 'a rows event', (event) => event.event === 'rows', seen)).data).toEqual({ relations: ['tags'] });
    } finally {
      feed.close();
    }
  });

  it('costs one schema event per 200 ms under a NOTIFY flood on the DDL channel', async () => {
    const feed = await openFeed(lease.id, lease.token);
    const client = new pg.Client({ connectionString: lease.url });
    await client.connect();
    try {
      await waitForEvent(feed, 'ready', (event) => event.event === 'ready');
      const seen = feed.events.length;
      const started = Date.now();
      // separate transactions: Postgres folds identical notifications of one transaction into one
      for (let i = 0; i < 1_000; i++) await client.query(`NOTIFY pglease_rest_ddl, '${lease.schema}'`);
      const floodMs = Date.now() - started;
      await waitForEvent(feed, 'a schema event', (event) => event.event === 'schema', seen);
      // the last one may come 200 ms after the flood
      await new Promise((resolve) => setTimeout(resolve, 500));
      const schemaEvents = feed.events.slice(seen).filter((event) => event.event === 'schema');
      expect(schemaEvents.length).toBeLessThanOrEqual(Math.ceil((floodMs + 500) / 200) + 1);
      expect(schemaEvents.length).toBeLessThan(100);
      // times are when this client read each event: a delayed read brings the next one closer (143 ms
      // once beside a second suite); without the gap they come a few ms apart
      for (let i = 1; i < schemaEvents.length; i++) expect(schemaEvents[i]!.at - schemaEvents[i - 1]!.at).toBeGreaterThanOrEqual(100);
    } finally {
      await client.end();
      feed.close();
    }
  });

  it('lets only the lease’s token or the admin token listen, a bounded number at once', async () => {
    const anonymous = await fetch(feedUrl(lease.id));
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { code: string }).code).toBe('PGLEASE_UNAUTHORIZED');
    const jwt = await mintJwt(lease.jwt_secret, { role: 'anon', sub: 'alice' });
    const user = await fetch(feedUrl(lease.id), { headers: { authorization: `Bearer ${jwt}` } });
    expect(user.status).toBe(404);
    expect(((await user.json()) as { code: string }).code).toBe('PGLEASE_NOT_FOUND');
    const other = await fetch(feedUrl('00000000-0000-4000-8000-000000000000'), { headers: { authorization: `Bearer ${lease.token}` } });
    expect(other.status).toBe(404);

    const feeds: Feed[] = [];
    try {
      for (let i = 0; i < STREAMS_PER_LEASE - 1; i++) feeds.push(await openFeed(lease.id, lease.token));
      feeds.push(await openFeed(lease.id, ADMIN_TOKEN));
      const refused = await fetch(feedUrl(lease.id), { headers: { authorization: `Bearer ${lease.token}` } });
      expect(refused.status).toBe(429);
      expect(((await refused.json()) as { message: string }).message).toContain(`At most ${STREAMS_PER_LEASE} change feeds per lease`);
    } finally {
      for (const feed of feeds) feed.close();
    }
    // closed streams free their places
    const again = await waitFor('a place for a feed', () => openFeed(lease.id, lease.token).catch(() => undefined), WAIT_MS);
    again.close();
  });

  it('answers an unchanged document with 304 to its ETag, and a changed one in full', async () => {
    const url = `${service.baseUrl}/v1/leases/${lease.id}/openapi.json`;
    const first = await fetch(url, { headers: { authorization: `Bearer ${lease.token}` } });
    expect(first.status).toBe(200);
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^W\/"[A-Za-z0-9_-]{27}"$/);
    const again = await fetch(url, { headers: { authorization: `Bearer ${lease.token}`, 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
    // another role's document is another document
    const anonymous = await fetch(url, { headers: { 'if-none-match': etag } });
    expect(anonymous.status).toBe(200);
    await runAsLease(lease, 'ALTER TABLE notes ADD COLUMN done boolean');
    const changed = await fetch(url, { headers: { authorization: `Bearer ${lease.token}`, 'if-none-match': etag } });
    expect(changed.status).toBe(200);
    expect(changed.headers.get('etag')).not.toBe(etag);
    expect(JSON.stringify(await changed.json())).toContain('"done"');
  });

  it('says gone when the lease is released, and ends the stream; the service closes with streams open', async () => {
    const other = (await createLease(service)) as typeof lease;
    const feed = await openFeed(other.id, other.token);
    const open = await openFeed(lease.id, lease.token);
    await waitForEvent(feed, 'ready', (event) => event.event === 'ready');
    const released = await fetch(`${service.baseUrl}/v1/leases/${other.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${other.token}` } });
    expect(released.status).toBe(204);
    const gone = await waitForEvent(feed, 'a gone event', (event) => event.event === 'gone');
    expect(gone.data.state).not.toBe('active');
    await feed.ended;
    // the other stream stays open: afterAll's close must end it (else the close would hang)
    expect(open.events.at(-1)?.event).not.toBe('gone');
  });
});
