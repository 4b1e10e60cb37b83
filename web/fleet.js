// plantd fleet page: plants, their alerts, remote actions and logs, the hub's audit log, their
// apply to the central Odoo, and rollouts, read from /api/v1/fleet every 5 s. Signs in with
// the same API as the plant's admin UI. Its actions are a plant's backup and diagnostics
// (remote actions), the central apply's retry, park and replay, and rollouts' start, pause,
// resume and abort (admins only: viewers get no buttons), each
// confirmed in dialog#confirm, POSTed with the CSRF token, and toasted. No framework, nothing
// fetched from elsewhere; server text reaches the DOM only as text nodes. The helpers it
// shares with the plant's admin UI (el, api's request, the sign-in forms, the toast) are
// common.js's.
'use strict';

const POLL_MS = 5000;
const state = { session: null, timer: null, confirmDone: null };
const isAdmin = () => !!state.session && state.session.role === 'admin';
/* Operators apply the queue's remedies; the rest is for admins. */
const canOperate = () => !!state.session && (state.session.role === 'operator' || state.session.role === 'admin');

async function api(path, { method = 'GET', body } = {}) {
  return request(path, {
    method,
    body,
    timeout: 60000,
    csrf: state.session && state.session.csrf,
    server: 'the hub',
  });
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
    // The hub's own account (problem plants come first from the API), with why and since when.
    const tones = { online: 'good', degraded: 'warn', islanded: 'warn', offline: 'bad', unknown: '', revoked: '' };
    const state = tone(el('td', {}, p.state + (p.since ? ` since ${p.since}` : '')), tones[p.state] || '');
    state.classList.add('state');
    if (p.reason) state.append(el('div', { class: 'muted' }, p.reason));
    const held = p.last_backup
      ? `${p.last_backup.id} (${ago(p.last_backup.age_s)} ago)`
      : 'none held';
    const backupTone = p.backup && p.backup.state !== 'ok' ? 'bad' : p.last_backup ? '' : 'warn';
    return el('tr', { 'data-plant': p.plant, 'data-state': p.state },
      el('td', {}, el('button', { type: 'button', class: 'link', 'data-action': 'open-plant', onclick: () => openPlant(p.plant) }, p.plant)),
      state,
      el('td', {}, p.lag_s == null ? '—' : p.lag_s === 0 ? 'none' : ago(p.lag_s)),
      el('td', {}, version),
      tone(el('td', {}, health), p.health === 'ok' ? 'good' : p.health === 'degraded' ? 'bad' : ''),
      tone(el('td', { title: p.backup ? p.backup.detail : '' }, held), backupTone),
      el('td', {}, p.last_seen || 'never'),
      el('td', {}, String(p.stored)));
  }));
}

async function openPlant(plant) {
  state.detail = plant;
  await drawDetail();
  $('#plant-detail').hidden = false;
  $('#plant-detail').scrollIntoView();
}

async function drawDetail() {
  if (!state.detail) return;
  let d;
  try {
    d = await api(`/api/v1/fleet/plants/${encodeURIComponent(state.detail)}`);
  } catch (e) {
    if (e.status === 404) { state.detail = null; $('#plant-detail').hidden = true; return; }
    throw e;
  }
  const p = d.plant;
  $('#plant-detail').dataset.plant = p.plant;
  $('#plant-detail-name').textContent = p.plant;
  $('#plant-detail-state').replaceChildren(
    tone(el('span', { class: 'state' }, p.state + (p.since ? ` since ${p.since}` : '')), { online: 'good', degraded: 'warn', islanded: 'warn', offline: 'bad' }[p.state] || ''),
    el('span', { class: 'muted' }, ` ${p.reason || ''} — version ${p.version || '—'}, lag ${p.lag_s == null ? '—' : ago(p.lag_s)}, stored ${p.stored}, last seen ${p.last_seen || 'never'}`));
  // The plant wrote its report: take only what has the expected shape.
  const comps = (d.telemetry && Array.isArray(d.telemetry.components) ? d.telemetry.components : [])
    .filter(c => c && typeof c === 'object')
    .map(c => ({ name: String(c.name ?? '?'), state: String(c.state ?? '?'), detail: String(c.detail ?? '') }));
  $('#plant-detail-components tbody').replaceChildren(...comps.map(c => el('tr', { 'data-component': c.name },
    el('td', {}, c.name), tone(el('td', {}, c.state), c.state === 'ok' ? 'good' : c.state === 'unhealthy' ? 'bad' : 'warn'), el('td', {}, c.detail))));
  $('#plant-detail-backups tbody').replaceChildren(...d.backups_held.slice().reverse().map(b => el('tr', { 'data-backup': b.id },
    el('td', {}, b.id), el('td', {}, b.created_at), el('td', {}, `${(b.size / 1048576).toFixed(1)} MiB`))));
  $('#plant-detail-links tbody').replaceChildren(...d.links.map(l => el('tr', { 'data-event': l.event },
    el('td', {}, l.at), tone(el('td', {}, l.event), l.event === 'connected' ? 'good' : 'warn'), el('td', {}, l.detail))));
  $('#plant-detail-alerts tbody').replaceChildren(...d.alerts.history.map(e => el('tr', { 'data-event': e.event },
    el('td', {}, e.at), el('td', {}, e.condition.replace(/_/g, ' ')), el('td', {}, e.event.replace(/_/g, ' ')), el('td', {}, e.message))));
  $('#plant-detail-actions tbody').replaceChildren(...d.actions.map(a => el('tr', { 'data-remote-action': String(a.id), 'data-state': a.state },
    el('td', {}, String(a.id)), el('td', {}, a.action), el('td', {}, a.state), el('td', {}, a.requested_by), el('td', {}, a.requested_at), el('td', {}, a.detail || ''))));
  $('#plant-detail-logs tbody').replaceChildren(...d.logs.map(l => el('tr', { 'data-level': l.level },
    el('td', {}, l.at), el('td', {}, l.level), el('td', {}, l.target), el('td', {}, l.message))));
}

function drawAlerts(alerts) {
  const firing = alerts ? alerts.firing : [];
  $('#alerts-none').hidden = firing.length > 0;
  $('#alerts-firing tbody').replaceChildren(...firing.map(a => {
    const routes = Object.values(a.routes);
    const told = a.waiting ? 'waiting for business hours'
      : routes.some(r => r.times > 0) ? routes.map(r => r.told_at ? `at ${r.told_at}` : r.failed_at ? 'failed' : '—').join(', ')
      : a.cleared_at ? 'clearing' : 'not yet (or no route for its tier)';
    return el('tr', { 'data-alert': `${a.when}/${a.subject}`, 'data-tier': a.tier },
      el('td', {}, a.subject),
      el('td', {}, a.when.replace(/_/g, ' ')),
      tone(el('td', {}, a.tier), a.tier === 'production' ? 'bad' : 'warn'),
      el('td', {}, a.since),
      el('td', {}, a.message),
      el('td', {}, told));
  }));
  $('#alerts-history tbody').replaceChildren(...(alerts ? alerts.history : []).map(e => el('tr', { 'data-event': e.event },
    el('td', {}, e.at), el('td', {}, e.subject), el('td', {}, e.condition.replace(/_/g, ' ')),
    el('td', {}, e.tier), el('td', {}, e.event.replace(/_/g, ' ')), el('td', {}, e.message))));
}

async function searchLogs() {
  const form = $('#logs-search');
  const params = new URLSearchParams();
  for (const name of ['plant', 'level', 'q']) {
    const v = form.elements[name].value;
    if (v) params.set(name, v);
  }
  params.set('limit', '200');
  const found = await api(`/api/v1/fleet/logs?${params}`);
  $('#plant-log-lines tbody').replaceChildren(...found.lines.map(l => el('tr', { 'data-log-plant': l.plant, 'data-level': l.level },
    el('td', {}, l.at), el('td', {}, l.plant),
    tone(el('td', {}, l.level), l.level === 'error' ? 'bad' : l.level === 'warn' ? 'warn' : ''),
    el('td', {}, l.target), el('td', {}, l.message))));
}

function fillLogPlants(plants) {
  const select = $('#logs-search').elements.plant;
  const have = new Set([...select.options].map(o => o.value));
  for (const p of plants) {
    if (!have.has(p.plant)) select.append(el('option', { value: p.plant }, p.plant));
  }
}

function rolloutForm() {
  const f = $('#rollout-start');
  const max = Number(f.elements.max_failures.value || 0);
  return { version: f.elements.version.value.trim(), waves: f.elements.waves.value.trim(), max_failures: max };
}

async function planRollout() {
  const { waves } = rolloutForm();
  const p = await api(`/api/v1/fleet/rollouts/plan?waves=${encodeURIComponent(waves)}`);
  $('#rollout-plan').replaceChildren(el('ol', { 'data-plan': p.waves },
    ...p.plan.map(w => el('li', {}, w.join(', ')))));
}

async function drawAudit() {
  const log = await api('/api/v1/fleet/audit?limit=50');
  $('#hub-audit-log tbody').replaceChildren(...log.entries.map(e => el('tr', { 'data-action': e.action, 'data-outcome': e.outcome },
    el('td', {}, e.at), el('td', {}, e.who), el('td', {}, e.action), el('td', {}, e.target || ''),
    tone(el('td', {}, e.outcome), e.outcome === 'ok' ? 'good' : e.outcome === 'requested' ? '' : 'bad'),
    el('td', {}, e.detail))));
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
    const live = r.state === 'running' || r.state === 'paused';
    const steer = el('p', { class: 'actions' });
    if (live && isAdmin()) {
      if (r.state === 'running') steer.append(button('Pause', 'pause', () => act(`Pause rollout ${r.id}? Plants that have not started installing ${r.version} wait until it is resumed.`, 'Pause', '/api/v1/fleet/rollouts/pause', { id: r.id })));
      if (r.state === 'paused') steer.append(button('Resume', 'resume', () => act(`Resume rollout ${r.id} of ${r.version}? Failures so far no longer count against it.`, 'Resume', '/api/v1/fleet/rollouts/resume', { id: r.id })));
      steer.append(button('Abort', 'abort', () => act(`Abort rollout ${r.id}? No more plants are offered ${r.version}; plants that installed it keep it.`, 'Abort', '/api/v1/fleet/rollouts/abort', { id: r.id }), 'danger'));
    }
    const table = el('table', { 'data-rollout': String(r.id) },
      el('thead', {}, el('tr', {}, el('th', {}, 'Plant'), el('th', {}, 'Wave'), el('th', {}, 'State'), el('th', {}, 'Outcome'), el('th', {}, 'Updated'))),
      el('tbody', {}, ...rows));
    return el('div', { class: 'rollout', 'data-rollout-state': r.state }, head, facts, steer, table);
  }));
}

function applyState(a) {
  if (a.stopped_at != null) return { text: `stopped at seq ${a.stopped_at}${a.stopped_kind ? ` (${a.stopped_kind})` : ''}`, tone: 'bad' };
  if (a.behind > 0) return { text: 'applying', tone: 'warn' };
  return { text: 'caught up', tone: 'good' };
}

function drawApply(f) {
  const central = f.central_apply || { enabled: false };
  $('#apply-off').hidden = central.enabled;
  $('#apply-on').hidden = !central.enabled;
  if (!central.enabled) { $('#apply-off').textContent = central.note || 'off'; return; }
  const plants = f.plants.filter(p => p.apply);
  const rows = plants.map(p => {
    const a = p.apply;
    const st = applyState(a);
    const actions = el('td', { class: 'actions' });
    if (canOperate() && a.stopped_at != null) {
      actions.append(
        button('Retry', 'retry', () => remedy('retry', p.plant, a.stopped_at, a), 'primary'),
        button('Park…', 'park', () => remedy('park', p.plant, a.stopped_at, a), 'danger'));
    }
    return el('tr', { 'data-plant': p.plant },
      el('td', {}, p.plant),
      el('td', { class: 'num applied' }, `${a.applied_seq} / ${a.last_seq}`),
      el('td', { class: `num behind${a.behind > 0 ? ' tone-warn' : ''}` }, String(a.behind)),
      el('td', { class: 'state' }, el('span', { class: `pill ${st.tone}` }, st.text)),
      el('td', { class: 'message' }, a.message || ''),
      actions);
  });
  $('#fleet-apply tbody').replaceChildren(...(rows.length ? rows : [emptyRow('#fleet-apply', 'No enrolled plant yet.')]));
  const parked = plants.flatMap(p => p.apply.parked.map(k => ({ plant: p.plant, ...k })));
  const prows = parked.map(k => {
    const actions = el('td', { class: 'actions' });
    if (canOperate()) actions.append(button('Replay', 'replay', () => remedy('replay', k.plant, k.seq, k)));
    const payload = el('td', { class: 'payload' }, k.payload);
    payload.title = k.payload;
    return el('tr', { 'data-parked': `${k.plant}/${k.seq}` },
      el('td', {}, k.plant), el('td', { class: 'num seq' }, String(k.seq)), el('td', { class: 'mono' }, k.kind),
      el('td', { class: 'device' }, k.device), el('td', { class: 'key mono' }, k.key), el('td', { class: 'message' }, k.message),
      el('td', { class: 'time' }, k.parked_at), payload, actions);
  });
  $('#fleet-parked tbody').replaceChildren(...(prows.length ? prows : [emptyRow('#fleet-parked', 'Nothing is parked.')]));
}

/// Each plant's latest remote actions, and for admins the buttons to ask for more.
async function drawRemote(plants) {
  const lists = await Promise.all(plants.filter(p => !p.revoked).map(p =>
    api(`/api/v1/fleet/plants/${encodeURIComponent(p.plant)}/actions`)
      .then(r => [p.plant, r.actions], () => [p.plant, null])));
  const tones = { ok: 'good', refused: 'warn', failed: 'bad', expired: 'warn' };
  $('#remote-actions tbody').replaceChildren(...lists.map(([plant, actions]) => {
    const recent = el('td', { class: 'recent' });
    for (const a of (actions || []).slice(0, 3)) {
      const line = tone(el('div', { 'data-remote-action': String(a.id), 'data-state': a.state, title: a.detail || '' },
        `#${a.id} ${a.action}: ${a.state} (${a.requested_by}, ${a.requested_at.slice(0, 16).replace('T', ' ')})`), tones[a.state] || '');
      recent.append(line);
    }
    if (!actions) recent.append(el('div', { class: 'muted' }, 'not readable now'));
    else if (!actions.length) recent.append(el('div', { class: 'muted' }, 'none yet'));
    const ask = el('td', {});
    if (isAdmin()) {
      for (const [action, label, text] of [
        ['backup', 'Back up now', `Ask ${plant} to take a backup now: it runs at the plant (minutes, with the database dumped while Odoo runs on), then the plant copies it to the hub.`],
        ['diagnostics', 'Diagnostics', `Ask ${plant} for a diagnostics bundle: its status, the stack's events and the last 200 log lines of each container and of plantd, and its config, secrets left out. It is kept at the hub.`],
      ]) {
        ask.append(button(label, action, () => act(text, label, `/api/v1/fleet/plants/${encodeURIComponent(plant)}/actions`, { action })));
      }
    }
    return el('tr', { 'data-remote-plant': plant }, el('td', {}, plant), recent, ask);
  }));
}

function remedy(kind, plant, seq, a) {
  const odoo = a.message ? ` The central Odoo said: “${a.message}”.` : '';
  const what = `${plant} seq ${seq}`;
  const texts = {
    retry: `Retry ${what}: the hub sends it to the central Odoo again, then applies what waits behind it. Do this once the cause is fixed in Odoo; if Odoo rejects it again, ${plant}'s queue stays stopped there.${odoo}`,
    park: `Park ${what}: the hub sets it aside (it stays stored, nothing is deleted) and applies the ${Math.max(0, a.last_seq - seq)} transactions of ${plant} waiting behind it. It stays on the parked list, not in Odoo, until someone replays it.${odoo}`,
    replay: `Replay ${what}: the hub applies this parked transaction to the central Odoo now, once. If Odoo takes it, it leaves the parked list; if Odoo still rejects it, it stays parked and nothing changes. It goes in as it was sent: a write sets its values over any written since.${odoo}`,
  };
  act(texts[kind], `${kind[0].toUpperCase()}${kind.slice(1)} ${what}`, `/api/v1/fleet/apply/${kind}`, { plant, seq });
}

async function act(text, okLabel, path, body) {
  if ($('#confirm').open) return;
  if (!(await askConfirm(text, okLabel))) return;
  $('#toast').hidden = true;
  try {
    const r = await api(path, { method: 'POST', body });
    toast('ok', (r && r.message) || (r && r.id ? `Asked: action #${r.id} waits for ${r.plant}.` : 'Done.'));
  } catch (e) {
    if (e.status === 401) { signedOut(); return; }
    toast('error', e.status === 0 ? `${e.message}; the action may have run all the same: look again before trying again` : e.message);
  }
  clearTimeout(state.timer);
  poll();
}

function askConfirm(text, okLabel) {
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okLabel;
  $('#confirm').showModal();
  $('#confirm-cancel').focus();
  return new Promise(resolve => { state.confirmDone = resolve; });
}

function closeConfirm(ok) {
  const dlg = $('#confirm');
  if (dlg.open) dlg.close();
  const done = state.confirmDone;
  state.confirmDone = null;
  if (done) done(ok);
}

async function poll() {
  try {
    const f = await api('/api/v1/fleet');
    drawPlants(f.plants);
    drawAlerts(f.alerts);
    fillLogPlants(f.plants);
    // A plant's page that cannot be drawn must not stop the rest of the page.
    try { await drawDetail(); } catch (e) { if (e.status === 401) throw e; }
    await drawAudit();
    await drawRemote(f.plants);
    drawApply(f);
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
  $('#rollout-start').hidden = s.role !== 'admin';
  $('#whoami').textContent = `${s.user} (${s.role})`;
  showView('app');
  clearTimeout(state.timer);
  poll();
  searchLogs().catch(() => { /* the search form says it when asked */ });
}

function signedOut() {
  clearTimeout(state.timer);
  closeConfirm(false);
  state.session = null;
  state.detail = null;
  $('#plant-detail').hidden = true;
  // What was drawn for this user goes with them (the apply's rows carry an admin's buttons):
  // the next one sees only what the hub answers them.
  for (const tb of document.querySelectorAll('#view-app tbody')) tb.replaceChildren();
  $('#rollouts').replaceChildren();
  $('#updated').textContent = '';
  boot();
}

async function boot() {
  showView('loading');
  try {
    const s = await api('/api/v1/admin/session');
    fresh();
    if (s.signed_in) enter(s);
    else {
      showView(s.setup_required ? 'setup' : 'signin');
      noteDirectory(s);
    }
  } catch (e) {
    stale(e.message);
    setTimeout(boot, POLL_MS);
  }
}

$('#confirm-ok').addEventListener('click', () => closeConfirm(true));
$('#confirm-cancel').addEventListener('click', () => closeConfirm(false));
$('#confirm').addEventListener('cancel', ev => { ev.preventDefault(); closeConfirm(false); });
$('#confirm').addEventListener('close', () => closeConfirm(false));
$('#toast').addEventListener('click', () => { $('#toast').hidden = true; });
$('#plant-detail-close').addEventListener('click', () => { state.detail = null; $('#plant-detail').hidden = true; });
$('#rollout-start button[data-action="plan"]').addEventListener('click', async () => {
  try { await planRollout(); } catch (e) { toast('error', `Planning: ${e.message}`); }
});
$('#rollout-start').addEventListener('submit', async ev => {
  ev.preventDefault();
  const body = rolloutForm();
  if (!body.version) { toast('error', 'Name the release to roll out (plantd hub release list shows them).'); return; }
  try { await planRollout(); } catch (e) { toast('error', `Planning: ${e.message}`); return; }
  await act(`Roll ${body.version} out in waves ${body.waves}, pausing after more than ${body.max_failures} failure(s)? A running or paused rollout is superseded.`, 'Start rollout', '/api/v1/fleet/rollouts', body);
});
$('#logs-search').addEventListener('submit', async ev => {
  ev.preventDefault();
  try { await searchLogs(); } catch (e) { toast('failed', `Searching the logs: ${e.message}`); }
});
const post = path => body => api(path, { method: 'POST', body });
bindAuthForm($('#setup'), post('/api/v1/admin/setup'), ['code', 'user', 'password'], '#setup-error', enter);
bindAuthForm($('#signin'), post('/api/v1/admin/login'), ['user', 'password', 'code'], '#signin-error', enter);
$('#signout').addEventListener('click', async () => {
  let out = null;
  try { out = await api('/api/v1/admin/logout', { method: 'POST' }); } catch { /* signed out anyway */ }
  // Signed in through the company's provider: sign out there too.
  if (out && out.logout) { location.assign(out.logout); return; }
  signedOut();
});
boot();
