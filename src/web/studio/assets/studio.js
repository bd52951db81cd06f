/*
 * The lease studio in the browser: a sidebar of the lease's tables and views, a Tabulator grid
 * paged, sorted and filtered through the lease's REST API, edits as PATCH/POST/DELETE by primary
 * key, CSV in and out, and an SQL box (POST /v1/leases/:id/sql). Everything goes through the lease's
 * own APIs with the lease token: the page knows no more than the token lets it read.
 *
 * The schema comes from the lease's OpenAPI document (`/v1/leases/:id/openapi.json`): its paths are
 * the relations, its component schemas the columns (type, format, `<pk/>` and `<fk …/>` notes,
 * defaults), its `patch` operations say what may be edited. The document is polled every
 * POLL_MS while the tab is visible, so a table created with psql shows up without a reload (the
 * REST API's schema cache follows DDL within about 200 ms).
 */
'use strict';
(function () {
  var POLL_MS = 2000;
  var PAGE_SIZE = 50;
  var FILTER_PAUSE_MS = 350;
  var leaseId = document.body.dataset.leaseId;
  var controlUrl = '/v1/leases/' + leaseId;
  var restUrl = controlUrl + '/rest';
  // the Swagger page's key: one paste serves both pages of the tab
  var storageKey = 'pglease-token:' + leaseId;

  var fragment = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (fragment) {
    sessionStorage.setItem(storageKey, decodeURIComponent(fragment[1]));
    history.replaceState(null, '', window.location.pathname + window.location.search);
  }
  var token = sessionStorage.getItem(storageKey) || '';

  function $(id) { return document.getElementById(id); }

  var state = {
    documentText: null,
    relations: [], // [{ name, path, columns: [...], primaryKey: [...], editable, readOnlyReason, insertColumns }]
    current: null, // the relation shown, or null (SQL results)
    grid: null,
    fkLabels: {}, // 'table.column' -> { value: label }
    failedCellError: null,
    loadFailed: false,
    stopped: false,
  };

  // ---------------------------------------------------------------------------------------------
  // HTTP

  function authHeaders(extra) {
    var headers = Object.assign({}, extra || {});
    if (token) headers.Authorization = 'Bearer ' + token;
    return headers;
  }

  function request(url, init) {
    init = init || {};
    return fetch(url, Object.assign({}, init, { headers: authHeaders(init.headers) }));
  }

  /** PostgREST's error (or the control API's) in words a person can act on. */
  function errorWords(body, status) {
    if (!body || typeof body !== 'object') return 'The request failed (HTTP ' + status + ')';
    var lead = {
      '23505': 'Another row already has this value.',
      '23514': 'The value breaks a check of the table.',
      '23502': 'This column needs a value.',
      '23503': 'The value does not match a row of the referenced table (or rows still refer to this one).',
      '22P02': 'Not a valid value for this column.',
      '22007': 'Not a valid date or time.',
      '22003': 'The number is out of this column’s range.',
      '22001': 'The text is longer than this column allows.',
      '42501': 'The lease role may not do this.',
    }[body.code];
    var parts = [];
    if (lead) parts.push(lead);
    if (body.message) parts.push(body.message);
    if (body.details && typeof body.details === 'string') parts.push(body.details);
    if (body.hint) parts.push('Hint: ' + body.hint);
    if (body.postgres && body.postgres.detail) parts.push(body.postgres.detail);
    if (body.postgres && body.postgres.hint) parts.push('Hint: ' + body.postgres.hint);
    return parts.join('\n') || 'The request failed (HTTP ' + status + ')';
  }

  async function failure(response) {
    var text = await response.text();
    var body = null;
    try { body = JSON.parse(text); } catch (_) { /* not JSON */ }
    var error = new Error(errorWords(body, response.status));
    error.status = response.status;
    error.body = body;
    return error;
  }

  /** The total of a Content-Range (`0-24/3573`, `*\/0`), or null when not counted. */
  function rangeTotal(response) {
    var match = /\/(\d+)$/.exec(response.headers.get('Content-Range') || '');
    return match ? Number(match[1]) : null;
  }

  // ---------------------------------------------------------------------------------------------
  // Messages

  /** One clear message in place of the studio (wrong token, lease gone): nothing else is shown. */
  function showOnly(message) {
    state.stopped = true;
    $('studio-message').textContent = message;
    $('studio-message').hidden = false;
    $('studio-main').hidden = true;
    $('studio-card').hidden = true;
  }

  function status(message, isError) {
    var element = $('studio-status');
    element.textContent = message || '';
    element.classList.toggle('error', Boolean(isError));
  }

  function clearCellError() {
    if (state.failedCellError) {
      state.failedCellError.bubble.remove();
      state.failedCellError.element.classList.remove('studio-cell-failed');
      state.failedCellError = null;
    }
  }

  /** The error of an edit next to its cell (and in the status line), until the next edit. */
  function showCellError(element, message) {
    clearCellError();
    var bubble = document.createElement('div');
    bubble.className = 'studio-cell-error';
    bubble.setAttribute('role', 'alert');
    bubble.textContent = message;
    var rect = element.getBoundingClientRect();
    bubble.style.left = (window.scrollX + rect.left) + 'px';
    bubble.style.top = (window.scrollY + rect.bottom + 4) + 'px';
    document.body.appendChild(bubble);
    element.classList.add('studio-cell-failed');
    state.failedCellError = { bubble: bubble, element: element };
    status(message, true);
  }

  // ---------------------------------------------------------------------------------------------
  // The schema, from the OpenAPI document

  function resolveRef(document, schema) {
    if (schema && schema.$ref) {
      var key = decodeURIComponent(schema.$ref.replace('#/components/schemas/', ''));
      return document.components.schemas[key];
    }
    return schema;
  }

  function typesOf(property) {
    return Array.isArray(property.type) ? property.type : property.type ? [property.type] : [];
  }

  function kindOf(property) {
    var types = typesOf(property);
    if (property.format === 'json' || property.format === 'jsonb' || types.indexOf('object') >= 0 || types.indexOf('array') >= 0) return 'json';
    if (types.indexOf('integer') >= 0 || types.indexOf('number') >= 0) return 'number';
    if (types.indexOf('boolean') >= 0) return 'boolean';
    if (property.format === 'date-time' || property.format === 'timestamp without time zone' || property.format === 'date') return 'time';
    return 'text';
  }

  function defaultOf(property) {
    if (property.default !== undefined) return JSON.stringify(property.default);
    var match = /Default: `([^`]*)`/.exec(property.description || '');
    return match ? match[1] : null;
  }

  function relationsOf(document) {
    var relations = [];
    Object.keys(document.paths).forEach(function (path) {
      if (path === '/' || path.indexOf('/rpc/') === 0) return;
      var operations = document.paths[path];
      if (!operations.get) return;
      var content = operations.get.responses && operations.get.responses['200'] && operations.get.responses['200'].content;
      var rowSchema = content && content['application/json'] && resolveRef(document, content['application/json'].schema.items);
      if (!rowSchema || !rowSchema.properties) return;
      var insertSchema = operations.post && resolveRef(document, operations.post.requestBody.content['application/json'].schema);
      insertSchema = insertSchema && insertSchema.oneOf ? resolveRef(document, insertSchema.oneOf[0]) : insertSchema;
      var updateSchema = operations.patch && resolveRef(document, operations.patch.requestBody.content['application/json'].schema);
      var columns = Object.keys(rowSchema.properties).map(function (name) {
        var property = rowSchema.properties[name];
        var description = property.description || '';
        var fk = /<fk table='([^']*)' column='([^']*)'\/>/.exec(description);
        return {
          name: name,
          kind: kindOf(property),
          format: property.format || typesOf(property).filter(function (type) { return type !== 'null'; })[0] || 'any',
          nullable: typesOf(property).indexOf('null') >= 0 || typesOf(property).length === 0,
          primaryKey: description.indexOf('<pk/>') >= 0,
          references: fk ? { table: fk[1], column: fk[2] } : null,
          updatable: Boolean(updateSchema && updateSchema.properties && updateSchema.properties[name]),
          defaultText: defaultOf(property),
        };
      });
      var primaryKey = columns.filter(function (column) { return column.primaryKey; }).map(function (column) { return column.name; });
      var readOnlyReason = null;
      if (!operations.patch) readOnlyReason = 'Read-only: the lease role may not update ' + decodeURIComponent(path.slice(1)) + '.';
      else if (primaryKey.length === 0) readOnlyReason = 'Read-only: this relation has no primary key, so an edit could not name its row. Add one (ALTER TABLE … ADD PRIMARY KEY) to edit it here.';
      relations.push({
        name: decodeURIComponent(path.slice(1)),
        path: path,
        columns: columns,
        primaryKey: primaryKey,
        readOnlyReason: readOnlyReason,
        canInsert: Boolean(insertSchema && insertSchema.properties),
        canDelete: Boolean(operations.delete) && primaryKey.length > 0,
        insertColumns: insertSchema && insertSchema.properties ? Object.keys(insertSchema.properties).map(function (name) {
          return Object.assign({}, columns.filter(function (column) { return column.name === name; })[0], { required: (insertSchema.required || []).indexOf(name) >= 0 });
        }) : [],
      });
    });
    relations.sort(function (a, b) { return a.name.localeCompare(b.name); });
    return relations;
  }

  // ---------------------------------------------------------------------------------------------
  // Query strings in PostgREST's grammar

  function columnRef(name) {
    return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : '"' + name.replace(/"/g, '""') + '"';
  }

  function listValue(value) {
    var text = String(value);
    return /^[A-Za-z0-9_.:+-]+$/.test(text) ? text : '"' + text.replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"';
  }

  var RAW_OPERATOR = /^(not\.)?(eq|neq|gt|gte|lt|lte|like|ilike|match|imatch|in|is|isdistinct|cs|cd|ov|sl|sr|nxr|nxl|adj|fts|plfts|phfts|wfts)\./;

  /**
   * A header filter's text as PostgREST filters on its column, by the column's type: `null` and
   * `!null` for any type; `>3`, `<=2024-01-01`, `1..10` (a range) or a value for numbers and times;
   * `true`/`false` for booleans; for text, a part of the value (ilike) or `=exact`. An operator
   * written out (`gt.3`, `in.(1,2)`, `not.is.null`) is sent as it is.
   */
  function filterConditions(column, text) {
    text = String(text).trim();
    if (text === '') return [];
    if (text === 'null') return ['is.null'];
    if (text === '!null' || text === 'not null') return ['not.is.null'];
    if (RAW_OPERATOR.test(text)) return [text];
    if (column.kind === 'boolean') return ['is.' + (text === 'true' ? 'true' : 'false')];
    if (column.kind === 'number' || column.kind === 'time') {
      var range = /^(.+?)\.\.(.+)$/.exec(text);
      if (range) return ['gte.' + range[1].trim(), 'lte.' + range[2].trim()];
      var comparison = /^(>=|<=|!=|<>|>|<|=)\s*(.+)$/.exec(text);
      if (comparison) return [{ '>=': 'gte', '<=': 'lte', '!=': 'neq', '<>': 'neq', '>': 'gt', '<': 'lt', '=': 'eq' }[comparison[1]] + '.' + comparison[2]];
      return ['eq.' + text];
    }
    if (text[0] === '=') return ['eq.' + text.slice(1)];
    return ['ilike.*' + text.replace(/\*/g, '') + '*'];
  }

  /** The query string of the relation's rows under the grid's filters and sort (no paging). */
  function viewQuery(relation, filters, sorters) {
    var parts = [];
    (filters || []).forEach(function (filter) {
      var column = relation.columns.filter(function (candidate) { return candidate.name === filter.field; })[0];
      if (!column) return;
      filterConditions(column, filter.value).forEach(function (condition) {
        parts.push(encodeURIComponent(column.name) + '=' + encodeURIComponent(condition));
      });
    });
    var order = (sorters || []).map(function (sorter) { return columnRef(sorter.field) + '.' + sorter.dir; });
    // the primary key last: pages stay stable whatever the sort
    relation.primaryKey.forEach(function (name) {
      if (!(sorters || []).some(function (sorter) { return sorter.field === name; })) order.push(columnRef(name) + '.asc');
    });
    if (order.length > 0) parts.push('order=' + encodeURIComponent(order.join(',')));
    return parts.join('&');
  }

  function rowFilter(relation, rowData) {
    return relation.primaryKey.map(function (name) {
      return encodeURIComponent(name) + '=eq.' + encodeURIComponent(String(rowData[name]));
    }).join('&');
  }

  // ---------------------------------------------------------------------------------------------
  // Sidebar

  function renderSidebar() {
    var list = $('studio-relations');
    list.textContent = '';
    state.relations.forEach(function (relation) {
      var item = document.createElement('li');
      var button = document.createElement('button');
      button.type = 'button';
      button.dataset.relation = relation.name;
      button.setAttribute('aria-current', state.current && state.current.name === relation.name ? 'true' : 'false');
      var name = document.createElement('span');
      name.className = 'name';
      name.textContent = relation.name;
      var count = document.createElement('span');
      count.className = 'count';
      count.textContent = '…';
      button.append(name, count);
      button.addEventListener('click', function () { openRelation(relation.name); });
      item.appendChild(button);
      list.appendChild(item);
    });
    refreshCounts();
  }

  function refreshCounts() {
    state.relations.forEach(function (relation) {
      request(restUrl + relation.path + '?limit=0', { headers: { Prefer: 'count=exact' } }).then(function (response) {
        var total = response.ok ? rangeTotal(response) : null;
        var button = document.querySelector('#studio-relations button[data-relation="' + CSS.escape(relation.name) + '"] .count');
        if (button) button.textContent = total === null ? '?' : total.toLocaleString();
      }).catch(function () { /* the next refresh tries again */ });
    });
  }

  // ---------------------------------------------------------------------------------------------
  // The grid of a relation

  function formatValue(column) {
    return function (cell) {
      var value = cell.getValue();
      if (value === null || value === undefined) return '<span class="studio-null">NULL</span>';
      var text;
      if (column.kind === 'json') {
        var pre = document.createElement('pre');
        pre.className = 'studio-json';
        pre.textContent = value;
        return pre;
      }
      if (column.kind === 'time' && column.format === 'date-time') {
        // timestamptz in the viewer's zone; the value as stored in the title
        var span = document.createElement('span');
        span.textContent = new Date(value).toLocaleString();
        span.title = value;
        return span;
      }
      text = String(value);
      if (column.references) {
        var wrapper = document.createElement('span');
        var link = document.createElement('a');
        link.href = '#';
        link.className = 'studio-fk';
        link.textContent = text;
        link.title = 'Open the ' + column.references.table + ' row';
        link.addEventListener('click', function (event) {
          event.preventDefault();
          event.stopPropagation();
          var filter = {};
          filter[column.references.column] = text;
          openRelation(column.references.table, filter);
        });
        wrapper.appendChild(link);
        var labels = state.fkLabels[column.references.table + '.' + column.references.column] || {};
        if (labels[text] !== undefined) {
          var label = document.createElement('span');
          label.className = 'studio-fk-label';
          label.textContent = labels[text];
          wrapper.appendChild(label);
        }
        return wrapper;
      }
      var plain = document.createElement('span');
      plain.textContent = text;
      return plain;
    };
  }

  function editorOf(column) {
    if (column.kind === 'boolean') return 'tickCross';
    if (column.kind === 'number') return 'number';
    return 'input';
  }

  /** A native select (keyboard and screen readers know it): any, true, false, null, not null. */
  function booleanFilter(_cell, _onRendered, success) {
    var select = document.createElement('select');
    select.setAttribute('aria-label', 'Filter');
    [['', 'any'], ['true', 'true'], ['false', 'false'], ['null', 'null'], ['!null', 'not null']].forEach(function (choice) {
      var option = document.createElement('option');
      option.value = choice[0];
      option.textContent = choice[1];
      select.appendChild(option);
    });
    select.addEventListener('change', function () { success(select.value); });
    return select;
  }

  function headerFilterOf(column) {
    if (column.kind === 'boolean') return { headerFilter: booleanFilter, headerFilterLiveFilter: false };
    var hints = {
      number: '=, >3, 1..10, null',
      time: '>2024-01-01, a..b, null',
      text: 'contains…, =exact, null',
      json: 'cs.{"a":1}, null',
    };
    return { headerFilter: 'input', headerFilterPlaceholder: hints[column.kind], headerFilterLiveFilter: false };
  }

  /** Column titles as text: Tabulator puts a string title in as HTML, and names are the lease's to choose. */
  function textTitle(cell) {
    return document.createTextNode(cell.getValue());
  }

  function gridColumns(relation) {
    var columns = relation.columns.map(function (column) {
      var definition = {
        title: column.name,
        titleFormatter: textTitle,
        field: column.name,
        headerTooltip: column.format + (column.primaryKey ? ' · primary key' : '') + (column.references ? ' → ' + column.references.table + '.' + column.references.column : ''),
        formatter: formatValue(column),
        cssClass: column.kind === 'number' ? 'studio-number' : '',
        hozAlign: column.kind === 'number' ? 'right' : column.kind === 'boolean' ? 'center' : 'left',
        minWidth: 80,
        maxWidth: 420,
      };
      Object.assign(definition, headerFilterOf(column));
      if (column.kind === 'boolean') {
        definition.formatter = 'tickCross';
        definition.formatterParams = { allowEmpty: true };
      }
      if (column.kind === 'json') {
        // shown and edited as JSON text (a one-line input drops the line breaks, which JSON allows), sent parsed
        definition.mutatorData = function (value) { return value === null || value === undefined ? value : JSON.stringify(value, null, 2); };
      }
      if (!relation.readOnlyReason && column.updatable) {
        definition.editor = editorOf(column);
        if (column.kind === 'boolean') definition.editorParams = { tristate: column.nullable };
      }
      return definition;
    });
    if (!relation.readOnlyReason && relation.canDelete) {
      columns.unshift({
        title: '',
        field: '__delete',
        headerSort: false,
        width: 36,
        frozen: true,
        formatter: function () { return '<button type="button" class="studio-delete" title="Delete this row">✕</button>'; },
        cellClick: function (event, cell) {
          if (event.target.closest('.studio-delete')) deleteRow(cell.getRow());
        },
      });
    }
    return columns;
  }

  /** The FK labels of the rows on a page: one request per referenced table. */
  async function loadFkLabels(relation, rows) {
    var lookups = relation.columns.filter(function (column) { return column.references; }).map(async function (column) {
      var target = state.relations.filter(function (candidate) { return candidate.name === column.references.table; })[0];
      if (!target) return;
      var labelColumn = target.columns.filter(function (candidate) { return candidate.kind === 'text' && candidate.name !== column.references.column; })[0];
      if (!labelColumn) return;
      var values = rows.map(function (row) { return row[column.name]; }).filter(function (value) { return value !== null && value !== undefined; });
      if (values.length === 0) return;
      var unique = Array.from(new Set(values.map(String)));
      var url = restUrl + target.path + '?select=' + encodeURIComponent(columnRef(column.references.column) + ',' + columnRef(labelColumn.name)) +
        '&' + encodeURIComponent(column.references.column) + '=' + encodeURIComponent('in.(' + unique.map(listValue).join(',') + ')');
      var response = await request(url);
      if (!response.ok) return;
      var key = column.references.table + '.' + column.references.column;
      var labels = state.fkLabels[key] || (state.fkLabels[key] = {});
      (await response.json()).forEach(function (row) { labels[String(row[column.references.column])] = row[labelColumn.name]; });
    });
    await Promise.all(lookups);
  }

  async function loadPage(relation, params) {
    var size = params.size || PAGE_SIZE;
    var page = params.page || 1;
    var query = viewQuery(relation, params.filter, params.sort);
    var url = restUrl + relation.path + '?' + (query ? query + '&' : '') + 'limit=' + size + '&offset=' + (page - 1) * size;
    var response = await request(url, { headers: { Prefer: 'count=exact' } });
    if (!response.ok) {
      var error = await failure(response);
      // a filter PostgREST refused (`>abc` on a number): said until a page loads again
      state.loadFailed = true;
      status(error.message, true);
      throw error;
    }
    var rows = await response.json();
    var total = rangeTotal(response);
    await loadFkLabels(relation, rows);
    if (state.loadFailed) {
      state.loadFailed = false;
      status('');
    }
    // the row count is the pager's ("Showing 1-50 of 3,573 rows"): the status line keeps the last action's outcome
    return { last_page: Math.max(1, Math.ceil((total || 0) / size)), last_row: total || 0, data: rows };
  }

  function destroyGrid() {
    clearCellError();
    if (state.grid) state.grid.destroy();
    state.grid = null;
    $('studio-grid').textContent = '';
  }

  function openRelation(name, filter) {
    var relation = state.relations.filter(function (candidate) { return candidate.name === name; })[0];
    if (!relation) return;
    state.current = relation;
    document.querySelectorAll('#studio-relations button').forEach(function (button) {
      button.setAttribute('aria-current', button.dataset.relation === name ? 'true' : 'false');
    });
    $('studio-title').textContent = relation.name;
    $('studio-readonly').hidden = !relation.readOnlyReason;
    $('studio-readonly').textContent = relation.readOnlyReason || '';
    $('studio-new-row-open').disabled = Boolean(relation.readOnlyReason) || !relation.canInsert;
    $('studio-export').disabled = false;
    var canImport = !relation.readOnlyReason && relation.canInsert;
    $('studio-import').disabled = !canImport;
    $('studio-import-label').setAttribute('aria-disabled', canImport ? 'false' : 'true');
    $('studio-new-row').hidden = true;
    destroyGrid();
    var grid = new Tabulator('#studio-grid', {
      columns: gridColumns(relation),
      index: relation.primaryKey.length === 1 ? relation.primaryKey[0] : 'id',
      layout: 'fitDataStretch',
      height: Math.max(320, window.innerHeight - 420) + 'px',
      placeholder: 'No rows',
      // a column may be called `a.b`: it is one column, not a path into an object
      nestedFieldSeparator: false,
      ajaxURL: restUrl + relation.path,
      ajaxRequestFunc: function (_url, _config, params) { return loadPage(relation, params); },
      pagination: true,
      paginationMode: 'remote',
      paginationSize: PAGE_SIZE,
      paginationSizeSelector: [25, 50, 100, 500],
      paginationCounter: 'rows',
      sortMode: 'remote',
      filterMode: 'remote',
      // spreadsheet keys: arrows move, Enter edits, Esc cancels, Tab moves on
      selectableRange: 1,
      selectableRangeColumns: false,
      selectableRangeRows: false,
      selectableRangeClearCells: false,
      editTriggerEvent: 'dblclick',
    });
    grid.on('cellEdited', function (cell) { saveCell(relation, cell); });
    grid.on('tableBuilt', function () {
      if (filter) Object.keys(filter).forEach(function (field) { grid.setHeaderFilterValue(field, '=' + filter[field]); });
    });
    state.grid = grid;
    window.studio.grid = grid;
  }

  // ---------------------------------------------------------------------------------------------
  // Edits

  function parsedValue(column, value) {
    if (value === '' && column.kind !== 'text') return null;
    if (column.kind === 'json' && typeof value === 'string') {
      try { return JSON.parse(value); } catch (_) { throw new Error('Not valid JSON: ' + _.message); }
    }
    if (column.kind === 'number' && typeof value === 'string') return Number(value);
    return value;
  }

  async function saveCell(relation, cell) {
    clearCellError();
    var element = cell.getElement();
    var column = relation.columns.filter(function (candidate) { return candidate.name === cell.getField(); })[0];
    var keyData = Object.assign({}, cell.getRow().getData());
    if (column.primaryKey) keyData[column.name] = cell.getOldValue();
    var body = {};
    try {
      body[column.name] = parsedValue(column, cell.getValue());
    } catch (error) {
      cell.restoreOldValue();
      showCellError(element, error.message);
      return;
    }
    status('Saving ' + column.name + '…');
    var response = await request(restUrl + relation.path + '?' + rowFilter(relation, keyData), {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/json', Prefer: 'return=representation' },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      var error = await failure(response);
      cell.restoreOldValue();
      showCellError(cell.getElement(), error.message);
      return;
    }
    var rows = await response.json();
    if (rows.length === 0) {
      cell.restoreOldValue();
      showCellError(cell.getElement(), 'The row is gone: someone deleted it or changed its key meanwhile.');
      return;
    }
    // as loaded: the mutators turn JSON values into their text again
    cell.getRow().update(rows[0]);
    status('Saved ' + column.name + '.');
    refreshCounts();
  }

  async function deleteRow(row) {
    var relation = state.current;
    if (!relation) return;
    var data = row.getData();
    if (!window.confirm('Delete this row of ' + relation.name + ' (' + relation.primaryKey.map(function (name) { return name + ' = ' + data[name]; }).join(', ') + ')?')) return;
    clearCellError();
    var response = await request(restUrl + relation.path + '?' + rowFilter(relation, data), { method: 'DELETE', headers: { Prefer: 'return=representation' } });
    if (!response.ok) {
      var error = await failure(response);
      showCellError(row.getElement(), error.message);
      return;
    }
    status('Deleted 1 row.');
    state.grid.setPage(state.grid.getPage() || 1);
    refreshCounts();
  }

  function openNewRowForm() {
    var relation = state.current;
    if (!relation) return;
    var fields = $('studio-new-row-fields');
    fields.textContent = '';
    relation.insertColumns.forEach(function (column) {
      var label = document.createElement('label');
      var caption = document.createElement('span');
      caption.textContent = column.name + (column.required ? ' *' : '');
      var input;
      if (column.kind === 'boolean') {
        input = document.createElement('select');
        ['', 'true', 'false'].concat(column.nullable ? ['null'] : []).forEach(function (value) {
          var option = document.createElement('option');
          option.value = value;
          option.textContent = value === '' ? (column.defaultText ? 'default: ' + column.defaultText : 'default') : value;
          input.appendChild(option);
        });
      } else {
        input = document.createElement('input');
        input.type = 'text';
        input.placeholder = column.defaultText ? 'default: ' + column.defaultText : column.required ? 'required' : 'NULL';
      }
      input.name = column.name;
      input.dataset.column = column.name;
      label.append(caption, input);
      fields.appendChild(label);
    });
    $('studio-new-row-error').textContent = '';
    $('studio-new-row').hidden = false;
    var first = fields.querySelector('input, select');
    if (first) first.focus();
  }

  async function insertRow(event) {
    event.preventDefault();
    var relation = state.current;
    var body = {};
    try {
      relation.insertColumns.forEach(function (column) {
        var input = $('studio-new-row-fields').querySelector('[data-column="' + CSS.escape(column.name) + '"]');
        if (!input || input.value === '') return; // left out: its default
        body[column.name] = input.value === 'null' && column.nullable ? null : parsedValue(column, input.value === 'true' && column.kind === 'boolean' ? true : input.value === 'false' && column.kind === 'boolean' ? false : input.value);
      });
    } catch (error) {
      $('studio-new-row-error').textContent = error.message;
      return;
    }
    var response = await request(restUrl + relation.path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Prefer: 'return=representation' },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      $('studio-new-row-error').textContent = (await failure(response)).message;
      return;
    }
    $('studio-new-row').hidden = true;
    status('Inserted 1 row.');
    state.grid.setPage(state.grid.getPage() || 1);
    refreshCounts();
  }

  // ---------------------------------------------------------------------------------------------
  // CSV

  async function exportCsv() {
    var relation = state.current;
    if (!relation || !state.grid) return;
    var query = viewQuery(relation, state.grid.getHeaderFilters(), state.grid.getSorters().map(function (sorter) { return { field: sorter.field, dir: sorter.dir }; }));
    var response = await request(restUrl + relation.path + (query ? '?' + query : ''), { headers: { Accept: 'text/csv' } });
    if (!response.ok) return status((await failure(response)).message, true);
    var blob = await response.blob();
    var link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = relation.name + '.csv';
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(link.href); }, 60000);
    status('Exported ' + relation.name + '.csv.');
  }

  async function importCsv() {
    var relation = state.current;
    var input = $('studio-import');
    var file = input.files && input.files[0];
    input.value = '';
    if (!relation || !file) return;
    var text = await file.text();
    status('Importing ' + file.name + '…');
    var response = await request(restUrl + relation.path, {
      method: 'POST',
      headers: { 'Content-Type': 'text/csv', Prefer: 'return=minimal, count=exact' },
      body: text,
    });
    if (!response.ok) return status('Import failed: ' + (await failure(response)).message, true);
    var total = rangeTotal(response);
    status('Imported ' + (total === null ? 'the' : total.toLocaleString()) + ' row' + (total === 1 ? '' : 's') + ' from ' + file.name + '.');
    state.grid.setPage(state.grid.getPage() || 1);
    refreshCounts();
  }

  // ---------------------------------------------------------------------------------------------
  // SQL box

  async function runSql(event) {
    if (event) event.preventDefault();
    var sql = $('studio-sql-text').value;
    if (!sql.trim()) return;
    $('studio-sql-error').textContent = '';
    var result = await postSql(sql, false);
    if (result.error && result.error.body && result.error.body.postgres && result.error.body.postgres.code === '25006') {
      if (!window.confirm('This statement writes to the lease. Run it with writes allowed?')) {
        $('studio-sql-error').textContent = 'Not run: the statement writes, and the write was not confirmed.';
        return;
      }
      result = await postSql(sql, true);
    }
    if (result.error) {
      $('studio-sql-error').textContent = result.error.message;
      return;
    }
    showSqlResult(result.body);
  }

  async function postSql(sql, write) {
    var response = await request(controlUrl + '/sql', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ sql: sql, write: write }),
    });
    if (!response.ok) return { error: await failure(response) };
    return { body: await response.json() };
  }

  function showSqlResult(result) {
    state.current = null;
    document.querySelectorAll('#studio-relations button').forEach(function (button) { button.setAttribute('aria-current', 'false'); });
    $('studio-title').textContent = 'SQL result';
    $('studio-readonly').hidden = true;
    $('studio-new-row-open').disabled = true;
    $('studio-export').disabled = true;
    $('studio-import').disabled = true;
    $('studio-import-label').setAttribute('aria-disabled', 'true');
    $('studio-new-row').hidden = true;
    destroyGrid();
    var columns = result.columns.map(function (column, index) {
      var number = /^(smallint|integer|bigint|real|double precision|numeric)/.test(column.type);
      return {
        title: column.name,
        titleFormatter: textTitle,
        field: 'c' + index,
        headerTooltip: column.type,
        hozAlign: number ? 'right' : 'left',
        cssClass: number ? 'studio-number' : '',
        formatter: function (cell) {
          var value = cell.getValue();
          if (value === null || value === undefined) return '<span class="studio-null">NULL</span>';
          var span = document.createElement('span');
          span.textContent = typeof value === 'object' ? JSON.stringify(value) : String(value);
          return span;
        },
      };
    });
    var data = result.rows.map(function (row) {
      var record = {};
      row.forEach(function (value, index) { record['c' + index] = value; });
      return record;
    });
    state.grid = new Tabulator('#studio-grid', {
      columns: columns,
      data: data,
      layout: 'fitDataStretch',
      height: Math.max(320, window.innerHeight - 420) + 'px',
      placeholder: result.command ? result.command + (result.row_count !== null ? ' ' + result.row_count : '') : 'No rows',
      pagination: true,
      paginationSize: PAGE_SIZE,
      selectableRange: 1,
      selectableRangeColumns: false,
      selectableRangeRows: false,
    });
    window.studio.grid = state.grid;
    status((result.command || 'SELECT') + ': ' + (result.truncated ? 'the first ' + result.rows.length + ' rows' : (result.row_count === null ? result.rows.length : result.row_count) + ' row' + (result.row_count === 1 ? '' : 's')));
    // a write may have changed rows or the schema
    refreshCounts();
  }

  // ---------------------------------------------------------------------------------------------
  // The lease's card

  function formatBytes(bytes) {
    var units = ['B', 'kB', 'MB', 'GB'];
    var index = 0;
    while (bytes >= 1024 && index < units.length - 1) { bytes /= 1024; index++; }
    return (index === 0 ? bytes : bytes.toFixed(1)) + ' ' + units[index];
  }

  function relative(date) {
    var minutes = Math.round((date.getTime() - Date.now()) / 60000);
    if (Math.abs(minutes) < 1) return 'now';
    if (Math.abs(minutes) < 90) return minutes > 0 ? 'in ' + minutes + ' min' : -minutes + ' min ago';
    var hours = Math.round(minutes / 60);
    return hours > 0 ? 'in ' + hours + ' h' : -hours + ' h ago';
  }

  async function refreshCard() {
    var response = await request(controlUrl + '/stats');
    if (!response.ok) return;
    var stats = await response.json();
    $('studio-card').hidden = false;
    $('studio-card-state').textContent = stats.state;
    $('studio-card-expires').textContent = stats.expires_at ? relative(new Date(stats.expires_at)) + ' (' + new Date(stats.expires_at).toLocaleString() + ')' : 'never';
    $('studio-card-connections').textContent = stats.connections + (stats.connection_limit !== null && stats.connection_limit >= 0 ? ' / ' + stats.connection_limit : '');
    $('studio-card-tables').textContent = stats.tables.toLocaleString();
    $('studio-card-rows').textContent = stats.rows.toLocaleString() + (stats.rows_exact ? '' : ' (estimated)');
    $('studio-card-size').textContent = formatBytes(stats.size_bytes) + (stats.size_exact ? '' : ' (estimated)');
    $('studio-card-template').textContent = stats.template || '–';
  }

  async function renew() {
    var response = await request(controlUrl + '/renew', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ttl: 1800 }) });
    if (!response.ok) return status('Renew failed: ' + (await failure(response)).message, true);
    status('Renewed: the lease now expires in 30 minutes.');
    await refreshCard();
  }

  async function release() {
    if (!window.confirm('Release lease ' + leaseId + '? Its schema, roles and data are dropped now.')) return;
    var response = await request(controlUrl, { method: 'DELETE' });
    if (!response.ok) return status('Release failed: ' + (await failure(response)).message, true);
    sessionStorage.removeItem(storageKey);
    showOnly('Lease ' + leaseId + ' was released: its data is gone.');
  }

  // ---------------------------------------------------------------------------------------------
  // Following the schema

  async function loadDocument() {
    var response;
    try {
      response = await request(controlUrl + '/openapi.json');
    } catch (error) {
      return status('pglease is not reachable: ' + error.message, true);
    }
    if (response.status === 401) return showOnly('This token is not lease ' + leaseId + '’s token. Paste the token that was printed when the lease was created (pgl_…) above.');
    if (response.status === 404) return showOnly('Lease ' + leaseId + ' does not exist any more: it was released or it expired.');
    if (!response.ok) return status((await failure(response)).message, true);
    var text = await response.text();
    if (text === state.documentText) return;
    var first = state.documentText === null;
    state.documentText = text;
    var previous = state.current;
    state.relations = relationsOf(JSON.parse(text));
    $('studio-main').hidden = false;
    renderSidebar();
    if (previous) {
      var now = state.relations.filter(function (relation) { return relation.name === previous.name; })[0];
      if (!now) {
        destroyGrid();
        state.current = null;
        $('studio-title').textContent = previous.name + ' is gone';
        status('The relation ' + previous.name + ' was dropped.', true);
      } else if (JSON.stringify(now) !== JSON.stringify(previous)) {
        openRelation(now.name);
      } else {
        state.current = now;
      }
    } else if (first && state.relations.length > 0) {
      openRelation(state.relations[0].name);
    } else if (state.relations.length === 0) {
      $('studio-title').textContent = 'No tables yet';
      status('Create a table with psql or the SQL box below: it shows up here.');
    }
    if (!first) refreshCard();
  }

  function poll() {
    if (state.stopped) return;
    var next = function () { setTimeout(poll, POLL_MS); };
    if (document.visibilityState === 'hidden') return next();
    loadDocument().then(next, next);
  }

  // ---------------------------------------------------------------------------------------------
  // Start

  $('studio-token').addEventListener('submit', function (event) {
    event.preventDefault();
    var value = $('studio-token-input').value.trim();
    if (value) sessionStorage.setItem(storageKey, value); else sessionStorage.removeItem(storageKey);
    window.location.reload();
  });
  $('studio-token-forget').addEventListener('click', function () {
    sessionStorage.removeItem(storageKey);
    window.location.reload();
  });
  // Header filters apply as the person types (or pastes): a pause of FILTER_PAUSE_MS, then the
  // grid's public API; Tabulator's own live filtering is off (it listens to keyup only)
  var filterTimers = {};
  $('studio-grid').addEventListener('input', function (event) {
    var input = event.target;
    var header = input.closest('.tabulator-col');
    if (!state.grid || !header || !input.closest('.tabulator-header-filter')) return;
    var field = header.getAttribute('tabulator-field');
    clearTimeout(filterTimers[field]);
    filterTimers[field] = setTimeout(function () {
      if (state.grid && state.grid.element.contains(input)) state.grid.setHeaderFilterValue(field, input.value);
    }, FILTER_PAUSE_MS);
  });
  $('studio-new-row-open').addEventListener('click', openNewRowForm);
  $('studio-new-row').addEventListener('submit', insertRow);
  $('studio-new-row-cancel').addEventListener('click', function () { $('studio-new-row').hidden = true; });
  $('studio-export').addEventListener('click', exportCsv);
  $('studio-import').addEventListener('change', importCsv);
  $('studio-sql').addEventListener('submit', runSql);
  $('studio-sql-text').addEventListener('keydown', function (event) {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) runSql(event);
  });
  $('studio-renew').addEventListener('click', renew);
  $('studio-release').addEventListener('click', release);
  document.addEventListener('click', function (event) {
    if (state.failedCellError && !state.failedCellError.bubble.contains(event.target)) clearCellError();
  });

  window.studio = { state: state, grid: null };

  if (!token) {
    showOnly('Paste the lease token (pgl_…, printed when the lease was created) above to open lease ' + leaseId + '.');
  } else {
    loadDocument().then(function () {
      if (state.stopped) return;
      refreshCard();
      setTimeout(poll, POLL_MS);
    });
  }
})();
