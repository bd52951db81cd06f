/**
 * The Swagger UI page of one lease (`/v1/leases/:id/docs`). Swagger UI's files come from the npm
 * package @fastify/swagger-ui, served at /docs/static/ by the service's own docs (./openapi.ts):
 * no CDN. A token field on top keeps the lease token in the tab's sessionStorage; with it the page
 * loads the lease role's document and Swagger UI sends it on "Try it out". A link may carry it
 * in the fragment (`…/docs#token=pgl_…`), which never reaches a server. The studio
 * (src/web/studio) keeps the token under the same key: a link between the two needs no paste.
 */

/** Where @fastify/swagger-ui serves Swagger UI's files (its routePrefix + /static). */
const SWAGGER_UI_STATIC = '/docs/static';

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

export function leaseDocsHtml(options: { leaseId: string; documentUrl: string; scriptUrl: string }): string {
  const title = `pglease lease ${options.leaseId}`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(title)} · API docs</title>
<link rel="stylesheet" href="${SWAGGER_UI_STATIC}/swagger-ui.css">
<link rel="icon" type="image/png" href="${SWAGGER_UI_STATIC}/favicon-32x32.png" sizes="32x32">
<style>
  body { margin: 0; font-family: sans-serif; }
  #lease-token { display: flex; gap: .5em; align-items: center; padding: .75em 1.25em; background: #1b1b1b; color: #fff; flex-wrap: wrap; }
  #lease-token strong { margin-right: auto; }
  #lease-token input { width: 28em; max-width: 60vw; padding: .35em; font-family: monospace; }
  #lease-token button { padding: .35em .9em; cursor: pointer; }
  #lease-token-state { color: #9fdf9f; }
  #lease-problem { margin: 1em 1.25em; padding: .75em 1em; border: 1px solid #c33; background: #fff4f4; color: #800; }
  #lease-studio-link { color: #8ecbff; }
</style>
</head>
<body data-lease-id="${escapeHtml(options.leaseId)}" data-document-url="${escapeHtml(options.documentUrl)}">
<form id="lease-token" autocomplete="off">
  <strong>${escapeHtml(title)}</strong>
  <a id="lease-studio-link" href="/v1/leases/${escapeHtml(options.leaseId)}/studio">Open in the studio</a>
  <span id="lease-token-state"></span>
  <label for="lease-token-input">Lease token</label>
  <input id="lease-token-input" name="token" type="password" placeholder="pgl_… (empty: the anonymous role)" spellcheck="false">
  <button id="lease-token-use" type="submit">Use token</button>
  <button id="lease-token-forget" type="button">Forget</button>
</form>
<p id="lease-problem" role="alert" hidden></p>
<div id="swagger-ui"></div>
<script src="${SWAGGER_UI_STATIC}/swagger-ui-bundle.js" charset="utf-8"></script>
<script src="${escapeHtml(options.scriptUrl)}" charset="utf-8"></script>
</body>
</html>
`;
}

/**
 * The page a browser gets for a lease that does not answer (released, expired, or never made): a
 * page that says so, rather than the control API's JSON error.
 */
export function leaseGoneHtml(leaseId: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>pglease: no lease ${escapeHtml(leaseId)}</title>
<style>body { font-family: sans-serif; margin: 3em auto; max-width: 40em; line-height: 1.5; }</style></head>
<body>
<h1>No live lease ${escapeHtml(leaseId)}</h1>
<p>This lease was released, has expired, or never existed: its pages, API and database are gone with it.
A lease ends at its expiry unless it is renewed (<code>pglease renew ID</code>).</p>
<p>Make a new one with <code>pglease lease</code> or <code>POST /v1/leases</code>; this service's own API is described at <a href="/docs">/docs</a>.</p>
</body>
</html>
`;
}

/** The page's script: the same for every lease (it reads the lease from the page's data attributes). */
export const LEASE_DOCS_SCRIPT = `'use strict';
(function () {
  var body = document.body;
  var storageKey = 'pglease-token:' + body.dataset.leaseId;
  var fragment = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (fragment) {
    sessionStorage.setItem(storageKey, decodeURIComponent(fragment[1]));
    history.replaceState(null, '', window.location.pathname + window.location.search);
  }
  var token = sessionStorage.getItem(storageKey) || '';
  var state = document.getElementById('lease-token-state');
  var problem = document.getElementById('lease-problem');
  document.getElementById('lease-token').addEventListener('submit', function (event) {
    event.preventDefault();
    var value = document.getElementById('lease-token-input').value.trim();
    if (value) sessionStorage.setItem(storageKey, value); else sessionStorage.removeItem(storageKey);
    window.location.reload();
  });
  document.getElementById('lease-token-forget').addEventListener('click', function () {
    sessionStorage.removeItem(storageKey);
    window.location.reload();
  });
  // The page fetches the document itself: a refused token (or a lease that ended) then shows the
  // server's own message, where Swagger UI would only say "Failed to load API definition".
  fetch(body.dataset.documentUrl, { headers: token ? { Authorization: 'Bearer ' + token } : {} })
    .then(function (response) {
      return response.text().then(function (text) {
        var answer;
        try { answer = JSON.parse(text); } catch (error) { answer = { message: text }; }
        if (!response.ok) throw new Error(answer && answer.message ? answer.message : 'the server answered ' + response.status);
        return answer;
      });
    })
    .then(function (spec) {
      state.textContent = token ? 'as the lease role' : 'as the anonymous role';
      show(spec);
    }, function (error) {
      state.textContent = token ? 'token refused' : '';
      state.style.color = '#ffb3b3';
      problem.textContent = (token ? "This token does not open the lease's document: " : "The lease's document could not be loaded: ") +
        error.message.replace(/\\.?$/, '.') + (token ? " Use the lease's own token, or Forget it to see what the anonymous role may do." : '');
      problem.hidden = false;
    });

  function show(spec) {
    var ui = SwaggerUIBundle({
      spec: spec,
      dom_id: '#swagger-ui',
      presets: [SwaggerUIBundle.presets.apis],
      layout: 'BaseLayout',
      deepLinking: false,
      validatorUrl: null,
      tryItOutEnabled: false,
      onComplete: function () {
        if (token) ui.preauthorizeApiKey('leaseToken', token);
      }
    });
    window.ui = ui;
  }
})();
`;
