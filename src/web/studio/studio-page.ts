/**
 * The studio's HTML (`/v1/leases/:id/studio`): the same for every lease but for its id, which the
 * script (./assets/studio.js) reads from the body's data attribute. Everything it loads comes from
 * this service under STUDIO_STATIC: Tabulator's files from the npm package, ours from
 * src/web/studio/assets/: the page needs nothing from the internet.
 */

/** Where the studio's script and style, and Tabulator's, are served. */
export const STUDIO_STATIC = '/studio/static';

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

export function studioHtml(options: { leaseId: string }): string {
  const leaseId = escapeHtml(options.leaseId);
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pglease studio · lease ${leaseId}</title>
<link rel="stylesheet" href="${STUDIO_STATIC}/tabulator.min.css">
<link rel="stylesheet" href="${STUDIO_STATIC}/studio.css">
</head>
<body data-lease-id="${leaseId}">
<header id="studio-bar">
  <strong>pglease studio</strong>
  <span id="studio-lease-id" title="Lease id">${leaseId}</span>
  <a id="studio-docs-link" href="/v1/leases/${leaseId}/docs">API docs</a>
  <form id="studio-token" autocomplete="off">
    <label for="studio-token-input">Lease token</label>
    <input id="studio-token-input" name="token" type="password" placeholder="pgl_…" spellcheck="false">
    <button id="studio-token-use" type="submit">Use token</button>
    <button id="studio-token-forget" type="button">Forget</button>
  </form>
</header>
<section id="studio-view-as" hidden>
  <form id="studio-view-mint" autocomplete="off">
    <label for="studio-view-role">View as</label>
    <select id="studio-view-role"></select>
    <label for="studio-view-sub">sub</label>
    <input id="studio-view-sub" placeholder="user id (the JWT’s sub)" spellcheck="false">
    <button id="studio-view-use" type="submit" title="Mint a JWT with this role and sub (signed with the lease’s secret) and browse as its user">View</button>
  </form>
  <form id="studio-view-paste" autocomplete="off">
    <label for="studio-view-jwt">or a JWT</label>
    <input id="studio-view-jwt" placeholder="eyJ…" spellcheck="false">
    <button id="studio-view-jwt-use" type="submit">Use JWT</button>
  </form>
</section>
<div id="studio-viewing" role="status" hidden><span id="studio-viewing-text"></span> <button id="studio-view-reset" type="button">Back to the lease role</button></div>
<div id="studio-message" role="alert" hidden></div>
<section id="studio-card" hidden>
  <dl>
    <div><dt>State</dt><dd id="studio-card-state">…</dd></div>
    <div><dt>Expires</dt><dd id="studio-card-expires">…</dd></div>
    <div><dt>Connections</dt><dd id="studio-card-connections">…</dd></div>
    <div><dt>Tables</dt><dd id="studio-card-tables">…</dd></div>
    <div><dt>Rows</dt><dd id="studio-card-rows">…</dd></div>
    <div><dt>Size</dt><dd id="studio-card-size">…</dd></div>
    <div><dt>Template</dt><dd id="studio-card-template">…</dd></div>
  </dl>
  <div id="studio-card-actions">
    <button id="studio-renew" type="button" title="Move the expiry to 30 minutes from now">Renew 30 min</button>
    <button id="studio-release" type="button" class="danger" title="Drop the lease’s schema and roles now">Release</button>
  </div>
</section>
<main id="studio-main" hidden>
  <nav id="studio-sidebar" aria-label="Tables and views">
    <h2>Tables</h2>
    <ul id="studio-relations"></ul>
    <h2 id="studio-views-title" hidden>Views</h2>
    <ul id="studio-views"></ul>
  </nav>
  <section id="studio-content">
    <div id="studio-toolbar">
      <h2 id="studio-title">Pick a table</h2>
      <span id="studio-readonly" hidden></span>
      <span class="spacer"></span>
      <button id="studio-new-row-open" type="button" disabled>+ Row</button>
      <button id="studio-export" type="button" disabled>Export CSV</button>
      <label id="studio-import-label" class="button" aria-disabled="true">Import CSV<input id="studio-import" type="file" accept=".csv,text/csv" disabled hidden></label>
    </div>
    <form id="studio-new-row" hidden autocomplete="off">
      <div id="studio-new-row-fields"></div>
      <div class="actions">
        <button id="studio-new-row-save" type="submit">Insert row</button>
        <button id="studio-new-row-cancel" type="button">Cancel</button>
        <span id="studio-new-row-error" class="error" role="alert"></span>
      </div>
    </form>
    <div id="studio-grid"></div>
    <div id="studio-status" role="status"></div>
    <form id="studio-sql" autocomplete="off">
      <label for="studio-sql-text">SQL, as the lease role whoever you view as (read-only unless you confirm a write)</label>
      <textarea id="studio-sql-text" rows="3" spellcheck="false" placeholder="select * from …"></textarea>
      <div class="actions">
        <button id="studio-sql-run" type="submit">Run</button>
        <span class="hint">Ctrl+Enter runs it. One statement; results show in the grid above.</span>
        <span id="studio-sql-error" class="error" role="alert"></span>
      </div>
    </form>
  </section>
</main>
<script src="${STUDIO_STATIC}/tabulator.min.js" charset="utf-8"></script>
<script src="${STUDIO_STATIC}/studio.js" charset="utf-8"></script>
</body>
</html>
`;
}
