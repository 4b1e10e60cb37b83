'use strict';
/*
 * plantd admin UI: vanilla JS, no framework, no build step, no external requests.
 * 1. Helpers: DOM (syncRows/setRows for tables; el, setText and the rest are common.js's),
 *    formatting.
 * 2. api(): common.js's request() under /api/v1/admin, with the session's CSRF token.
 * 3. Session: boot() shows #view-setup, #view-signin or #view-app.
 * 4. Routing: "#/NAME" shows section#page-NAME.
 * 5. Polling: tick() every 2 s gets /overview (header, overview page) and the page's
 *    endpoint; no answer / timeout / 5xx -> #stale-banner + body.stale; 401 -> sign-in.
 * 6. One render function per page (renderOverview, renderServices, ...).
 * 7. Actions (admin only, absent for viewers): act() confirms in dialog#confirm, POSTs,
 *    toasts the outcome, refreshes.
 * Server text reaches the DOM only as textContent / text nodes.
 */

const API = '/api/v1/admin';
const POLL_MS = 2000;
const POLL_TIMEOUT_MS = 4000;
const ACTION_TIMEOUT_MS = 60000;

const state = {
  session: null, // {user, role, csrf}
  page: 'overview',
  polling: false,
  pollSeq: 0, // bumped by each tick, page change, sign-out: late answers are dropped
  timer: 0,
  stale: false,
  lastOk: null, // Date of the last successful poll
  prefetch: null, // the overview asked for beside the session at boot
  skewMs: 0, // server clock minus ours
  overview: null,
  backups: new Map(), // id -> backup, for the restore dialog
  parked: new Map(), // seq -> parked transaction, for the replay dialog
  users: new Map(), // name -> user, for the role dialog
  parkedFilter: {}, // the parked list's filter: kind, from_seq, to_seq, message
  parkedOffset: 0,
  retryWatch: null, // {seq, since}: a retry whose outcome is still to tell
  auditFilter: {}, // user, action, outcome, q
  auditBefore: [], // the ids the pages shown so far started below (a stack: newest first)
  auditNext: null,
  stop: null, // the apply page's last answer while stopped, for the retry and park dialogs
  confirmTyped: null,
  confirmDone: null,
};
let cellSigs = new WeakMap(); // td -> what it shows (skip no-op updates)
let blockSigs = new WeakMap(); // table/list/svg -> data it was drawn from

/* ---------- 1. DOM helpers ---------- */

const enc = encodeURIComponent;
const isAdmin = () => !!state.session && state.session.role === 'admin';
/* Operators restart services, island and rejoin, and apply the queue's remedies; admins too. */
const canOperate = () => !!state.session && (state.session.role === 'operator' || state.session.role === 'admin');

function setTone(target, base, tone) {
  const e = typeof target === 'string' ? $(target) : target;
  const cls = tone ? `${base} tone-${tone}` : base;
  if (e.className !== cls) e.className = cls;
}

const pill = (text, tone) => el('span', { class: `pill ${tone || 'muted'}` }, text);

/* A table column: td class and how to get its value (default: the field named like the class). */
const col = (cls, get) => ({ cls, get: get || (o => o[cls]) });

/* A cell value is null (shown as "—"), a string, or {text, tone, title}. */
function fillCell(td, value) {
  const c = value == null || value === '' ? { text: '—' } : typeof value === 'object' ? value : { text: String(value) };
  const sig = `${c.tone || ''}\u0000${c.title || ''}\u0000${c.text}`;
  if (cellSigs.get(td) === sig) return;
  cellSigs.set(td, sig);
  td.replaceChildren(c.tone ? pill(c.text, c.tone) : c.text);
  if (c.title) td.title = c.title; else td.removeAttribute('title');
}

/* Keyed table: rows persist across polls (buttons stay put), cells update in place.
 * opt = {key: 'data-x', id(item, index), cols: [{cls, get(item)}], actions?(id, item) -> nodes,
 *        attrs?(item) -> {attr: value}, empty: text} */
function syncRows(table, items, opt) {
  const tbody = table.tBodies[0];
  const labels = table.tHead ? [...table.tHead.rows[0].cells].map(th => th.textContent.trim()) : [];
  const old = new Map();
  for (const tr of [...tbody.rows]) {
    const k = tr.getAttribute(opt.key);
    if (k == null) tr.remove(); else old.set(k, tr);
  }
  let prev = null;
  for (const [i, item] of items.entries()) {
    const id = String(opt.id(item, i));
    let tr = old.get(id);
    if (tr) old.delete(id); else tr = newRow(opt, id, item, labels);
    opt.cols.forEach((c, n) => fillCell(tr.cells[n], c.get(item)));
    if (opt.attrs) {
      for (const [k, v] of Object.entries(opt.attrs(item))) if (tr.getAttribute(k) !== v) tr.setAttribute(k, v);
    }
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== tr) tbody.insertBefore(tr, want);
    prev = tr;
  }
  for (const tr of old.values()) tr.remove();
  if (!items.length) tbody.append(emptyRow(table, opt.empty));
}

/* A row's cells carry their column's name (data-label), which a phone shows above each value. */
function newRow(opt, id, item, labels) {
  const tr = el('tr', { [opt.key]: id });
  opt.cols.forEach((c, n) => tr.append(el('td', { class: c.cls, 'data-label': labels[n] || null })));
  if (opt.actions) tr.append(el('td', { class: 'actions' }, ...opt.actions(id, item)));
  return tr;
}

/* Unkeyed list (events, history, audit): rows keyed by position. */
function setRows(table, items, cols, empty, attrs) {
  syncRows(table, items, { key: 'data-row', id: (_, i) => i, cols, empty, attrs });
}

/* ---------- 1b. Formatting ---------- */

function fmtBytes(n) {
  if (n == null || !isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 100 ? 1 : 0)} ${units[i]}`;
}

function fmtDuration(s) {
  if (s == null || !isFinite(s)) return '—';
  s = Math.max(0, Math.floor(s));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60) % 60;
  const h = Math.floor(s / 3600) % 24;
  const d = Math.floor(s / 86400);
  if (s < 3600) return `${m} min`;
  if (d === 0) return m ? `${h} h ${m} min` : `${h} h`;
  return h ? `${d} d ${h} h` : `${d} d`;
}

const pad = n => String(n).padStart(2, '0');
/* The zone times are shown in (the browser's); the plant's own zone is said where it decides
 * (the backup schedule). */
/* Worked out at first use, not at start: Intl's first call loads the time zone data, about 60 ms
 * on a small plant server, which the first render of the verdict need not wait for. */
let tzLabel = null;
let tzShown = false;
function tz() {
  if (tzLabel === null) {
    const name = Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';
    const off = -new Date().getTimezoneOffset();
    const sign = off >= 0 ? '+' : '-';
    tzLabel = `${name} (UTC${sign}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)})`;
    setText('#tz', `times in ${tzLabel}`);
  }
  return tzLabel;
}
const fmtClock = d => `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;

/* Local time: "HH:MM:SS" today, "YYYY-MM-DD HH:MM" otherwise. */
function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  if (d.toDateString() === new Date().toDateString()) return fmtClock(d);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

const timeCell = iso => (iso ? { text: fmtTime(iso), title: `${iso} — shown in ${tz()}` } : null);
const ageOf = iso => (Date.now() + state.skewMs - Date.parse(iso)) / 1000;
const fmtRate = x => (x == null || !isFinite(x) ? '—' : `${Number(Number(x).toFixed(2))}/s`);
const yesNo = (b, noTone = 'muted') => ({ text: b ? 'yes' : 'no', tone: b ? 'good' : noTone });

/* Colour of a state word: good (green), warn (amber), bad (red); anything else is muted. */
const TONES = {};
for (const [tone, words] of Object.entries({
  good: 'running healthy ok online succeeded',
  warn: 'busy starting degraded draining restarting created paused refused islanded',
  bad: 'exited missing dead unhealthy failed removing',
})) for (const w of words.split(' ')) TONES[w] = tone;
const toned = text => (text == null ? null : { text: String(text), tone: TONES[text] || 'muted' });

function linkTone(link) {
  if (!link) return 'muted';
  if (link.state === 'islanded' && !link.islanded_on_purpose) return 'bad';
  return TONES[link.state] || 'muted';
}

/* ---------- 2. API ---------- */

async function api(path, { method = 'GET', body, timeout = POLL_TIMEOUT_MS } = {}) {
  return request(API + path, {
    method,
    body,
    timeout,
    csrf: state.session && state.session.csrf,
    server: 'plantd',
    // A change may have reached plantd before the answer was lost: say so, never "it failed".
    lost: '; the action may have run all the same: check the Audit page before trying again',
  });
}

/* ---------- 3. Session ---------- */

async function boot() {
  showView('loading');
  // Asked for at once, beside the session: a signed-in admin sees the verdict one round trip sooner.
  const early = api('/overview').then(v => v, () => null);
  let s;
  try {
    s = await api('/session');
  } catch (e) {
    markStale(e);
    setTimeout(boot, POLL_MS);
    return;
  }
  markFresh();
  if (s.signed_in) {
    state.prefetch = early;
    enterApp(s);
  } else {
    showView(s.setup_required ? 'setup' : 'signin');
    noteDirectory(s);
  }
}

function enterApp(s) {
  state.session = { user: s.user, role: s.role, csrf: s.csrf, via: s.via, totp: !!s.totp, mustEnrol: !!s.must_enrol };
  setText('#whoami', `${s.user} (${s.role})`);
  $('#enrol-banner').hidden = !state.session.mustEnrol;
  renderTotpCard();
  document.body.classList.toggle('viewer', !isAdmin());
  document.body.classList.toggle('no-operate', !canOperate());
  resetPages();
  showView('app');
  route();
  startPolling();
}

/* Clears everything drawn for the previous user (rows carry role-dependent buttons). */
function resetPages() {
  for (const tb of document.querySelectorAll('#view-app tbody')) tb.replaceChildren();
  cellSigs = new WeakMap();
  blockSigs = new WeakMap();
  $('#logs').textContent = 'Choose “Logs” on a service, or a log above, to see its last lines.';
  delete $('#logs').dataset.service;
  setText('#logs-title', 'Logs');
  buildBackupControls();
  buildFailoverControls();
  $('#apply-controls').replaceChildren();
}

function sessionEnded() {
  stopPolling();
  state.session = null;
  closeConfirm(false);
  markFresh();
  setText('#signin-error', 'Your session has ended. Please sign in again.');
  showView('signin');
}

async function signOut() {
  stopPolling();
  let out = null;
  try { out = await api('/logout', { method: 'POST' }); } catch (e) { /* signed out here either way */ }
  state.session = null;
  // Signed in through the company's provider: sign out there too.
  if (out && out.logout) { location.assign(out.logout); return; }
  setText('#signin-error', '');
  showView('signin');
}

/* ---------- 4. Routing ---------- */

const PAGES = {
  overview: { url: null, title: 'Overview' },   // drawn from /overview, fetched on every tick
  services: { url: '/services', title: 'Services', render: renderServices },
  journal: { url: '/journal', title: 'Journal & sync', render: renderJournal },
  apply: { url: () => `/apply?${parkedQuery()}`, title: 'Apply', render: renderApply },
  backups: { url: '/backups', title: 'Backups', render: renderBackups },
  failover: { url: '/failover', title: 'Failover', render: renderFailover },
  audit: { url: () => `/audit?${auditQuery(true)}`, title: 'Audit', render: renderAudit },
  devices: { url: '/devices', title: 'Devices', render: renderDevices },
  users: { url: '/users', title: 'Users', render: renderUsers },
};

function route() {
  const m = location.hash.match(/^#\/([a-z]+)/);
  const name = m && PAGES[m[1]] ? m[1] : 'overview';
  if (!m || !PAGES[m[1]]) history.replaceState(null, '', '#/overview');
  state.page = name;
  for (const p of Object.keys(PAGES)) $(`#page-${p}`).hidden = p !== name;
  // Only the shown page keeps table rows, so row hooks like tr[data-service=odoo] are unique.
  for (const tb of document.querySelectorAll('.page[hidden] tbody')) tb.replaceChildren();
  for (const a of document.querySelectorAll('nav.tabs a')) {
    if (a.getAttribute('href') === `#/${name}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  updateTitle();
  if (state.polling) tick();
  if (name === 'services' && $('#logs-form').elements.follow.checked) loadLogs();
}

function updateTitle() {
  const o = state.overview;
  const verdict = o ? `${VERDICTS[o.verdict] || o.verdict} — ` : '';
  document.title = `${verdict}${PAGES[state.page].title} — ${o ? o.plant : 'plantd'} admin`;
}

/* ---------- 5. Polling and the stale banner ---------- */

function startPolling() {
  state.polling = true;
  tick();
}

function stopPolling() {
  state.polling = false;
  state.pollSeq++;
  clearTimeout(state.timer);
}

const refresh = () => { if (state.polling) tick(); };

async function tick() {
  clearTimeout(state.timer);
  const seq = ++state.pollSeq;
  const page = state.page;
  const { render } = PAGES[page];
  const url = typeof PAGES[page].url === 'function' ? PAGES[page].url() : PAGES[page].url;
  const early = state.prefetch;
  state.prefetch = null;
  const overview = early ? early.then(v => v || api('/overview')) : api('/overview');
  const [ov, pg] = await Promise.allSettled([overview, url ? api(url) : Promise.resolve(null)]);
  if (seq !== state.pollSeq) return; // superseded by a newer tick, a page change or sign-out
  const errors = [ov, pg].filter(r => r.status === 'rejected').map(r => r.reason);
  if (errors.some(e => e.status === 401)) { sessionEnded(); return; }
  if (ov.status === 'fulfilled') safely(renderOverview, ov.value);
  if (url && pg.status === 'fulfilled') safely(render, pg.value);
  const lost = errors.find(e => e.unreachable);
  if (lost) markStale(lost); else markFresh();
  for (const e of errors) if (!e.unreachable) console.warn(`poll ${page}: ${e.message}`);
  state.timer = setTimeout(tick, POLL_MS);
}

function safely(fn, data) {
  try { fn(data || {}); } catch (e) { console.error(e); }
}

function markStale(err) {
  const banner = $('#stale-banner');
  if (!state.stale) {
    state.stale = true;
    const at = fmtClock(state.lastOk || new Date());
    banner.textContent = `Lost contact with plantd at ${at} — the values below are from then, not current`;
  }
  banner.title = err ? err.message : '';
  banner.hidden = false;
  document.body.classList.add('stale');
}

function markFresh() {
  state.lastOk = new Date();
  if (!state.stale) return;
  state.stale = false;
  $('#stale-banner').hidden = true;
  document.body.classList.remove('stale');
}

/* ---------- 6. Pages ---------- */

const VERDICTS = { ok: 'All good', degraded: 'Degraded', action_needed: 'Action needed' };

function renderOverview(o) {
  state.overview = o;
  // The zone's label once the first verdict is on screen (see tz()).
  if (!tzShown) {
    tzShown = true;
    requestAnimationFrame(() => setTimeout(tz, 0));
  }
  if (o.now && isFinite(Date.parse(o.now))) state.skewMs = Date.parse(o.now) - Date.now();
  renderHeader(o);
  renderReasons(o.reasons || [], o.verdict);
  renderLinkTile(o.link);
  renderJournalTile(o.journal || {}, o.replication_lag_s);
  renderBackupTile(o.backup || {});
  renderApplyTile(o.apply);
  renderJobNote(o.job);
  renderHost(o.host);
  setText('#version', o.version);
  setText('#uptime', `plantd up for ${fmtDuration(o.uptime_s)}`);
  if (state.page !== 'overview') return;
  syncRows($('#overview-services'), o.services || [], {
    key: 'data-service',
    id: s => s.service,
    cols: serviceCols(false),
    empty: o.services == null ? 'No Docker stack is configured on this plant.' : 'No services.',
  });
  setRows($('#components'), o.components || [], [
    col('name'),
    col('state', c => toned(c.state)),
    col('detail'),
  ], 'No components reported.');
}

function renderHeader(o) {
  const v = $('#verdict');
  if (v.getAttribute('data-verdict') !== o.verdict) v.setAttribute('data-verdict', o.verdict);
  setText(v, VERDICTS[o.verdict] || o.verdict);
  v.title = (o.reasons || []).join('\n') || 'Nothing needs attention';
  setText('#plant-name', o.plant);
  setText('#plant-version', o.version ? `v${o.version}` : '');
  updateTitle();
}

function renderReasons(reasons, verdict) {
  const ul = $('#reasons');
  const sig = JSON.stringify(reasons);
  if (blockSigs.get(ul) !== sig) {
    blockSigs.set(ul, sig);
    ul.replaceChildren(...reasons.map(r => el('li', {}, r)));
  }
  $('#no-reasons').hidden = reasons.length > 0 || verdict !== 'ok';
}

function linkSummary(link) {
  return link ? `${link.state} for ${fmtDuration(link.for_s)}` : 'no hub link';
}

function linkDetail(link) {
  if (!link) return 'This plant does not replicate to a hub.';
  const parts = [];
  if (link.state === 'islanded') parts.push(link.islanded_on_purpose ? 'islanded on purpose' : 'NOT islanded on purpose');
  parts.push(link.hub ? `hub ${link.hub}` : 'no hub connected');
  if (link.last_error) parts.push(`last error: ${link.last_error}`);
  return parts.join(' · ');
}

function renderLinkTile(link) {
  setText('#link-summary', linkSummary(link));
  setTone('#link-summary', 'big', linkTone(link));
  setText('#link-detail', linkDetail(link));
}

function renderJournalTile(j, lag) {
  setText('#journal-depth', j.depth);
  setTone('#journal-depth', 'big', j.depth > 0 && j.oldest_unacked_age_s > 300 ? 'warn' : null);
  const oldest = j.oldest_unacked_age_s == null ? 'nothing waiting for the hub' : `oldest unacknowledged ${fmtDuration(j.oldest_unacked_age_s)}`;
  const lagText = lag == null ? 'replication lag —' : `replication lag ${fmtDuration(lag)}`;
  setText('#journal-detail', `${oldest} · ${lagText}`);
}

function renderBackupTile(b) {
  // Amber, as the verdict's "degraded", only where backups are expected: a plant without a
  // schedule is not failing them, and none yet is not as bad as a failing one.
  setText('#backup-age', b.age_s == null ? (b.scheduled ? 'none yet' : 'none (no schedule)') : `${fmtDuration(b.age_s)} ago`);
  setTone('#backup-age', 'big', !b.scheduled ? null : b.age_s == null || b.age_s > 2 * 86400 ? 'warn' : null);
  const parts = [];
  if (b.last_id) parts.push(b.last_id);
  if (b.detail) parts.push(b.detail);
  setText('#backup-detail', parts.join(' · '));
}

/* The overview's apply tile, and a pointer to the Apply page while the queue is stopped. */
function renderApplyTile(a) {
  $('#apply-tile').hidden = !a;
  const stopped = !!a && a.stopped_at != null;
  $('#apply-note').hidden = !stopped;
  if (!a) return;
  const behind = Math.max(0, a.last_seq - a.applied_seq);
  setText('#apply-summary', `${a.applied_seq} / ${a.last_seq}`);
  setTone('#apply-summary', 'big', stopped ? 'bad' : a.waiting ? 'warn' : null);
  const parts = [stopped ? `stopped at seq ${a.stopped_at}` : a.waiting ? 'waiting for Odoo' : behind ? `${behind} behind` : 'caught up'];
  if (a.parked) parts.push(`${a.parked} parked`);
  setText('#apply-summary-detail', parts.join(' · '));
  if (stopped) setText('#apply-link', `The apply to Odoo is stopped at seq ${a.stopped_at}: open the Apply page to retry or park it →`);
}

function renderHost(h) {
  const box = $('#host');
  const sig = JSON.stringify(h);
  if (blockSigs.get(box) === sig) return;
  blockSigs.set(box, sig);
  if (!h) { box.textContent = '—'; return; }
  const memUsed = h.memory_used_bytes;
  const diskUsed = h.disk_total_bytes - h.disk_free_bytes;
  box.replaceChildren(
    hostRow('CPU', `${Number(h.cpu_percent).toFixed(1)} %`, h.cpu_percent, 100),
    hostRow('Memory', `${fmtBytes(memUsed)} / ${fmtBytes(h.memory_total_bytes)} used`, memUsed, h.memory_total_bytes),
    hostRow('Disk', `${fmtBytes(h.disk_free_bytes)} free / ${fmtBytes(h.disk_total_bytes)}`, diskUsed, h.disk_total_bytes),
  );
}

function hostRow(label, text, value, max) {
  const meter = el('meter', { min: 0, max: max || 1, value: value || 0, low: 0.7 * (max || 1), high: 0.9 * (max || 1), optimum: 0 });
  return el('div', { class: 'host-row' }, el('span', { class: 'host-label' }, label), el('span', { class: 'host-value' }, text), meter);
}

/* Services: shared by the overview (compact) and the services page (full). */
function serviceCols(full) {
  const cols = [
    col('name', s => s.service),
    col('state', s => toned(s.state)),
    col('health', s => toned(s.health)),
  ];
  if (full) cols.push(col('image mono', s => s.image));
  cols.push(
    col('num restarts', s => String(s.restarts ?? '—')),
    { cls: 'uptime', get: s => (s.since && s.state === 'running' ? { text: fmtDuration(ageOf(s.since)), title: s.since } : null) },
  );
  if (full) cols.push({ cls: 'held', get: breakerCell }, col('detail'));
  else cols.push(col('notes', s => breakerCell(s) || s.detail));
  return cols;
}

function breakerCell(s) {
  if (s.breaker) return { text: 'breaker open', tone: 'bad', title: 'plantd stopped restarting it after repeated crashes' };
  if (s.held) return { text: `held: ${s.held}`, tone: 'warn' };
  return null;
}

function serviceActions(svc) {
  const out = [];
  if (canOperate()) {
    out.push(button('Restart', 'restart', () => actRestart(svc)));
    out.push(button('Reset breaker', 'reset', () => actReset(svc)));
  }
  out.push(button('Logs', 'logs', () => showLogsOf(svc), 'ghost'));
  return out;
}

function renderServices(d) {
  const st = d.stack;
  let summary = 'No Docker stack is configured on this plant.';
  let tone = null;
  if (st) {
    const docker = st.docker === 'reachable' ? 'Docker reachable' : `Docker NOT reachable: ${st.docker}`;
    summary = `Stack ${st.name} · ${docker}${st.down ? ' · stack is down (stopped)' : ''}`;
    tone = st.docker !== 'reachable' || st.down ? 'bad' : null;
  }
  setText('#stack-summary', summary);
  setTone('#stack-summary', 'summary', tone);
  syncRows($('#services'), st ? st.services || [] : [], {
    key: 'data-service',
    id: s => s.service,
    cols: serviceCols(true),
    actions: serviceActions,
    empty: st ? 'No services.' : 'No Docker stack is configured on this plant.',
  });
  // The breaker can be reset only while it is open.
  for (const s of st ? st.services || [] : []) {
    const reset = $(`#services tr[data-service="${CSS.escape(s.service)}"] button[data-action="reset"]`);
    if (!reset) continue;
    reset.disabled = !s.breaker;
    reset.title = s.breaker ? 'plantd stopped restarting it after repeated crashes: close the breaker once the cause is fixed' : 'The breaker is closed: plantd restarts this service when it fails';
  }
  setRows($('#events'), d.events || [], [
    col('time', e => timeCell(e.at)),
    col('service'),
    col('event'),
    col('message'),
  ], 'No supervisor events yet.');
}

/* The logs viewer: a service's (or plantd's) last lines, searched, without probes; followed
 * every second while "Follow" is on and the Services page is shown. */
const logs = { timer: 0, seq: 0 };

function logsQuery(text) {
  const f = $('#logs-form').elements;
  const q = new URLSearchParams({ tail: f.tail.value });
  if (f.q.value.trim()) q.set('q', f.q.value.trim());
  if (f.hide_probes.checked) q.set('probes', 'false');
  if (text) q.set('format', 'text');
  return `/services/${enc(f.service.value)}/logs?${q}`;
}

function showLogsOf(svc) {
  const f = $('#logs-form').elements;
  f.service.value = svc;
  loadLogs();
  $('#logs').scrollIntoView({ block: 'nearest' });
}

async function loadLogs() {
  clearTimeout(logs.timer);
  const seq = ++logs.seq;
  const f = $('#logs-form').elements;
  const svc = f.service.value;
  const pre = $('#logs');
  $('#logs-download').href = API + logsQuery(true);
  if (!pre.textContent || pre.dataset.service !== svc) setText('#logs-title', `Logs — ${svc} (loading…)`);
  try {
    const d = await api(logsQuery(false), { timeout: 10000 });
    if (seq !== logs.seq) return;
    const lines = (d && d.lines) || [];
    // Kept where the reader scrolled, unless they were at the end.
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8 || pre.dataset.service !== svc;
    const text = lines.length ? lines.join('\n') : '(no lines match)';
    if (pre.textContent !== text) pre.textContent = text;
    pre.dataset.service = svc;
    setText('#logs-title', `Logs — ${svc}, last ${lines.length} lines${f.q.value.trim() ? ` holding “${f.q.value.trim()}”` : ''}, ${f.follow.checked ? 'following' : 'fetched'} at ${fmtClock(new Date())}`);
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  } catch (e) {
    if (e.status === 401) { sessionEnded(); return; }
    pre.textContent = `Could not load the logs of ${svc}: ${e.message}`;
    setText('#logs-title', `Logs — ${svc}`);
  }
  if (f.follow.checked && state.page === 'services' && state.polling) logs.timer = setTimeout(loadLogs, 1000);
}

function initLogs() {
  const form = $('#logs-form');
  form.addEventListener('submit', ev => { ev.preventDefault(); loadLogs(); });
  form.elements.follow.addEventListener('change', () => loadLogs());
  form.elements.service.addEventListener('change', () => loadLogs());
  form.elements.hide_probes.addEventListener('change', () => loadLogs());
  $('#logs-download').href = API + logsQuery(true);
}

function renderJournal(d) {
  const j = d.journal || {};
  setText('#ingest-rate', fmtRate(d.ingest_per_s));
  setText('#ack-rate', fmtRate(d.acks_per_s));
  setText('#hub-ack', `${j.hub_acked_seq ?? '—'} / ${j.last_seq ?? '—'}`);
  setText('#journal-page-depth', j.depth);
  setText('#journal-page-oldest', j.oldest_unacked_age_s == null ? 'nothing waiting' : `oldest waiting ${fmtDuration(j.oldest_unacked_age_s)}`);
  setText('#journal-link', linkSummary(d.link));
  setTone('#journal-link', 'big', linkTone(d.link));
  setText('#journal-link-detail', linkDetail(d.link));
  HIST.journal = d.history || [];
  loadHistory();
  if (!HIST.data) drawHistory();
  setRows($('#journal-errors'), d.errors || [], [
    col('time', e => timeCell(e.at)),
    col('source'),
    col('message'),
  ], 'No recent errors.');
}

/* Inline SVG. */
const SVGNS = 'http://www.w3.org/2000/svg';

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

/* History (GET /history?range=): the charts of the page, kept across restarts in metrics.db.
 * Fetched on its own clock (HIST_EVERY per range), drawn by drawChart; one hover readout for
 * all charts. Until /history answers, the depth chart is drawn from /journal's history. */
const HIST = { range: '1h', data: null, at: 0, seq: 0, bound: false, hoverT: null, journal: [] };
const HIST_EVERY = { '1h': 10000, '24h': 60000, '7d': 300000 };
const RANGE_S = { '1h': 3600, '24h': 86400, '7d': 7 * 86400 };
const RANGE_TITLE = { '1h': 'last hour', '24h': 'last 24 hours', '7d': 'last 7 days' };
const fmtNum = x => (x == null || !isFinite(x) ? '—' : String(Math.abs(x) >= 100 ? Math.round(x) : Number(Number(x).toFixed(1))));
const fmtPct = x => (x == null || !isFinite(x) ? '—' : `${Number(Number(x).toFixed(1))} %`);
/* Each chart: its svg, what it draws (lines of the points), how its values read. */
const HIST_CHARTS = [
  { id: 'depth-chart', name: 'Journal depth', lines: [{ key: 'depth', label: 'depth' }], fmt: fmtNum },
  { id: 'lag-chart', name: 'Replication lag', lines: [{ key: 'lag_s', label: 'lag', zero: true }], fmt: fmtDuration },
  { id: 'rate-chart', name: 'Ingest and ack rates', lines: [{ key: 'ingest_per_s', label: 'received' }, { key: 'ack_per_s', label: 'acknowledged', cls: 'second' }], fmt: fmtRate },
  { id: 'apply-backlog-chart', name: 'Apply backlog', lines: [{ key: 'apply_backlog', label: 'apply backlog' }], fmt: fmtNum },
  { id: 'disk-chart', name: 'Disk used', lines: [{ key: 'disk_used_pct', label: 'disk used' }], fmt: fmtPct, max: 100 },
  { id: 'cpu-chart', name: 'CPU', lines: [{ key: 'cpu_pct', label: 'CPU' }], fmt: fmtPct, max: 100 },
  { id: 'memory-chart', name: 'Memory in use', lines: [{ key: 'memory_used_bytes', label: 'memory' }], fmt: fmtBytes },
];

/* The browser's zone, as the time axis says it: "UTC+01:00" (and its name where known). */
function zoneOffset(t) {
  const off = -new Date(t).getTimezoneOffset();
  return `UTC${off < 0 ? '−' : '+'}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
}
const zoneName = () => { try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ''; } catch (e) { return ''; } };
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
function fmtAxisTime(t, range) {
  const d = new Date(t);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return range === '1h' || range === '24h' ? hm : `${DAYS[d.getDay()]} ${d.getDate()} ${hm}`;
}

function bindHistory() {
  if (HIST.bound) return;
  HIST.bound = true;
  for (const b of document.querySelectorAll('#history-range button')) {
    b.addEventListener('click', () => {
      if (HIST.range === b.dataset.range) return;
      HIST.range = b.dataset.range;
      HIST.data = null;
      HIST.at = 0;
      for (const o of document.querySelectorAll('#history-range button')) o.setAttribute('aria-pressed', String(o === b));
      setText('#history-title', `History, ${RANGE_TITLE[HIST.range]}`);
      hideHover();
      loadHistory();
    });
  }
  for (const c of HIST_CHARTS) {
    const svg = $(`#${c.id}`);
    svg.addEventListener('pointermove', e => hover(svg, e));
    svg.addEventListener('pointerdown', e => hover(svg, e));
    svg.addEventListener('pointerleave', hideHover);
  }
}

/* Asks for the range's history when it is due (or the range changed); late answers are dropped. */
async function loadHistory() {
  bindHistory();
  const range = HIST.range;
  if (HIST.at && Date.now() - HIST.at < HIST_EVERY[range]) return;
  HIST.at = Date.now();
  const seq = ++HIST.seq;
  try {
    const data = await api(`/history?range=${enc(range)}`, { timeout: 15000 });
    if (seq !== HIST.seq || range !== HIST.range) return;
    HIST.data = data;
    drawHistory();
  } catch (e) {
    if (seq !== HIST.seq) return;
    HIST.at = Date.now() - HIST_EVERY[range] + POLL_MS * 5; // try again in 10 s
    if (e.status === 401) { sessionEnded(); return; }
    console.warn(`history: ${e.message}`);
    setText('#history-note', `The history could not be read: ${e.message}`);
    if (!HIST.data) drawHistory();
  }
}

/* Draws every chart from the history (or the depth chart from /journal's last hour). */
function drawHistory() {
  const now = Date.now() + state.skewMs;
  const data = HIST.data || {
    range: '1h',
    step_s: 10,
    points: (HIST.journal || []).map(p => ({ at: p.at, depth: p.depth })),
    markers: [],
  };
  const pts = (data.points || []).map(p => ({ ...p, t: Date.parse(p.at) })).filter(p => isFinite(p.t));
  const markers = (data.markers || []).map(m => ({ ...m, t: Date.parse(m.at) })).filter(m => isFinite(m.t));
  const t1 = Math.max(now, pts.length ? pts[pts.length - 1].t : 0);
  const view = { range: data.range, t0: t1 - RANGE_S[data.range] * 1000, t1, step: (data.step_s || 10) * 1000, pts, markers };
  HIST.view = view;
  const applyOn = !!(state.overview && state.overview.apply) || pts.some(p => p.apply_backlog != null);
  $('#apply-backlog-box').hidden = !applyOn;
  for (const c of HIST_CHARTS) {
    if (c.id === 'apply-backlog-chart' && !applyOn) continue;
    if (!HIST.data && c.id !== 'depth-chart') continue;
    drawChart($(`#${c.id}`), c, view);
  }
  if (HIST.hoverT != null) showHover(HIST.hoverT);
}

/* 0, 1, 2, 2.5, 5 times a power of ten: the top of a chart's scale at or above v. */
function niceTop(v) {
  if (!(v > 0)) return 1;
  const mag = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= v) return m * mag;
  return 10 * mag;
}

/* One SVG line chart: a line per series (one polyline each; a missing value is skipped),
 * shaded gaps where no sample was taken, markers as dashed vertical lines with a label and a
 * <title>, axis labels with the zone; the chart's aria-label says the range and the values. */
function drawChart(chart, c, view) {
  const sig = JSON.stringify([view.range, view.pts.length && view.pts[0].at, view.pts.length && view.pts[view.pts.length - 1].at, view.pts.length, view.markers.length, c.lines.map(l => view.pts.map(p => p[l.key]))]);
  if (blockSigs.get(chart) === sig) return;
  blockSigs.set(chart, sig);
  const [, , W, H] = chart.getAttribute('viewBox').split(/\s+/).map(Number);
  const L = 64, R = 14, T = 18, B = 36;
  const series = c.lines.map(l => ({
    ...l,
    pts: view.pts
      .map(p => ({ t: p.t, v: p[l.key] == null && l.zero ? 0 : p[l.key] }))
      .filter(p => p.v != null && isFinite(p.v) && p.t >= view.t0 - view.step),
  }));
  const all = series.flatMap(s => s.pts);
  const kids = [];
  const { t0, t1 } = view;
  const span = Math.max(t1 - t0, 1);
  const x = t => (L + (Math.min(Math.max(t, t0), t1) - t0) / span * (W - L - R)).toFixed(1);
  const zone = zoneOffset(t1);
  kids.push(
    svgEl('text', { x: L, y: H - 12, 'text-anchor': 'start', class: 'label' }, `${fmtAxisTime(t0, view.range)} ${zone}`),
    svgEl('text', { x: W - R, y: H - 12, 'text-anchor': 'end', class: 'label' }, `${fmtAxisTime(t1, view.range)} ${zone}`),
  );
  if (!all.length) {
    chart.setAttribute('aria-label', `${c.name}: no data yet`);
    kids.push(svgEl('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'chart-empty' }, 'No data yet'));
    drawMarkers(kids, view, x, T, H - B);
    chart.replaceChildren(...kids);
    return;
  }
  const values = all.map(p => p.v);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const top = c.max != null && hi <= c.max && hi > c.max / 2 ? c.max : niceTop(hi);
  const bottom = Math.min(0, lo);
  const y = v => (T + ((top - v) / (top - bottom || 1)) * (H - T - B)).toFixed(1);
  kids.push(
    svgEl('line', { x1: L, x2: W - R, y1: y(top), y2: y(top), class: 'grid' }),
    svgEl('line', { x1: L, x2: W - R, y1: y((top + bottom) / 2), y2: y((top + bottom) / 2), class: 'grid' }),
    svgEl('line', { x1: L, x2: W - R, y1: y(bottom), y2: y(bottom), class: 'axis' }),
    svgEl('text', { x: L - 8, y: Number(y(top)) + 4, 'text-anchor': 'end', class: 'label' }, c.fmt(top)),
    svgEl('text', { x: L - 8, y: Number(y(bottom)) + 4, 'text-anchor': 'end', class: 'label' }, c.fmt(bottom)),
  );
  // No sample for over three steps: plantd was not running (or not sampling).
  const times = view.pts.map(p => p.t);
  for (let i = 1; i < times.length; i++) {
    if (times[i] - times[i - 1] > 3 * view.step) {
      const gx = Number(x(times[i - 1]));
      kids.push(svgEl('rect', { x: gx, y: T, width: Math.max(Number(x(times[i])) - gx, 1), height: H - T - B, class: 'gap' }));
      kids[kids.length - 1].append(svgEl('title', {}, `No samples from ${fmtTime(new Date(times[i - 1]).toISOString())} to ${fmtTime(new Date(times[i]).toISOString())}: plantd was not running`));
    }
  }
  series.forEach((s, i) => {
    if (!s.pts.length) return;
    const line = s.pts.map(p => `${x(p.t)},${y(p.v)}`).join(' ');
    if (i === 0 && series.length === 1) {
      const first = s.pts[0], last = s.pts[s.pts.length - 1];
      kids.push(svgEl('polygon', { points: `${x(first.t)},${y(bottom)} ${line} ${x(last.t)},${y(bottom)}`, class: 'area' }));
    }
    kids.push(svgEl('polyline', { points: line, class: s.cls ? `line ${s.cls}` : 'line' }));
  });
  const main = series.find(s => s.pts.length) || series[0];
  const last = main.pts[main.pts.length - 1];
  kids.push(svgEl('circle', { cx: x(last.t), cy: y(last.v), r: 3.5, class: 'dot' }));
  kids.push(svgEl('text', { x: (L + W - R) / 2, y: H - 12, 'text-anchor': 'middle', class: 'label muted' }, `${fmtDuration(span / 1000)} shown`));
  drawMarkers(kids, view, x, T, H - B);
  kids.push(svgEl('line', { x1: 0, x2: 0, y1: T, y2: H - B, class: 'hover-rule', visibility: 'hidden' }));
  const hhmm = t => fmtClock(new Date(t)).slice(0, 5);
  const mLo = Math.min(...main.pts.map(p => p.v));
  const mHi = Math.max(...main.pts.map(p => p.v));
  chart.setAttribute('aria-label', `${c.name} from ${hhmm(main.pts[0].t)} to ${hhmm(last.t)}: between ${c.fmt(mLo)} and ${c.fmt(mHi)}, now ${c.fmt(last.v)}`);
  chart.replaceChildren(...kids);
}

/* Markers in the window: a dashed line, a short label (skipped where it would overlap the
 * previous one) and a <title> with the time and the detail. */
function drawMarkers(kids, view, x, top, bottom) {
  let lastLabel = -Infinity;
  for (const m of view.markers) {
    if (m.t < view.t0 || m.t > view.t1) continue;
    const mx = Number(x(m.t));
    const g = svgEl('g', { class: `marker tone-${m.kind}`, 'data-kind': m.kind });
    g.append(
      svgEl('title', {}, `${fmtTime(m.at)} ${zoneOffset(m.t)}: ${m.detail}`),
      svgEl('line', { x1: mx, x2: mx, y1: top - 4, y2: bottom }),
    );
    if (mx - lastLabel > 56) {
      // Beside its line, on the side with room (the newest are at the right edge).
      const right = mx > Number(x(view.t1)) - 60;
      g.append(svgEl('text', { x: right ? mx - 3 : mx + 3, y: top - 6, 'text-anchor': right ? 'end' : 'start' }, m.kind));
      lastLabel = mx;
    }
    kids.push(g);
  }
}

/* Hover: the time under the pointer, its nearest point; a rule on every chart and the values. */
function hover(svg, e) {
  const v = HIST.view;
  if (!v || !v.pts.length) return;
  const r = svg.getBoundingClientRect();
  const [, , W] = svg.getAttribute('viewBox').split(/\s+/).map(Number);
  const vx = ((e.clientX - r.left) / r.width) * W;
  const t = v.t0 + ((vx - 64) / (W - 64 - 14)) * (v.t1 - v.t0);
  HIST.hoverSvg = svg;
  showHover(t);
}

function showHover(t) {
  const v = HIST.view;
  if (!v || !v.pts.length) return;
  HIST.hoverT = t;
  let p = v.pts[0];
  for (const q of v.pts) if (Math.abs(q.t - t) < Math.abs(p.t - t)) p = q;
  for (const c of HIST_CHARTS) {
    const svg = $(`#${c.id}`);
    const rule = svg.querySelector('.hover-rule');
    if (!rule) continue;
    const [, , W] = svg.getAttribute('viewBox').split(/\s+/).map(Number);
    const px = (64 + (Math.min(Math.max(p.t, v.t0), v.t1) - v.t0) / Math.max(v.t1 - v.t0, 1) * (W - 64 - 14)).toFixed(1);
    rule.setAttribute('x1', px);
    rule.setAttribute('x2', px);
    rule.setAttribute('visibility', 'visible');
  }
  const box = $('#history-readout');
  const what = v.range === '1h' ? '' : v.range === '24h' ? ' (5-min average)' : ' (30-min average)';
  const rows = [el('div', { class: 'when' }, `${fmtTime(p.at)} ${zoneOffset(p.t)}${what}`)];
  for (const c of HIST_CHARTS) {
    if (c.id === 'apply-backlog-chart' && $('#apply-backlog-box').hidden) continue;
    for (const l of c.lines) {
      const val = p[l.key] == null && l.zero ? 0 : p[l.key];
      if (val === undefined) continue;
      const extra = l.key === 'depth' && p.depth_max != null && v.range !== '1h' ? ` (max ${p.depth_max})` : '';
      rows.push(el('div', { 'data-key': l.key }, `${l.label}: ${c.fmt(val)}${extra}`));
    }
  }
  box.replaceChildren(...rows);
  box.hidden = false;
  // Beside the pointer's chart, on the side with room.
  const svg = HIST.hoverSvg || $('#depth-chart');
  const card = $('#history').getBoundingClientRect();
  const sr = svg.getBoundingClientRect();
  const [, , W] = svg.getAttribute('viewBox').split(/\s+/).map(Number);
  const px = sr.left + (64 + (Math.min(Math.max(p.t, v.t0), v.t1) - v.t0) / Math.max(v.t1 - v.t0, 1) * (W - 78)) * (sr.width / W);
  const left = px - card.left + 14;
  const wide = box.offsetWidth;
  box.style.left = `${left + wide > card.width ? Math.max(left - wide - 28, 0) : left}px`;
  box.style.top = `${sr.top - card.top + 8}px`;
}

function hideHover() {
  HIST.hoverT = null;
  $('#history-readout').hidden = true;
  for (const r of document.querySelectorAll('#history .hover-rule')) r.setAttribute('visibility', 'hidden');
}

/* Apply: the queue, where it stopped (with Retry and Park), and the parked list (Replay). */
const GAP = '(gap)';

const PARKED_PAGE = 50;

function parkedQuery() {
  const q = new URLSearchParams({ offset: String(state.parkedOffset), limit: String(PARKED_PAGE) });
  for (const [k, v] of Object.entries(state.parkedFilter)) q.set(k, String(v));
  return q.toString();
}

/* The filter form's fields as the API takes them; throws with what is wrong. */
function readParkedFilter() {
  const f = $('#parked-filter').elements;
  const out = {};
  for (const k of ['kind', 'message']) { const v = f[k].value.trim(); if (v) out[k] = v; }
  for (const k of ['from_seq', 'to_seq']) {
    const v = f[k].value.trim();
    if (!v) continue;
    if (!/^[0-9]+$/.test(v) || Number(v) < 1) throw new Error(`${k.replace('_', ' ')}: give a seq, a whole number from 1`);
    out[k] = Number(v);
  }
  return out;
}

function initParkedFilter() {
  const form = $('#parked-filter');
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    try {
      state.parkedFilter = readParkedFilter();
      state.parkedOffset = 0;
      setText('#parked-filter-error', '');
      refresh();
    } catch (e) { setText('#parked-filter-error', e.message); }
  });
  $('#parked-replay').addEventListener('click', () => {
    try { actBulk('replay', readParkedFilter()); } catch (e) { setText('#parked-filter-error', e.message); }
  });
  $('#parked-prev').addEventListener('click', () => { state.parkedOffset = Math.max(0, state.parkedOffset - PARKED_PAGE); refresh(); });
  $('#parked-next').addEventListener('click', () => { state.parkedOffset += PARKED_PAGE; refresh(); });
}

/* A bulk remedy: its preview's count in the confirmation, then one request (one audit entry). */
async function actBulk(remedy, filter) {
  let preview;
  try {
    preview = await api(`/apply/bulk-${remedy}`, { method: 'POST', body: { ...filter, preview: true }, timeout: ACTION_TIMEOUT_MS });
  } catch (e) {
    if (e.status === 401) { sessionEnded(); return; }
    toast('error', e.message);
    return;
  }
  if (!preview.matching) { toast('error', `Nothing to ${remedy}: ${preview.message}`); return; }
  const texts = {
    park: `Bulk park: plantd ${preview.message}. Each is parked with Odoo's message as the queue meets it, and the rest goes through; nothing Odoo takes is parked. It ends once the queue is past seq ${preview.to_seq}. Replay them later, one by one or in bulk.`,
    replay: `Bulk replay: ${preview.message}. plantd applies each to Odoo now, in seq order: those Odoo takes leave the parked list, the others stay parked with its new message.`,
  };
  // The range the preview counted is the one confirmed: not what arrives meanwhile.
  const confirmed = remedy === 'park' ? { ...filter, from_seq: preview.from_seq, to_seq: preview.to_seq } : filter;
  act({
    text: texts[remedy],
    okLabel: remedy === 'park' ? `Park up to ${preview.matching}` : `Replay ${Math.min(preview.matching, 1000)}`,
    path: `/apply/bulk-${remedy}`,
    body: () => confirmed,
  });
}

function renderApply(d) {
  $('#apply-off').hidden = d.enabled !== false;
  $('#apply-on').hidden = d.enabled === false;
  if (d.enabled === false) { setText('#apply-off', d.note); return; }
  const stopped = d.stopped_at != null;
  setText('#apply-applied', `${d.applied_seq} / ${d.last_seq}`);
  setText('#apply-behind', d.behind);
  setTone('#apply-behind', 'big', stopped ? 'bad' : d.behind > 0 ? 'warn' : null);
  setText('#apply-behind-detail', d.behind ? `transaction${d.behind === 1 ? '' : 's'} not applied yet` : 'every transaction is in Odoo');
  setText('#apply-state', stopped ? `stopped at seq ${d.stopped_at}` : d.waiting ? 'waiting for Odoo' : d.behind ? 'applying' : 'caught up');
  setTone('#apply-state', 'big', stopped ? 'bad' : d.waiting ? 'warn' : 'good');
  setText('#apply-waiting', d.waiting || (stopped ? 'nothing behind it is applied until it is retried or parked' : 'in seq order, each once'));
  setText('#apply-xmlids', d.external_ids);
  setText('#apply-how', d.odoo_module == null ? 'how: known once Odoo answers'
    : d.odoo_module ? 'a batch in one call, through plantd_apply in Odoo'
      : 'through plantd\'s own calls (plantd_apply is not installed in this Odoo)');
  const rw = d.rewound;
  $('#apply-rewound').hidden = !rw;
  if (rw) {
    setText('#apply-rewound', `${fmtTime(rw.at)}: ${rw.backup ? `the restore of backup ${rw.backup} moved` : 'an admin moved'} the apply back from seq ${rw.from} to ${rw.to}; ${rw.again} transaction${rw.again === 1 ? ' is' : 's are'} applied again (their external ids keep each record once)${rw.pruned_through != null ? `; seqs ${rw.to + 1} to ${rw.pruned_through} were pruned from the journal and cannot be` : ''}.`);
  }
  renderApplyStop(d);
  renderApplyRule(d.park_rule);
  followRetry(d);
  const parked = d.parked || [];
  state.parked = new Map(parked.map(p => [String(p.seq), p]));
  const total = d.parked_total ?? parked.length;
  const matching = d.parked_matching ?? parked.length;
  const first = matching ? (d.offset || 0) + 1 : 0;
  const last = (d.offset || 0) + parked.length;
  const filtered = Object.keys(state.parkedFilter).length > 0;
  setText('#parked-count', total === 0 ? 'Nothing is parked.'
    : `${first}–${last} of ${matching}${filtered ? ` matching (${total} parked in all)` : ' parked'}, oldest first`);
  $('#parked-prev').disabled = (d.offset || 0) === 0;
  $('#parked-next').disabled = last >= matching;
  if (parked.length === 0 && (d.offset || 0) > 0) { state.parkedOffset = 0; }
  $('#parked-replay').disabled = matching === 0;
  syncRows($('#apply-parked'), parked, {
    key: 'data-seq',
    id: p => p.seq,
    cols: [
      col('num seq', p => String(p.seq)),
      col('kind mono', p => p.kind),
      col('device'),
      col('key mono', p => p.key),
      col('message'),
      col('time', p => timeCell(p.parked_at)),
      col('payload', p => ({ text: p.payload.length > 240 ? `${p.payload.slice(0, 240)}…` : p.payload, title: p.payload })),
    ],
    actions: seq => (canOperate() ? [button('Replay', 'replay', () => actApply('replay', seq))] : []),
    empty: 'Nothing is parked.',
  });
}

/* The bulk park in force, and how far it got. */
function renderApplyRule(r) {
  $('#apply-rule').hidden = !r;
  if (!r) return;
  const what = [`seqs ${r.from} to ${r.to}`];
  if (r.kind) what.push(`kind ${r.kind}`);
  if (r.message) what.push(`message holding “${r.message}”`);
  setText('#apply-rule-text', `Bulk park by ${r.by} since ${fmtTime(r.at)}: ${r.parked} parked so far (${what.join(', ')}); it ends once the queue is past seq ${r.to}.`);
  const box = $('#apply-rule-controls');
  const sig = `${canOperate()}`;
  if (blockSigs.get(box) === sig) return;
  blockSigs.set(box, sig);
  box.replaceChildren(...(canOperate() ? [el('button', { type: 'button', id: 'apply-rule-stop', onclick: () => act({
    text: 'Stop the bulk park: what it parked stays parked; the queue stops again at the next transaction Odoo rejects.',
    okLabel: 'Stop bulk park',
    path: '/apply/bulk-park',
    body: () => ({ cancel: true }),
  }) }, 'Stop bulk park')] : []));
}

/* After a retry, the outcome once the queue says it: applied, or rejected again. */
function followRetry(d) {
  const w = state.retryWatch;
  if (!w) return;
  if (d.applied_seq >= w.seq && d.stopped_at !== w.seq) {
    state.retryWatch = null;
    toast('ok', `Seq ${w.seq} is applied now.`);
  } else if (d.stopped_at === w.seq && d.stopped_since !== w.since) {
    state.retryWatch = null;
    toast('error', `Seq ${w.seq} was rejected again: ${d.message}`);
  }
}

function renderApplyStop(d) {
  const stopped = d.stopped_at != null;
  $('#apply-stop').hidden = !stopped;
  if (!stopped) return;
  const gap = d.stopped_kind === GAP;
  // plantd's own mapping can refuse a transaction before Odoo sees it: say who refused.
  const byOdoo = /^Odoo /.test(d.message || '');
  setText('#apply-stop-why', byOdoo ? 'Odoo\'s message' : 'Why');
  setText('#apply-stop-payload', d.stopped_payload == null ? (gap ? '(not in the journal)' : '—') : prettyJson(d.stopped_payload));
  const behind = Math.max(0, d.last_seq - d.stopped_at);
  setText('#apply-stop-title', gap ? `Stopped before seq ${d.stopped_at}: seqs missing from the journal`
    : `Stopped at seq ${d.stopped_at}: ${byOdoo ? 'Odoo rejected it' : 'plantd could not apply it'}`);
  setText('#apply-stop-seq', d.stopped_at);
  setText('#apply-stop-kind', d.stopped_kind);
  setText('#apply-stop-since', d.stopped_since ? `${fmtTime(d.stopped_since)} (${fmtDuration(ageOf(d.stopped_since))} ago)` : null);
  setText('#apply-stop-behind', `${behind} transaction${behind === 1 ? '' : 's'}`);
  setText('#apply-stop-message', d.message);
  const who = canOperate() ? '' : 'For an operator or admin: ';
  setText('#apply-stop-help', who + (gap
    ? 'Retry goes on from this seq; the missing ones cannot be applied here.'
    : 'Fix the cause in Odoo (create the missing record, correct the data), then Retry; or Park it to let the rest through and Replay it later.'));
  state.stop = d;
  const box = $('#apply-controls');
  const sig = `${d.stopped_at}\u0000${d.stopped_kind}\u0000${canOperate()}`;
  if (blockSigs.get(box) === sig) return;
  blockSigs.set(box, sig);
  const buttons = [];
  if (canOperate()) {
    buttons.push(el('button', { type: 'button', id: 'apply-retry', class: 'primary', 'data-action': 'retry', onclick: () => actApply('retry', d.stopped_at) }, `Retry seq ${d.stopped_at}`));
    if (!gap) {
      buttons.push(el('button', { type: 'button', id: 'apply-park', class: 'danger', 'data-action': 'park', onclick: () => actApply('park', d.stopped_at) }, `Park seq ${d.stopped_at}…`));
      buttons.push(el('button', { type: 'button', id: 'apply-park-like', class: 'danger', 'data-action': 'park-like', onclick: () => actBulk('park', { kind: d.stopped_kind }) }, `Park every ${d.stopped_kind} Odoo rejects…`));
    }
  }
  box.replaceChildren(...buttons);
}

function buildBackupControls() {
  const box = $('#backup-controls');
  box.replaceChildren();
  if (isAdmin()) {
    box.append(el('button', { type: 'button', id: 'backup-run', class: 'primary', onclick: actBackupRun }, 'Run backup now'));
  }
}

function renderBackups(d) {
  const r = d.retention;
  // One backup job at a time: while one runs, nothing that would start another is offered.
  const running = (d.jobs || []).find(j => j.state === 'running');
  const run = $('#backup-run');
  if (run) {
    run.hidden = d.stack === false;
    run.disabled = !!running;
    run.title = running ? `${JOB_LABELS[running.kind] || running.kind} ${running.id} is running` : '';
  }

  setText('#backup-schedule', d.schedule);
  setText('#backup-timezone', `${d.timezone} — the plant's: the schedule runs in it`);
  setText('#backup-retention', r ? `keep ${r.keep_daily} daily, ${r.keep_weekly} weekly, ${r.keep_monthly} monthly` : null);
  setText('#backup-status', d.status);
  const backups = d.backups || [];
  state.backups = new Map(backups.map(b => [b.id, b]));
  syncRows($('#backups'), backups, {
    key: 'data-backup',
    id: b => b.id,
    cols: [
      col('id mono', b => b.id),
      col('created', b => timeCell(b.created_at)),
      col('age', b => fmtDuration(b.age_s)),
      col('num size', b => fmtBytes(b.size)),
      col('verified', b => yesNo(b.verified, 'warn')),
      col('encrypted', b => yesNo(b.encrypted)),
      col('offsite', b => yesNo(b.offsite)),
      { cls: 'note', get: b => (b.unreadable ? { text: `unreadable: ${b.unreadable}`, tone: 'bad' } : null) },
    ],
    actions: backupActions,
    empty: 'No backups yet.',
  });
  syncRows($('#jobs'), d.jobs || [], {
    key: 'data-job',
    id: j => j.id,
    attrs: j => ({ 'data-state': j.state }),
    cols: [
      col('id mono', j => j.id),
      col('kind'),
      col('backup mono', j => j.backup),
      col('user'),
      col('started', j => timeCell(j.started_at)),
      { cls: 'state', get: jobStateCell },
      col('message', j => ({ text: jobProgress(j) || j.message, title: jobPhases(j) })),
    ],
    empty: 'No jobs yet.',
  });
  for (const b of document.querySelectorAll('#backups button[data-action="verify"], #backups button[data-action="restore"]')) {
    b.disabled = !!running;
    b.title = running ? `wait for ${running.id} to finish` : '';
  }
}

/* Where a running job is: "dumping the database: 41 MiB, 12 s"; a finished one's message. */
function jobProgress(j) {
  const p = j.progress;
  if (j.state !== 'running') return null;
  if (!p) return 'starting';
  const bytes = p.total ? `${fmtBytes(p.bytes)} of ${fmtBytes(p.total)} (${p.percent}%)` : p.bytes ? fmtBytes(p.bytes) : null;
  return [p.phase, bytes, fmtDuration(p.phase_elapsed_s)].filter(Boolean).join(' · ');
}

function jobPhases(j) {
  const p = j.progress;
  if (!p || !p.done || !p.done.length) return '';
  return 'Done: ' + p.done.map(d => `${d.phase} (${d.bytes ? `${fmtBytes(d.bytes)}, ` : ''}${d.seconds} s)`).join('; ');
}

function renderJobNote(j) {
  $('#job-note').hidden = !j;
  if (!j) return;
  const what = JOB_LABELS[j.kind] || j.kind;
  setText('#job-link', `${what}${j.backup ? ` of ${j.backup}` : ''} running (${j.id}, by ${j.user}): ${jobProgress(j) || 'starting'} →`);
}

function jobStateCell(j) {
  const tone = j.state === 'running' ? 'info' : TONES[j.state] || 'muted';
  const title = j.finished_at ? `finished ${j.finished_at}` : j.started_at ? `running for ${fmtDuration(ageOf(j.started_at))}` : '';
  return { text: j.state, tone, title };
}

function backupActions(id) {
  const out = [];
  if (isAdmin()) {
    out.push(button('Verify', 'verify', () => actVerify(id)));
    out.push(button('Restore…', 'restore', () => actRestore(id), 'danger'));
  }
  if (isAdmin()) out.push(el('a', {
    href: `${API}/backups/${enc(id)}/download`,
    download: true,
    'data-action': 'download',
    class: 'button-link',
  }, 'Download'));
  return out;
}

function buildFailoverControls() {
  const box = $('#failover-controls');
  box.replaceChildren();
  if (!canOperate()) {
    box.append(el('p', { class: 'muted' }, 'Islanding and rejoining are for operators and admins.'));
    return;
  }
  const input = el('input', { id: 'island-reason', name: 'reason', required: true, maxlength: 200, autocomplete: 'off', placeholder: 'e.g. planned WAN work' });
  input.addEventListener('input', () => setText('#island-error', ''));
  box.append(el('div', { class: 'island-form' },
    el('label', { for: 'island-reason' }, 'Reason (required, recorded in the audit log)'),
    el('div', { class: 'island-row' },
      input,
      el('button', { type: 'button', id: 'island', class: 'danger', onclick: () => actLink('island') }, 'Island this plant'),
      el('button', { type: 'button', id: 'rejoin', class: 'primary', onclick: () => actLink('rejoin') }, 'Rejoin the hub')),
    el('p', { id: 'island-error', class: 'form-error', role: 'alert' })));
}

function renderFailover(d) {
  const link = d.link;
  $('#enrolled-note').hidden = d.enrolled !== false;
  setText('#link-state', link ? link.state : '—');
  const ls = $('#link-state');
  const cls = `pill ${linkTone(link && { ...link, islanded_on_purpose: d.islanded_on_purpose })}`;
  if (ls.className !== cls) ls.className = cls;
  setText('#link-since', link ? `${fmtTime(link.since)} (for ${fmtDuration(link.for_s)})` : '—');
  setText('#islanded-on-purpose', d.islanded_on_purpose ? 'yes' : 'no');
  // Only what the link's state allows is offered: Island while joined, Rejoin while islanded,
  // neither on a plant that is not enrolled.
  const form = $('#failover-controls .island-form');
  if (form) {
    form.hidden = d.enrolled === false;
    $('#island').hidden = !!d.islanded_on_purpose;
    $('#rejoin').hidden = !d.islanded_on_purpose;
  }
  setText('#link-hub', link && link.hub);
  setText('#link-error', link && link.last_error);
  setRows($('#link-history'), d.history || [], [
    col('time', h => timeCell(h.at)),
    col('state', h => toned(h.state)),
    col('detail'),
  ], 'No link changes recorded.');
  setRows($('#hubs'), d.hubs || [], [
    col('addr mono', h => h.addr),
    { cls: 'active', get: h => (h.active ? { text: 'active', tone: 'good' } : { text: 'standby', tone: 'muted' }) },
  ], 'No hub endpoints known.', h => ({ class: h.active ? 'active-row' : '' }));
  renderSteps(d.rebuild_steps || []);
}

function renderSteps(steps) {
  const ol = $('#rebuild-steps');
  const sig = JSON.stringify(steps);
  if (blockSigs.get(ol) === sig) return;
  blockSigs.set(ol, sig);
  ol.replaceChildren(...steps.map(s => el('li', {}, s)));
}

const AUDIT_PAGE = 200;

function auditQuery(paged) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(state.auditFilter)) if (v) q.set(k, v);
  if (paged) {
    q.set('limit', String(AUDIT_PAGE));
    const before = state.auditBefore[state.auditBefore.length - 1];
    if (before) q.set('before', String(before));
  }
  return q.toString();
}

function initAuditFilter() {
  const form = $('#audit-filter');
  const sync = () => { $('#audit-export').href = `${API}/audit/export?${auditQuery(false)}`; };
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    const f = form.elements;
    state.auditFilter = { user: f.user.value.trim(), action: f.action.value.trim(), outcome: f.outcome.value, q: f.q.value.trim() };
    state.auditBefore = [];
    sync();
    refresh();
  });
  $('#audit-older').addEventListener('click', () => { if (state.auditNext) { state.auditBefore.push(state.auditNext); refresh(); } });
  $('#audit-newest').addEventListener('click', () => { state.auditBefore = []; refresh(); });
  sync();
}

function renderAudit(d) {
  state.auditNext = d.next_before || null;
  const n = (d.entries || []).length;
  const page = state.auditBefore.length;
  setText('#audit-count', n ? `${page ? `page ${page + 1}: ` : 'newest '}${n} entries${Object.values(state.auditFilter).some(Boolean) ? ' matching the filter' : ''}, newest first; times in ${tz()}` : 'No entries match.');
  $('#audit-older').disabled = !state.auditNext;
  $('#audit-newest').disabled = page === 0;
  setRows($('#audit'), d.entries || [], [
    col('time', e => timeCell(e.at)),
    col('user'),
    col('action'),
    col('target'),
    col('outcome', e => toned(e.outcome)),
    col('detail'),
  ], 'No audit entries yet.');
}

function renderDevices(d) {
  const devices = d.devices || [];
  const table = $('#devices');
  syncRows(table, devices, {
    key: 'data-device',
    id: x => x.name,
    attrs: x => ({ 'data-state': x.revoked_at ? 'revoked' : 'active' }),
    cols: [
      col('name mono', x => x.name),
      col('state', x => (x.revoked_at ? { text: 'revoked', tone: 'bad', title: x.revoked_at } : { text: 'active', tone: 'good' })),
      col('kinds'),
      col('time last-seen', x => (x.last_seen_at ? { text: `${fmtTime(x.last_seen_at)} (${fmtDuration(ageOf(x.last_seen_at))} ago)`, title: x.last_seen_at } : 'never')),
      col('num accepted', x => String(x.accepted)),
      col('num refused', x => (x.refused ? { text: String(x.refused), tone: 'warn' } : '0')),
      col('message latest', x => {
        const r = (x.recent_refusals || [])[0];
        return r ? { text: `${r.status} ${r.code}: ${r.message}`, title: r.at } : null;
      }),
    ],
    actions: (name, x) => (isAdmin() && !x.revoked_at ? [button('Revoke…', 'revoke', () => actRevoke(name), 'danger')] : []),
    empty: 'No device tokens yet: create one with plantd token create --device NAME.',
  });
  // A token revoked since the row was drawn loses its button.
  for (const x of devices) {
    if (!x.revoked_at) continue;
    const b = table.querySelector(`tr[data-device="${CSS.escape(x.name)}"] button[data-action="revoke"]`);
    if (b) b.remove();
  }
  const u = d.unknown_token || {};
  setText('#unknown-token', u.refused
    ? `Requests with no token or one nobody issued: ${u.refused} refused, the latest at ${fmtTime((u.recent_refusals[0] || {}).at)}.`
    : 'No request came with a missing or unknown token.');
  const all = devices.flatMap(x => (x.recent_refusals || []).map(r => ({ ...r, device: x.name })))
    .concat((u.recent_refusals || []).map(r => ({ ...r, device: '(no or unknown token)' })))
    .sort((a, b) => Date.parse(b.at) - Date.parse(a.at))
    .slice(0, 50);
  setRows($('#refusals'), all, [
    col('time', r => timeCell(r.at)),
    col('device mono', r => r.device),
    col('num status', r => String(r.status)),
    col('code mono', r => r.code),
    col('message'),
  ], 'No refusals recorded.');
}

function actRevoke(name) {
  act({
    text: `Revoke the token of ${name}: its requests are refused (403) from now on, until someone creates a new token for it with plantd token create --device ${name}. What it sent before stays in the journal.`,
    typed: name,
    okLabel: `Revoke ${name}`,
    path: `/devices/${enc(name)}/revoke`,
  });
}

/* The roles a user can be made, in the order their buttons show. */
const ROLE_OTHERS = { admin: ['operator', 'viewer'], operator: ['admin', 'viewer'], viewer: ['operator', 'admin'] };
const ROLE_WHAT = {
  admin: 'sees everything and may do everything (users, backups and restores, updates, tokens)',
  operator: 'sees everything, restarts services, islands and rejoins, and retries, parks and replays transactions',
  viewer: 'sees everything and changes nothing',
};

function renderUsers(d) {
  const users = d.users || [];
  state.users = new Map(users.map(u => [u.name, u]));
  const table = $('#users');
  syncRows(table, users, {
    key: 'data-user',
    id: u => u.name,
    attrs: u => ({ 'data-role': u.role }),
    cols: [
      col('name', u => (u.you ? `${u.name} (you)` : u.name)),
      col('role', u => ({ text: u.role, tone: u.role === 'viewer' ? 'muted' : 'info' })),
      col('created', u => timeCell(u.created_at)),
      col('time password-set', u => (u.password_set_at ? timeCell(u.password_set_at) : 'when added')),
      col('num sessions', u => String(u.sessions)),
      col('totp', u => ({ text: u.totp ? 'on' : 'off', tone: u.totp ? 'good' : 'muted' })),
    ],
    actions: userActions,
    empty: 'No users.',
  });
  // The role buttons say what they would make the user, which follows their role.
  for (const u of users) {
    [0, 1].forEach(i => {
      const b = table.querySelector(`tr[data-user="${CSS.escape(u.name)}"] button[data-action="role${i}"]`);
      if (b) setText(b, `Make ${(ROLE_OTHERS[u.role] || [])[i]}`);
    });
    const out = table.querySelector(`tr[data-user="${CSS.escape(u.name)}"] button[data-action="sign-out"]`);
    if (out) out.disabled = u.sessions === 0;
    const reset = table.querySelector(`tr[data-user="${CSS.escape(u.name)}"] button[data-action="totp-reset"]`);
    if (reset) reset.disabled = !u.totp;
  }
}

function userActions(name) {
  if (!isAdmin()) return [];
  return [
    button('Set password…', 'password', () => actUserPassword(name)),
    button('Make …', 'role0', () => actUserRole(name, 0)),
    button('Make …', 'role1', () => actUserRole(name, 1)),
    button('Sign out', 'sign-out', () => actUserSignOut(name)),
    button('Reset 2FA…', 'totp-reset', () => act({
      text: `Take the second factor of ${name} away (a lost phone): their sessions end, and they sign in with their password alone${isAdmin() ? ', then set up a new one' : ''}.`,
      okLabel: 'Reset 2FA',
      path: `/users/${enc(name)}/totp-reset`,
    })),
    button('Remove…', 'remove', () => actUserRemove(name), 'danger'),
  ];
}

function actUserPassword(name) {
  act({
    text: `Set a new password for ${name}. Their sessions end at once; they sign in with the new password. Tell them the password by a safe way (not e-mail).`,
    secret: true,
    okLabel: 'Set password',
    path: `/users/${enc(name)}/password`,
    body: password => ({ password }),
  });
}

function actUserRole(name, i) {
  const u = state.users.get(name) || {};
  const to = (ROLE_OTHERS[u.role] || ['viewer', 'viewer'])[i];
  act({
    text: `Make ${name} ${to === 'admin' || to === 'operator' ? 'an' : 'a'} ${to}: ${name} then ${ROLE_WHAT[to]}. Their sessions end at once; they sign in again.`,
    okLabel: `Make ${to}`,
    path: `/users/${enc(name)}/role`,
    body: () => ({ role: to }),
  });
}

/* The Users page's "Your second factor" card: set up TOTP for yourself (a QR code made by
 * plantd, a code to confirm, then the recovery codes, shown once). */
function renderTotpCard() {
  const s = state.session;
  const box = $('#totp-controls');
  box.replaceChildren();
  if (s.via === 'ldap') {
    setText('#totp-status', 'You signed in with your company account: its second factor is your directory\'s.');
    return;
  }
  if (s.totp) {
    setText('#totp-status', 'On: signing in asks for your authenticator app\'s code. Lost your phone? Use a recovery code, or ask an admin to reset it.');
    return;
  }
  setText('#totp-status', s.mustEnrol
    ? 'Off. This server requires a second factor for admins: set one up before you change anything.'
    : 'Off. A second factor keeps your account safe if your password leaks.');
  box.append(el('button', { type: 'button', id: 'totp-start', class: 'primary', onclick: startTotp }, 'Set up a second factor'));
}

async function startTotp() {
  const box = $('#totp-controls');
  let e;
  try {
    e = await api('/totp/enrol', { method: 'POST', body: {}, timeout: ACTION_TIMEOUT_MS });
  } catch (err) {
    if (err.status === 401) { sessionEnded(); return; }
    toast('error', err.message);
    return;
  }
  const input = el('input', { id: 'totp-code', name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 8, placeholder: '123456' });
  const error = el('p', { id: 'totp-error', class: 'form-error', role: 'alert' });
  const form = el('form', { id: 'totp-confirm', class: 'inline-form', autocomplete: 'off', novalidate: true },
    el('label', {}, 'Code the app shows now ', input),
    el('button', { type: 'submit', class: 'primary' }, 'Confirm'));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    setText(error, '');
    try {
      const r = await api('/totp/confirm', { method: 'POST', body: { code: input.value.trim() }, timeout: ACTION_TIMEOUT_MS });
      state.session.totp = true;
      state.session.mustEnrol = false;
      $('#enrol-banner').hidden = true;
      renderTotpCard();
      $('#totp-controls').append(
        el('p', {}, 'Your recovery codes: keep them somewhere safe, away from your phone. Each works once in place of a code; they are not shown again.'),
        el('pre', { id: 'totp-recovery' }, r.recovery_codes.join('\n')));
      toast('ok', r.message);
      refresh();
    } catch (err) {
      if (err.status === 401 && err.code !== 'bad_totp') { sessionEnded(); return; }
      setText(error, err.message);
    }
  });
  box.replaceChildren(
    el('p', {}, 'Scan this with your authenticator app (or type the key), then enter the code it shows.'),
    el('img', { id: 'totp-qr', src: e.qr, alt: 'QR code of the new second factor', width: 200, height: 200 }),
    el('p', {}, 'Key: ', el('code', { id: 'totp-secret' }, e.secret)),
    form, error);
  input.focus();
}

function actUserSignOut(name) {
  act({
    text: `Sign ${name} out everywhere: every session of theirs ends at once (a lost laptop, a shared screen). They can sign in again with their password.`,
    okLabel: 'Sign out',
    path: `/users/${enc(name)}/sign-out`,
  });
}

function actUserRemove(name) {
  const you = state.session && state.session.user === name;
  act({
    text: `Remove ${name}: they can no longer sign in, and their sessions end at once.${you ? ' This is you: you are signed out.' : ''} The audit log keeps what they did.`,
    typed: name,
    okLabel: `Remove ${name}`,
    path: `/users/${enc(name)}/remove`,
  });
}

function initUserForm() {
  const form = $('#user-add');
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const body = { user: form.elements.user.value.trim(), role: form.elements.role.value, password: form.elements.password.value };
    const submit = form.querySelector('button[type=submit]');
    submit.disabled = true;
    setText('#user-add-error', '');
    try {
      const r = await api('/users', { method: 'POST', body, timeout: ACTION_TIMEOUT_MS });
      form.reset();
      toast('ok', outcomeText(r));
      refresh();
    } catch (e) {
      if (e.status === 401) { sessionEnded(); return; }
      $('#user-add-error').textContent = e.message;
    } finally {
      submit.disabled = false;
    }
  });
}

/* A payload as sent, indented when it is JSON. */
function prettyJson(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return String(text); }
}

/* ---------- 7. Actions ---------- */

function actRestart(svc) {
  act({
    text: `Restart ${svc}: plantd stops its container and starts it again. ${svc} is unavailable until it is healthy again, usually within a minute; Odoo users may see errors meanwhile.`,
    okLabel: `Restart ${svc}`,
    path: `/services/${enc(svc)}/restart`,
  });
}

function actReset(svc) {
  act({
    text: `Close the crash-loop breaker of ${svc}: plantd starts it again if it is down and resumes restarting it when it fails. Do this once the cause of the crashes is fixed.`,
    okLabel: 'Reset breaker',
    path: `/services/${enc(svc)}/reset`,
  });
}

function actBackupRun() {
  act({
    text: 'Take a backup now: plantd writes the Odoo database, filestore and configuration into a new archive, then verifies it (checksums, and a test restore into a scratch database), in the background while Odoo keeps serving.',
    okLabel: 'Run backup',
    path: '/backups/run',
  });
}

function actVerify(id) {
  act({
    text: `Verify backup ${id}: plantd checks the archive's checksums and test-restores the database into a scratch database, in the background. Live data is not touched.`,
    okLabel: 'Verify',
    path: `/backups/${enc(id)}/verify`,
  });
}

function actRestore(id) {
  const b = state.backups.get(id) || {};
  const when = b.created_at ? fmtTime(b.created_at) : null;
  act({
    text: `Restore backup ${id}${when ? ` (taken ${when}, ${fmtDuration(b.age_s)} ago)` : ''}: plantd takes a safety backup of the current data, then REPLACES this plant's Odoo database and filestore with this backup's. Odoo is held during the switch; if it is not healthy afterwards, the current data is put back. What was entered in Odoo after ${when || 'this backup'} disappears from Odoo (the safety backup keeps it).`,
    typed: id,
    okLabel: 'Restore',
    path: `/backups/${enc(id)}/restore`,
    body: typed => ({ confirm: typed }),
  });
}

function actLink(kind) {
  const input = $('#island-reason');
  const reason = input.value.trim();
  if (!reason) {
    setText('#island-error', 'Enter a reason first: it is recorded in the audit log.');
    input.focus();
    return;
  }
  const depth = state.overview && state.overview.journal ? state.overview.journal.depth : null;
  const text = kind === 'island'
    ? `Island this plant: plantd stops replicating to the hub until someone rejoins, even across restarts. The plant keeps working and journals locally. Reason: “${reason}”.`
    : `Rejoin the hub: plantd resumes replicating and sends the ${depth != null ? `${depth} ` : ''}transactions waiting in the journal. Reason: “${reason}”.`;
  act({
    text,
    okLabel: kind === 'island' ? 'Island' : 'Rejoin',
    path: `/${kind}`,
    body: () => ({ reason }),
    after: () => { input.value = ''; },
  });
}

function actApply(remedy, seq) {
  const stop = state.stop || {};
  const p = (state.parked && state.parked.get(String(seq))) || {};
  const said = remedy === 'replay' ? p.message : stop.message;
  const odoo = said ? ` Odoo said: “${said}”.` : '';
  const kind = remedy === 'replay' ? p.kind : stop.stopped_kind;
  const what = `seq ${seq}${kind ? ` (${kind})` : ''}`;
  const behind = stop.last_seq != null ? Math.max(0, stop.last_seq - seq) : null;
  const texts = {
    retry: `Retry ${what}: plantd sends it to Odoo again, then applies what waits behind it. Do this once the cause is fixed in Odoo; if Odoo rejects it again, the queue stays stopped there.${odoo}`,
    park: `Park ${what}: plantd sets it aside with its content (nothing is deleted) and applies the ${behind != null ? `${behind} ` : ''}transactions waiting behind it. It stays on the parked list, not in Odoo, until someone replays it.${odoo}`,
    replay: `Replay ${what}: plantd applies this parked transaction to Odoo now, once. If Odoo takes it, it leaves the parked list; if Odoo still rejects it, it stays parked and nothing changes. It goes in as it was sent: a write sets its values over any written since.${odoo}`,
  };
  const labels = { retry: `Retry seq ${seq}`, park: `Park seq ${seq}`, replay: `Replay seq ${seq}` };
  const after = remedy === 'retry' ? () => { state.retryWatch = { seq: Number(seq), since: stop.stopped_since }; } : undefined;
  act({ text: texts[remedy], okLabel: labels[remedy], path: `/apply/${remedy}`, body: () => ({ seq: Number(seq) }), after });
}

const JOB_LABELS = { run: 'Backup', verify: 'Verify', restore: 'Restore' };

/* One action: confirm, POST, toast the outcome, refresh. */
async function act({ text, typed, secret, okLabel, path, body, after }) {
  if ($('#confirm').open) return;
  const answer = await askConfirm(text, okLabel, typed, secret);
  if (answer === null) return;
  $('#toast').hidden = true; // a toast still on screen is about the previous action
  try {
    const r = await api(path, { method: 'POST', body: body ? body(answer) : {}, timeout: ACTION_TIMEOUT_MS });
    toast('ok', outcomeText(r));
    if (after) after();
  } catch (e) {
    if (e.status === 401) { sessionEnded(); return; }
    toast('error', e.message);
  }
  refresh();
}

function outcomeText(r) {
  if (r && r.id && r.kind) {
    const what = JOB_LABELS[r.kind] || r.kind;
    return `${what}${r.backup ? ` of ${r.backup}` : ''} started (${r.id}); follow it in the Jobs table.`;
  }
  return (r && r.message) || 'Done.';
}

/* Resolves to null (cancelled), '' (confirmed), the typed text (typed confirmation) or the
 * password entered (secret). */
function askConfirm(text, okLabel, typed, secret) {
  const dlg = $('#confirm');
  const input = $('#confirm-input');
  const pw = $('#confirm-secret');
  const ok = $('#confirm-ok');
  setText('#confirm-text', text);
  ok.textContent = okLabel || 'OK';
  state.confirmTyped = typed || null;
  state.confirmSecret = !!secret;
  $('#confirm-typed').hidden = !typed;
  input.hidden = !typed;
  input.value = '';
  $('#confirm-secret-label').hidden = !secret;
  pw.value = '';
  setText('#confirm-prompt', typed ? `Type ${typed} to confirm:` : '');
  ok.disabled = !!typed || !!secret;
  dlg.showModal();
  (typed ? input : secret ? pw : $('#confirm-cancel')).focus();
  return new Promise(resolve => { state.confirmDone = resolve; });
}

function closeConfirm(accepted) {
  const dlg = $('#confirm');
  if (dlg.open) dlg.close();
  const done = state.confirmDone;
  state.confirmDone = null;
  const answer = state.confirmSecret ? $('#confirm-secret').value : $('#confirm-input').value.trim();
  $('#confirm-secret').value = '';
  if (done) done(accepted ? answer : null);
}

function initConfirm() {
  const dlg = $('#confirm');
  const input = $('#confirm-input');
  const ok = $('#confirm-ok');
  ok.addEventListener('click', () => { if (!ok.disabled) closeConfirm(true); });
  $('#confirm-cancel').addEventListener('click', () => closeConfirm(false));
  dlg.addEventListener('cancel', ev => { ev.preventDefault(); closeConfirm(false); });
  dlg.addEventListener('close', () => closeConfirm(false));
  input.addEventListener('input', () => { ok.disabled = input.value.trim() !== state.confirmTyped; });
  const pw = $('#confirm-secret');
  pw.addEventListener('input', () => { ok.disabled = [...pw.value].length < 10; });
  pw.addEventListener('keydown', ev => {
    if (ev.key === 'Enter') { ev.preventDefault(); if (!ok.disabled) closeConfirm(true); }
  });
  input.addEventListener('keydown', ev => {
    if (ev.key === 'Enter') { ev.preventDefault(); if (!ok.disabled) closeConfirm(true); }
  });
}

/* ---------- Start ---------- */

function init() {
  // Every table of the app turns into one card per row on a phone (app.css).
  for (const t of document.querySelectorAll('#view-app table')) t.classList.add('stackable');
  const post = path => body => api(path, { method: 'POST', body, timeout: 15000 });
  bindAuthForm($('#setup'), post('/setup'), ['code', 'user', 'password'], '#setup-error', enterApp);
  bindAuthForm($('#signin'), post('/login'), ['user', 'password', 'code'], '#signin-error', enterApp);
  $('#signout').addEventListener('click', signOut);
  $('#verdict').addEventListener('click', () => { location.hash = '#/overview'; });
  $('#toast').addEventListener('click', () => { $('#toast').hidden = true; });
  window.addEventListener('hashchange', route);
  initConfirm();
  initUserForm();
  initParkedFilter();
  initAuditFilter();
  initLogs();
  boot();
}

init();
