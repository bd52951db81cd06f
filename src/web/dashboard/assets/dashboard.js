/*
 * The operator dashboard (/dashboard). Reads GET /v1/dashboard, /v1/hosts and /v1/jobs with the
 * admin token every few seconds and redraws in place (no reload); the lease search reads
 * /v1/dashboard/leases and a lease's card /v1/leases/:id/info. The token is pasted once (or passed
 * as #token=… and removed from the address at once) and kept in the tab's sessionStorage.
 * Charts are uPlot's (served by pglease from its npm package): nothing is loaded from outside pglease.
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

  /*
   * The four charts: uPlot instances made on the first snapshot and given new data on every poll
   * (setData redraws the canvas in place). x is in seconds, each count at the start of its window
   * (live leases at the end of theirs); every chart spans the last HISTORY_SECONDS up to the
   * snapshot's time, and their cursors are synced: hovering one shows that moment in all four
   * legends. Under each, a line with the latest value and the highest, as text.
   */
  var HISTORY_SECONDS = 6 * 3600;
  var CHART_HEIGHT = 140;
  var ACCENT = '#2f6feb';
  /** Tick steps of a count's axis: whole numbers only. */
  var COUNT_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];
  var charts = {};
  var chartFormats = {};
  var chartSummaries = {};
  var chartRange = [0, 1];
  /** What the page shows, for scripts and tests: the charts, how often each was drawn, the last snapshot. */
  var state = { charts: charts, draws: {}, snapshot: null };
  window.pgleaseDashboard = state;

  function chartWidth(container) {
    return Math.max(200, container.clientWidth);
  }

  /**
   * A chart in `container`: `label` names its one series, `bars` draws counts per window as bars,
   * `counts` keeps the axis to whole numbers.
   */
  function makeChart(key, container, label, bars, counts, format) {
    state.draws[key] = 0;
    var series = {
      label: label,
      stroke: ACCENT,
      width: bars ? 1 : 2,
      fill: bars ? 'rgba(47, 111, 235, 0.35)' : 'rgba(47, 111, 235, 0.08)',
      spanGaps: false,
      value: function (_chart, value) { return format(value); },
    };
    if (bars) series.paths = uPlot.paths.bars({ align: 1, size: [0.9, 40] });
    var options = {
      width: chartWidth(container),
      height: CHART_HEIGHT,
      cursor: { sync: { key: 'pglease-dashboard' }, drag: { x: false, y: false } },
      legend: { live: true },
      scales: {
        x: { time: true, range: function () { return chartRange; } },
        y: { range: function (_chart, _min, max) { return [0, max > 0 ? max * 1.15 : 1]; } },
      },
      axes: [{}, counts ? { size: 50, incrs: COUNT_STEPS, values: function (_chart, ticks) { return ticks.map(format); } } : { size: 50, values: function (_chart, ticks) { return ticks.map(format); } }],
      series: [{ value: function (_chart, at) { return at === null ? '–' : new Date(at * 1000).toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' }); } }, series],
      hooks: { draw: [function () { state.draws[key]++; }] },
    };
    charts[key] = new uPlot(options, [[], []], container);
    chartFormats[key] = format;
    chartSummaries[key] = container.parentNode.appendChild(el('span', null, 'chart-summary'));
  }

  /** Gives each chart its points (each `[seconds, value]`, oldest first) and its latest/max caption. */
  function drawCharts(generatedAt, seriesByKey) {
    chartRange = [generatedAt - HISTORY_SECONDS, generatedAt];
    if (!charts.creates) {
      makeChart('creates', $('dash-chart-creates'), 'creates', true, true, number);
      makeChart('live', $('dash-chart-live'), 'live leases', false, true, number);
      makeChart('rest', $('dash-chart-rest'), 'requests/s', false, false, rate);
      makeChart('p95', $('dash-chart-p95'), 'p95 ms', false, false, number);
      new ResizeObserver(function () {
        Object.keys(charts).forEach(function (key) {
          var container = charts[key].root.parentNode;
          if (chartWidth(container) !== charts[key].width) charts[key].setSize({ width: chartWidth(container), height: CHART_HEIGHT });
        });
      }).observe($('dash-charts'));
    }
    Object.keys(seriesByKey).forEach(function (key) {
      var points = seriesByKey[key];
      var values = points.map(function (point) { return point[1]; });
      charts[key].setData([points.map(function (point) { return point[0]; }), values]);
      var present = values.filter(function (value) { return value !== null; });
      var format = chartFormats[key];
      chartSummaries[key].textContent = 'now ' + format(present.length ? present[present.length - 1] : null) + ' · max ' + format(present.length ? Math.max.apply(null, present) : null);
    });
  }

  function epochSeconds(iso) {
    return Date.parse(iso) / 1000;
  }

  function rate(value) {
    if (value === null || value === undefined) return '–';
    return value < 10 ? String(Math.round(value * 100) / 100) : number(Math.round(value));
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

    var now = epochSeconds(snapshot.generated_at);
    var bucket = snapshot.history.bucket_seconds;
    drawCharts(now, {
      creates: snapshot.history.catalog.map(function (point) { return [epochSeconds(point.at), point.creates]; }),
      // the count at the bucket's end (or now, for the current one)
      live: snapshot.history.catalog.map(function (point) { return [Math.min(epochSeconds(point.at) + bucket, now), point.live]; }),
      rest: snapshot.history.process.map(function (point) { return [epochSeconds(point.at), point.per_second]; }),
      p95: snapshot.history.process.map(function (point) { return [epochSeconds(point.at), point.p95_ms]; }),
    });
    state.snapshot = snapshot;

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
