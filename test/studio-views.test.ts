/**
 * The lease studio in Chromium, second part: it follows rows and DDL changed elsewhere through its
 * change feed (and asks nothing while idle); it lists views apart from tables and lets only those
 * Postgres can write through be edited; and it shows what a user's JWT sees, row-level security
 * included (a policy on `sub`), minted for a declared role or pasted. Screenshots under
 * test/artifacts/. Needs Debian's `chromium` package; skipped without it.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintJwt } from '../src/auth/mint.js';
import { projectPath } from '../src/paths.js';
import { runAsLease } from './fixtures/openapi/fixture.js';
import { createLease, queryUrl, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';
import { sleep } from './support/wait.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`studio-views.test.ts skipped: no ${CHROMIUM} (apt-get install -y chromium chromium-driver)`);

/** Generous: the suite runs twice at once on two cores. */
const WAIT = { timeout: 20_000 };
const ARTIFACTS = projectPath('test/artifacts');

let service: TestService;
let lease: CreatedLeaseJson & { jwt_secret: string };
let userRole: string;
let browser: BrowserContext;
let profileDir: string;
let page: Page;
/** Requests the page made, but for its change feed (held open). */
const requests: string[] = [];

async function control(method: string, pathname: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${service.baseUrl}${pathname}`, {
    method,
    headers: { authorization: `Bearer ${lease.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function restAs(token: string | null, pathAndQuery: string): Promise<Record<string, unknown>[]> {
  const response = await fetch(`${lease.rest_url}${pathAndQuery}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  expect(response.status).toBe(200);
  return (await response.json()) as Record<string, unknown>[];
}

function column(field: string) {
  return page.locator(`#studio-grid .tabulator-row .tabulator-cell[tabulator-field="${field}"]`);
}

function cell(id: number, field: string) {
  return page.locator('#studio-grid .tabulator-row', { has: page.locator(`.tabulator-cell[tabulator-field="id"]`, { hasText: new RegExp(`^${id}$`) }) }).locator(`.tabulator-cell[tabulator-field="${field}"]`);
}

async function open(name: string): Promise<void> {
  await page.locator(`#studio-sidebar button[data-relation="${name}"]`).click();
  await page.locator('#studio-title', { hasText: new RegExp(`^${name}$`) }).waitFor(WAIT);
  await page.locator('#studio-grid .tabulator-row, #studio-grid .tabulator-placeholder').first().waitFor(WAIT);
}

async function leaseValue<T extends Record<string, unknown>>(sql: string): Promise<T[]> {
  return queryUrl<T>(lease.url, sql);
}

/** Whether the page follows the feed (its `ready` came). */
function following(): Promise<boolean> {
  return page.evaluate(() => (window as unknown as { studio: { state: { following: boolean } } }).studio.state.following);
}

describe.skipIf(!hasChromium)('the lease studio’s views, users and changes in Chromium', { timeout: 90_000 }, () => {
  beforeAll(async () => {
    service = await startTestService();
    lease = (await createLease(service)) as typeof lease;
    const declared = await control('POST', `/v1/leases/${lease.id}/roles`, { name: 'member' });
    expect(declared.status).toBe(201);
    userRole = declared.body.role as string;
    await runAsLease(lease, `
      CREATE TABLE shelves (id serial PRIMARY KEY, label text NOT NULL);
      CREATE TABLE todos (
        id serial PRIMARY KEY,
        owner text NOT NULL DEFAULT (current_setting('request.jwt.claims', true)::json ->> 'sub'),
        title text NOT NULL,
        public boolean NOT NULL DEFAULT false,
        shelf_id int REFERENCES shelves (id)
      );
      ALTER TABLE todos ENABLE ROW LEVEL SECURITY;
      GRANT SELECT, INSERT, UPDATE, DELETE ON todos TO ${userRole};
      GRANT USAGE ON SEQUENCE todos_id_seq TO ${userRole};
      GRANT SELECT ON todos TO ${lease.anon_role};
      CREATE POLICY own_todos ON todos TO ${userRole}
        USING (owner = current_setting('request.jwt.claims', true)::json ->> 'sub')
        WITH CHECK (owner = current_setting('request.jwt.claims', true)::json ->> 'sub');
      CREATE POLICY public_todos ON todos FOR SELECT TO ${lease.anon_role} USING (public);
      INSERT INTO shelves (label) VALUES ('kitchen'), ('garden');
      INSERT INTO todos (owner, title, public, shelf_id) VALUES
        ('alice', 'alice private', false, 1), ('alice', 'alice public', true, 2), ('bob', 'bob private', false, 1);
      -- a simple view Postgres writes through; one it cannot (a join and a group); a materialized one
      CREATE VIEW shelf_names AS SELECT id, label FROM shelves;
      CREATE VIEW shelf_counts AS SELECT s.label, count(t.id) AS todos FROM shelves s LEFT JOIN todos t ON t.shelf_id = s.id GROUP BY s.label;
      CREATE MATERIALIZED VIEW shelf_snapshot AS SELECT id, label FROM shelves;
    `);
    browser = await chromium.launchPersistentContext((profileDir = mkdtempSync(path.join(tmpdir(), 'pglease-chromium-'))), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1400, height: 1000 },
    });
    mkdirSync(ARTIFACTS, { recursive: true });
    page = await browser.newPage();
    page.on('request', (request) => {
      if (!request.url().startsWith(service.baseUrl)) throw new Error(`left pglease: ${request.url()}`);
      if (!request.url().endsWith('/studio/events')) requests.push(`${request.method()} ${request.url()}`);
    });
    await page.goto(`${service.baseUrl}/v1/leases/${lease.id}/studio#token=${encodeURIComponent(lease.token)}`);
    await page.waitForURL((url) => !url.hash.includes('token='), WAIT);
    await page.evaluate(() => Object.assign(window, { studioTestMarker: 'not reloaded' }));
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await service?.close();
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  });

  it('asks nothing while idle, and follows rows and DDL changed with psql', async () => {
    await open('shelves');
    await expect.poll(following, WAIT).toBe(true);
    // what `ready` asks for (the document, the counts, the page shown) is answered: 2 s without a
    // request; then nothing for 6 s more (the 2 s poll this replaced asked for the document 3 times)
    const deadline = Date.now() + 30_000;
    for (let seen = -1; seen !== requests.length; ) {
      expect(Date.now(), 'the page never went quiet').toBeLessThan(deadline);
      seen = requests.length;
      await sleep(2_000);
    }
    const before = requests.length;
    await sleep(6_000);
    expect(requests.slice(before)).toEqual([]);

    await runAsLease(lease, "INSERT INTO shelves (label) VALUES ('attic'); UPDATE shelves SET label = 'kitchen (north)' WHERE id = 1");
    await cell(3, 'label').waitFor(WAIT);
    await expect.poll(() => cell(1, 'label').innerText(), WAIT).toBe('kitchen (north)');
    await page.locator('#studio-sidebar button[data-relation="shelves"] .count', { hasText: /^3$/ }).waitFor(WAIT);

    await runAsLease(lease, "UPDATE shelves SET label = 'garden (south)' WHERE id = 2");
    await expect.poll(() => cell(2, 'label').innerText(), WAIT).toBe('garden (south)');

    await runAsLease(lease, 'ALTER TABLE shelves ADD COLUMN floor int');
    await page.locator('#studio-grid .tabulator-col[tabulator-field="floor"]').waitFor(WAIT);
    await runAsLease(lease, 'CREATE TABLE rooms (id int PRIMARY KEY, name text)');
    await page.locator('#studio-relations button[data-relation="rooms"]').waitFor(WAIT);
    expect(await page.evaluate(() => (window as unknown as { studioTestMarker?: string }).studioTestMarker)).toBe('not reloaded');
  });

  it('lists views apart from tables, each with its kind', async () => {
    await page.locator('#studio-views button[data-relation="shelf_snapshot"]').waitFor(WAIT);
    expect(await page.locator('#studio-relations button').evaluateAll((buttons) => buttons.map((button) => (button as HTMLElement).dataset.relation))).toEqual(['rooms', 'shelves', 'todos']);
    const views = await page.locator('#studio-views button').evaluateAll((buttons) =>
      buttons.map((button) => [(button as HTMLElement).dataset.relation, (button as HTMLElement).dataset.kind, (button as HTMLElement).dataset.readonly, button.querySelector('.kind')?.textContent]),
    );
    expect(views).toEqual([
      ['shelf_counts', 'view', 'true', 'view read-only'],
      ['shelf_names', 'view', 'false', 'view'],
      ['shelf_snapshot', 'materialized_view', 'true', 'materialized read-only'],
    ]);
    await page.locator('#studio-views button[data-relation="shelf_counts"] .count', { hasText: /^3$/ }).waitFor(WAIT);
    await page.screenshot({ path: path.join(ARTIFACTS, 'studio-views.png') });
  });

  it('edits through a view Postgres can write through, and keeps the others read-only, saying why', async () => {
    await open('shelf_names');
    expect(await page.locator('#studio-readonly').isVisible()).toBe(false);
    expect(await page.locator('#studio-new-row-open').isDisabled()).toBe(false);
    await cell(3, 'label').dblclick();
    await cell(3, 'label').locator('input').fill('loft');
    await page.keyboard.press('Enter');
    await expect.poll(async () => (await leaseValue<{ label: string }>('SELECT label FROM shelves WHERE id = 3'))[0]!.label, WAIT).toBe('loft');

    await open('shelf_counts');
    expect(await page.locator('#studio-readonly').innerText()).toContain('Postgres cannot write through this view');
    expect(await page.locator('#studio-new-row-open').isDisabled()).toBe(true);
    expect(await page.locator('#studio-import').isDisabled()).toBe(true);
    await column('label').first().dblclick();
    expect(await page.locator('#studio-grid .tabulator-cell input').count()).toBe(0);
    expect(await page.locator('#studio-grid .studio-delete').count()).toBe(0);

    await open('shelf_snapshot');
    expect(await page.locator('#studio-readonly').innerText()).toContain('materialized view');
    expect(await column('label').allInnerTexts()).toEqual(['kitchen', 'garden']);
    await column('label').first().dblclick();
    expect(await page.locator('#studio-grid .tabulator-cell input').count()).toBe(0);
    expect(await page.locator('#studio-new-row-open').isDisabled()).toBe(true);
    // a REFRESH (DDL to the event trigger) shows its new rows
    await runAsLease(lease, 'REFRESH MATERIALIZED VIEW shelf_snapshot');
    await expect.poll(() => column('label').allInnerTexts(), WAIT).toEqual(['kitchen (north)', 'garden (south)', 'loft']);
  });

  it('views as a user’s JWT minted for a declared role: row-level security on sub shows and edits their rows only', async () => {
    await page.locator('#studio-view-role').selectOption('member');
    await page.locator('#studio-view-sub').fill('alice');
    await page.locator('#studio-view-use').click();
    await page.locator('#studio-viewing-text', { hasText: 'Viewing as role member, sub alice' }).waitFor(WAIT);
    // only what the role was granted: todos (shelves is the lease role's)
    await page.locator('#studio-relations button[data-relation="todos"] .count', { hasText: /^2$/ }).waitFor(WAIT);
    expect(await page.locator('#studio-relations button').count()).toBe(1);
    await open('todos');
    const alice = await mintJwt(lease.jwt_secret, { role: 'member', sub: 'alice' });
    const titles = (await restAs(alice, '/todos?order=id.asc')).map((row) => row.title);
    expect(titles).toEqual(['alice private', 'alice public']);
    await expect.poll(() => column('title').allInnerTexts(), WAIT).toEqual(titles);

    // an edit as alice, and an insert whose owner defaults to her sub
    await cell(1, 'title').dblclick();
    await cell(1, 'title').locator('input').fill('alice private, edited');
    await page.keyboard.press('Enter');
    await expect.poll(async () => (await leaseValue<{ title: string }>('SELECT title FROM todos WHERE id = 1'))[0]!.title, WAIT).toBe('alice private, edited');
    await page.locator('#studio-new-row-open').click();
    await page.locator('#studio-new-row-fields input[data-column="title"]').fill('alice new');
    await page.locator('#studio-new-row-save').click();
    await expect.poll(() => leaseValue('SELECT owner FROM todos WHERE title = \'alice new\''), WAIT).toEqual([{ owner: 'alice' }]);
    // bob's row cannot be reached: the policy hides it
    expect(await column('title').allInnerTexts()).not.toContain('bob private');
    await page.screenshot({ path: path.join(ARTIFACTS, 'studio-as-alice.png') });

    // a pasted JWT: bob's
    const bob = await mintJwt(lease.jwt_secret, { role: 'member', sub: 'bob' });
    await page.locator('#studio-view-jwt').fill(bob);
    await page.locator('#studio-view-jwt-use').click();
    await page.locator('#studio-viewing-text', { hasText: 'Viewing as role member, sub bob' }).waitFor(WAIT);
    await open('todos');
    await expect.poll(() => column('title').allInnerTexts(), WAIT).toEqual(['bob private']);

    // anon: the public rows, read-only (it was granted SELECT only)
    await page.locator('#studio-view-role').selectOption('anon');
    await page.locator('#studio-view-use').click();
    await page.locator('#studio-viewing-text', { hasText: 'Viewing as anon' }).waitFor(WAIT);
    await open('todos');
    await expect.poll(() => column('title').allInnerTexts(), WAIT).toEqual((await restAs(null, '/todos?order=id.asc')).map((row) => row.title));
    expect(await page.locator('#studio-readonly').innerText()).toContain('may not update todos');

    // back to the lease role: every row
    await page.locator('#studio-view-reset').click();
    await page.locator('#studio-viewing').waitFor({ state: 'hidden', ...WAIT });
    await open('todos');
    await expect.poll(() => column('title').allInnerTexts(), WAIT).toEqual(['alice private, edited', 'alice public', 'bob private', 'alice new']);
  }, 90_000);

  it('opened with a user’s JWT alone: their rows, none of the lease’s controls, changes followed by polling', async () => {
    const other = await browser.newPage();
    const alice = await mintJwt(lease.jwt_secret, { role: 'member', sub: 'alice' });
    await other.goto(`${service.baseUrl}/v1/leases/${lease.id}/studio#token=${encodeURIComponent(alice)}`);
    await other.locator('#studio-viewing-text', { hasText: 'Viewing as role member, sub alice' }).waitFor(WAIT);
    await other.locator('#studio-title', { hasText: /^todos$/ }).waitFor(WAIT);
    const titles = () => other.locator('#studio-grid .tabulator-row .tabulator-cell[tabulator-field="title"]').allInnerTexts();
    await expect.poll(titles, WAIT).toEqual(['alice private, edited', 'alice public', 'alice new']);
    expect(await other.locator('#studio-card').isVisible()).toBe(false);
    expect(await other.locator('#studio-sql').isVisible()).toBe(false);
    expect(await other.locator('#studio-view-as').isVisible()).toBe(false);
    expect(await other.locator('#studio-view-reset').isVisible()).toBe(false);
    // no feed for a JWT (the lease's token or the admin's only): the page polls, and sees psql's write
    await runAsLease(lease, "UPDATE todos SET title = 'alice public, renamed' WHERE title = 'alice public'");
    await expect.poll(titles, WAIT).toEqual(['alice private, edited', 'alice public, renamed', 'alice new']);
    await other.close();
  });

  it('says so when the JWT is refused', async () => {
    const other = await browser.newPage();
    await other.goto(`${service.baseUrl}/v1/leases/${lease.id}/studio#token=${encodeURIComponent(await mintJwt('not-the-secret-of-this-lease-at-all-0123456789', { role: 'member', sub: 'eve' }))}`);
    const message = other.locator('#studio-message');
    await message.waitFor(WAIT);
    expect(await message.innerText()).toContain('The JWT you view as was refused');
    await other.close();
  });
});
