// Umbra's ops page. Everything it shows comes from the JSON API (/v2/...), the same endpoints a
// script would read; live updates arrive as `tick` events on /v2/ops/events. Series kept here are
// trimmed to the server's capacity, so a page left open for a day holds what it held after 15 minutes.
'use strict';

const TOKEN_KEY = 'umbra.adminToken';
const DETAIL_EVERY_TICKS = 5;
const COLORS = ['#2563eb', '#d97706', '#059669', '#db2777', '#7c3aed', '#0891b2', '#65a30d', '#dc2626'];

const state = { capacity: 900, times: [], charts: [], ticks: 0, model: null, feature: null, lastRollout: '', monitoring: true, available: false, reason: '', admin: 'token', scoredByError: false };

// ---------- helpers ----------

/** The one number format of the page (the tests format the API's numbers the same way). */
function fmt(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return '\u2014';
  if (typeof x !== 'number') return String(x);
  return String(Number(x.toFixed(digits)));
}
function pct(x) {
  return x === null || x === undefined ? '\u2014' : `${fmt(x * 100, 1)}%`;
}
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
/** Replaces a node's children, skipping absent ones (the DOM would print "null"). */
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}
function duration(s) {
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}
function badge(text, kind) {
  return el('span', { class: `badge ${kind || String(text).toLowerCase()}`, text });
}
function toast(message, ok = true) {
  const t = document.getElementById('toast');
  t.textContent = message;
  t.className = ok ? 'show ok' : 'show bad';
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ''; }, 6000);
}

async function api(path, options = {}) {
  const init = { method: options.method || 'GET', headers: {} };
  if (options.admin) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) init.headers.authorization = `Bearer ${token}`;
  }
  if (options.body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(options.body);
  }
  const res = await fetch(path, init);
  let body = null;
  try { body = await res.json(); } catch { body = null; }
  if (res.status === 401) sessionStorage.removeItem(TOKEN_KEY);
  return { status: res.status, ok: res.ok, body };
}

// ---------- confirmation and the admin token ----------

let answerAsk = null;

function ask(title, text, needToken) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  const field = document.getElementById('token-field');
  const input = document.getElementById('token-input');
  field.hidden = !needToken;
  input.value = '';
  if (answerAsk) answerAsk(false);
  return new Promise((resolve) => {
    answerAsk = (ok) => {
      answerAsk = null;
      if (ok && needToken) {
        if (!input.value) return resolve(false);
        sessionStorage.setItem(TOKEN_KEY, input.value);
      }
      resolve(ok);
    };
    dialog.returnValue = '';
    dialog.showModal();
    (needToken ? input : document.getElementById('confirm-ok')).focus();
  });
}

// One listener for every question. A close event still queued from the last dialog may arrive
// after the next one opened: the dialog is open again then, and the event is not its answer.
document.getElementById('confirm').addEventListener('close', (e) => {
  const dialog = e.target;
  if (dialog.open || !answerAsk) return;
  answerAsk(dialog.returnValue === 'ok');
});

/** Every action: confirm (asking for the token once per tab), call, show the API's answer. */
async function act(title, text, method, path, body) {
  // A server with no admin token answers its loopback clients' actions without one.
  const needToken = state.admin === 'token' && !sessionStorage.getItem(TOKEN_KEY);
  if (!(await ask(title, text, needToken))) return undefined;
  const r = await api(path, { method, body, admin: true });
  const answer = `HTTP ${r.status}: ${summarise(r.body)}`;
  toast(`${title}: ${r.ok ? 'done' : 'refused'} \u2014 ${answer}`, r.ok);
  renderToken();
  if (state.model) await (state.available ? refreshModel() : modelPage(state.model));
  return r;
}

/** The gist of an API answer for the confirmation toast (the whole answer is in the console). */
function summarise(body) {
  if (!body) return 'no body';
  if (body.error) return body.error;
  console.info('API answer', body);
  if (body.state && body.candidate) return `rollout of v${body.candidate} is ${body.state} (step ${body.step + 1} of ${body.steps.length})`;
  if (body.primary) return `primary v${body.primary}${body.canary ? `, canary v${body.canary.version} at ${pct(body.canary.weight)}` : ''}${body.shadows && body.shadows.length ? `, shadows ${body.shadows.map((x) => `v${x.version}`).join(', ')}` : ''}`;
  const text = JSON.stringify(body);
  return text === '{}' ? 'ok' : text.slice(0, 160);
}

/** The note beside a page's actions: what they will ask for. */
function tokenNote() {
  if (state.admin !== 'token') return '(no admin token set: actions answer only to this host\'s own clients)';
  return sessionStorage.getItem(TOKEN_KEY) ? '(admin token set for this tab)' : '(ask for the admin token)';
}

function renderToken() {
  const has = !!sessionStorage.getItem(TOKEN_KEY);
  const b = document.getElementById('token-button');
  b.hidden = state.admin !== 'token' && !has;
  b.textContent = has ? 'Forget token' : 'Admin token';
  b.onclick = async () => {
    if (sessionStorage.getItem(TOKEN_KEY)) sessionStorage.removeItem(TOKEN_KEY);
    else await ask('Admin token', 'Kept in this tab only (sessionStorage); actions send it as a bearer token.', true);
    renderToken();
    if (state.model) state.available ? refreshModel() : modelPage(state.model);
  };
}

// ---------- charts ----------

function chartWidth(container, spark) {
  return Math.max(spark ? 60 : 200, Math.floor(container.getBoundingClientRect().width) - 4);
}

/** A uPlot line chart on the shared time axis; `series` = [{label, values}]. */
function lineChart(container, series, opts = {}) {
  const data = [state.times.map((t) => t / 1000), ...series.map((s) => s.values)];
  const plot = new uPlot({
    width: chartWidth(container, opts.spark),
    height: opts.height || 160,
    legend: { show: !opts.spark },
    cursor: { show: !opts.spark },
    scales: { x: { time: true }, y: opts.range ? { range: opts.range } : { range: (_u, min, max) => [Math.min(0, min || 0), max > 0 ? max * 1.15 : 1] } },
    padding: opts.spark ? [4, 2, 2, 2] : undefined,
    axes: opts.spark ? [{ show: false }, { show: false }] : [{ stroke: '#64748b', grid: { stroke: '#e2e8f0' } }, { stroke: '#64748b', grid: { stroke: '#e2e8f0' }, size: 48, values: (_u, vals) => vals.map((v) => fmt(v)), ...(opts.yLabel ? { label: opts.yLabel, labelSize: 18 } : {}) }],
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: opts.spark ? 1.5 : 2, fill: opts.spark ? `${s.color || COLORS[0]}18` : undefined, points: { show: !opts.spark && state.times.length < 60 }, spanGaps: false, value: (_u, v) => fmt(v) }))],
  }, data, container);
  const chart = { plot, series, container, spark: !!opts.spark };
  state.charts.push(chart);
  return chart;
}

function redrawCharts() {
  const x = state.times.map((t) => t / 1000);
  for (const c of state.charts) c.plot.setData([x, ...c.series.map((s) => s.values)]);
}

window.addEventListener('resize', () => {
  for (const c of state.charts) c.plot.setSize({ width: chartWidth(c.container, c.spark), height: c.plot.height });
});

/** Drops every chart (their canvases and listeners) before a panel is drawn again. */
function dropCharts() {
  for (const c of state.charts) c.plot.destroy();
  state.charts = [];
}

/** Appends a point to a series array in place, keeping at most `capacity`. */
function pushBounded(arr, v) {
  arr.push(v === undefined ? null : v);
  if (arr.length > state.capacity) arr.splice(0, arr.length - state.capacity);
}

// ---------- the server page ----------

let serverTimeline = null;

async function serverPage() {
  setCrumbs([]);
  const [summary, timeline] = await Promise.all([api('/v2/ops/server'), api('/v2/ops/timeline')]);
  serverTimeline = timeline.body;
  state.capacity = timeline.body.capacity;
  state.times = timeline.body.times;
  const app = document.getElementById('app');
  fill(app);
  app.append(el('section', { class: 'cards', id: 'server-cards' }));
  app.append(el('section', { class: 'panel' }, el('h2', { text: 'Models' }), el('div', { id: 'models', class: 'model-list' })));
  renderServer(summary.body, true);
}

function serverCards(s) {
  const card = (label, value, key) => el('div', { class: 'card' }, el('div', { class: 'label', text: label }), el('div', { class: 'value', 'data-k': key, text: value }));
  return [
    card('Status', s.ready ? 'ready' : 'not ready', 'ready'),
    card('Version', s.version, 'version'),
    card('Uptime', duration(s.uptime_s), 'uptime'),
    card('Models', String(s.models.length), 'models'),
    card('Model workers', String(s.workers), 'workers'),
    card('I/O threads', String(s.io_threads), 'io_threads'),
  ];
}

function renderServer(s, full) {
  document.getElementById('server-cards').replaceChildren(...serverCards(s));
  const list = document.getElementById('models');
  if (full || list.childElementCount !== s.models.length) {
    dropCharts();
    fill(list, ...s.models.map((m) => modelRow(m)));
    for (const m of s.models) {
      const row = list.querySelector(`[data-model="${CSS.escape(m.name)}"]`);
      const t = serverTimeline.models[m.name];
      if (!t) continue;
      t.requests_per_s ||= [];
      t.errors_per_s ||= [];
      lineChart(row.querySelector('.spark-req'), [{ label: 'requests/s', values: t.requests_per_s }], { spark: true, height: 44 });
      lineChart(row.querySelector('.spark-err'), [{ label: 'errors/s', values: t.errors_per_s, color: '#dc2626' }], { spark: true, height: 44 });
    }
    return;
  }
  for (const m of s.models) {
    const row = list.querySelector(`[data-model="${CSS.escape(m.name)}"]`);
    if (row) row.querySelector('.model-facts').replaceWith(modelFacts(m));
  }
}

function modelFacts(m) {
  const t = serverTimeline && serverTimeline.models[m.name];
  const stat = (label, value, key) => el('div', { class: 'stat' }, el('span', { class: 'label', text: label }), el('span', { class: 'value', 'data-k': key, text: value }));
  return el('div', { class: 'model-facts' },
    stat('req/s', fmt(m.requests_per_s), 'requests_per_s'),
    stat('errors/s', fmt(m.errors_per_s), 'errors_per_s'),
    stat('queue', String(m.queue_depth), 'queue_depth'),
    stat('primary', m.primary ? `v${m.primary}` : '\u2014', 'primary'),
    stat('canary', m.canary ? `v${m.canary.version} @ ${pct(m.canary.weight)}` : '\u2014', 'canary'),
    stat('rollout', m.rollout || '\u2014', 'rollout'),
    t ? batchBars(t.batch_sizes) : null);
}

function modelRow(m) {
  const versions = m.versions.map((v) => el('span', { class: 'version', 'data-version': v.version }, `v${v.version} `, badge(v.state), v.queue_depth ? ` queue ${v.queue_depth}` : ''));
  return el('article', { class: 'model', 'data-model': m.name },
    el('div', { class: 'model-head' },
      el('a', { href: `/ui/models/${encodeURIComponent(m.name)}`, class: 'model-name', text: m.name }),
      badge(m.state === 'UNAVAILABLE' ? 'FAILED' : m.state, m.state === 'UNAVAILABLE' ? 'failed' : undefined),
      m.reason ? el('span', { class: 'reason', 'data-k': 'reason', text: m.reason }) : null,
      el('span', { class: 'versions' }, versions)),
    el('div', { class: 'sparks' },
      el('div', {}, el('div', { class: 'label', text: 'requests/s, 15 min' }), el('div', { class: 'spark spark-req' })),
      el('div', {}, el('div', { class: 'label', text: 'errors/s' }), el('div', { class: 'spark spark-err' }))),
    modelFacts(m));
}

/** Executions per batch size over the window, as bars. */
function batchBars(h) {
  if (!h) return null;
  const max = Math.max(1, ...h.executions);
  const total = h.executions.reduce((a, b) => a + b, 0);
  const bars = h.executions.map((n, i) => {
    const lo = i === 0 ? 1 : h.le[i - 1] + 1;
    const label = h.le[i] === null ? `${lo}+` : lo === h.le[i] ? `${lo}` : `${lo}-${h.le[i]}`;
    return el('div', { class: 'bar', title: `batch ${label}: ${fmt(n, 0)} executions` }, el('div', { class: 'fill', style: `height:${Math.round((n / max) * 100)}%` }), el('div', { class: 'tick', text: label }));
  });
  return el('div', { class: 'batches' }, el('div', { class: 'label', text: `batch sizes (${fmt(total, 0)} executions)` }), el('div', { class: 'bars' }, bars));
}

function onServerTick(tick) {
  pushBounded(state.times, tick.point.time);
  for (const [name, p] of Object.entries(tick.point.models)) {
    const t = serverTimeline.models[name];
    if (!t) {
      serverPage();
      return;
    }
    pushBounded(t.requests_per_s, p.requests_per_s);
    pushBounded(t.errors_per_s, p.errors_per_s);
  }
  if (state.ticks % DETAIL_EVERY_TICKS === 0) api('/v2/ops/timeline').then((r) => { if (r.ok) for (const [n, m] of Object.entries(r.body.models)) if (serverTimeline.models[n]) serverTimeline.models[n].batch_sizes = m.batch_sizes; });
  renderServer(tick, false);
  redrawCharts();
}

// ---------- the model page ----------

let modelTimeline = null;

/** modelPage calls in progress: a tick meanwhile waits for the page it would update. */
let building = 0;

async function modelPage(name) {
  building++;
  try {
    await buildModelPage(name);
  } finally {
    building--;
  }
}

async function buildModelPage(name) {
  state.model = name;
  setCrumbs([name]);
  const app = document.getElementById('app');
  // The server's summary first: whether the model serves, and whether monitoring (drift, live
  // accuracy) is on. A model that is not loaded has no timeline, traffic or drift to ask for.
  const server = await api('/v2/ops/server');
  const summary = server.ok ? server.body.models.find((x) => x.name === name) : undefined;
  state.monitoring = server.ok ? server.body.monitoring !== false : true;
  const available = !!summary && summary.state === 'READY';
  state.available = false;
  if (server.ok && !available) {
    modelTimeline = null;
    dropCharts();
    unavailablePage(app, name, summary);
    return;
  }
  const tl = await api(`/v2/models/${encodeURIComponent(name)}/timeline`);
  if (!tl.ok) {
    state.available = false;
    fill(app, el('p', { class: 'error', text: tl.body ? tl.body.error : `HTTP ${tl.status}` }));
    return;
  }
  modelTimeline = tl.body.models[name] || { versions: {}, requests_per_s: [], errors_per_s: [] };
  state.available = true;
  state.capacity = tl.body.capacity;
  state.times = tl.body.times;
  fill(app, 
    el('section', { class: 'panel', id: 'traffic' }),
    el('section', { class: 'panel', id: 'actions' }),
    el('section', { class: 'panel', id: 'rollout' }),
    el('section', { class: 'grid2' },
      el('div', { class: 'panel' }, el('h2', { text: 'Requests/s per version' }), el('div', { id: 'chart-requests' })),
      el('div', { class: 'panel' }, el('h2', { text: 'Latency p50 / p99 (ms)' }), el('div', { id: 'chart-latency' }))),
    el('section', { class: 'grid2' },
      el('div', { class: 'panel' }, el('h2', { text: 'Shadow agreement' }), el('div', { id: 'chart-agreement' })),
      el('div', { class: 'panel' }, el('h2', { id: 'accuracy-title', text: 'Live accuracy (feedback)' }), el('div', { id: 'chart-accuracy' }))),
    el('section', { class: 'panel', id: 'drift' }),
    el('section', { class: 'panel', id: 'shadow' }));
  buildModelCharts();
  await refreshModel();
}

/** A model in the repository that does not serve (it failed to load, or was unloaded): why, and a reload. */
function unavailablePage(app, name, summary) {
  state.reason = summary ? `${summary.state}:${summary.reason || ''}` : 'unknown';
  if (!summary) {
    fill(app, el('p', { class: 'error', 'data-k': 'model-state', text: `There is no model '${name}' in the repository.` }));
    return;
  }
  const m = encodeURIComponent(name);
  fill(app,
    el('section', { class: 'panel', id: 'model-state' },
      el('h2', {}, 'Model ', badge(summary.state)),
      el('p', { class: 'error', 'data-k': 'reason', text: summary.reason || `The model is ${summary.state.toLowerCase()}.` }),
      el('p', { class: 'muted', text: 'Fix the files in the repository and load it again; this page follows when it serves.' })),
    el('section', { class: 'panel', id: 'actions' },
      el('h2', {}, 'Actions ', el('span', { class: 'muted small', text: tokenNote() })),
      el('div', { class: 'buttons' },
        el('button', { type: 'button', 'data-action': 'reload-model', onclick: () => act('Load the model', `Load ${name} again from the repository.`, 'POST', `/v2/repository/models/${m}/load`) }, 'Reload model'))));
}

function versionSeries(key, label) {
  return Object.entries(modelTimeline.versions).map(([v, s]) => ({ label: `v${v}${label ? ` ${label}` : ''}`, values: s[key] }));
}

function buildModelCharts() {
  dropCharts();
  const colored = (list, offset) => list.map((s, i) => ({ ...s, color: COLORS[(i + offset) % COLORS.length] }));
  lineChart(document.getElementById('chart-requests'), versionSeries('requests_per_s'));
  const p50 = colored(versionSeries('p50_ms', 'p50'), 0);
  const p99 = colored(versionSeries('p99_ms', 'p99'), 0).map((s) => ({ ...s, color: s.color + '88' }));
  lineChart(document.getElementById('chart-latency'), [...p50, ...p99]);
  lineChart(document.getElementById('chart-agreement'), versionSeries('shadow_agreement'), { range: [0, 1] });
  // A regression's feedback is an error, not a share correct: its panel draws that instead.
  state.scoredByError = scoredByError();
  document.getElementById('accuracy-title').textContent = state.scoredByError ? 'Live error (feedback)' : 'Live accuracy (feedback)';
  if (state.scoredByError) lineChart(document.getElementById('chart-accuracy'), versionSeries('mean_absolute_error'), { yLabel: 'mean absolute error' });
  else lineChart(document.getElementById('chart-accuracy'), versionSeries('accuracy'), { range: [0, 1] });
}

/** Whether the model's feedback is scored as an error (a regression): a version has a mean absolute error. */
function scoredByError() {
  return Object.values(modelTimeline.versions).some((s) => (s.mean_absolute_error || []).some((x) => x !== null));
}

async function refreshModel() {
  const name = state.model;
  const m = encodeURIComponent(name);
  const token = !!sessionStorage.getItem(TOKEN_KEY);
  const [traffic, drift, shadow] = await Promise.all([
    api(`/v2/models/${m}/traffic`),
    // With monitoring off the server has no drift route: nothing to ask.
    state.monitoring ? api(`/v2/models/${m}/drift${state.feature ? `?feature=${encodeURIComponent(state.feature)}` : ''}`) : Promise.resolve({ ok: false, body: { error: 'Monitoring is off on this server (umbra serve --monitoring off): no drift, metrics or live accuracy.' } }),
    token ? api(`/v2/models/${m}/shadow`, { admin: true }) : Promise.resolve(null),
  ]);
  // Asked for only when there is one: the API answers 404 for a model with no rollout, which the
  // browser would log as an error at every refresh.
  const rollout = traffic.ok && traffic.body.last_rollout ? await api(`/v2/models/${m}/rollout`) : { ok: false, body: null };
  renderTraffic(traffic.body);
  renderActions(traffic.body, rollout.ok ? rollout.body : null);
  renderRollout(rollout.ok ? rollout.body : null);
  const chosen = state.feature;
  renderDrift(drift.ok ? drift.body : null, drift.ok ? null : drift.body && drift.body.error);
  // The first look picks the worst feature: fetch its histograms now rather than at the next refresh.
  if (!chosen && state.feature) {
    const again = await api(`/v2/models/${m}/drift?feature=${encodeURIComponent(state.feature)}`);
    if (again.ok) renderDrift(again.body, null);
  }
  renderShadow(shadow);
  state.lastRollout = rollout.ok ? `${rollout.body.state}:${rollout.body.step}` : '';
}

function renderTraffic(p) {
  const box = document.getElementById('traffic');
  if (!p || p.error) {
    fill(box, el('h2', { text: 'Traffic' }), el('p', { class: 'error', text: p ? p.error : 'unavailable' }));
    return;
  }
  const w = p.canary ? p.canary.weight : 0;
  const split = el('div', { class: 'split' },
    el('div', { class: 'primary', style: `flex:${Math.max(1 - w, 0.0001)}`, title: 'primary' }, 'primary ', el('span', { 'data-k': 'primary', text: `v${p.primary}` }), el('span', { class: 'share', text: pct(1 - w) })),
    p.canary ? el('div', { class: 'canary', style: `flex:${Math.max(w, 0.0001)}`, title: 'canary' }, 'canary ', el('span', { 'data-k': 'canary', text: `v${p.canary.version}` }), el('span', { class: 'share', text: pct(w) })) : null);
  const shadows = p.shadows.length
    ? el('div', { class: 'shadows' }, p.shadows.map((s) => el('div', { class: 'shadow-box', 'data-k': 'shadow', text: `shadow v${s.version} \u2190 copies of ${pct(s.sample)}` })))
    : el('p', { class: 'muted', text: 'No shadows.' });
  fill(box, 
    el('h2', {}, 'Traffic ', p.pinned ? badge('pinned', 'neutral') : badge('default: newest version', 'neutral'), p.rollout ? badge(`rollout ${p.rollout}`, p.rollout) : null),
    split, shadows,
    el('p', { class: 'muted', text: `Loaded versions: ${p.loaded_versions.map((v) => `v${v}`).join(', ')}${p.unloaded_versions ? `; named but not loaded: ${p.unloaded_versions.join(', ')}` : ''}` }));
}

function renderActions(policy, rollout) {
  const box = document.getElementById('actions');
  // Rebuilt only when what it offers changes: a refresh must not wipe a weight being typed.
  const signature = JSON.stringify([policy, rollout && rollout.state, !!sessionStorage.getItem(TOKEN_KEY)]);
  if (box.dataset.signature === signature) return;
  box.dataset.signature = signature;
  const m = encodeURIComponent(state.model);
  const active = rollout && (rollout.state === 'running' || rollout.state === 'paused');
  const button = (label, title, text, method, path, body, disabled) => el('button', { type: 'button', disabled: disabled || undefined, 'data-action': label.toLowerCase().replace(/\s+/g, '-'), onclick: () => act(title, text, method, path, typeof body === 'function' ? body() : body) }, label);
  const weight = el('input', { type: 'number', min: '0', max: '1', step: '0.01', value: policy && policy.canary ? String(policy.canary.weight) : '0.1', id: 'canary-weight', 'aria-label': 'canary weight' });
  const versions = policy && policy.loaded_versions ? policy.loaded_versions.filter((v) => v !== policy.primary) : [];
  const canaryVersion = el('select', { id: 'canary-version', 'aria-label': 'canary version' }, versions.map((v) => el('option', { value: v, text: `v${v}` })));
  fill(box, 
    el('h2', {}, 'Actions ', el('span', { class: 'muted small', text: tokenNote() })),
    el('div', { class: 'actions' },
      button('Promote', 'Promote the candidate', active ? `Make v${rollout.candidate} the primary now, whatever the evidence.` : '', 'POST', `/v2/models/${m}/rollout/promote`, undefined, !active),
      button('Abort', 'Abort the rollout', active ? `Roll back to v${rollout.baseline}; v${rollout.candidate} stops taking traffic.` : '', 'POST', `/v2/models/${m}/rollout/abort`, undefined, !active),
      button('Resume', 'Resume the rollout', 'Resume the paused rollout at its current step.', 'POST', `/v2/models/${m}/rollout/resume`, undefined, !(rollout && rollout.state === 'paused')),
      el('span', { class: 'group' }, 'Canary ', canaryVersion, ' weight ', weight,
        button('Set canary', 'Set the canary', `Send this share of unversioned requests to the chosen version.`, 'PUT', `/v2/models/${m}/traffic`, () => ({ primary: policy.primary, canary: Number(weight.value) > 0 ? { version: canaryVersion.value, weight: Number(weight.value) } : null, shadows: policy.shadows }), active || versions.length === 0)),
      button('Reload model', 'Load the model', `Load ${state.model} again from the repository (new versions appear, removed ones go).`, 'POST', `/v2/repository/models/${m}/load`),
      button('Unload model', 'Unload the model', `Unload every version of ${state.model}; requests to it fail until it is loaded again.`, 'POST', `/v2/repository/models/${m}/unload`)));
}

function renderRollout(r) {
  const box = document.getElementById('rollout');
  if (!r) {
    fill(box, el('h2', { text: 'Rollout' }), el('p', { class: 'muted', text: 'No rollout. Start one with POST /v2/models/{model}/rollout.' }));
    return;
  }
  const stepLabel = (s) => (s.shadow ? 'shadow' : `canary ${pct(s.weight)}`);
  const steps = el('ol', { class: 'steps' }, r.steps.map((s, i) => {
    const cls = r.state === 'promoted' || i < r.step ? 'done' : i === r.step ? (r.state === 'rolled_back' ? 'failed' : 'current') : 'todo';
    return el('li', { class: cls }, el('div', { class: 'step-name', text: stepLabel(s) }), el('div', { class: 'muted small', text: `min ${s.min_requests} req${s.min_seconds ? `, ${s.min_seconds}s` : ''}` }));
  }));
  const rules = r.analysis ? el('table', { class: 'rules' },
    el('thead', {}, el('tr', {}, ['Rule', 'Verdict', 'Value', 'Threshold', 'Samples', 'Why'].map((h) => el('th', { text: h })))),
    el('tbody', {}, r.analysis.rules.map((x) => el('tr', { 'data-rule': x.rule },
      el('td', { text: x.rule }), el('td', {}, badge(x.verdict)), el('td', { 'data-k': 'value', text: fmt(x.value, 4) }),
      el('td', { text: fmt(x.threshold, 4) }), el('td', { 'data-k': 'samples', text: String(x.samples) }), el('td', { class: 'small', text: x.reason }))))) : null;
  const ev = r.evidence && r.evidence.step;
  const evidence = ev ? el('div', { class: 'evidence' },
    ['candidate', 'canary', 'primary'].map((k) => ev[k] ? el('div', { class: 'stat' }, el('span', { class: 'label', text: k }), el('span', { class: 'value', text: `${ev[k].requests} req, ${pct(ev[k].error_rate)} errors${ev[k].p99_ms !== undefined ? `, p99 ${fmt(ev[k].p99_ms)} ms` : ''}` })) : null),
    el('div', { class: 'stat' }, el('span', { class: 'label', text: 'agreement' }), el('span', { class: 'value', text: pct(ev.agreement) }))) : null;
  const history = el('table', { class: 'history' },
    el('thead', {}, el('tr', {}, ['When', 'Step', 'Action', 'Verdict', 'Reason'].map((h) => el('th', { text: h })))),
    el('tbody', {}, r.history.slice().reverse().slice(0, 50).map((d) => el('tr', {},
      el('td', { class: 'small', text: new Date(d.at).toLocaleTimeString() }), el('td', { text: String(d.step) }), el('td', { text: d.action }),
      el('td', {}, d.verdict ? badge(d.verdict) : ''), el('td', { class: 'small', text: d.reason })))));
  fill(box, 
    el('h2', {}, `Rollout of v${r.candidate} over v${r.baseline} `, el('span', { 'data-k': 'rollout-state' }, badge(r.state)), el('span', { class: 'muted small', 'data-k': 'rollout-step', text: ` step ${r.step + 1} of ${r.steps.length}` })),
    steps,
    r.analysis ? el('h3', {}, 'Analysis of this step ', badge(r.analysis.verdict)) : null,
    rules, evidence,
    el('h3', { text: 'History' }), history);
}

function renderDrift(d, error) {
  const box = document.getElementById('drift');
  if (!d) {
    fill(box, el('h2', { text: 'Drift' }), el('p', { class: state.monitoring ? 'error' : 'muted', text: error || 'unavailable' }));
    return;
  }
  // Inputs first; a model none of whose inputs is watched (text in) is judged by its outputs.
  const features = [...(d.features.length > 0 ? d.features : d.outputs || [])].sort((a, b) => severity(b) - severity(a));
  const head = el('h2', {}, 'Drift ', badge(d.verdict), el('span', { class: 'muted small', text: ` v${d.version}, window ${d.window} rows, reference ${d.reference ? `${d.reference.source} (${d.reference.rows} rows)` : '\u2014'}` }));
  const unwatched = d.unwatched && d.unwatched.length > 0
    ? el('p', { class: 'muted small', id: 'unwatched', text: `Not watched: ${d.unwatched.map((u) => `${u.side} ${u.name} (${u.reason})`).join('; ')}.` })
    : null;
  if (features.length === 0) {
    fill(box, head, el('p', { class: 'muted', text: d.reason || (d.reference && d.reference.source === 'none' ? 'Nothing of this model can be watched for drift.' : 'No features watched yet.') }), unwatched);
    return;
  }
  if (!state.feature) state.feature = features[0].name;
  const table = el('table', { class: 'features' },
    el('thead', {}, el('tr', {}, ['Feature', 'Moved', 'Test', 'Score', 'Threshold', 'Verdict'].map((h) => el('th', { text: h })))),
    el('tbody', {}, features.slice(0, 12).map((f) => el('tr', { 'data-feature': f.name, class: f.name === state.feature ? 'chosen' : '', onclick: () => { state.feature = f.name; refreshModel(); } },
      el('td', { text: f.name }), el('td', { 'data-k': 'shift', text: pct(f.shift) }), el('td', { text: f.test }), el('td', { 'data-k': 'score', text: fmt(f.score, 4) }), el('td', { text: fmt(f.threshold, 4) }), el('td', {}, badge(f.verdict))))));
  const more = features.length > 12 ? el('p', { class: 'muted small', text: `${features.length - 12} more features, less drifted.` }) : null;
  fill(box, head, el('div', { class: 'grid2' }, el('div', {}, table, more), histogram(d.histogram)), unwatched);
}

/** Higher = more drifted: drifted features first, then by the share of the distribution that moved. */
function severity(f) {
  const rank = f.verdict === 'drift' ? 2 : f.verdict === 'no_drift' ? 1 : 0;
  return rank + Math.min(1, Math.max(0, f.shift || 0)) * 0.99;
}

/** Reference vs live shares per bin, as paired bars (SVG). */
function histogram(h) {
  if (!h) return el('div', { class: 'muted', text: 'Choose a feature.' });
  const share = (counts) => { const n = counts.reduce((a, b) => a + b, 0) || 1; return counts.map((c) => c / n); };
  const ref = share(h.reference);
  const live = share(h.live);
  // Categories of FP32 outputs arrive as doubles (0.10000000149011612): shown to float precision.
  const labels = h.values ? [...h.values.map((v) => (typeof v === 'number' ? String(Number(v.toPrecision(7))) : String(v))), 'other'] : [...h.edges.map((e) => `\u2264${fmt(e, 2)}`), `>${fmt(h.edges[h.edges.length - 1], 2)}`];
  const max = Math.max(...ref, ...live, 0.001);
  const W = 480, H = 180, pad = 24, bw = (W - pad) / ref.length;
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H + 20}`);
  svg.setAttribute('class', 'hist');
  const rect = (x, y, w, hgt, cls, title) => {
    const r = document.createElementNS(NS, 'rect');
    r.setAttribute('x', x); r.setAttribute('y', y); r.setAttribute('width', Math.max(w, 0.5)); r.setAttribute('height', hgt); r.setAttribute('class', cls);
    const t = document.createElementNS(NS, 'title'); t.textContent = title; r.append(t);
    svg.append(r);
  };
  ref.forEach((r, i) => {
    const x = pad + i * bw;
    rect(x + bw * 0.1, H - (r / max) * H, bw * 0.4, (r / max) * H, 'ref', `${labels[i]}: reference ${pct(r)}`);
    rect(x + bw * 0.5, H - (live[i] / max) * H, bw * 0.4, (live[i] / max) * H, 'live', `${labels[i]}: live ${pct(live[i])}`);
  });
  const text = (x, y, s, anchor) => { const t = document.createElementNS(NS, 'text'); t.setAttribute('x', x); t.setAttribute('y', y); t.setAttribute('text-anchor', anchor || 'start'); t.textContent = s; svg.append(t); };
  text(pad, H + 16, labels[0]);
  text(W, H + 16, labels[labels.length - 1], 'end');
  return el('div', { class: 'hist-box' }, el('div', { class: 'legend' }, el('b', { text: h.name }), ' ', el('span', { class: 'key ref' }), ' reference ', el('span', { class: 'key live' }), ' live'), svg);
}

function renderShadow(r) {
  const box = document.getElementById('shadow');
  if (!r) {
    fill(box, el('h2', { text: 'Shadow disagreements' }), el('p', { class: 'muted' }, 'Disagreements carry production inputs, so they need the admin token. ', el('button', { type: 'button', class: 'ghost', onclick: () => document.getElementById('token-button').click() }, 'Enter token')));
    return;
  }
  if (!r.ok) {
    fill(box, el('h2', { text: 'Shadow disagreements' }), el('p', { class: 'error', text: r.body ? r.body.error : `HTTP ${r.status}` }));
    return;
  }
  const s = r.body;
  const lanes = Object.entries(s.versions).map(([v, x]) => el('div', { class: 'stat', 'data-shadow-version': v }, el('span', { class: 'label', text: `v${v}` }), el('span', { class: 'value', 'data-k': 'agreement', text: pct(x.agreement) }), el('span', { class: 'muted small', text: ` of ${x.compared_rows} rows` })));
  const cut = (tensors) => tensors.map((t) => {
    const values = Array.isArray(t.data) ? t.data.slice(0, 6).map((v) => (typeof v === 'number' ? fmt(v) : String(v))) : [];
    const more = Array.isArray(t.data) && t.data.length > 6 ? `, \u2026 ${t.data.length - 6} more` : '';
    return `${t.name}: [${values.join(', ')}${more}]`;
  }).join('\n');
  const rows = s.disagreements.slice(-8).reverse().map((d) => el('tr', {},
    el('td', { class: 'small', text: new Date(d.at).toLocaleTimeString() }), el('td', { text: `v${d.version}` }), el('td', { text: `${d.agreeing_rows}/${d.rows}` }),
    el('td', { class: 'mono small', text: cut(d.inputs) }), el('td', { class: 'mono small', text: cut(d.primary) }), el('td', { class: 'mono small', text: cut(d.shadow) })));
  fill(box, el('h2', {}, 'Shadow comparison ', el('span', { class: 'muted small', text: `${s.disagreements_seen} disagreements seen` })),
    el('div', { class: 'evidence' }, lanes),
    rows.length ? el('div', { class: 'scroll' }, el('table', { class: 'disagreements' }, el('thead', {}, el('tr', {}, ['When', 'Shadow', 'Rows agreeing', 'Inputs (cut)', 'Primary', 'Shadow'].map((h) => el('th', { text: h })))), el('tbody', {}, rows))) : el('p', { class: 'muted', text: 'No disagreements sampled.' }));
}

function onModelTick(tick) {
  if (building > 0) return;
  const p = tick.point.models[state.model];
  const m = tick.models.find((x) => x.name === state.model);
  if (!state.available) {
    // Follow the model: it serves again (a reload, --poll-seconds), or fails for another reason.
    if ((m && m.state === 'READY') || (m ? `${m.state}:${m.reason || ''}` : 'unknown') !== state.reason) modelPage(state.model);
    return;
  }
  if (m && m.state !== 'READY') {
    modelPage(state.model);
    return;
  }
  if (!p || !m) return;
  const known = Object.keys(modelTimeline.versions);
  if (Object.keys(p.versions).some((v) => !known.includes(v))) {
    modelPage(state.model);
    return;
  }
  pushBounded(state.times, tick.point.time);
  for (const [v, point] of Object.entries(p.versions)) for (const [k, x] of Object.entries(point)) pushBounded(modelTimeline.versions[v][k], x);
  // The first label of a regression: its panel turns from accuracy to error.
  if (!state.scoredByError && scoredByError()) buildModelCharts();
  else redrawCharts();
  const rollout = m.rollout ? `${m.rollout}` : '';
  if (state.ticks % DETAIL_EVERY_TICKS === 0 || !state.lastRollout.startsWith(rollout)) refreshModel();
}

// ---------- routing and the live stream ----------

function setCrumbs(parts) {
  const nav = document.getElementById('crumbs');
  fill(nav, el('a', { href: '/ui', text: 'Server' }), ...parts.map((p) => el('span', {}, ' / ', el('b', { text: p }))));
  document.title = parts.length ? `${parts[parts.length - 1]} \u00b7 Umbra` : 'Umbra';
}

function connect(onTick) {
  const live = document.getElementById('live');
  const source = new EventSource('/v2/ops/events');
  source.addEventListener('open', () => { live.textContent = 'live'; live.className = 'live on'; });
  source.addEventListener('error', () => { live.textContent = 'reconnecting'; live.className = 'live off'; });
  source.addEventListener('tick', (e) => {
    state.ticks++;
    const tick = JSON.parse(e.data);
    document.body.dataset.tick = String(tick.point.time);
    onTick(tick);
  });
}

async function main() {
  const server = await api('/v2/ops/server');
  if (server.ok && server.body) state.admin = server.body.admin;
  renderToken();
  const path = location.pathname.replace(/\/+$/, '');
  const match = path.match(/^\/ui\/models\/([^/]+)$/);
  if (match) {
    await modelPage(decodeURIComponent(match[1]));
    connect(onModelTick);
  } else {
    await serverPage();
    connect(onServerTick);
  }
  document.body.dataset.ready = 'true';
}

main().catch((err) => {
  document.getElementById('app').replaceChildren(el('p', { class: 'error', text: `The page failed to load: ${err.message}` }));
});
