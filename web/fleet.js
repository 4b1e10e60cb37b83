// plantd fleet page: plants and rollouts, read from /api/v1/fleet every 5 s. Signs in with the
// same API as the plant's admin UI. No framework, nothing fetched from elsewhere.
'use strict';

const POLL_MS = 5000;
const state = { session: null, timer: null };
const $ = sel => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ''));
  return e;
}

async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (method !== 'GET') {
    headers['Content-Type'] = 'application/json';
    if (state.session) headers['X-CSRF-Token'] = state.session.csrf;
    init.body = JSON.stringify(body || {});
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    const e = new Error('cannot reach the hub');
    e.status = 0;
    throw e;
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const e = new Error((data && data.error && data.error.message) || `the hub answered HTTP ${res.status}`);
    e.status = res.status;
    throw e;
  }
  return data;
}

function showView(name) {
  for (const v of ['loading', 'setup', 'signin', 'app']) $(`#view-${v}`).hidden = v !== name;
}

function stale(message) {
  const banner = $('#stale-banner');
  banner.textContent = `${message}: the figures below are from ${state.updated || 'earlier'}, not current`;
  banner.hidden = false;
  document.body.classList.add('stale');
}

function fresh() {
  $('#stale-banner').hidden = true;
  document.body.classList.remove('stale');
}

function ago(seconds) {
  if (seconds == null) return '—';
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

function tone(cell, kind) {
  cell.className = kind ? `tone-${kind}` : '';
  return cell;
}

function drawPlants(plants) {
  const body = $('#plants tbody');
  body.replaceChildren(...plants.map(p => {
    const health = p.health === 'ok' ? 'ok'
      : p.health === 'unknown' ? 'no telemetry yet'
      : p.unhealthy.map(c => `${c.name}: ${c.detail}`).join('; ');
    const version = p.pinned_version ? `${p.version || '—'} (pinned to ${p.pinned_version})` : (p.version || '—');
    const link = p.revoked ? 'revoked' : (p.link || '—');
    return el('tr', { 'data-plant': p.plant },
      el('td', {}, p.plant),
      tone(el('td', {}, link), link === 'online' ? 'good' : link === '—' ? '' : 'warn'),
      el('td', {}, p.lag_s == null ? (p.link ? 'none' : '—') : ago(p.lag_s)),
      el('td', {}, version),
      tone(el('td', {}, health), p.health === 'ok' ? 'good' : p.health === 'degraded' ? 'bad' : ''),
      tone(el('td', {}, p.backup ? p.backup.detail : '—'), p.backup && p.backup.state !== 'ok' ? 'bad' : ''),
      el('td', {}, p.last_seen || 'never'),
      el('td', {}, String(p.stored)));
  }));
}

function drawRollouts(rollouts) {
  const box = $('#rollouts');
  if (!rollouts.length) {
    box.replaceChildren(el('p', { class: 'muted' }, 'No rollout yet.'));
    return;
  }
  box.replaceChildren(...rollouts.map(r => {
    const head = el('h3', {}, `Rollout ${r.id}: version ${r.version} — ${r.state}`);
    const facts = el('p', { class: 'muted' },
      `waves ${r.waves} (wave ${r.current_wave} of ${r.wave_count}), max failures ${r.max_failures}, started ${r.started_at}` +
      (r.reason ? ` — ${r.reason}` : ''));
    const rows = r.plants.map(p => el('tr', {},
      el('td', {}, p.plant), el('td', {}, String(p.wave)),
      tone(el('td', {}, p.state), p.state === 'installed' ? 'good' : p.state === 'failed' ? 'bad' : ''),
      el('td', {}, p.reason || ''), el('td', {}, p.updated_at)));
    const table = el('table', { 'data-rollout': String(r.id) },
      el('thead', {}, el('tr', {}, el('th', {}, 'Plant'), el('th', {}, 'Wave'), el('th', {}, 'State'), el('th', {}, 'Outcome'), el('th', {}, 'Updated'))),
      el('tbody', {}, ...rows));
    return el('div', { class: 'rollout' }, head, facts, table);
  }));
}

async function poll() {
  try {
    const f = await api('/api/v1/fleet');
    drawPlants(f.plants);
    drawRollouts(f.rollouts);
    state.updated = new Date().toLocaleTimeString();
    $('#updated').textContent = `updated ${state.updated}`;
    fresh();
  } catch (e) {
    if (e.status === 401) { signedOut(); return; }
    stale(e.message);
  }
  state.timer = setTimeout(poll, POLL_MS);
}

function enter(s) {
  state.session = { user: s.user, role: s.role, csrf: s.csrf };
  $('#whoami').textContent = `${s.user} (${s.role})`;
  showView('app');
  clearTimeout(state.timer);
  poll();
}

function signedOut() {
  clearTimeout(state.timer);
  state.session = null;
  boot();
}

function bindForm(form, path, fields, errorSel) {
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const body = {};
    for (const f of fields) body[f] = f === 'password' ? form.elements[f].value : form.elements[f].value.trim();
    $(errorSel).textContent = '';
    try {
      const s = await api(path, { method: 'POST', body });
      form.reset();
      enter(s);
    } catch (e) {
      $(errorSel).textContent = e.message;
    }
  });
}

async function boot() {
  showView('loading');
  try {
    const s = await api('/api/v1/admin/session');
    fresh();
    if (s.signed_in) enter(s);
    else showView(s.setup_required ? 'setup' : 'signin');
  } catch (e) {
    stale(e.message);
    setTimeout(boot, POLL_MS);
  }
}

bindForm($('#setup'), '/api/v1/admin/setup', ['code', 'user', 'password'], '#setup-error');
bindForm($('#signin'), '/api/v1/admin/login', ['user', 'password'], '#signin-error');
$('#signout').addEventListener('click', async () => {
  try { await api('/api/v1/admin/logout', { method: 'POST' }); } catch { /* signed out anyway */ }
  signedOut();
});
boot();
