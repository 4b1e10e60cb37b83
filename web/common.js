'use strict';
/*
 * What the plant's admin UI (app.js) and the hub's fleet page (fleet.js) share, loaded before
 * either: DOM helpers, the JSON API call with its errors, the sign-in views and forms, and the
 * toast. Classic scripts share one global scope, so these names are the pages' own; neither
 * page declares them again. Server text reaches the DOM only as text nodes.
 */

const $ = sel => document.querySelector(sel);

function setText(target, text) {
  const e = typeof target === 'string' ? $(target) : target;
  const t = text == null ? '—' : String(text);
  if (e && e.textContent !== t) e.textContent = t;
}

/* An element with attributes (class, onclick, true for a bare attribute; null and false are
 * left out) and children (nodes, or text; null is left out). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'onclick') e.addEventListener('click', v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function button(label, action, onclick, cls) {
  return el('button', { type: 'button', 'data-action': action, class: cls, onclick }, label);
}

/* The one row of an empty table (`table`: the element or its selector), across all columns. */
function emptyRow(table, text) {
  const t = typeof table === 'string' ? $(table) : table;
  const cols = t.tHead.rows[0].cells.length;
  return el('tr', { class: 'empty' }, el('td', { colspan: cols }, text));
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  // No answer, or a proxy's: the server itself answered anything else, errors included.
  get unreachable() { return this.status === 0 || this.status === 502 || this.status === 504; }
}

/* A JSON call: the answer's data, or an ApiError with the error body's message. `server` names
 * who answers in messages ("plantd", "the hub"); `csrf` goes with changes; `lost` is added to
 * the message when a change got no answer (it may have run all the same). */
async function request(url, { method = 'GET', body, timeout, csrf, server, lost = '' }) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeout);
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store', signal: ctl.signal };
  if (method !== 'GET') {
    headers['Content-Type'] = 'application/json';
    if (csrf) headers['X-CSRF-Token'] = csrf;
    init.body = JSON.stringify(body || {});
  }
  try {
    const res = await fetch(url, init);
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (!res.ok) {
      const err = (data && data.error) || {};
      throw new ApiError(res.status, err.code || 'http', err.message || `${server} answered HTTP ${res.status}`);
    }
    return data;
  } catch (e) {
    if (e instanceof ApiError) throw e;
    let msg = e.name === 'AbortError' ? `${server} did not answer within ${Math.round(timeout / 1000)} s` : `cannot reach ${server}`;
    if (method !== 'GET') msg += lost;
    throw new ApiError(0, 'network', msg);
  } finally {
    clearTimeout(timer);
  }
}

/* Shows #view-NAME (loading, setup, signin, app) and focuses a form's first field. */
function showView(name) {
  for (const v of ['loading', 'setup', 'signin', 'app']) $(`#view-${v}`).hidden = v !== name;
  const first = name === 'setup' ? '#setup input[name=code]' : name === 'signin' ? '#signin input[name=user]' : null;
  if (first) $(first).focus();
}

/* The sign-in page's word on the company's sign-in (`directory` and `oidc` of GET /session):
 * the provider's button, and whether its users can sign in now or only local users can. Asked
 * again while the page shows. */
let directoryTimer = 0;
function noteDirectory(s) {
  const d = s && s.directory;
  const o = s && s.oidc;
  const box = $('#signin-oidc');
  if (box) {
    box.hidden = !o || o.reachable === false;
    if (o) {
      setText('#signin-oidc-go', `Sign in with ${o.name}`);
      $('#signin-oidc-go').href = o.start;
    }
  }
  const on = $('#signin-oidc-note');
  if (on) {
    on.hidden = !o || o.reachable !== false;
    on.classList.toggle('warn', !!o && o.reachable === false);
    if (o && o.reachable === false) {
      setText(on, `The company sign-in (${o.url}) cannot be reached${o.detail ? `: ${o.detail}` : ''}. Only this server's local users can sign in now; company accounts can once it is back.`);
    }
  }
  const p = $('#signin-directory');
  clearTimeout(directoryTimer);
  if (p) {
    p.hidden = !d;
    if (d) {
      p.classList.toggle('warn', d.reachable === false);
      setText(p, d.reachable === false
        ? `The company directory (${d.url}) cannot be reached${d.detail ? `: ${d.detail}` : ''}. Only this server's local users can sign in now; company accounts can once it is back.`
        : `Sign in with your company account, or with a local user of this server.`);
    }
  }
  if (!d && !o) return;
  const unknown = (d && d.reachable == null) || (o && o.reachable == null);
  directoryTimer = setTimeout(async () => {
    if ($('#view-signin').hidden) return;
    try {
      const again = await request('/api/v1/admin/session', { timeout: 10_000 });
      if (!again.signed_in) noteDirectory(again);
    } catch (_) { directoryTimer = setTimeout(() => noteDirectory(s), 10_000); }
  }, unknown ? 2_000 : 10_000);
}

/* The setup and sign-in forms: `post(body)` sends the fields (the password untrimmed), and the
 * session it answers goes to `enter`; a refusal is shown in `errorSel`. */
function bindAuthForm(form, post, fields, errorSel, enter) {
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const body = {};
    for (const f of fields) body[f] = f === 'password' ? form.elements[f].value : form.elements[f].value.trim();
    const submit = form.querySelector('button[type=submit]');
    if (submit) submit.disabled = true;
    setText(errorSel, '');
    try {
      const s = await post(body);
      form.reset();
      const code = form.querySelector('.signin-code');
      if (code) code.hidden = true;
      enter(s);
    } catch (e) {
      $(errorSel).textContent = e.message;
      // The password was right; the user's second factor is asked for.
      const code = form.querySelector('.signin-code');
      if (code && (e.code === 'totp_required' || e.code === 'bad_totp')) {
        code.hidden = false;
        form.elements.code.value = '';
        form.elements.code.focus();
      }
    } finally {
      if (submit) submit.disabled = false;
    }
  });
}

let toastTimer = 0;
function toast(outcome, message) {
  const t = $('#toast');
  t.setAttribute('data-outcome', outcome);
  t.textContent = message;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, outcome === 'ok' ? 8000 : 20000);
}
