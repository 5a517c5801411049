// wasmq dashboard: a single-page app over the dashboard's JSON API.
// Plain ES2020, no dependencies, works offline. Served as /app.js.
'use strict';

(() => {
  // ---------------------------------------------------------------- constants

  const STATES = ['waiting', 'pending', 'active', 'scheduled', 'retry', 'archived', 'completed'];
  const TABS = ['queues', 'servers', 'cron', 'limits', 'plugins'];
  const OVERVIEW_EVERY_MS = 2000;
  const VIEW_EVERY_MS = 2000;
  const PLUGINS_EVERY_MS = 5000;
  const DETAIL_EVERY_MS = 1000;
  const REQUEST_TIMEOUT_MS = 8000;
  const CHART_WINDOW_MS = 30 * 60000; // the server keeps a day; the chart shows this much
  const THROUGHPUT_EVERY_MS = 60000; // the server's history gains a point a minute
  const CHART_MAX_SERIES = 6;
  const CHART_SMOOTHING = 4; // polls averaged per point (8 s)
  const PAGE_SIZES = [10, 20, 50, 100];
  const TOKEN_KEY = 'wasmq.dashboard.token';
  const COLORS = ['#2563eb', '#059669', '#d97706', '#7c3aed', '#db2777', '#0891b2'];
  const FAILED_COLOR = '#dc2626';

  // Which actions apply to which states (mirrors the broker's rules).
  const ACTIONS = {
    run: ['scheduled', 'retry', 'archived'],
    archive: ['pending', 'scheduled', 'retry'],
    delete: ['pending', 'scheduled', 'retry', 'archived', 'completed'],
    cancel: ['active', 'pending', 'scheduled', 'retry'],
  };
  const BULK = [
    { action: 'runall', label: 'Run all', states: ACTIONS.run },
    { action: 'archiveall', label: 'Archive all', states: ACTIONS.archive },
    { action: 'deleteall', label: 'Delete all', states: ACTIONS.delete, danger: true },
  ];
  // What a task's state_time_ms means in each state.
  const STATE_TIME = {
    waiting: null,
    pending: null,
    active: 'Lease expires',
    scheduled: 'Due',
    retry: 'Retry due',
    archived: 'Archived',
    completed: 'Record expires',
  };

  // -------------------------------------------------------------------- state

  const S = {
    overview: null,
    skewMs: 0, // Redis time minus this browser's clock
    lastOkAt: null,
    route: { tab: 'queues', queue: null, state: null, page: 0, size: 20, cron: null },
    list: null, // last task list answer for the route's queue and state
    listKey: null,
    cron: null,
    limits: null,
    history: null,
    plugins: null,
    samples: [], // {t, processed: {queue: n}, failed: {queue: n}} from /api/overview
    throughput: null, // {queue: [{end_ms, length_ms, processed, failed}]} from /api/throughput
    detail: null, // {queue, id, task, gone, gen}
    openDetails: new Set(), // <details> kept open across re-renders
    busy: new Set(), // actions in flight
    token: readToken(),
  };

  // The token is kept for this tab only (sessionStorage): it is sent as
  // Authorization on every API request, never in a cookie or a URL.
  function readToken() {
    try {
      localStorage.removeItem(TOKEN_KEY); // where earlier versions kept it
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch (_) {
      return '';
    }
  }

  function saveToken(value) {
    S.token = value;
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // storage unavailable: keep it for this page only
    }
  }

  // ---------------------------------------------------------------- DOM tools

  const $ = (id) => document.getElementById(id);

  function addChildren(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  function setAttrs(el, attrs) {
    if (!attrs) return el;
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') el.setAttribute('class', value);
      else if (key === 'text') el.textContent = value;
      // Through the CSSOM: the Content-Security-Policy refuses style attributes.
      else if (key === 'style') el.style.cssText = value;
      else if (key === 'data') {
        for (const [k, v] of Object.entries(value)) if (v !== null && v !== undefined) el.dataset[k] = v;
      } else el.setAttribute(key, value === true ? '' : String(value));
    }
    return el;
  }

  /** Makes an HTML element: h('td', {class: 'num'}, 'text', child). Text is never parsed as HTML. */
  function h(tag, attrs, ...children) {
    return addChildren(setAttrs(document.createElement(tag), attrs), children);
  }

  /** Makes an SVG element. */
  function svg(tag, attrs, ...children) {
    return addChildren(setAttrs(document.createElementNS('http://www.w3.org/2000/svg', tag), attrs), children);
  }

  /**
   * Brings a tbody's rows in line with `items`, rebuilding only the rows whose
   * view data changed, so rows under the mouse are not replaced every poll.
   */
  function syncRows(tbody, items, keyOf, build, empty) {
    const existing = new Map();
    for (const tr of tbody.children) if (tr.dataset.key !== undefined) existing.set(tr.dataset.key, tr);
    const keep = new Set();
    let index = 0;
    for (const item of items) {
      const key = keyOf(item);
      const sig = JSON.stringify(item);
      let tr = existing.get(key);
      if (!tr || tr._sig !== sig) {
        const fresh = build(item);
        fresh.dataset.key = key;
        fresh._sig = sig;
        if (tr) tr.replaceWith(fresh);
        tr = fresh;
      }
      keep.add(tr);
      const at = tbody.children[index];
      if (at !== tr) tbody.insertBefore(tr, at || null);
      index += 1;
    }
    for (const tr of [...tbody.children]) if (!keep.has(tr)) tr.remove();
    if (!items.length && empty) {
      tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: empty.cols }, empty.text)));
    }
  }

  /** Replaces a container's content only when `data` differs from the last render. */
  function renderIfChanged(el, data, build) {
    const sig = JSON.stringify(data);
    if (el._sig === sig) return;
    el._sig = sig;
    el.replaceChildren(...[build()].flat(Infinity).filter(Boolean));
  }

  // ------------------------------------------------------------------ formats

  const pad = (n, width = 2) => String(n).padStart(width, '0');

  function serverNow() {
    return Date.now() + S.skewMs;
  }

  /** A ms timestamp as ISO-like local time: 2026-11-22 18:16:35.123 */
  function isoLocal(ms, withMs = true) {
    if (ms === null || ms === undefined) return '—';
    const d = new Date(ms);
    if (Number.isNaN(d.getTime())) return String(ms);
    const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return withMs ? `${text}.${pad(d.getMilliseconds(), 3)}` : text;
  }

  function isoTitle(ms) {
    if (ms === null || ms === undefined) return null;
    const d = new Date(ms);
    return Number.isNaN(d.getTime()) ? String(ms) : `${d.toISOString()} (${ms} ms)`;
  }

  /** A duration in ms for people: 850ms, 3s, 2m 5s, 12m, 1h 5m, 2d 3h. */
  function fmtDuration(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
    const abs = Math.abs(ms);
    if (abs < 1000) return `${Math.round(abs)}ms`;
    const s = Math.floor(abs / 1000);
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60);
    if (m < 10) return s % 60 ? `${m}m ${s % 60}s` : `${m}m`;
    if (m < 60) return `${m}m`;
    const hours = Math.floor(m / 60);
    if (hours < 24) return m % 60 ? `${hours}h ${m % 60}m` : `${hours}h`;
    const days = Math.floor(hours / 24);
    return hours % 24 ? `${days}d ${hours % 24}h` : `${days}d`;
  }

  /** "3s ago", "in 2m", "now" relative to Redis's clock. */
  function fmtRelative(ms) {
    const delta = ms - serverNow();
    if (Math.abs(delta) < 1000) return 'now';
    return delta > 0 ? `in ${fmtDuration(delta)}` : `${fmtDuration(-delta)} ago`;
  }

  function fmtBytes(bytes) {
    if (bytes === null || bytes === undefined) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
  }

  /** Large counts with SI suffixes: 1023, 2.05k, 1.07G. */
  function fmtSI(n) {
    if (n === null || n === undefined) return '—';
    const units = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
    for (const [size, suffix] of units) {
      if (n >= size) {
        const v = n / size;
        return `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)}${suffix}`;
      }
    }
    return String(n);
  }

  /** Microseconds as milliseconds (or seconds). */
  function fmtMicros(us) {
    if (us === null || us === undefined) return '—';
    const ms = us / 1000;
    if (ms >= 1000) return `${(ms / 1000).toFixed(ms >= 10000 ? 1 : 2)} s`;
    if (ms >= 100) return `${ms.toFixed(0)} ms`;
    if (ms >= 10) return `${ms.toFixed(1)} ms`;
    return `${ms.toFixed(ms >= 1 ? 2 : 3)} ms`;
  }

  function fmtRate(v) {
    if (v === null || v === undefined) return '—';
    return `${v >= 10 ? v.toFixed(0) : v.toFixed(1)}/s`;
  }

  function fmtCount(n) {
    return n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US');
  }

  function shortJson(value, max = 90) {
    if (value === undefined) return '';
    let text;
    try {
      text = JSON.stringify(value);
    } catch (_) {
      text = String(value);
    }
    if (text === undefined) text = String(value);
    return text.length > max ? `${text.slice(0, max - 1)}…` : text;
  }

  function prettyJson(value) {
    try {
      return JSON.stringify(value, null, 2);
    } catch (_) {
      return String(value);
    }
  }

  // Elements updated in place every second by the ticker.
  const ago = (ms, cls) =>
    ms === null || ms === undefined ? h('span', { class: 'muted' }, '—') : h('span', { class: cls || 'rel', 'data-ago': ms, title: isoTitle(ms) }, fmtRelative(ms));
  const age = (sinceMs) => h('span', { 'data-age': sinceMs, title: `since ${isoLocal(sinceMs)}` }, fmtDuration(serverNow() - sinceMs));

  function stateBadge(state, attrs) {
    return h('span', Object.assign({ class: `state state-${state}` }, attrs || {}), state);
  }

  function kindBadge(kind) {
    return h('span', { class: `kind kind-${kind}`, title: kind }, kind);
  }

  function outcomeBadge(outcome) {
    return h('span', { class: `outcome outcome-${outcome}` }, outcome);
  }

  const mono = (text, title) => h('span', { class: 'mono', title: title || null }, text);

  // ----------------------------------------------------------------- messages

  const messages = new Map(); // key -> element

  /** Shows a message in the message area; errors stay until closed. */
  function notify(kind, text, key) {
    const id = key || `${kind}:${text}`;
    const existing = messages.get(id);
    if (existing) {
      existing.classList.remove('flash');
      void existing.offsetWidth; // restart the flash
      existing.classList.add('flash');
      return;
    }
    const close = h('button', { class: 'msg-close', type: 'button', title: 'Dismiss', 'aria-label': 'Dismiss' }, '×');
    const el = h('div', { class: `msg msg-${kind} flash`, role: kind === 'error' ? 'alert' : 'status', 'data-testid': `message-${kind}` },
      h('span', { class: 'msg-text' }, text), close);
    const remove = () => {
      el.remove();
      messages.delete(id);
    };
    close.addEventListener('click', remove);
    messages.set(id, el);
    $('messages').append(el);
    while (messages.size > 6) {
      const [firstKey, firstEl] = messages.entries().next().value;
      firstEl.remove();
      messages.delete(firstKey);
    }
    if (kind !== 'error') setTimeout(remove, 5000);
  }

  function setBanner(text) {
    const banner = $('banner');
    if (text) {
      const since = S.lastOkAt ? ` Last update ${isoLocal(S.lastOkAt, false)}.` : '';
      banner.textContent = `${text} Retrying every ${OVERVIEW_EVERY_MS / 1000} s…${since}`;
      banner.hidden = false;
      $('conn-dot').className = 'conn-dot down';
    } else if (!banner.hidden) {
      banner.hidden = true;
      $('conn-dot').className = 'conn-dot';
    }
  }

  /** A bug in this page: show it, and let it surface as an uncaught error too. */
  function reportBug(err) {
    notify('error', `Dashboard error: ${err && err.message ? err.message : err}`);
    setTimeout(() => {
      throw err;
    });
  }

  // ---------------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  class Unreachable extends Error {}

  async function api(path, { method = 'GET' } = {}) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    const headers = { Accept: 'application/json' };
    if (S.token) headers.Authorization = `Bearer ${S.token}`;
    const init = { method, headers, cache: 'no-store', credentials: 'omit', signal: controller.signal };
    if (method !== 'GET') {
      // What the dashboard requires of every write: no other site can make
      // a browser send a JSON body with this header.
      headers['Content-Type'] = 'application/json';
      headers['X-Wasmq-Request'] = '1';
      init.body = '{}';
    }
    let response;
    let text;
    try {
      response = await fetch(path, init);
      text = await response.text();
    } catch (err) {
      throw new Unreachable(
        err && err.name === 'AbortError'
          ? `The dashboard API did not answer within ${REQUEST_TIMEOUT_MS / 1000} s.`
          : 'Cannot reach the dashboard API (is wasmq still running?).',
      );
    } finally {
      clearTimeout(timer);
    }
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (_) {
      body = undefined;
    }
    if (!response.ok) {
      const message = body && typeof body.error === 'string'
        ? body.error
        : `HTTP ${response.status} ${response.statusText}${text ? `: ${text.slice(0, 200)}` : ''}`;
      throw new ApiError(response.status, message);
    }
    if (body === undefined) throw new ApiError(response.status, `${path} did not answer JSON`);
    return body;
  }

  const enc = encodeURIComponent;
  const queuePath = (queue) => `/api/queues/${enc(queue)}`;

  const isOutage = (err) => err instanceof Unreachable || (err instanceof ApiError && [502, 503, 504].includes(err.status));

  /** Handles a failed background read: outages go to the banner, other errors to the message area (once). */
  function readFailed(what, err) {
    if (err instanceof ApiError && err.status === 401) {
      askForToken();
      setBanner(S.token
        ? 'The token entered is not this dashboard\'s: enter the right one at the top right.'
        : 'This dashboard needs its token (printed when it started): enter it at the top right.');
      return;
    }
    if (isOutage(err)) {
      setBanner(err instanceof ApiError ? `The dashboard cannot reach Redis: ${err.message}.` : err.message);
    } else if (err instanceof ApiError) {
      notify('error', `${what}: ${err.message} (HTTP ${err.status})`, `read:${what}:${err.message}`);
    } else {
      reportBug(err);
    }
  }

  /** Runs a write action, reports the outcome, and refreshes what it touched. */
  async function act(label, path, describe, button, onOk) {
    if (S.busy.has(path)) return null;
    S.busy.add(path);
    if (button) button.disabled = true;
    let result = null;
    try {
      result = await api(path, { method: 'POST' });
      notify('ok', describe(result));
      if (onOk) onOk(result);
    } catch (err) {
      if (err instanceof ApiError) {
        let hint = '';
        if (err.status === 401) {
          hint = ' Enter the token at the top right.';
          askForToken();
        }
        notify('error', `${label}: ${err.message} (HTTP ${err.status}).${hint}`);
      } else if (err instanceof Unreachable) {
        notify('error', `${label}: ${err.message}`);
      } else {
        reportBug(err);
      }
    } finally {
      S.busy.delete(path);
      if (button && button.isConnected) button.disabled = false;
    }
    refreshNow();
    return result;
  }

  // ------------------------------------------------------------------ routing

  function parseRoute() {
    const raw = location.hash.replace(/^#\/?/, '');
    const [pathPart, queryPart = ''] = raw.split('?');
    let parts;
    try {
      parts = pathPart.split('/').filter(Boolean).map(decodeURIComponent);
    } catch (_) {
      parts = [];
    }
    const params = new URLSearchParams(queryPart);
    const route = { tab: TABS.includes(parts[0]) ? parts[0] : 'queues', queue: null, state: null, page: 0, size: 20, cron: null };
    if (route.tab === 'queues' && parts[1]) {
      route.queue = parts[1];
      route.state = STATES.includes(parts[2]) ? parts[2] : 'pending';
      route.page = Math.max(0, parseInt(params.get('page'), 10) || 0);
      route.size = Math.min(200, Math.max(1, parseInt(params.get('size'), 10) || 20));
    }
    if (route.tab === 'cron' && parts[1]) route.cron = parts[1];
    return route;
  }

  function routeHash(route) {
    let hash = `#/${route.tab}`;
    if (route.tab === 'queues' && route.queue) {
      hash += `/${enc(route.queue)}/${route.state || 'pending'}`;
      const params = [];
      if (route.page) params.push(`page=${route.page}`);
      if (route.size && route.size !== 20) params.push(`size=${route.size}`);
      if (params.length) hash += `?${params.join('&')}`;
    }
    if (route.tab === 'cron' && route.cron) hash += `/${enc(route.cron)}`;
    return hash;
  }

  function go(change) {
    const route = Object.assign({}, S.route, change);
    const hash = routeHash(route);
    if (location.hash === hash) onRoute();
    else location.hash = hash;
  }

  function onRoute() {
    const before = S.route;
    S.route = parseRoute();
    for (const tab of TABS) $(`view-${tab}`).hidden = tab !== S.route.tab;
    for (const link of document.querySelectorAll('.tabs a')) link.classList.toggle('active', link.dataset.tab === S.route.tab);
    const key = listKey();
    if (key !== S.listKey) {
      S.list = null;
      S.listKey = key;
    }
    if (before.cron !== S.route.cron) S.history = null;
    if (S.detail && routeHash(before) !== routeHash(S.route)) closeDetail(); // the user went elsewhere
    renderAll();
    refreshView();
  }

  const listKey = () => (S.route.queue ? `${S.route.queue}|${S.route.state}|${S.route.page}|${S.route.size}` : null);

  // ------------------------------------------------------------------ polling

  /** Calls `fn` every `everyMs`, never overlapping; `kick()` runs it at once. */
  function loop(fn, everyMs) {
    let timer = null;
    let running = false;
    let again = false;
    const run = async () => {
      if (running) {
        again = true;
        return;
      }
      clearTimeout(timer);
      running = true;
      try {
        await fn();
      } catch (err) {
        reportBug(err);
      } finally {
        running = false;
        timer = setTimeout(run, again ? 0 : everyMs);
        again = false;
      }
    };
    return { start: run, kick: run };
  }

  async function pollOverview() {
    let overview;
    try {
      overview = await api('/api/overview');
    } catch (err) {
      readFailed('Loading the overview', err);
      return;
    }
    S.overview = overview;
    S.skewMs = overview.now_ms - Date.now();
    S.lastOkAt = overview.now_ms;
    setBanner(null);
    recordSample(overview);
    renderHeader();
    if (S.route.tab === 'queues') {
      renderQueues();
      renderTasks(); // its state tabs show the queue's counts
    }
    if (S.route.tab === 'servers') renderServers();
    if (S.detail) renderDetail();
  }

  async function pollView() {
    const route = S.route;
    if (route.tab === 'queues' && route.queue) await loadList();
    if (route.tab === 'cron') await loadCron();
    if (route.tab === 'limits') await loadLimits();
  }

  async function loadList() {
    const key = listKey();
    const { queue, state, page, size } = S.route;
    let list;
    try {
      list = await api(`${queuePath(queue)}/tasks?state=${state}&page=${page}&size=${size}`);
    } catch (err) {
      readFailed(`Listing ${state} tasks of ${queue}`, err);
      return;
    }
    if (key !== listKey()) return; // the route moved on meanwhile
    S.list = list;
    renderTasks();
  }

  async function loadLimits() {
    let limits;
    try {
      limits = await api('/api/limits');
    } catch (err) {
      readFailed('Loading limits', err);
      return;
    }
    S.limits = limits;
    renderLimits();
  }

  async function loadCron() {
    let entries;
    try {
      entries = await api('/api/cron');
    } catch (err) {
      readFailed('Loading cron entries', err);
      return;
    }
    S.cron = entries;
    const name = S.route.cron;
    if (name) {
      try {
        const ticks = await api(`/api/cron/${enc(name)}/history?limit=50`);
        if (S.route.cron === name) S.history = { name, ticks };
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) {
          if (S.route.cron === name) S.history = { name, ticks: null, missing: err.message };
        } else readFailed(`Loading the history of ${name}`, err);
      }
    }
    renderCron();
  }

  async function pollPlugins() {
    if (S.route.tab !== 'plugins') return;
    try {
      S.plugins = await api('/api/plugins');
    } catch (err) {
      readFailed('Loading plugin statistics', err);
      return;
    }
    renderPlugins();
  }

  async function pollDetail() {
    const detail = S.detail;
    if (!detail || detail.gone) return;
    const gen = detail.gen;
    let task;
    try {
      task = await api(`${queuePath(detail.queue)}/tasks/${enc(detail.id)}`);
    } catch (err) {
      if (S.detail !== detail || detail.gen !== gen) return;
      if (err instanceof ApiError && err.status === 404) {
        detail.gone = err.message;
        renderDetail();
      } else {
        readFailed('Loading the task', err);
      }
      return;
    }
    if (S.detail !== detail || detail.gen !== gen) return;
    detail.task = task;
    if (task.parent || (task.children && task.children.length)) {
      // A task in a flow: its whole tree, from the root, every poll.
      try {
        const flow = await api(`/api/flows/${enc(detail.queue)}/${enc(detail.id)}`);
        if (S.detail !== detail || detail.gen !== gen) return;
        detail.flow = flow;
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 404)) readFailed('Loading the flow', err);
      }
    }
    renderDetail();
  }

  /** A flow's tree: each task's state, type and id (a link to it); the task shown is marked. */
  function buildFlowTree(node, here) {
    const current = node.queue === here.queue && node.id === here.id;
    const outcome = node.outcome && node.outcome.error ? h('span', { class: 'muted' }, ` ${node.outcome.error.kind}`) : null;
    const policy = node.on_failure && node.on_failure !== 'fail-parent' ? h('span', { class: 'muted' }, ` [${node.on_failure}]`) : null;
    const state = node.state || (node.outcome ? node.outcome.state : 'gone');
    return h('li', { 'data-testid': 'flow-node', 'data-state': state, 'data-task-id': node.id, class: current ? 'current' : null },
      stateBadge(state), ' ', mono(node.type), ' ',
      current
        ? h('b', { class: 'mono' }, node.id)
        : h('a', { href: '#', class: 'mono', 'data-act': 'open-task-link', 'data-queue': node.queue, 'data-id': node.id }, node.id),
      node.queue !== here.queue ? h('span', { class: 'muted' }, ` (${node.queue})`) : null,
      outcome, policy,
      node.children && node.children.length ? h('ul', null, node.children.map((child) => buildFlowTree(child, here))) : null);
  }

  const overviewLoop = loop(pollOverview, OVERVIEW_EVERY_MS);
  const viewLoop = loop(pollView, VIEW_EVERY_MS);
  const pluginsLoop = loop(pollPlugins, PLUGINS_EVERY_MS);
  const detailLoop = loop(pollDetail, DETAIL_EVERY_MS);
  const throughputLoop = loop(pollThroughput, THROUGHPUT_EVERY_MS);

  // The chart's past, from the history the server keeps: drawn as soon as
  // the page opens, before this page has polled twice.
  async function pollThroughput() {
    let answer;
    try {
      answer = await api('/api/throughput');
    } catch (err) {
      return; // the live samples still draw; the overview reports outages
    }
    const byQueue = {};
    for (const q of answer.queues) byQueue[q.queue] = q.intervals;
    S.throughput = byQueue;
    if (S.route.tab === 'queues') renderChart();
  }

  function refreshView() {
    viewLoop.kick();
    if (S.route.tab === 'plugins') pluginsLoop.kick();
  }

  function refreshNow() {
    overviewLoop.kick();
    refreshView();
    if (S.detail) detailLoop.kick();
  }

  // ----------------------------------------------------------------- rendering

  function renderAll() {
    renderHeader();
    if (S.route.tab === 'queues') {
      renderQueues();
      renderTasks();
    }
    if (S.route.tab === 'servers') renderServers();
    if (S.route.tab === 'cron') renderCron();
    if (S.route.tab === 'limits') renderLimits();
    if (S.route.tab === 'plugins') renderPlugins();
  }

  const readOnly = () => Boolean(S.overview && S.overview.read_only);

  function askForToken() {
    $('token-box').hidden = false;
    const input = $('token-input');
    if (document.activeElement !== input && !input.value) input.focus();
  }

  function renderHeader() {
    const ov = S.overview;
    if (!ov) return;
    $('read-only').hidden = !ov.read_only;
    const box = $('token-box');
    if (ov.token_required) box.hidden = false;
    const input = $('token-input');
    if (document.activeElement !== input && input.value !== S.token) input.value = S.token;
    $('tab-count-servers').textContent = ov.servers.length ? String(ov.servers.length) : '';
    tickClock();
  }

  function tickClock() {
    if (!S.overview) return;
    $('server-time').textContent = isoLocal(serverNow(), false);
  }

  function writeButton(label, attrs, cls) {
    const ro = readOnly();
    return h('button', Object.assign({
      type: 'button',
      class: `btn ${cls || ''}`.trim(),
      disabled: ro,
      title: ro ? 'The dashboard is read-only' : attrs.title || null,
    }, attrs, ro ? { title: 'The dashboard is read-only' } : {}), label);
  }

  // Summary cards, chart and queue table.
  function renderQueues() {
    const ov = S.overview;
    if (!ov) return;
    const totals = { pending: 0, active: 0, retry: 0, archived: 0, processed: 0, failed: 0 };
    for (const q of ov.queues) {
      totals.pending += q.counts.pending;
      totals.active += q.counts.active;
      totals.retry += q.counts.retry;
      totals.archived += q.counts.archived;
      totals.processed += q.processed_today;
      totals.failed += q.failed_today;
    }
    const slots = ov.servers.reduce((n, s) => n + (s.concurrency || 0), 0);
    const busy = ov.servers.reduce((n, s) => n + (s.running ? s.running.length : 0), 0);
    const rate = latestRate();
    const cards = [
      ['Queues', String(ov.queues.length), `${ov.queues.filter((q) => q.paused).length} paused`],
      ['Servers', String(ov.servers.length), `${busy} / ${slots} slots busy`],
      ['Pending', fmtCount(totals.pending), `${fmtCount(totals.active)} active`],
      ['Throughput', rate === null ? '—' : fmtRate(rate), `completed, last ${(CHART_SMOOTHING * OVERVIEW_EVERY_MS) / 1000} s`],
      ['Processed today', fmtCount(totals.processed), 'UTC day'],
      ['Failed today', fmtCount(totals.failed), `${fmtCount(totals.retry)} retrying · ${fmtCount(totals.archived)} archived`, totals.failed ? 'bad' : ''],
    ];
    renderIfChanged($('summary'), cards, () =>
      cards.map(([label, value, sub, tone]) =>
        h('div', { class: `stat ${tone || ''}` }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value), h('div', { class: 'stat-sub' }, sub))));

    renderChart();

    const selected = S.route.queue;
    const rows = ov.queues.map((q) => ({
      q: q.queue,
      paused: q.paused,
      counts: q.counts,
      processed: q.processed_today,
      failed: q.failed_today,
      daily: q.daily,
      oldest: q.oldest_pending_ms === null || q.oldest_pending_ms === undefined ? null : ov.now_ms - q.oldest_pending_ms,
      memory: q.memory_bytes,
      ro: ov.read_only,
      selected: q.queue === selected ? S.route.state : null,
    }));
    syncRows($('queues-body'), rows, (r) => r.q, buildQueueRow, { cols: 13, text: 'No queues yet: enqueue a task to create one.' });
  }

  function buildQueueRow(r) {
    const tr = h('tr', { 'data-testid': 'queue-row', 'data-queue': r.q, class: r.selected ? 'selected' : null });
    tr.append(h('td', { class: 'queue-name' },
      h('a', { href: routeHash({ tab: 'queues', queue: r.q, state: 'pending', page: 0, size: S.route.size }) }, r.q),
      r.paused ? h('span', { class: 'badge badge-paused', title: 'Workers take no tasks from this queue' }, 'paused') : null));
    for (const state of STATES) {
      const n = r.counts[state] || 0;
      tr.append(h('td', {
        class: `num count count-${state}${n ? '' : ' zero'}${r.selected === state ? ' current' : ''}`,
        'data-testid': `count-${state}`,
        'data-act': 'open-state',
        'data-queue': r.q,
        'data-state': state,
        title: `List the ${state} tasks of ${r.q}`,
        tabindex: '0',
        role: 'button',
      }, String(n)));
    }
    tr.append(h('td', { class: 'num' }, fmtCount(r.processed)));
    tr.append(h('td', { class: `num${r.failed ? ' bad' : ''}` }, fmtCount(r.failed)));
    tr.append(h('td', null, sparkline(r.daily)));
    tr.append(h('td', { class: 'num' }, r.oldest === null ? h('span', { class: 'muted' }, '—') : age(r.oldest)));
    tr.append(h('td', { class: 'num' }, fmtBytes(r.memory)));
    const button = r.paused
      ? writeButton('Resume', { 'data-testid': `resume-${r.q}`, 'data-act': 'resume', 'data-queue': r.q, title: 'Let workers take tasks from this queue again' }, 'btn-sm btn-primary')
      : writeButton('Pause', { 'data-testid': `pause-${r.q}`, 'data-act': 'pause', 'data-queue': r.q, title: 'Stop workers from taking tasks from this queue' }, 'btn-sm');
    tr.append(h('td', { class: 'actions' }, button));
    return tr;
  }

  /** Seven tiny bars: processed per day, with the failed share in red. */
  function sparkline(daily) {
    if (!daily || !daily.length) return h('span', { class: 'muted' }, '—');
    const width = 70;
    const height = 18;
    const gap = 2;
    const bar = (width - gap * (daily.length - 1)) / daily.length;
    const max = Math.max(1, ...daily.map((d) => d.processed + d.failed));
    const lines = daily.map((d) => `${new Date(d.day * 86400000).toISOString().slice(0, 10)}: ${d.processed} processed, ${d.failed} failed`);
    const el = svg('svg', { class: 'spark', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'last 7 days' },
      svg('title', null, lines.join('\n')),
      daily.map((d, i) => {
        const x = i * (bar + gap);
        const hp = (d.processed / max) * (height - 1);
        const hf = (d.failed / max) * (height - 1);
        return [
          svg('rect', { x: x.toFixed(1), y: 0, width: bar.toFixed(1), height, class: 'spark-bg' }),
          svg('rect', { x: x.toFixed(1), y: (height - hp - hf).toFixed(1), width: bar.toFixed(1), height: hp.toFixed(1), class: 'spark-ok' }),
          svg('rect', { x: x.toFixed(1), y: (height - hf).toFixed(1), width: bar.toFixed(1), height: hf.toFixed(1), class: 'spark-fail' }),
        ];
      }));
    return el;
  }

  // --------------------------------------------------------------------- chart

  function recordSample(ov) {
    const last = S.samples[S.samples.length - 1];
    if (last && ov.now_ms <= last.t) return;
    const sample = { t: ov.now_ms, processed: {}, failed: {} };
    for (const q of ov.queues) {
      sample.processed[q.queue] = q.processed_today;
      sample.failed[q.queue] = q.failed_today;
    }
    S.samples.push(sample);
    while (S.samples.length > 2 && S.samples[1].t < ov.now_ms - CHART_WINDOW_MS - 10000) S.samples.shift();
  }

  // How much a counter grew between two samples; a drop means the UTC day
  // rolled over and the counter started again from zero.
  function growth(prev, next, field, queue) {
    const a = prev[field][queue];
    const b = next[field][queue];
    if (a === undefined || b === undefined) return null;
    return b >= a ? b - a : b;
  }

  // A counter's rate per second at sample `i`, averaged over the last few
  // polls so one-task-a-second does not zigzag between 0.5 and 1.5.
  function rateAt(i, field, queue) {
    let count = 0;
    let ms = 0;
    for (let j = Math.max(1, i - CHART_SMOOTHING + 1); j <= i; j += 1) {
      const grew = growth(S.samples[j - 1], S.samples[j], field, queue);
      if (grew === null) continue;
      count += grew;
      ms += S.samples[j].t - S.samples[j - 1].t;
    }
    return ms > 0 ? count / (ms / 1000) : null;
  }

  // Points from the server's history, per queue and for all queues, for
  // the intervals that began before this page's first live sample (the
  // newest of them runs to when the history was read): [{t, v}] of
  // completions (or failures) per second over each interval.
  function historyPoints(names, field) {
    const firstLive = S.samples.length > 1 ? S.samples[0].t : Infinity;
    const perQueue = {};
    const total = new Map(); // minute -> {t, v}
    for (const name of names) {
      const intervals = (S.throughput && S.throughput[name]) || [];
      perQueue[name] = [];
      for (const it of intervals) {
        if (it.end_ms - it.length_ms >= firstLive || it.length_ms <= 0) continue;
        const v = it[field] / (it.length_ms / 1000);
        perQueue[name].push({ t: it.end_ms, v });
        const minute = Math.round(it.end_ms / 60000);
        const sum = total.get(minute) || { t: it.end_ms, v: 0 };
        sum.v += v;
        total.set(minute, sum);
      }
    }
    const all = Object.values(perQueue).flat();
    const max = all.reduce((m, p) => Math.max(m, p.v), 0);
    return { perQueue, total: [...total.values()].sort((a, b) => a.t - b.t), count: all.length, max };
  }

  function chartSeries() {
    const ov = S.overview;
    const names = ov ? ov.queues.map((q) => q.queue) : Object.keys(S.throughput || {});
    const perQueue = names.length <= CHART_MAX_SERIES;
    const series = perQueue
      ? names.map((name, i) => ({ name, color: COLORS[i % COLORS.length], points: [] }))
      : [{ name: 'all queues', color: COLORS[0], points: [] }];
    const failed = { name: 'failed (all)', color: FAILED_COLOR, dashed: true, points: [] };
    const past = historyPoints(names, 'processed');
    S.historyPoints = { count: past.count, max: past.max };
    if (perQueue) names.forEach((name, k) => series[k].points.push(...past.perQueue[name]));
    else series[0].points.push(...past.total);
    failed.points.push(...historyPoints(names, 'failed').total);
    for (let i = 1; i < S.samples.length; i += 1) {
      const next = S.samples[i];
      let total = 0;
      let any = false;
      let failures = 0;
      names.forEach((name, k) => {
        const v = rateAt(i, 'processed', name);
        const f = rateAt(i, 'failed', name);
        if (f !== null) failures += f;
        if (v === null) return;
        any = true;
        total += v;
        if (perQueue) series[k].points.push({ t: next.t, v });
      });
      if (!perQueue && any) series[0].points.push({ t: next.t, v: total });
      if (any) failed.points.push({ t: next.t, v: failures });
    }
    return [...series, failed];
  }

  function latestRate() {
    const n = S.samples.length;
    if (n < 2 || !S.overview) return null;
    let total = 0;
    for (const q of S.overview.queues) total += rateAt(n - 1, 'processed', q.queue) || 0;
    return total;
  }

  function niceMax(v) {
    if (v <= 1) return 1;
    const magnitude = 10 ** Math.floor(Math.log10(v));
    for (const step of [1, 2, 2.5, 5, 10]) if (v <= step * magnitude) return step * magnitude;
    return 10 * magnitude;
  }

  function renderChart() {
    const box = $('chart');
    if (box.offsetParent === null) return; // hidden
    const series = chartSeries();
    const width = Math.max(320, Math.floor(box.clientWidth || 800));
    const height = 190;
    const m = { left: 40, right: 14, top: 12, bottom: 24 };
    const pw = width - m.left - m.right;
    const ph = height - m.top - m.bottom;
    const end = S.samples.length ? S.samples[S.samples.length - 1].t : serverNow();
    const start = end - CHART_WINDOW_MS;
    const visible = (p) => p.t >= start;
    const max = niceMax(Math.max(0, ...series.flatMap((s) => s.points.filter(visible).map((p) => p.v))));
    const x = (t) => m.left + ((t - start) / CHART_WINDOW_MS) * pw;
    const y = (v) => m.top + ph - (v / max) * ph;
    const pointCount = series.reduce((n, s) => n + s.points.filter(visible).length, 0);
    const past = S.historyPoints || { count: 0, max: 0 };

    const grid = [];
    for (let i = 0; i <= 4; i += 1) {
      const v = (max / 4) * i;
      const yy = y(v).toFixed(1);
      grid.push(svg('line', { x1: m.left, x2: width - m.right, y1: yy, y2: yy, class: i ? 'grid-line' : 'axis-line' }));
      grid.push(svg('text', { x: m.left - 6, y: (y(v) + 3.5).toFixed(1), class: 'axis-label', 'text-anchor': 'end' }, String(Number(v.toFixed(2)))));
    }
    for (const [offset, label] of [[1800, '30m ago'], [1200, '20m'], [600, '10m'], [0, 'now']]) {
      const xx = x(end - offset * 1000).toFixed(1);
      grid.push(svg('line', { x1: xx, x2: xx, y1: m.top, y2: m.top + ph, class: 'grid-line v' }));
      grid.push(svg('text', { x: xx, y: height - 7, class: 'axis-label', 'text-anchor': offset === 1800 ? 'start' : offset === 0 ? 'end' : 'middle' }, label));
    }
    const lines = series.map((s) => {
      const pts = s.points.filter(visible);
      if (!pts.length) return null;
      const d = pts.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join('');
      const last = pts[pts.length - 1];
      return [
        svg('path', { d, class: `series${s.dashed ? ' dashed' : ''}`, stroke: s.color }),
        svg('circle', { cx: x(last.t).toFixed(1), cy: y(last.v).toFixed(1), r: 3, fill: s.color }),
      ];
    });
    const note = pointCount
      ? null
      : svg('text', { x: m.left + pw / 2, y: m.top + ph / 2, class: 'chart-note', 'text-anchor': 'middle' },
        S.samples.length ? 'Collecting data: one point every 2 s…' : 'Waiting for the first overview…');
    const chart = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Completed tasks per second', 'data-testid': 'throughput-chart', 'data-points': pointCount, 'data-history-points': past.count, 'data-history-max': past.max.toFixed(3) },
      grid, lines, note);
    box.replaceChildren(chart);

    const legend = series.map((s) => {
      const pts = s.points;
      const current = pts.length ? pts[pts.length - 1].v : null;
      return { name: s.name, color: s.color, dashed: Boolean(s.dashed), value: fmtRate(current) };
    });
    renderIfChanged($('chart-legend'), legend, () =>
      legend.map((l) => h('span', { class: 'legend-item' },
        h('span', { class: `swatch${l.dashed ? ' dashed' : ''}`, style: `--c:${l.color}` }),
        h('span', null, l.name), h('b', null, l.value))));
  }

  // ---------------------------------------------------------------- task list

  function renderTasks() {
    const card = $('tasks-card');
    const route = S.route;
    if (!route.queue) {
      card.hidden = true;
      card._sig = null;
      return;
    }
    card.hidden = false;
    const queueStats = S.overview ? S.overview.queues.find((q) => q.queue === route.queue) : null;
    const counts = queueStats ? queueStats.counts : null;
    const list = S.list;
    const data = {
      route,
      counts,
      ro: readOnly(),
      list: list ? { total: list.total, size: list.size, page: list.page, tasks: list.tasks.map(taskRowData) } : null,
    };
    if (card._sig === JSON.stringify(data)) return;
    if (!card.firstChild || card._queue !== route.queue || card._state !== route.state) {
      card.replaceChildren(
        h('div', { class: 'card-head' }, h('h2', { id: 'tasks-title' }), h('div', { class: 'bulk', id: 'tasks-bulk' }),
          h('button', { type: 'button', class: 'btn btn-sm btn-ghost', 'data-act': 'close-list', title: 'Close the task list' }, '×')),
        h('div', { class: 'state-tabs', id: 'tasks-states' }),
        h('div', { class: 'table-wrap' },
          h('table', { class: 'grid tasks-table' },
            h('thead', null, h('tr', null, h('th', null, 'Id'), h('th', null, 'Type'), h('th', { class: 'num', title: 'attempts / max retry' }, 'Attempts'),
              h('th', null, STATE_TIME[route.state] || 'Enqueued'), h('th', null, 'Payload'), h('th', null, 'Last error'), h('th', null, ''))),
            h('tbody', { id: 'tasks-body' }))),
        h('div', { class: 'pager', id: 'tasks-pager' }));
      card._queue = route.queue;
      card._state = route.state;
    }
    card._sig = JSON.stringify(data);

    $('tasks-title').replaceChildren(`${route.state[0].toUpperCase()}${route.state.slice(1)} tasks in `, h('span', { class: 'mono' }, route.queue));
    renderIfChanged($('tasks-states'), [route, counts], () => STATES.map((state) =>
      h('a', {
        href: routeHash({ tab: 'queues', queue: route.queue, state, page: 0, size: route.size }),
        class: `state-tab${state === route.state ? ' active' : ''}`,
      }, state, counts ? h('span', { class: 'pill' }, String(counts[state])) : null)));

    const total = list ? list.total : counts ? counts[route.state] : 0;
    renderIfChanged($('tasks-bulk'), [route.state, Boolean(total), readOnly()], () => BULK.filter((b) => b.states.includes(route.state)).map((b) =>
      writeButton(b.label, { 'data-act': 'bulk', 'data-bulk': b.action, 'data-testid': `bulk-${b.action}`, disabled: !total || readOnly() }, `btn-sm${b.danger ? ' btn-danger' : ''}`)));

    const rows = data.list ? data.list.tasks : [];
    syncRows($('tasks-body'), rows, (r) => r.id, buildTaskRow,
      { cols: 7, text: list ? `No ${route.state} tasks in ${route.queue}.` : 'Loading…' });

    renderIfChanged($('tasks-pager'), list ? [list.page, list.size, list.total, list.tasks.length] : null, () => (list ? buildPager(list) : []));
  }

  function buildPager(list) {
    const pages = Math.max(1, Math.ceil(list.total / list.size));
    const from = list.total ? list.page * list.size + 1 : 0;
    const to = Math.min(list.total, list.page * list.size + list.tasks.length);
    return [
      h('button', { type: 'button', class: 'btn btn-sm', 'data-act': 'page', 'data-page': list.page - 1, disabled: list.page <= 0 }, '‹ Prev'),
      h('span', { class: 'pager-info' }, `Page ${list.page + 1} of ${pages}`, h('span', { class: 'muted' }, ` · ${from}–${to} of ${list.total}`)),
      h('button', { type: 'button', class: 'btn btn-sm', 'data-act': 'page', 'data-page': list.page + 1, disabled: list.page + 1 >= pages }, 'Next ›'),
      h('label', { class: 'pager-size' }, 'Per page ',
        h('select', { 'data-act': 'size' }, [...new Set([...PAGE_SIZES, list.size])].sort((a, b) => a - b).map((n) => h('option', { value: n, selected: n === list.size }, String(n))))),
    ];
  }

  function taskRowData(task) {
    return {
      id: task.id,
      queue: task.queue,
      type: task.type,
      state: task.state,
      attempts: task.attempts,
      max_retry: task.max_retry,
      time: task.state === 'pending' ? task.enqueued_at_ms : task.state_time_ms,
      payload: shortJson(task.payload, 80),
      error: task.last_error ? { kind: task.last_error.kind, message: task.last_error.message } : null,
      ro: readOnly(),
    };
  }

  function buildTaskRow(r) {
    const tr = h('tr', { 'data-testid': 'task-row', 'data-task-id': r.id, 'data-act': 'open-task', 'data-queue': r.queue, class: 'clickable', title: 'Show this task' });
    tr.append(h('td', { class: 'mono id-cell' }, r.id));
    tr.append(h('td', { class: 'mono' }, r.type));
    tr.append(h('td', { class: 'num' }, `${r.attempts}/${r.max_retry}`));
    tr.append(h('td', { class: 'nowrap' }, ago(r.time)));
    tr.append(h('td', { class: 'mono payload-cell', title: r.payload }, r.payload));
    tr.append(h('td', { class: 'error-cell' }, r.error ? [kindBadge(r.error.kind), ' ', h('span', { class: 'error-text', title: r.error.message }, r.error.message)] : h('span', { class: 'muted' }, '—')));
    tr.append(h('td', { class: 'actions nowrap' }, taskButtons(r.queue, r.id, r.state, true)));
    return tr;
  }

  function taskButtons(queue, id, state, small) {
    const size = small ? 'btn-sm' : '';
    const buttons = [];
    const attrs = (action, testid) => ({ 'data-act': 'task', 'data-action': action, 'data-queue': queue, 'data-id': id, 'data-testid': testid ? `action-${action}` : null });
    if (ACTIONS.run.includes(state)) {
      buttons.push(writeButton(state === 'scheduled' ? 'Run now' : 'Retry', attrs('run', !small), `${size} btn-primary`));
    }
    if (ACTIONS.archive.includes(state)) buttons.push(writeButton('Archive', attrs('archive', !small), size));
    if (ACTIONS.cancel.includes(state)) buttons.push(writeButton('Cancel', attrs('cancel', !small), size));
    if (ACTIONS.delete.includes(state)) buttons.push(writeButton('Delete', attrs('delete', !small), `${size} btn-danger`));
    return buttons;
  }

  // -------------------------------------------------------------- task detail

  function openDetail(queue, id) {
    const gen = (S.detail ? S.detail.gen : 0) + 1;
    S.detail = { queue, id, task: null, flow: null, gone: null, gen };
    $('detail').hidden = false;
    $('detail-backdrop').hidden = false;
    $('detail')._sig = null;
    renderDetail();
    detailLoop.kick();
  }

  function closeDetail() {
    S.detail = null;
    $('detail').hidden = true;
    $('detail-backdrop').hidden = true;
    $('detail').replaceChildren();
    $('detail')._sig = null;
  }

  const KNOWN_FIELDS = ['id', 'queue', 'type', 'state', 'state_time_ms', 'attempts', 'max_retry', 'payload', 'timeout_ms', 'deadline_ms',
    'retention_ms', 'enqueued_at_ms', 'unique_key', 'limit', 'last_error', 'result', 'children', 'progress'];

  function renderDetail() {
    const panel = $('detail');
    const detail = S.detail;
    if (!detail) return;
    const data = { d: { queue: detail.queue, id: detail.id, gone: detail.gone }, task: detail.task, flow: detail.flow, ro: readOnly() };
    const body = panel.querySelector('.drawer-body');
    const scroll = body && panel._id === detail.id ? body.scrollTop : 0;
    renderIfChanged(panel, data, () => buildDetail(detail));
    panel._id = detail.id;
    const fresh = panel.querySelector('.drawer-body');
    if (fresh && scroll) fresh.scrollTop = scroll; // keep the reader's place when the task changes
  }

  function buildDetail(detail) {
    const task = detail.task;
    const head = h('div', { class: 'drawer-head' },
      h('div', null, h('div', { class: 'drawer-kicker' }, 'Task in ', h('span', { class: 'mono' }, detail.queue)),
        h('h2', { class: 'mono drawer-title', title: detail.id }, detail.id)),
      h('button', { type: 'button', class: 'btn btn-ghost close', 'data-act': 'close-detail', title: 'Close (Esc)', 'aria-label': 'Close' }, '×'));
    if (!task) {
      return [head, h('div', { class: 'drawer-body' }, detail.gone ? h('div', { class: 'notice bad' }, detail.gone) : h('p', { class: 'muted' }, 'Loading…'))];
    }
    const timeLabel = STATE_TIME[task.state];
    const rows = [
      ['State', [stateBadge(task.state, { 'data-testid': 'task-state' }), detail.gone ? h('span', { class: 'muted' }, ' (last seen)') : null]],
      ['Type', mono(task.type)],
      ['Queue', mono(task.queue)],
      ['Attempts', [h('b', null, String(task.attempts)), h('span', { class: 'muted' }, ` of ${task.max_retry + 1} allowed (max retry ${task.max_retry})`)]],
      timeLabel ? [timeLabel, timeCell(task.state_time_ms)] : null,
      ['Enqueued', timeCell(task.enqueued_at_ms)],
      ['Timeout', task.timeout_ms === null || task.timeout_ms === undefined ? h('span', { class: 'muted' }, 'plugin default') : fmtDuration(task.timeout_ms)],
      ['Deadline', task.deadline_ms === null || task.deadline_ms === undefined ? h('span', { class: 'muted' }, 'none') : timeCell(task.deadline_ms)],
      ['Retention', task.retention_ms === null || task.retention_ms === undefined ? h('span', { class: 'muted' }, 'none') : fmtDuration(task.retention_ms)],
      ['Unique key', task.unique_key === null || task.unique_key === undefined ? h('span', { class: 'muted' }, 'none') : mono(shortJson(task.unique_key, 200))],
      ['Limit', task.limit === null || task.limit === undefined ? h('span', { class: 'muted' }, 'none') : mono(shortJson(task.limit, 200))],
      task.progress ? ['Progress', progressCell(task.progress)] : null,
    ];
    for (const [key, value] of Object.entries(task)) {
      if (!KNOWN_FIELDS.includes(key)) rows.push([key, mono(shortJson(value, 300))]);
    }
    const error = task.last_error;
    return [
      head,
      h('div', { class: 'drawer-body' },
        detail.gone ? h('div', { class: 'notice bad' }, `${detail.gone}. Showing what was last seen.`) : null,
        h('div', { class: 'detail-actions' }, detail.gone ? null : taskButtons(task.queue, task.id, task.state, false)),
        h('dl', { class: 'fields' }, rows.filter(Boolean).map(([label, value]) => [h('dt', null, label), h('dd', null, value)])),
        detail.flow ? [h('h3', null, 'Flow'), h('ul', { class: 'flow-tree', 'data-testid': 'flow-tree' }, buildFlowTree(detail.flow, detail))] : null,
        h('h3', null, 'Last error'),
        error
          ? h('div', { class: 'error-box', 'data-testid': 'task-error' },
            h('div', { class: 'error-head' }, kindBadge(error.kind),
              h('span', { class: 'muted' }, ` attempt ${error.attempt ?? '?'} · ${isoLocal(error.at_ms)}`)),
            h('div', { class: 'error-message' }, error.message))
          : h('p', { class: 'muted' }, 'None.'),
        h('h3', null, 'Payload'),
        h('pre', { class: 'json', 'data-testid': 'task-payload' }, prettyJson(task.payload)),
        h('h3', null, 'Result'),
        task.result === null || task.result === undefined
          ? h('p', { class: 'muted' }, task.state === 'completed' ? 'The handler returned no result.' : 'None yet.')
          : h('pre', { class: 'json', 'data-testid': 'task-result' }, prettyJson(task.result)),
        h('details', { class: 'raw', 'data-key': 'raw-json', open: S.openDetails.has('raw-json') }, h('summary', null, 'Raw JSON'), h('pre', { class: 'json' }, prettyJson(task)))),
    ];
  }

  // A handler's latest progress report: its figure, its note, and when.
  function progressCell(progress) {
    return h('span', { 'data-testid': 'task-progress' },
      progress.done === null || progress.done === undefined ? null : h('b', null, String(progress.done)),
      progress.note === null || progress.note === undefined ? null : [' ', mono(shortJson(progress.note, 200))],
      h('span', { class: 'muted' }, ` · attempt ${progress.attempt} · `, ago(progress.at_ms)));
  }

  function timeCell(ms) {
    if (ms === null || ms === undefined) return h('span', { class: 'muted' }, '—');
    return [h('span', { class: 'mono', title: isoTitle(ms) }, isoLocal(ms)), ' ', h('span', { class: 'muted' }, '(', ago(ms), ')')];
  }

  // ------------------------------------------------------------------ servers

  function renderServers() {
    const ov = S.overview;
    if (!ov) return;
    const rows = ov.servers.map((s) => ({
      id: s.id,
      host: s.host,
      pid: s.pid,
      version: s.version,
      started: s.started_at_ms,
      concurrency: s.concurrency,
      running: s.running || [],
      parked: s.parked || 0,
      queues: s.queues || [],
      strict: s.strict,
      plugins: (s.plugins || []).map((p) => ({ name: p.name, version: p.version, digest: p.digest, types: p.task_types, probation: !!p.on_probation })),
      open: S.openDetails.has(`running:${s.id}`),
    }));
    syncRows($('servers-body'), rows, (r) => r.id, buildServerRow, { cols: 8, text: 'No workers are alive.' });
  }

  function buildServerRow(r) {
    const busy = r.running.length;
    const pct = r.concurrency ? Math.min(100, (busy / r.concurrency) * 100) : 0;
    const running = h('details', { class: 'running', 'data-key': `running:${r.id}`, open: r.open },
      h('summary', null,
        h('span', { class: 'meter', title: `${busy} of ${r.concurrency} slots busy` }, h('span', { class: 'meter-fill', style: `width:${pct.toFixed(0)}%` })),
        h('b', null, ` ${busy}`), h('span', { class: 'muted' }, ` / ${r.concurrency}`),
        r.parked ? h('span', { class: 'muted', title: 'Tasks leased and waiting: for the probation lane, or for a verdict on a plugin on trial' }, ` +${r.parked} parked`) : null),
      busy
        ? h('ul', { class: 'running-list' }, r.running.map((t) =>
          h('li', null, h('a', { href: '#', 'data-act': 'open-task-link', 'data-queue': t.queue, 'data-id': t.id, class: 'mono' }, t.id.length > 13 ? `${t.id.slice(0, 13)}…` : t.id),
            ' ', mono(t.task_type), h('span', { class: 'muted' }, ` on ${t.queue}, `, ago(t.started_at_ms)))))
        : h('div', { class: 'muted small' }, 'idle'));
    return h('tr', null,
      h('td', { class: 'mono' }, r.id),
      h('td', null, r.host),
      h('td', { class: 'num mono' }, String(r.pid)),
      h('td', { class: 'mono' }, r.version),
      h('td', { class: 'nowrap' }, h('span', { title: isoTitle(r.started) }, isoLocal(r.started, false)), h('div', { class: 'muted small' }, 'up ', age(r.started))),
      h('td', null, running),
      h('td', null, r.queues.map(([name, weight]) => h('span', { class: 'tag' }, name, h('span', { class: 'tag-sub' }, String(weight)))),
        r.strict ? h('span', { class: 'badge', title: 'Strict priority: higher-weight queues are drained first' }, 'strict') : null),
      h('td', { class: 'plugins-cell' }, r.plugins.map((p) => h('span', {
        class: p.probation ? 'tag tag-probation' : 'tag',
        title: `digest ${p.digest}\ntask types: ${(p.types || []).join(', ')}${p.probation ? '\non probation: its attempts kept ending at their limits; its tasks run at idle priority' : ''}`,
      }, p.name, h('span', { class: 'tag-sub' }, p.version)))));
  }

  // --------------------------------------------------------------------- limits

  function renderLimits() {
    const limits = S.limits;
    const rates = $('rate-body');
    const slots = $('concurrency-body');
    if (!limits) {
      for (const body of [rates, slots]) {
        if (!body.children.length) body.append(h('tr', { class: 'empty' }, h('td', { colspan: 6 }, 'Loading…')));
      }
      return;
    }
    syncRows(rates, limits.rate, (r) => `${r.target} ${r.key}`, buildRateRow, { cols: 6, text: 'No rate limits. Set one with: wasmq limit set TYPE --rate 100/s' });
    syncRows(slots, limits.concurrency, (r) => r.task_type, buildConcurrencyRow, { cols: 4, text: 'No concurrency limits. Set one with: wasmq limit set TYPE --max-running N' });
  }

  function buildRateRow(r) {
    const full = r.used >= r.of;
    return h('tr', { 'data-testid': 'rate-row' },
      h('td', { class: 'mono' }, r.target),
      h('td', { class: 'mono' }, r.rate),
      h('td', { class: 'num' }, String(r.burst)),
      h('td', { class: 'mono' }, r.key),
      h('td', { 'data-testid': 'rate-used' }, h('b', { class: full ? 'bad' : null }, `${r.used}/${r.of}`)),
      h('td', null, r.waiting_ms > 0 ? `turns for ${fmtDuration(r.waiting_ms)}` : h('span', { class: 'muted' }, '—')));
  }

  function buildConcurrencyRow(r) {
    return h('tr', { 'data-testid': 'concurrency-row' },
      h('td', { class: 'mono' }, r.task_type),
      h('td', null, `${r.max_running}${r.scope}`),
      h('td', { class: 'mono' }, r.when_busy),
      h('td', { class: 'mono', 'data-testid': 'concurrency-held' }, r.holders.length ? r.holders.join(', ') : h('span', { class: 'muted' }, 'free')));
  }

  // --------------------------------------------------------------------- cron

  function renderCron() {
    const entries = S.cron;
    const body = $('cron-body');
    if (!entries) {
      if (!body.children.length) body.append(h('tr', { class: 'empty' }, h('td', { colspan: 9 }, 'Loading…')));
      return;
    }
    const rows = entries.map((e) => ({
      name: e.entry.name,
      schedule: e.entry.schedule,
      tz: e.entry.tz,
      type: e.entry.type,
      queue: e.entry.queue,
      misfire: e.entry.misfire,
      source: e.entry.source,
      payload: shortJson(e.entry.payload, 200),
      next: e.next_tick_ms,
      last: e.last ? { tick: e.last.tick, state: e.last.task_state } : null,
      selected: S.route.cron === e.entry.name,
    }));
    syncRows(body, rows, (r) => r.name, buildCronRow, { cols: 9, text: 'No cron entries. Add one with: wasmq cron add NAME "SCHEDULE" TYPE PAYLOAD' });

    const card = $('cron-history');
    const name = S.route.cron;
    if (!name) {
      card.hidden = true;
      return;
    }
    card.hidden = false;
    const entry = entries.find((e) => e.entry.name === name);
    const history = S.history && S.history.name === name ? S.history : null;
    renderIfChanged(card, { name, history, queue: entry ? entry.entry.queue : null }, () => buildHistory(name, entry, history));
  }

  function buildCronRow(r) {
    const last = r.last;
    return h('tr', { class: `clickable${r.selected ? ' selected' : ''}`, 'data-act': 'open-cron', 'data-name': r.name, 'data-testid': 'cron-row', title: `payload: ${r.payload}\nsource: ${r.source || '?'}` },
      h('td', null, h('b', null, r.name)),
      h('td', { class: 'mono' }, r.schedule),
      h('td', null, r.tz),
      h('td', { class: 'mono' }, r.type),
      h('td', { class: 'mono' }, r.queue),
      h('td', null, r.misfire),
      h('td', { class: 'nowrap' }, r.next ? [h('span', { title: isoTitle(r.next) }, isoLocal(r.next, false)), ' ', h('span', { class: 'muted' }, '(', ago(r.next), ')')] : h('span', { class: 'muted' }, '—')),
      h('td', { class: 'nowrap' }, last ? [outcomeBadge(last.tick.outcome), ' ', ago(last.tick.tick_ms)] : h('span', { class: 'muted' }, 'never')),
      h('td', null, last && last.state ? stateBadge(last.state) : h('span', { class: 'muted' }, '—')));
  }

  function buildHistory(name, entry, history) {
    const head = h('div', { class: 'card-head' }, h('h2', null, 'History of ', h('span', { class: 'mono' }, name)),
      h('span', { class: 'muted small' }, 'newest first, up to 50 ticks'),
      h('button', { type: 'button', class: 'btn btn-sm btn-ghost', 'data-act': 'close-cron', title: 'Close' }, '×'));
    if (!history) return [head, h('p', { class: 'pad muted' }, 'Loading…')];
    if (!history.ticks) return [head, h('p', { class: 'pad bad' }, history.missing)];
    const queue = entry ? entry.entry.queue : null;
    return [head, h('div', { class: 'table-wrap' }, h('table', { class: 'grid' },
      h('thead', null, h('tr', null, ['Tick', 'Handled', 'By', 'Outcome', 'Queue', 'Task', 'Task state'].map((t) => h('th', null, t)))),
      h('tbody', null, history.ticks.length ? history.ticks.map((item) => {
        const t = item.tick;
        const late = t.at_ms - t.tick_ms;
        return h('tr', null,
          h('td', { class: 'mono nowrap', title: isoTitle(t.tick_ms) }, isoLocal(t.tick_ms, false)),
          h('td', { class: `num${late > 1000 ? ' warn' : ''}`, title: isoTitle(t.at_ms) }, `+${fmtCount(late)} ms`),
          h('td', { class: 'mono' }, t.host || '—'),
          h('td', null, outcomeBadge(t.outcome), t.skipped ? h('span', { class: 'muted' }, ` ${t.skipped} skipped`) : null),
          h('td', null, t.queue ? mono(t.queue) : h('span', { class: 'muted' }, '—')),
          h('td', null, t.task_id
            ? ((t.queue || queue) ? h('a', { href: '#', class: 'mono', 'data-act': 'open-task-link', 'data-queue': t.queue || queue, 'data-id': t.task_id }, t.task_id) : mono(t.task_id))
            : h('span', { class: 'muted' }, '—')),
          h('td', null, item.task_state ? stateBadge(item.task_state) : h('span', { class: 'muted', title: 'the task record is gone (expired or deleted)' }, 'gone')));
      }) : h('tr', { class: 'empty' }, h('td', { colspan: 7 }, 'No ticks yet.'))))) ];
  }

  // ------------------------------------------------------------------ plugins

  function renderPlugins() {
    const data = S.plugins;
    const body = $('plugins-body');
    if (!data) {
      if (!body.children.length) body.append(h('tr', { class: 'empty' }, h('td', { colspan: 9 }, 'Loading…')));
      return;
    }
    const rows = data.stats.map((s) => ({ ...s }));
    syncRows(body, rows, (r) => `${r.plugin}|${r.task_type}`, buildPluginRow, { cols: 9, text: 'No runs recorded yet.' });
    renderIfChanged($('loaded'), data.loaded, () => buildLoaded(data.loaded));
  }

  function buildPluginRow(r) {
    const failures = Object.entries(r.failures || {}).sort((a, b) => b[1] - a[1]);
    const okPct = r.runs ? Math.round((r.ok / r.runs) * 1000) / 10 : null;
    return h('tr', null,
      h('td', null, h('b', null, r.plugin)),
      h('td', { class: 'mono' }, r.task_type),
      h('td', { class: 'num' }, fmtCount(r.runs)),
      h('td', { class: 'num' }, fmtCount(r.ok), okPct === null ? null : h('div', { class: `small ${okPct < 90 ? 'bad' : 'muted'}` }, `${okPct}%`)),
      h('td', null, failures.length ? failures.map(([kind, n]) => h('span', { class: `kind kind-${kind}`, title: `${n} × ${kind}` }, `${kind} ${n}`)) : h('span', { class: 'muted' }, 'none')),
      h('td', { class: 'num', title: `${r.fuel_p50} fuel` }, fmtSI(r.fuel_p50)),
      h('td', { class: 'num', title: `${r.fuel_p99} fuel` }, fmtSI(r.fuel_p99)),
      h('td', { class: 'num', title: `${r.time_p50_us} µs` }, fmtMicros(r.time_p50_us)),
      h('td', { class: 'num', title: `${r.time_p99_us} µs` }, fmtMicros(r.time_p99_us)));
  }

  function buildLoaded(loaded) {
    if (!loaded.length) return h('p', { class: 'pad muted' }, 'No workers are alive.');
    const names = [...new Set(loaded.flatMap((s) => s.plugins.map((p) => p.name)))].sort();
    return h('table', { class: 'grid' },
      h('thead', null, h('tr', null, h('th', null, 'Plugin'), loaded.map((s) => h('th', { class: 'mono' }, s.server)))),
      h('tbody', null, names.map((name) => {
        const builds = loaded.map((s) => s.plugins.find((p) => p.name === name) || null);
        const digests = new Set(builds.filter(Boolean).map((p) => p.digest));
        const mixed = digests.size > 1 || builds.some((b) => !b);
        return h('tr', { class: mixed ? 'mixed' : null },
          h('td', null, h('b', null, name), mixed ? h('span', { class: 'badge badge-warn', title: 'Workers run different builds of this plugin, or some lack it' }, 'differs') : null),
          builds.map((p) => h('td', null, p
            ? [h('span', { class: 'tag' }, p.version), ' ', h('span', { class: 'mono muted small', title: `digest ${p.digest}\ntask types: ${p.task_types.join(', ')}` }, p.digest.slice(0, 12))]
            : h('span', { class: 'muted' }, 'not loaded'))));
      })));
  }

  // ------------------------------------------------------------------- events

  function onClick(event) {
    const target = event.target.closest('[data-act]');
    if (!target) return;
    const act_ = target.dataset.act;
    if (target.tagName === 'A') event.preventDefault();
    const { queue, id } = target.dataset;
    switch (act_) {
      case 'open-state':
        go({ tab: 'queues', queue, state: target.dataset.state, page: 0 });
        break;
      case 'close-list':
        go({ tab: 'queues', queue: null, state: null, page: 0 });
        break;
      case 'open-task':
        if (window.getSelection && String(window.getSelection()).length) return; // selecting text, not opening
        openDetail(queue, target.dataset.taskId);
        break;
      case 'open-task-link':
        openDetail(queue, id);
        break;
      case 'close-detail':
        closeDetail();
        break;
      case 'open-cron':
        go({ tab: 'cron', cron: S.route.cron === target.dataset.name ? null : target.dataset.name });
        break;
      case 'close-cron':
        go({ tab: 'cron', cron: null });
        break;
      case 'page':
        go({ page: Math.max(0, Number(target.dataset.page)) });
        break;
      case 'pause':
      case 'resume':
        act(`Could not ${act_} ${queue}`, `${queuePath(queue)}/${act_}`,
          () => `Queue ${queue} ${act_ === 'pause' ? 'paused' : 'resumed'}.`, target);
        break;
      case 'task':
        taskAction(target.dataset.action, queue, id, target);
        break;
      case 'bulk':
        bulkAction(target.dataset.bulk, target);
        break;
      default:
        break;
    }
  }

  const ACTION_WORDS = { run: ['run', 'queued to run'], archive: ['archive', 'archived'], delete: ['delete', 'deleted'], cancel: ['cancel', 'cancelled'] };

  async function taskAction(action, queue, id, button) {
    const [verb, done] = ACTION_WORDS[action];
    if (action === 'delete' && !window.confirm(`Delete task ${id} from ${queue}? This cannot be undone.`)) return;
    await act(`Could not ${verb} task ${id}`, `${queuePath(queue)}/tasks/${enc(id)}/${action}`,
      (r) => `Task ${id.length > 13 ? `${id.slice(0, 13)}…` : id} ${done}${r && r.from ? ` (was ${r.from})` : ''}.`, button,
      () => {
        if (action === 'delete' && S.detail && S.detail.id === id && S.detail.queue === queue) closeDetail();
      });
  }

  function bulkAction(action, button) {
    const { queue, state } = S.route;
    const b = BULK.find((x) => x.action === action);
    const total = S.list ? S.list.total : '?';
    if (!window.confirm(`${b.label}: apply to all ${total} ${state} tasks in ${queue}?`)) return;
    act(`Could not ${b.label.toLowerCase()} (${state} tasks in ${queue})`, `${queuePath(queue)}/bulk/${action}?state=${state}`,
      (r) => `${b.label}: ${r.count} ${state} task${r.count === 1 ? '' : 's'} in ${queue}.`, button);
  }

  function onKey(event) {
    if (event.key === 'Escape' && S.detail) {
      closeDetail();
      return;
    }
    if ((event.key === 'Enter' || event.key === ' ') && event.target.matches('[data-act][role=button]')) {
      event.preventDefault();
      onClick(event);
    }
  }

  function onChange(event) {
    if (event.target.matches('select[data-act=size]')) go({ size: Number(event.target.value), page: 0 });
  }

  function tick() {
    tickClock();
    for (const el of document.querySelectorAll('[data-ago]')) {
      const text = fmtRelative(Number(el.dataset.ago));
      if (el.textContent !== text) el.textContent = text;
    }
    for (const el of document.querySelectorAll('[data-age]')) {
      const text = fmtDuration(serverNow() - Number(el.dataset.age));
      if (el.textContent !== text) el.textContent = text;
    }
  }

  // --------------------------------------------------------------------- start

  function start() {
    document.addEventListener('click', onClick);
    document.addEventListener('keydown', onKey);
    document.addEventListener('change', onChange);
    document.addEventListener('toggle', (event) => {
      const key = event.target.dataset && event.target.dataset.key;
      if (!key || event.target.tagName !== 'DETAILS') return;
      if (event.target.open) S.openDetails.add(key);
      else S.openDetails.delete(key);
    }, true);
    $('detail-backdrop').addEventListener('click', closeDetail);
    const input = $('token-input');
    input.value = S.token;
    input.addEventListener('change', () => {
      saveToken(input.value.trim());
      notify('ok', S.token ? 'Token kept for this tab.' : 'Token cleared.');
      refreshNow();
    });
    let resizeTimer = null;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => S.route.tab === 'queues' && renderChart(), 100);
    });
    window.addEventListener('hashchange', onRoute);
    setInterval(tick, 1000);
    onRoute();
    overviewLoop.start();
    viewLoop.start();
    pluginsLoop.start();
    detailLoop.start();
    throughputLoop.start();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
