/**
 * The dashboard's HTML (`/dashboard`): a frame with no data, filled by ./assets/dashboard.js from
 * the JSON endpoints with the admin token the person pasted. Everything it loads comes from this
 * service under DASHBOARD_STATIC: the charts are drawn by uPlot (MIT, 50 KB minified, on a canvas),
 * served from its npm package.
 */

/** Where the dashboard's script and style, and uPlot's, are served. */
export const DASHBOARD_STATIC = '/dashboard/static';

export function dashboardHtml(): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pglease dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${DASHBOARD_STATIC}/uplot.min.css">
<link rel="stylesheet" href="${DASHBOARD_STATIC}/dashboard.css">
</head>
<body>
<header id="dash-bar">
  <strong>pglease dashboard</strong>
  <a href="/docs">API docs</a>
  <span id="dash-updated" role="status"></span>
  <span class="spacer"></span>
  <form id="dash-token" autocomplete="off">
    <label for="dash-token-input">Admin token</label>
    <input id="dash-token-input" name="token" type="password" placeholder="PGLEASE_ADMIN_TOKEN" spellcheck="false">
    <button id="dash-token-use" type="submit">Use token</button>
    <button id="dash-token-forget" type="button">Forget</button>
  </form>
</header>
<div id="dash-message" role="alert" hidden></div>
<main id="dash-main" hidden>
  <section id="dash-headlines" aria-label="Headline figures">
    <div class="figure"><span class="label">Live leases</span><span class="value" id="dash-live">–</span><span class="detail" id="dash-live-kinds"></span></div>
    <div class="figure"><span class="label">Creates, last hour</span><span class="value" id="dash-creates">–</span><span class="detail" id="dash-creates-detail"></span></div>
    <div class="figure"><span class="label">Refused (429), last hour</span><span class="value" id="dash-refused">–</span><span class="detail">this process</span></div>
    <div class="figure"><span class="label">Reaper lag p95</span><span class="value" id="dash-reaper-lag">–</span><span class="detail" id="dash-reaper-detail"></span></div>
    <div class="figure"><span class="label">REST requests/s</span><span class="value" id="dash-rest-rate">–</span><span class="detail">last minute, this process</span></div>
    <div class="figure"><span class="label">REST p95</span><span class="value" id="dash-rest-p95">–</span><span class="detail">last minute, this process</span></div>
    <div class="figure"><span class="label">REST connections</span><span class="value" id="dash-connections">–</span><span class="detail" id="dash-connections-detail"></span></div>
    <div class="figure"><span class="label">Warm pools</span><span class="value" id="dash-warm">–</span><span class="detail" id="dash-warm-detail"></span></div>
  </section>
  <section id="dash-charts" aria-label="Charts over the last hours">
    <figure><figcaption>Creates per 5 min (all replicas)</figcaption><div class="chart" id="dash-chart-creates"></div></figure>
    <figure><figcaption>Live leases (all replicas)</figcaption><div class="chart" id="dash-chart-live"></div></figure>
    <figure><figcaption>REST requests/s (this process, per minute)</figcaption><div class="chart" id="dash-chart-rest"></div></figure>
    <figure><figcaption>REST p95 latency, ms (this process, per minute)</figcaption><div class="chart" id="dash-chart-p95"></div></figure>
  </section>
  <div class="columns">
    <section aria-labelledby="dash-hosts-title" class="wide"><h2 id="dash-hosts-title">Hosts</h2><table id="dash-hosts"><thead><tr><th>Host</th><th>State</th><th>Connections</th><th>Leases</th><th>Disk free</th><th>Observed</th></tr></thead><tbody></tbody></table></section>
    <section aria-labelledby="dash-status-title"><h2 id="dash-status-title">Leases by status and plan</h2><table id="dash-status"><tbody></tbody></table></section>
    <section aria-labelledby="dash-clients-title"><h2 id="dash-clients-title">Top clients by creates, last hour</h2><table id="dash-clients"><tbody></tbody></table></section>
  </div>
  <div class="columns">
    <section aria-labelledby="dash-attention-title"><h2 id="dash-attention-title">Over quota or uncertain</h2><table id="dash-attention"><tbody></tbody></table></section>
    <section aria-labelledby="dash-jobs-title" class="wide"><h2 id="dash-jobs-title">Jobs</h2><table id="dash-jobs"><thead><tr><th>Job</th><th>Schedule</th><th>Last run</th><th>Outcome</th><th>Last result or error</th></tr></thead><tbody></tbody></table>
      <h3>Failed runs, last hour</h3><ul id="dash-job-failures"></ul></section>
  </div>
  <div class="columns">
    <section aria-labelledby="dash-search-title" class="wide">
      <h2 id="dash-search-title">Leases</h2>
      <form id="dash-search" autocomplete="off" role="search">
        <input id="dash-search-input" type="search" placeholder="id prefix, name or client address" spellcheck="false" aria-label="Search leases">
      </form>
      <table id="dash-leases"><thead><tr><th>Lease</th><th>Name</th><th>Plan</th><th>Status</th><th>Client</th><th>Expires</th></tr></thead><tbody></tbody></table>
      <section id="dash-card" hidden aria-label="Lease info"><h3 id="dash-card-title"></h3><pre id="dash-card-body"></pre></section>
    </section>
    <section aria-labelledby="dash-events-title"><h2 id="dash-events-title">Recent events</h2><ol id="dash-events"></ol></section>
  </div>
</main>
<script src="${DASHBOARD_STATIC}/uplot.min.js"></script>
<script src="${DASHBOARD_STATIC}/dashboard.js"></script>
</body>
</html>
`;
}
