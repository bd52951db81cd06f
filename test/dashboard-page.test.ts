/**
 * The operator dashboard in a real browser (headless Chromium through playwright-core): it opens
 * with the admin token, shows the numbers the JSON endpoints give (live leases, creates, hosts,
 * jobs), draws its four charts with uPlot (served by pglease) and redraws them with the data of
 * the next poll, follows a create without a reload, finds a lease by its id and opens its pg:info card,
 * refuses a token that is not the admin's in words, loads nothing from outside pglease and logs
 * no console error. Screenshots are saved under test/artifacts/ (not committed). Needs Debian's
 * `chromium` package; skipped without it.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectPath } from '../src/paths.js';
import { ADMIN_TOKEN, createLease, startTestService, type CreatedLeaseJson, type TestService } from './support/service.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`dashboard-page.test.ts skipped: no ${CHROMIUM} (apt-get install -y chromium chromium-driver)`);

/** Generous: the suite runs twice at once on two cores. */
const WAIT = { timeout: 20_000 };
const ARTIFACTS = projectPath('test/artifacts');
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

let service: TestService;
let browser: BrowserContext;
let profileDir: string;
let page: Page;
const consoleErrors: string[] = [];
const leases: CreatedLeaseJson[] = [];

type ChartName = 'creates' | 'live' | 'rest' | 'p95';
/** What a chart holds now, read from the page's own state (window.pgleaseDashboard: uPlot's data). */
interface ChartState {
  points: number;
  last: number | null;
  sum: number;
  draws: number;
}

async function chartState(name: ChartName): Promise<ChartState> {
  return page.evaluate((chart) => {
    const dashboard = (window as unknown as { pgleaseDashboard: { charts: Record<string, { data: (number | null)[][] }>; draws: Record<string, number> } }).pgleaseDashboard;
    const values = dashboard.charts[chart]!.data[1]!;
    return { points: values.length, last: values.at(-1) ?? null, sum: values.reduce<number>((total, value) => total + (value ?? 0), 0), draws: dashboard.draws[chart]! };
  }, name);
}

async function getJson<T>(pathAndQuery: string): Promise<T> {
  const response = await fetch(`${service.baseUrl}${pathAndQuery}`, { headers: admin });
  expect(response.status).toBe(200);
  return (await response.json()) as T;
}

async function newPage(): Promise<Page> {
  const opened = await browser.newPage();
  opened.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  opened.on('pageerror', (error) => consoleErrors.push(error.message));
  opened.on('response', (response) => {
    if (response.status() >= 400) consoleErrors.push(`${response.status()} ${response.url()}`);
  });
  opened.on('request', (request) => {
    if (!request.url().startsWith(service.baseUrl)) consoleErrors.push(`left pglease: ${request.url()}`);
  });
  return opened;
}

describe.skipIf(!hasChromium)('the operator dashboard in Chromium', { timeout: 60_000 }, () => {
  beforeAll(async () => {
    service = await startTestService();
    leases.push(await createLease(service, { name: 'first dashboard lease' }, admin));
    profileDir = mkdtempSync(path.join(tmpdir(), 'pglease-dashboard-chromium-'));
    browser = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1400, height: 1100 },
    });
    mkdirSync(ARTIFACTS, { recursive: true });
    page = await newPage();
    // polls every second, so that a change shows within the test's bounds
    await page.goto(`${service.baseUrl}/dashboard?every=1#token=${encodeURIComponent(ADMIN_TOKEN)}`);
    await page.waitForURL((url) => !url.hash.includes('token='), WAIT);
    await page.locator('#dash-main').waitFor({ state: 'visible', ...WAIT });
    // a marker that a reload would lose
    await page.evaluate(() => Object.assign(window, { dashboardTestMarker: 'not reloaded' }));
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    for (const lease of leases) await fetch(`${service.baseUrl}/v1/leases/${lease.id}`, { method: 'DELETE', headers: admin }).catch(() => undefined);
    await service?.close();
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  });

  it('shows the numbers the JSON endpoints give: live leases, creates, hosts and jobs', async () => {
    const snapshot = await getJson<{ leases: { live: number }; creates: { last_hour: number } }>('/v1/dashboard');
    await expect.poll(() => page.locator('#dash-live').innerText(), WAIT).toBe(String(snapshot.leases.live));
    await expect.poll(() => page.locator('#dash-creates').innerText(), WAIT).toBe(String(snapshot.creates.last_hour));
    const hosts = await getJson<{ items: { name: string }[] }>('/v1/hosts');
    for (const host of hosts.items) await page.locator('#dash-hosts tbody tr', { hasText: host.name }).waitFor(WAIT);
    const jobs = await getJson<{ items: { name: string; schedule: string }[] }>('/v1/jobs');
    expect(jobs.items.length).toBeGreaterThanOrEqual(4);
    for (const job of jobs.items) await page.locator('#dash-jobs tbody tr', { hasText: job.name }).filter({ hasText: job.schedule }).waitFor(WAIT);
    // four uPlot charts, each a canvas with the points of the JSON's history
    await expect.poll(() => page.locator('#dash-charts .uplot canvas').count(), WAIT).toBe(4);
    const history = await getJson<{ leases: { live: number }; history: { catalog: unknown[]; process: unknown[] } }>('/v1/dashboard');
    await expect.poll(async () => (await chartState('live')).last, WAIT).toBe(history.leases.live);
    expect((await chartState('creates')).points).toBeGreaterThanOrEqual(history.history.catalog.length - 1);
    expect((await chartState('creates')).sum).toBeGreaterThanOrEqual(1);
    // uPlot's legend (its cursor's values) and the page's own line under each chart
    expect(await page.locator('#dash-charts .u-legend').count()).toBe(4);
    await expect.poll(() => page.locator('#dash-chart-live + .chart-summary').innerText(), WAIT).toBe(`now ${history.leases.live} · max ${history.leases.live}`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true });
  });

  it('follows a create and REST traffic without a reload, redrawing its charts', async () => {
    const before = Number(await page.locator('#dash-live').innerText());
    const [liveBefore, createsBefore] = [await chartState('live'), await chartState('creates')];
    expect(liveBefore.last).toBe(before);
    const lease = await createLease(service, { name: 'second dashboard lease' }, admin);
    leases.push(lease);
    await expect.poll(() => page.locator('#dash-live').innerText(), WAIT).toBe(String(before + 1));
    // the charts' last values moved with the create, and their canvases were drawn again
    await expect.poll(async () => (await chartState('live')).last, WAIT).toBe(before + 1);
    await expect.poll(async () => (await chartState('creates')).sum, WAIT).toBe(createsBefore.sum + 1);
    expect((await chartState('live')).draws).toBeGreaterThan(liveBefore.draws);
    expect((await chartState('creates')).draws).toBeGreaterThan(createsBefore.draws);
    // the new lease is in the list and among the recent events
    await page.locator(`#dash-leases button[data-lease-id="${lease.id}"]`).waitFor(WAIT);
    await page.locator(`#dash-events button[data-lease-id="${lease.id}"]`).first().waitFor(WAIT);
    for (let request = 0; request < 5; request++) await fetch(`${lease.rest_url}/`, { headers: { authorization: `Bearer ${lease.token}` } });
    await expect.poll(async () => Number((await page.locator('#dash-rest-rate').innerText()).replace(/,/g, '')), WAIT).toBeGreaterThan(0);
    // the REST charts get the requests with this process's next 10 s sample (src/metrics/history.ts)
    await expect.poll(async () => (await chartState('rest')).sum, { timeout: 40_000 }).toBeGreaterThan(0);
    expect((await chartState('p95')).sum).toBeGreaterThan(0);
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-after-create.png'), fullPage: true });
    expect(await page.evaluate(() => (window as unknown as { dashboardTestMarker?: string }).dashboardTestMarker)).toBe('not reloaded');
  }, 120_000);

  it('finds a lease by the start of its id and opens its pg:info card', async () => {
    const lease = leases[0]!;
    await page.locator('#dash-search-input').fill(lease.id.slice(0, 8));
    await expect.poll(() => page.locator('#dash-leases tbody tr').count(), WAIT).toBe(1);
    await page.locator(`#dash-leases button[data-lease-id="${lease.id}"]`).click();
    await page.locator('#dash-card').waitFor({ state: 'visible', ...WAIT });
    const info = await getJson<{ plan: string; state: string; kind: string }>(`/v1/leases/${lease.id}/info`);
    await expect.poll(() => page.locator('#dash-card-title').innerText(), WAIT).toContain(lease.id);
    const card = await page.locator('#dash-card-body').innerText();
    expect(card).toMatch(new RegExp(`^Plan:\\s+${info.plan}$`, 'm'));
    expect(card).toMatch(new RegExp(`^State:\\s+${info.state}$`, 'm'));
    expect(card).toMatch(new RegExp(`^Kind:\\s+${info.kind}$`, 'm'));
    expect(await page.locator('#dash-card-title').innerText()).toContain('first dashboard lease');
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-card.png'), fullPage: true });
  });

  it('says in words that a lease token is not the admin token', async () => {
    const other = await newPage();
    try {
      await other.goto(`${service.baseUrl}/dashboard#token=${encodeURIComponent(leases[0]!.token)}`);
      await expect.poll(() => other.locator('#dash-message').innerText(), WAIT).toContain('not the admin token');
      expect(await other.locator('#dash-main').isHidden()).toBe(true);
    } finally {
      await other.close();
    }
    // the lease token's refusal is a 403 the page handles; no console error besides the browser's own line for it
    const unexpected = consoleErrors.filter((text) => !/status of 403/.test(text) && !/^403 .*\/v1\/(dashboard|hosts|jobs)$/.test(text));
    expect(unexpected).toEqual([]);
  });

  it("links to it from the service's /docs page, which carries pglease's name", async () => {
    const docs = await newPage();
    try {
      await docs.goto(`${service.baseUrl}/docs`);
      await docs.locator('.info a[href="/dashboard"]').waitFor(WAIT);
      expect(await docs.title()).toBe('pglease API');
      await expect.poll(() => docs.locator('.topbar img').first().getAttribute('src'), WAIT).toMatch(/^data:image\/svg\+xml;base64,/);
      const logo = Buffer.from((await docs.locator('.topbar img').first().getAttribute('src'))!.split(',')[1]!, 'base64').toString();
      expect(logo).toContain('pglease');
      // its icon too: pglease's, not Swagger UI's default pair of PNGs
      const icons = await docs.locator('link[rel="icon"]').evaluateAll((links) => links.map((link) => link.getAttribute('href') ?? ''));
      expect(icons).toHaveLength(1);
      expect(icons[0]).toMatch(/\/theme\/favicon\.svg$/);
      await docs.screenshot({ path: path.join(ARTIFACTS, 'service-docs.png') });
      // Swagger UI opens description links in a new tab: the link's target is the dashboard
      const opened = docs.context().waitForEvent('page', WAIT);
      await docs.locator('.info a[href="/dashboard"]').click();
      const dashboard = await opened;
      await dashboard.waitForURL(`${service.baseUrl}/dashboard`, WAIT);
      expect(await dashboard.title()).toBe('pglease dashboard');
      await dashboard.close();
    } finally {
      await docs.close();
    }
  }, 120_000);
});
