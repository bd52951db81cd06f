/**
 * The lease studio in a real browser (headless Chromium through playwright-core): what a person
 * sees and does on `/v1/leases/:id/studio` matches what the REST API and psql say. Tables made
 * with psql are listed with their row counts; sorting and filtering show the rows a REST query
 * gives; an edit, an insert and a delete reach the database; a check violation is shown next to
 * the cell in words and the old value stays; a table created with psql appears without a reload;
 * the CSV export is the REST API's `text/csv`; the SQL box runs a select (and a write only once
 * confirmed); a wrong token gets one clear message. Screenshots are saved under test/artifacts/
 * (not committed). Needs Debian's `chromium` package; skipped without it.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectPath } from '../src/paths.js';
import { runAsLease } from './fixtures/openapi/fixture.js';
import { createLease, queryUrl, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`studio-page.test.ts skipped: no ${CHROMIUM} (apt-get install -y chromium chromium-driver)`);

/** Generous: the suite runs twice at once on two cores. */
const WAIT = { timeout: 20_000 };
const ARTIFACTS = projectPath('test/artifacts');

let service: TestService;
let lease: CreatedLeaseJson;
let browser: BrowserContext;
let profileDir: string;
let page: Page;
const dialogs: string[] = [];

const SCHEMA = `
  CREATE TABLE authors (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
  CREATE TABLE books (
    id serial PRIMARY KEY,
    title text NOT NULL,
    pages int CHECK (pages > 0),
    author_id int REFERENCES authors (id),
    in_print boolean NOT NULL DEFAULT true,
    meta jsonb
  );
  CREATE TABLE readings (at timestamptz NOT NULL DEFAULT now(), note text);
  INSERT INTO authors (name) VALUES ('Agnès Varda'), ('Chantal Akerman'), ('Ursula K. Le Guin');
  INSERT INTO books (title, pages, author_id, in_print, meta) VALUES
    ('The Dispossessed', 387, 3, true, '{"award": "Hugo"}'),
    ('The Left Hand of Darkness', 304, 3, true, NULL),
    ('Varda par Agnès', 239, 1, false, NULL),
    ('The Lathe of Heaven', 184, 3, true, NULL),
    ('Une famille à Bruxelles', 80, 2, false, NULL),
    ('Always Coming Home', 523, 3, false, '[1, 2]'),
    ('The Word for World Is Forest', 189, 3, true, NULL),
    ('Ma mère rit', 210, 2, true, NULL);
  INSERT INTO readings (note) VALUES ('first'), ('second');
`;

async function rest(pathAndQuery: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${lease.rest_url}${pathAndQuery}`, { headers: { authorization: `Bearer ${lease.token}`, ...headers } });
}

async function restIds(pathAndQuery: string): Promise<number[]> {
  const response = await rest(pathAndQuery);
  expect(response.status).toBe(200);
  return ((await response.json()) as { id: number }[]).map((row) => row.id);
}

/** The ids of the rows the grid shows, top to bottom. */
async function shownIds(): Promise<number[]> {
  const texts = await page.locator('#studio-grid .tabulator-row .tabulator-cell[tabulator-field="id"]').allInnerTexts();
  return texts.map((text) => Number(text.trim()));
}

function cell(id: number, field: string) {
  return page.locator('#studio-grid .tabulator-row', { has: page.locator(`.tabulator-cell[tabulator-field="id"]`, { hasText: new RegExp(`^${id}$`) }) }).locator(`.tabulator-cell[tabulator-field="${field}"]`);
}

async function openRelation(name: string): Promise<void> {
  await page.locator(`#studio-relations button[data-relation="${name}"]`).click();
  await page.locator('#studio-title', { hasText: new RegExp(`^${name}$`) }).waitFor(WAIT);
  await page.locator('#studio-grid .tabulator-row, #studio-grid .tabulator-placeholder').first().waitFor(WAIT);
}

const KEY_CODES: Record<string, number> = { Enter: 13, Escape: 27, ArrowLeft: 37, ArrowUp: 38, ArrowRight: 39, ArrowDown: 40 };

/**
 * Presses keys without waiting for the page between them (Playwright's press waits for each):
 * the key events are queued in the browser at once, as a quick typist's are.
 */
async function pressAtOnce(keys: string[]): Promise<void> {
  const cdp = await browser.newCDPSession(page);
  const send = (type: string, key: string) => {
    const code = KEY_CODES[key]!;
    return cdp.send('Input.dispatchKeyEvent', { type, key, code: key, windowsVirtualKeyCode: code, nativeVirtualKeyCode: code });
  };
  await Promise.all(keys.flatMap((key) => (key === 'Enter' ? [send('rawKeyDown', key), send('char', key), send('keyUp', key)] : [send('rawKeyDown', key), send('keyUp', key)])));
  await cdp.detach();
}

async function leaseValue<T extends Record<string, unknown>>(sql: string): Promise<T[]> {
  return queryUrl<T>(lease.url, sql);
}

async function launch(): Promise<BrowserContext> {
  profileDir = mkdtempSync(path.join(tmpdir(), 'pglease-chromium-'));
  return chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 1000 },
    acceptDownloads: true,
  });
}

describe.skipIf(!hasChromium)('the lease studio in Chromium', { timeout: 60_000 }, () => {
  beforeAll(async () => {
    service = await startTestService();
    lease = await createLease(service);
    await runAsLease(lease, SCHEMA);
    browser = await launch();
    mkdirSync(ARTIFACTS, { recursive: true });
    page = await browser.newPage();
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.accept();
    });
    page.on('request', (request) => {
      if (!request.url().startsWith(service.baseUrl) && !request.url().startsWith('blob:')) throw new Error(`left pglease: ${request.url()}`);
    });
    await page.goto(`${service.baseUrl}/v1/leases/${lease.id}/studio#token=${encodeURIComponent(lease.token)}`);
    await page.waitForURL((url) => !url.hash.includes('token='), WAIT);
    // a marker that a reload would lose
    await page.evaluate(() => Object.assign(window, { studioTestMarker: 'not reloaded' }));
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await service?.close();
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  });

  it('lists the tables made with psql, with their row counts, and the lease’s card', async () => {
    for (const [name, count] of [['authors', '3'], ['books', '8'], ['readings', '2']] as const) {
      await page.locator(`#studio-relations button[data-relation="${name}"] .count`, { hasText: new RegExp(`^${count}$`) }).waitFor(WAIT);
    }
    await page.locator('#studio-card-state', { hasText: 'active' }).waitFor(WAIT);
    await page.locator('#studio-card-tables', { hasText: /^3$/ }).waitFor(WAIT);
    await expect.poll(() => page.locator('#studio-card-expires').innerText(), WAIT).toMatch(/^in \d+ min/);
  });

  it('types the columns: numbers right-aligned, booleans as ticks, JSON pretty, foreign keys with the referenced row’s label', async () => {
    await openRelation('books');
    expect(await shownIds()).toEqual(await restIds('/books?order=id.asc'));
    const pages = cell(1, 'pages');
    expect(await pages.evaluate((element) => getComputedStyle(element).textAlign)).toBe('right');
    expect(await cell(1, 'in_print').locator('svg').count()).toBe(1);
    expect(await cell(1, 'meta').innerText()).toBe('{\n  "award": "Hugo"\n}');
    expect(await cell(1, 'author_id').innerText()).toMatch(/^3\s*Ursula K\. Le Guin$/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'studio-books.png') });
  });

  it('sorts and filters to the rows a REST query gives', async () => {
    await openRelation('books');
    // header click: ascending by pages (the primary key breaks ties, as the studio asks)
    await page.locator('#studio-grid .tabulator-col[tabulator-field="pages"] .tabulator-col-title').click();
    await expect.poll(shownIds, WAIT).toEqual(await restIds('/books?order=pages.asc,id.asc'));
    await page.locator('#studio-grid .tabulator-col[tabulator-field="pages"] .tabulator-col-title').click();
    await expect.poll(shownIds, WAIT).toEqual(await restIds('/books?order=pages.desc,id.asc'));

    // per-column filters with PostgREST's operators by type
    await page.locator('#studio-grid .tabulator-col[tabulator-field="pages"] input').fill('200..400');
    await expect.poll(shownIds, WAIT).toEqual(await restIds('/books?pages=gte.200&pages=lte.400&order=pages.desc,id.asc'));
    await page.locator('#studio-grid .tabulator-col[tabulator-field="title"] input').fill('the');
    await expect.poll(shownIds, WAIT).toEqual(await restIds('/books?pages=gte.200&pages=lte.400&title=ilike.*the*&order=pages.desc,id.asc'));
    await page.locator('#studio-grid .tabulator-col[tabulator-field="pages"] input').fill('');
    await page.locator('#studio-grid .tabulator-col[tabulator-field="title"] input').fill('');
    await page.locator('#studio-grid .tabulator-col[tabulator-field="meta"] input').fill('!null');
    await expect.poll(shownIds, WAIT).toEqual(await restIds('/books?meta=not.is.null&order=pages.desc,id.asc'));
    await page.locator('#studio-grid .tabulator-col[tabulator-field="meta"] input').fill('');
    // a filter PostgREST refuses is said in its words, until the next page loads
    await page.locator('#studio-grid .tabulator-col[tabulator-field="pages"] input').fill('>many');
    await page.locator('#studio-status.error', { hasText: 'Not a valid value for this column.' }).waitFor(WAIT);
    expect(await page.locator('#studio-status').innerText()).toContain('invalid input syntax for type integer: "many"');
    await page.locator('#studio-grid .tabulator-col[tabulator-field="pages"] input').fill('');
    await expect.poll(() => page.locator('#studio-status').innerText(), WAIT).toBe('');
    await page.locator('#studio-grid .tabulator-col[tabulator-field="in_print"] select').selectOption('false');
    await expect.poll(shownIds, WAIT).toEqual(await restIds('/books?in_print=is.false&order=pages.desc,id.asc'));
    await page.screenshot({ path: path.join(ARTIFACTS, 'studio-books-filtered.png') });
  });

  it('keeps the focus in a header filter once its filter applies: typing on after a pause extends it', async () => {
    await openRelation('books');
    const pages = page.locator('#studio-grid .tabulator-col[tabulator-field="pages"] input');
    await pages.click();
    await page.keyboard.type('<2');
    // applied after the pause: no book has fewer than 2 pages
    await expect.poll(shownIds, WAIT).toEqual([]);
    expect(await pages.evaluate((element) => element === document.activeElement)).toBe(true);
    // the person goes on typing in the same box: `<200`
    await page.keyboard.type('00');
    await expect.poll(shownIds, WAIT).toEqual(await restIds('/books?pages=lt.200&order=id.asc'));
    expect(await pages.inputValue()).toBe('<200');
    await pages.fill('');
    await expect.poll(shownIds, WAIT).toEqual(await restIds('/books?order=id.asc'));
  });

  it('saves a cell edit (keyboard: arrows, Enter, Esc) and psql sees it', async () => {
    await openRelation('books');
    await cell(2, 'title').click();
    // one step right is pages; Enter edits, Esc cancels without a request
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('Enter');
    await cell(2, 'pages').locator('input').waitFor(WAIT);
    await page.keyboard.type('999');
    // Esc, then back to the title and Enter, the keys sent back to back as a quick typist's (or a
    // loaded machine's) arrive: Tabulator ignored keys for 10 ms after an edit ended, and these
    // were lost in 12 of 15 tries before the studio lifted that block
    await pressAtOnce(['Escape', 'ArrowLeft', 'Enter']);
    await expect.poll(() => cell(2, 'pages').innerText(), WAIT).toBe('304');
    const input = cell(2, 'title').locator('input');
    await input.waitFor(WAIT);
    await input.fill('The Left Hand of Darkness (1969)');
    await page.keyboard.press('Enter');
    await expect.poll(async () => (await leaseValue<{ title: string }>('SELECT title FROM books WHERE id = 2'))[0]!.title, WAIT).toBe('The Left Hand of Darkness (1969)');
    expect((await leaseValue<{ pages: number }>('SELECT pages FROM books WHERE id = 2'))[0]!.pages).toBe(304);
    await page.locator('#studio-status', { hasText: 'Saved title' }).waitFor(WAIT);

    // JSON is edited as text and sent as JSON
    await cell(2, 'meta').dblclick();
    await cell(2, 'meta').locator('input').fill('{"award": "Nebula", "year": 1969}');
    await page.keyboard.press('Enter');
    await expect.poll(async () => (await leaseValue<{ meta: unknown }>('SELECT meta FROM books WHERE id = 2'))[0]!.meta, WAIT).toEqual({ award: 'Nebula', year: 1969 });
    // jsonb keeps its own key order
    await expect.poll(() => cell(2, 'meta').innerText(), WAIT).toBe('{\n  "year": 1969,\n  "award": "Nebula"\n}');
  });

  it('shows a check violation next to the cell in words and keeps the old value', async () => {
    await openRelation('books');
    await cell(3, 'pages').dblclick();
    const input = cell(3, 'pages').locator('input');
    await input.waitFor(WAIT);
    await input.fill('-5');
    await page.keyboard.press('Enter');
    const bubble = page.locator('.studio-cell-error');
    await bubble.waitFor(WAIT);
    expect(await bubble.innerText()).toContain('violates check constraint "books_pages_check"');
    expect(await bubble.innerText()).toContain('The value breaks a check of the table.');
    await expect.poll(() => cell(3, 'pages').innerText(), WAIT).toBe('239');
    expect((await leaseValue<{ pages: number }>('SELECT pages FROM books WHERE id = 3'))[0]!.pages).toBe(239);
    // the bubble sits next to the cell
    const [bubbleBox, cellBox] = [await bubble.boundingBox(), await cell(3, 'pages').boundingBox()];
    expect(Math.abs(bubbleBox!.y - (cellBox!.y + cellBox!.height))).toBeLessThan(40);
    await page.screenshot({ path: path.join(ARTIFACTS, 'studio-check-violation.png') });

    // a unique violation, in words too
    await openRelation('authors');
    await cell(2, 'name').dblclick();
    await cell(2, 'name').locator('input').fill('Agnès Varda');
    await page.keyboard.press('Enter');
    await page.locator('.studio-cell-error', { hasText: 'Another row already has this value.' }).waitFor(WAIT);
    expect(await page.locator('.studio-cell-error').innerText()).toContain('Key (name)=(Agnès Varda) already exists.');
    await expect.poll(() => cell(2, 'name').innerText(), WAIT).toBe('Chantal Akerman');
  });

  it('inserts a row (defaults shown) and deletes one', async () => {
    await openRelation('books');
    await page.locator('#studio-new-row-open').click();
    const inPrint = page.locator('#studio-new-row-fields select[data-column="in_print"] option').first();
    expect(await inPrint.innerText()).toBe('default: true');
    await page.locator('#studio-new-row-fields input[data-column="title"]').fill('The Telling');
    await page.locator('#studio-new-row-fields input[data-column="pages"]').fill('264');
    await page.locator('#studio-new-row-fields input[data-column="author_id"]').fill('3');
    await page.locator('#studio-new-row-save').click();
    await expect.poll(() => leaseValue('SELECT title, pages, author_id, in_print FROM books WHERE id = 9'), WAIT).toEqual([{ title: 'The Telling', pages: 264, author_id: 3, in_print: true }]);
    await cell(9, 'title').waitFor(WAIT);
    await page.locator('#studio-relations button[data-relation="books"] .count', { hasText: /^9$/ }).waitFor(WAIT);

    // a failed insert says why in the form
    await page.locator('#studio-new-row-open').click();
    await page.locator('#studio-new-row-fields input[data-column="pages"]').fill('12');
    await page.locator('#studio-new-row-save').click();
    await page.locator('#studio-new-row-error', { hasText: 'This column needs a value.' }).waitFor(WAIT);
    await page.locator('#studio-new-row-cancel').click();

    await cell(9, '__delete').locator('button').click();
    await expect.poll(() => leaseValue('SELECT id FROM books WHERE id = 9'), WAIT).toEqual([]);
    expect(dialogs.at(-1)).toContain('Delete this row of books (id = 9)');
    await expect.poll(shownIds, WAIT).toEqual(await restIds('/books?order=id.asc'));
  });

  it('keeps a table without a primary key read-only, and says why', async () => {
    await openRelation('readings');
    expect(await page.locator('#studio-readonly').innerText()).toContain('no primary key');
    expect(await page.locator('#studio-new-row-open').isDisabled()).toBe(true);
    expect(await page.locator('#studio-import').isDisabled()).toBe(true);
    await page.locator('#studio-grid .tabulator-cell[tabulator-field="note"]').first().dblclick();
    expect(await page.locator('#studio-grid .tabulator-cell[tabulator-field="note"] input').count()).toBe(0);
    expect(await page.locator('#studio-grid .studio-delete').count()).toBe(0);
  });

  it('shows a table created with psql without a reload', async () => {
    // a column name is the lease's to choose: it is shown as text, never run as HTML
    const trap = "<img src=x onerror='window.studioPwned=1'>";
    await runAsLease(lease, `CREATE TABLE genres (id int PRIMARY KEY, label text NOT NULL, "${trap}" text); INSERT INTO genres VALUES (1, 'science fiction', '<b>bold?</b>')`);
    await page.locator('#studio-relations button[data-relation="genres"] .count', { hasText: /^1$/ }).waitFor(WAIT);
    expect(await page.evaluate(() => (window as unknown as { studioTestMarker?: string }).studioTestMarker)).toBe('not reloaded');
    await openRelation('genres');
    expect(await cell(1, 'label').innerText()).toBe('science fiction');
    expect(await page.locator('#studio-grid .tabulator-col:not([tabulator-field="__delete"]) .tabulator-col-title').allInnerTexts()).toEqual(['id', 'label', trap]);
    expect(await page.locator('#studio-grid .tabulator-cell').filter({ hasText: '<b>bold?</b>' }).count()).toBe(1);
    expect(await page.evaluate(() => (window as unknown as { studioPwned?: number }).studioPwned)).toBeUndefined();
  });

  it('exports the current view as the REST API’s text/csv, and imports a CSV file', async () => {
    await openRelation('books');
    await page.locator('#studio-grid .tabulator-col[tabulator-field="author_id"] input').fill('3');
    await expect.poll(shownIds, WAIT).toEqual(await restIds('/books?author_id=eq.3&order=id.asc'));
    const [download] = await Promise.all([page.waitForEvent('download', WAIT), page.locator('#studio-export').click()]);
    expect(download.suggestedFilename()).toBe('books.csv');
    const exported = readFileSync((await download.path())!, 'utf8');
    const expected = await (await rest('/books?author_id=eq.3&order=id.asc', { accept: 'text/csv' })).text();
    expect(exported).toBe(expected);
    expect(exported.split('\n')[0]).toBe('id,title,pages,author_id,in_print,meta');

    await openRelation('authors');
    await page.locator('#studio-import').setInputFiles({ name: 'authors.csv', mimeType: 'text/csv', buffer: Buffer.from('name\nMarguerite Duras\nOctavia E. Butler\n') });
    await page.locator('#studio-status', { hasText: 'Imported 2 rows from authors.csv.' }).waitFor(WAIT);
    expect(await leaseValue('SELECT name FROM authors WHERE id > 3 ORDER BY id')).toEqual([{ name: 'Marguerite Duras' }, { name: 'Octavia E. Butler' }]);
    await page.locator('#studio-relations button[data-relation="authors"] .count', { hasText: /^5$/ }).waitFor(WAIT);
  });

  it('runs a select in the SQL box into the grid, and a write only once confirmed', async () => {
    await page.locator('#studio-sql-text').fill('select id, title, pages from books where pages > 300 order by id');
    await page.locator('#studio-sql-run').click();
    await page.locator('#studio-title', { hasText: 'SQL result' }).waitFor(WAIT);
    await expect.poll(() => page.locator('#studio-grid .tabulator-row .tabulator-cell[tabulator-field="c1"]').allInnerTexts(), WAIT).toEqual(
      ((await (await rest('/books?pages=gt.300&order=id.asc')).json()) as { title: string }[]).map((row) => row.title),
    );
    await page.screenshot({ path: path.join(ARTIFACTS, 'studio-sql.png') });

    const asked = dialogs.length;
    await page.locator('#studio-sql-text').fill(`insert into genres values (2, 'essay') returning id, label`);
    await page.locator('#studio-sql-run').click();
    await page.locator('#studio-status', { hasText: 'INSERT: 1 row' }).waitFor(WAIT);
    expect(dialogs.slice(asked)).toEqual(['This statement writes to the lease. Run it with writes allowed?']);
    expect(await leaseValue('SELECT label FROM genres WHERE id = 2')).toEqual([{ label: 'essay' }]);

    await page.locator('#studio-sql-text').fill('select * from pglease.leases');
    await page.locator('#studio-sql-run').click();
    await page.locator('#studio-sql-error', { hasText: 'permission denied for schema pglease' }).waitFor(WAIT);
  });

  it('renews the lease from its card', async () => {
    const before = (await queryUrl<{ expires_at: Date }>(service.host.databaseUrl, 'SELECT expires_at FROM pglease.leases WHERE id = $1', [lease.id]))[0]!.expires_at;
    await page.locator('#studio-renew').click();
    await page.locator('#studio-status', { hasText: 'Renewed' }).waitFor(WAIT);
    const after = (await queryUrl<{ expires_at: Date }>(service.host.databaseUrl, 'SELECT expires_at FROM pglease.leases WHERE id = $1', [lease.id]))[0]!.expires_at;
    expect(after.getTime()).toBeGreaterThanOrEqual(before.getTime());
    await page.screenshot({ path: path.join(ARTIFACTS, 'studio-page.png') });
  });

  it('links the Swagger page and the studio both ways, the token kept', async () => {
    await page.locator('#studio-docs-link').click();
    await page.locator('#lease-token-state', { hasText: 'as the lease role' }).waitFor(WAIT);
    await page.locator('#lease-studio-link').click();
    await page.locator('#studio-relations button[data-relation="books"]').waitFor(WAIT);
  });

  it('answers a wrong token with one clear message', async () => {
    const other = await browser.newPage();
    await other.goto(`${service.baseUrl}/v1/leases/${lease.id}/studio#token=pgl_not_this_leases_token`);
    const message = other.locator('#studio-message');
    await message.waitFor(WAIT);
    expect(await message.innerText()).toBe(`This token is not lease ${lease.id}’s token. Paste the token that was printed when the lease was created (pgl_…) above.`);
    expect(await other.locator('#studio-main').isVisible()).toBe(false);
    expect(await other.locator('#studio-card').isVisible()).toBe(false);
    expect(await other.locator('body').innerText()).not.toMatch(/fail/i);
    await other.screenshot({ path: path.join(ARTIFACTS, 'studio-wrong-token.png') });
    await other.close();
  });

  it('releases the lease from its card', async () => {
    await page.locator('#studio-release').click();
    await page.locator('#studio-message', { hasText: `Lease ${lease.id} was released` }).waitFor(WAIT);
    expect(dialogs.at(-1)).toContain(`Release lease ${lease.id}?`);
    expect((await queryUrl<{ state: string }>(service.host.databaseUrl, 'SELECT state FROM pglease.leases WHERE id = $1', [lease.id]))[0]!.state).not.toBe('active');
  });
});
