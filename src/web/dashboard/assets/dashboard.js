/*
 * The operator dashboard (/dashboard). Reads GET /v1/dashboard, /v1/hosts and /v1/jobs with the
 * admin token every few seconds and redraws in place (no reload); the lease search reads
 * /v1/dashboard/leases and a lease's card /v1/leases/:id/info. The token is pasted once (or passed
 * as #token=… and removed from the address at once) and kept in the tab's sessionStorage.
 * Charts are inline SVG polylines drawn here: nothing is loaded from outside pglease.
 */
(function () {
  'use strict';

  var STORAGE_KEY = 'pglease-admin-token';
  var params = new URLSearchParams(window.location.search);
  /** Poll interval (ms): ?every=2 for 2 s; at least 1 s. */
  var EVERY_MS = Math.max(1, Number(params.get('every')) || 5) * 1000;

  var fragment = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (fragment) {
    sessionStorage.setItem(STORAGE_KEY, decodeURIComponent(fragment[1]));
    history.replaceState(null, '', window.location.pathname + window.location.search);
  }
  var token = sessionStorage.getItem(STORAGE_KEY) || '';
  var timer = null;
  var openCard = null;

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function row(cells) {
    var tr = document.createElement('tr');
    cells.forEach(function (cell) {
      var td = document.createElement('td');
      if (cell instanceof Node) td.appendChild(cell);
      else td.textContent = cell === null || cell === undefined ? '–' : String(cell);
      tr.appendChild(td);
    });
    return tr;
  }

  function fill(tbody, rows, emptyText, columns) {
    tbody.replaceChildren();
    if (rows.length === 0) {
      var tr = row([emptyText]);
      tr.firstChild.colSpan = columns || 1;
      tr.className = 'empty';
      tbody.appendChild(tr);
      return;
    }
    rows.forEach(function (tr) {
      tbody.appendChild(tr);
    });
  }

  function number(value) {
    return value === null || value === undefined ? '–' : Number(value).toLocaleString('en-US');
  }

  function seconds(value) {
    if (value === null || value === undefined) return '–';
    if (value < 1) return Math.round(value * 1000) + ' ms';
    if (value < 120) return (Math.round(value * 10) / 10) + ' s';
    return Math.round(value / 60) + ' min';
  }

  function bytes(value) {
    if (value === null || value === undefined) return '–';
    var units = ['B', 'kB', 'MB', 'GB', 'TB'];
    var unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit++;
    }
    return (Math.round(value * 10) / 10) + ' ' + units[unit];
  }

  function time(iso) {
    return iso ? new Date(iso).toLocaleTimeString('en-GB') : '–';
  }

  function message(text) {
    $('dash-message').textContent = text;
    $('dash-message').hidden = !text;
  }

  /** GET a JSON endpoint with the token; throws an Error with the server's own message. */
  function getJson(path) {
    return fetch(path, { headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' } }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) {
          var error = new Error(body && body.message ? body.message : 'HTTP ' + response.status);
          error.status = response.status;
          throw error;
        }
        return body;
      });
    });
  }

  /** A line chart of `values` (numbers or null) as inline SVG, with its latest value and maximum. */
  function chart(container, values, format) {
    var width = 320;
    var height = 80;
    var present = values.filter(function (value) { return value !== null; });
    var max = Math.max.apply(null, present.concat([1]));
    var points = [];
    values.forEach(function (value, index) {
      if (value === null) return;
      var x = values.length < 2 ? width : (index / (values.length - 1)) * width;
      var y = height - (value / max) * (height - 4) - 2;
      points.push(x.toFixed(1) + ',' + y.toFixed(1));
    });
    var svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('role', 'img');
    var line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    line.setAttribute('points', points.join(' '));
    line.setAttribute('fill', 'none');
    line.setAttribute('vector-effect', 'non-scaling-stroke');
    svg.appendChild(line);
    var last = present.length ? present[present.length - 1] : null;
    svg.setAttribute('aria-label', 'latest ' + format(last) + ', highest ' + format(present.length ? max : null));
    var legend = el('span', 'now ' + format(last) + ' · max ' + format(present.length ? max : null), 'legend');
    container.replaceChildren(svg, legend);
  }

  function renderSnapshot(snapshot) {
    var leases = snapshot.leases;
    var proc = snapshot.process;
    $('dash-live').textContent = number(leases.live);
    $('dash-live-kinds').textContent = number(leases.by_kind.plain) + ' plain · ' + number(leases.by_kind.template) + ' from templates';
    $('dash-creates').textContent = number(snapshot.creates.last_hour);
    $('dash-creates-detail').textContent = 'all replicas';
    $('dash-refused').textContent = number(proc.creates_last_hour.refused);
    $('dash-reaper-lag').textContent = seconds(snapshot.reaper.lag_p95_seconds);
    $('dash-reaper-detail').textContent = number(snapshot.reaper.reaped_last_hour) + ' reaped in the hour · backlog ' + number(snapshot.reaper.backlog) +
      (snapshot.reaper.backlog > 0 ? ' (oldest ' + seconds(snapshot.reaper.oldest_seconds) + ')' : '');
    $('dash-rest-rate').textContent = number(proc.rest.per_second);
    $('dash-rest-p95').textContent = proc.rest.p95_ms === null ? '–' : number(proc.rest.p95_ms) + ' ms';
    var connections = proc.rest_connections;
    $('dash-connections').textContent = number(connections.in_use + connections.idle) + ' / ' + number(connections.budget);
    $('dash-connections-detail').textContent = number(connections.in_use) + ' in use · ' + number(connections.idle) + ' idle · ' + number(connections.waiting) + ' waiting';
    var warm = proc.warm_pools;
    $('dash-warm').textContent = number(warm.ready_plain + warm.ready_template) + ' ready';
    $('dash-warm-detail').textContent = number(warm.hits) + ' hits · ' + number(warm.misses) + ' misses';

    var catalog = snapshot.history.catalog;
    var perProcess = snapshot.history.process;
    chart($('dash-chart-creates'), catalog.map(function (point) { return point.creates; }), number);
    chart($('dash-chart-live'), catalog.map(function (point) { return point.live; }), number);
    chart($('dash-chart-rest'), perProcess.map(function (point) { return point.per_second; }), number);
    chart($('dash-chart-p95'), perProcess.map(function (point) { return point.p95_ms; }), number);

    var statusRows = [];
    Object.keys(leases.by_status).forEach(function (status) {
      statusRows.push(row(['status ' + status, number(leases.by_status[status])]));
    });
    Object.keys(leases.by_plan).sort().forEach(function (plan) {
      statusRows.push(row(['plan ' + plan, number(leases.by_plan[plan])]));
    });
    statusRows.push(row(['warm pools (not handed out)', number(leases.warm_pool)]));
    fill($('dash-status').tBodies[0], statusRows, 'No live leases');

    fill($('dash-clients').tBodies[0], snapshot.creates.top_clients.map(function (client) {
      return row([client.client, number(client.creates)]);
    }), 'No creates in the last hour');

    var attention = snapshot.attention.leases.map(function (lease) {
      return row([leaseButton(lease.id), lease.label, lease.plan, el('span', lease.status, 'status-' + lease.status), 'since ' + time(lease.status_since)]);
    });
    fill($('dash-attention').tBodies[0], attention, 'Every observed lease is available', 5);
    if (snapshot.attention.total > snapshot.attention.leases.length) {
      $('dash-attention').tBodies[0].appendChild(row(['… ' + (snapshot.attention.total - snapshot.attention.leases.length) + ' more']));
    }

    var failures = $('dash-job-failures');
    failures.replaceChildren();
    snapshot.job_failures.forEach(function (failure) {
      failures.appendChild(el('li', time(failure.started_at) + ' ' + failure.job + ' ' + failure.outcome + (failure.error ? ': ' + failure.error : '')));
    });
    if (snapshot.job_failures.length === 0) failures.appendChild(el('li', 'None', 'empty'));

    var events = $('dash-events');
    events.replaceChildren();
    snapshot.events.forEach(function (event) {
      var item = el('li');
      item.appendChild(el('time', time(event.at)));
      item.appendChild(document.createTextNode(' ' + event.kind + ' '));
      item.appendChild(leaseButton(event.lease_id));
      if (event.detail) item.appendChild(el('span', ' ' + JSON.stringify(event.detail), 'detail'));
      events.appendChild(item);
    });
    $('dash-updated').textContent = 'Updated ' + time(snapshot.generated_at);
  }

  function renderHosts(hosts) {
    fill($('dash-hosts').tBodies[0], hosts.items.map(function (host) {
      var capacity = el('span', null, 'capacity');
      var used = host.connections || 0;
      var max = host.max_connections || 0;
      var bar = el('span', null, 'bar');
      var fillBar = el('span', null, 'fill');
      fillBar.style.width = (max > 0 ? Math.min(100, (used / max) * 100) : 0) + '%';
      bar.appendChild(fillBar);
      capacity.appendChild(bar);
      capacity.appendChild(el('span', number(host.connections) + ' / ' + number(host.max_connections)));
      var state = (host.reachable === false ? 'down' : 'up') + ', ' + host.status;
      return row([host.name + ' (' + host.public_host + ':' + host.public_port + ')', el('span', state, 'status-' + host.status), capacity, number(host.leases), bytes(host.disk_free_bytes), time(host.observed_at)]);
    }), 'No host', 6);
  }

  function renderJobs(jobs) {
    fill($('dash-jobs').tBodies[0], jobs.items.map(function (job) {
      var outcome = job.running ? 'running' : job.last_outcome || 'never run';
      var detail = job.last_error ? job.last_error : job.last_result ? JSON.stringify(job.last_result) : '';
      var name = job.name + (job.enabled ? '' : ' (disabled)');
      return row([name, job.schedule, time(job.last_run_at), el('span', outcome, 'outcome-' + outcome.replace(/\s/g, '-')), el('span', detail, job.last_error ? 'error' : 'detail')]);
    }), 'No job', 5);
  }

  function leaseButton(id) {
    var button = el('button', id.slice(0, 8), 'lease-link');
    button.type = 'button';
    button.title = id;
    button.dataset.leaseId = id;
    button.addEventListener('click', function () {
      showCard(id);
    });
    return button;
  }

  /** A lease's pg:info card, in `pglease info`'s layout. */
  function showCard(id) {
    openCard = id;
    getJson('/v1/leases/' + encodeURIComponent(id) + '/info').then(function (info) {
      if (openCard !== id) return;
      var lines = [
        ['Plan', info.plan],
        ['Status', info.status + (info.status_since ? ' since ' + new Date(info.status_since).toISOString() : '')],
        ['State', info.state],
        ['Connections', number(info.connections) + '/' + number(info.connection_limit)],
        ['PG Version', info.pg_version],
        ['Created', info.created_at],
        ['Expires', info.expires_at || 'never'],
        ['Data Size', bytes(info.size_bytes) + ' / ' + bytes(info.size_limit_bytes)],
        ['Tables', number(info.tables)],
        ['Rows', number(info.rows) + (info.rows_limit === null ? '' : ' / ' + number(info.rows_limit))],
        ['Compliance', info.compliance],
        ['Kind', info.kind],
        ['Host', info.host],
      ];
      $('dash-card-title').textContent = 'Lease ' + info.id + (info.name ? ' (' + info.name + ')' : '');
      $('dash-card-body').textContent = lines.map(function (line) {
        return (line[0] + ':').padEnd(14) + ' ' + (line[1] === null || line[1] === undefined ? '–' : line[1]);
      }).join('\n');
      $('dash-card').hidden = false;
    }).catch(function (error) {
      $('dash-card-title').textContent = 'Lease ' + id;
      $('dash-card-body').textContent = error.message;
      $('dash-card').hidden = false;
    });
  }

  var searchSerial = 0;
  function search() {
    var serial = ++searchSerial;
    var query = $('dash-search-input').value.trim();
    return getJson('/v1/dashboard/leases?limit=50&q=' + encodeURIComponent(query)).then(function (result) {
      if (serial !== searchSerial) return;
      fill($('dash-leases').tBodies[0], result.items.map(function (lease) {
        return row([leaseButton(lease.id), lease.label, lease.plan, el('span', lease.status, 'status-' + lease.status), lease.client, lease.expires_at ? time(lease.expires_at) : 'never']);
      }), query ? 'No live lease matches' : 'No live lease', 6);
    });
  }

  function refresh() {
    return Promise.all([getJson('/v1/dashboard'), getJson('/v1/hosts'), getJson('/v1/jobs')]).then(function (results) {
      message('');
      $('dash-main').hidden = false;
      renderSnapshot(results[0]);
      renderHosts(results[1]);
      renderJobs(results[2]);
      // the list follows creates and releases too, unless the person is typing a search
      if (document.activeElement !== $('dash-search-input')) return search();
    });
  }

  function poll() {
    clearTimeout(timer);
    refresh().then(function () {
      timer = setTimeout(poll, EVERY_MS);
    }, function (error) {
      if (error.status === 401 || error.status === 403) {
        $('dash-main').hidden = true;
        message('This is not the admin token (' + error.message + '). Paste PGLEASE_ADMIN_TOKEN above.');
        return;
      }
      message('Could not refresh: ' + error.message + '; retrying');
      timer = setTimeout(poll, EVERY_MS);
    });
  }

  $('dash-token').addEventListener('submit', function (event) {
    event.preventDefault();
    token = $('dash-token-input').value.trim();
    $('dash-token-input').value = '';
    if (token) sessionStorage.setItem(STORAGE_KEY, token);
    else sessionStorage.removeItem(STORAGE_KEY);
    start();
  });
  $('dash-token-forget').addEventListener('click', function () {
    sessionStorage.removeItem(STORAGE_KEY);
    token = '';
    start();
  });
  var searchDelay = null;
  $('dash-search-input').addEventListener('input', function () {
    clearTimeout(searchDelay);
    searchDelay = setTimeout(search, 200);
  });
  $('dash-search').addEventListener('submit', function (event) {
    event.preventDefault();
    search();
  });

  function start() {
    clearTimeout(timer);
    if (!token) {
      $('dash-main').hidden = true;
      message('Paste the admin token (PGLEASE_ADMIN_TOKEN) above to open the dashboard.');
      return;
    }
    poll();
  }
  start();
})();
