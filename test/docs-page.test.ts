/**
 * The lease's Swagger UI page in a real browser (headless Chromium through playwright-core): it
 * loads the lease role's document with the token given in the link, and "Try it out" → "Execute"
 * runs a request against the lease's REST API with that token. Screenshots are saved under
 * test/artifacts/ (not committed). Needs Debian's `chromium` package; skipped without it.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectPath } from '../src/paths.js';
import { applyFixture, runAsLease } from './fixtures/openapi/fixture.js';
import { createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`docs-page.test.ts skipped: no ${CHROMIUM} (apt-get install -y chromium chromium-driver)`);

let service: TestService;
let lease: CreatedLeaseJson;
let browser: BrowserContext;
let profileDir: string;

describe.skipIf(!hasChromium)('lease docs page in Chromium', () => {
  beforeAll(async () => {
    service = await startTestService();
    lease = await createLease(service);
    await applyFixture(lease);
    await runAsLease(lease, `INSERT INTO directors (name) VALUES ('Agnès Varda'), ('Chantal Akerman')`);
    profileDir = mkdtempSync(path.join(tmpdir(), 'pglease-chromium-'));
    browser = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 1400 },
    });
  });

  afterAll(async () => {
    await browser?.close();
    await service?.close();
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  });

  it('runs a request with the lease token through "Try it out" and "Execute"', async () => {
    const page = await browser.newPage();
    const failed: string[] = [];
    page.on('requestfailed', (request) => failed.push(request.url()));
    page.on('request', (request) => {
      if (!request.url().startsWith(service.baseUrl)) failed.push(`left pglease: ${request.url()}`);
    });
    // the token travels in the fragment: the server never sees it in a URL
    await page.goto(`${service.baseUrl}/v1/leases/${lease.id}/docs#token=${encodeURIComponent(lease.token)}`);
    await expect.poll(() => page.url()).not.toContain('#token=');
    await page.locator('#lease-token-state', { hasText: 'as the lease role' }).waitFor();

    // /films is in the lease role's document only: the document was fetched with the token
    const films = page.locator('.opblock.opblock-get', { has: page.locator('.opblock-summary-path', { hasText: /^\/films$/ }) });
    await films.waitFor({ timeout: 15_000 });
    const directors = page.locator('.opblock.opblock-get', { has: page.locator('.opblock-summary-path', { hasText: /^\/directors$/ }) });
    await directors.locator('.opblock-summary').click();
    await directors.locator('button.try-out__btn').click();
    await directors.locator('button.execute').click();

    const response = directors.locator('.live-responses-table .response');
    await response.waitFor({ timeout: 15_000 });
    await expect.poll(() => response.locator('.response-col_status').first().innerText()).toBe('200');
    const body = await response.locator('.response-col_description .microlight, .response-col_description pre').first().innerText();
    expect(JSON.parse(body)).toEqual([
      expect.objectContaining({ name: 'Agnès Varda' }),
      expect.objectContaining({ name: 'Chantal Akerman' }),
    ]);
    // the curl line Swagger UI shows carries the token it sent
    expect(await directors.locator('.curl-command').innerText()).toContain(`Authorization: Bearer ${lease.token}`);

    mkdirSync(projectPath('test/artifacts'), { recursive: true });
    await directors.screenshot({ path: projectPath('test/artifacts/lease-docs-try-it-out.png') });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: projectPath('test/artifacts/lease-docs-page.png') });
    expect(failed).toEqual([]);
  }, 90_000);

  it('shows the server\'s own message for a token that is not the lease\'s, and a page for a lease that is gone', async () => {
    const page = await browser.newPage();
    await page.goto(`${service.baseUrl}/v1/leases/${lease.id}/docs#token=pgl_not-this-leases`);
    const problem = page.locator('#lease-problem');
    await problem.waitFor({ state: 'visible', timeout: 15_000 });
    expect(await problem.innerText()).toContain('The token is not this lease');
    expect(await page.locator('#lease-token-state').innerText()).toBe('token refused');
    expect(await page.locator('body').innerText()).not.toContain('as the lease role');
    await page.screenshot({ path: projectPath('test/artifacts/lease-docs-wrong-token.png') });

    const gone = '00000000-0000-4000-8000-000000000000';
    const answer = await page.goto(`${service.baseUrl}/v1/leases/${gone}/docs`);
    expect(answer?.status()).toBe(404);
    expect(await page.locator('h1').innerText()).toBe(`No live lease ${gone}`);
    // a script still gets the control API's error
    const script = await fetch(`${service.baseUrl}/v1/leases/${gone}/docs`);
    expect(script.status).toBe(404);
    expect(await script.json()).toMatchObject({ code: 'PGLEASE_NOT_FOUND' });
  });
});
