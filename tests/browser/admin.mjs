// The admin UI in Debian's Chromium, headless, driven by playwright-core. Run by
// `cargo test --test plant admin::the_admin_ui_in_chromium`, which starts a plant with its
// stack, enrolled with a hub, and passes where things are through the environment:
// PLANTD_URL, SETUP_CODE, SHOTS (screenshot folder), PLANTD_PID, PG_CONTAINER, REDIS_CONTAINER,
// PLANTD_BIN, PLANTD_DATA_DIR, PLANTD_CONFIG.
// Every step says what it checks; the first failure ends the run with a non-zero exit.

import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { drive, env, open, step } from './lib.mjs';

const URL = env('PLANTD_URL');
const SHOTS = env('SHOTS');
const ADMIN = { user: 'ana', password: 'correct horse battery' };
const VIEWER = { user: 'vic', password: 'viewer pass 12' };

/* The TOTP code of a base32 secret, `ahead` steps of 30 s from now (RFC 6238, SHA-1, 6 digits). */
function totp(secret, ahead) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000 / 30) + ahead));
  const mac = createHmac('sha1', key).update(counter).digest();
  const at = mac[mac.length - 1] & 15;
  return String((mac.readUInt32BE(at) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

const docker = (...args) => execFileSync('docker', args, { encoding: 'utf8' }).trim();
const startedAt = (container) => docker('inspect', '-f', '{{.State.StartedAt}}', container);

await drive({ url: URL, shots: SHOTS, height: 768, failure: 'failure' }, async (page) => {
  const shot = (name) => page.screenshot({ path: `${SHOTS}/${name}.png` });
  const go = async (name) => {
    await page.click(`a[href="#/${name}"]`);
    await page.locator(`#page-${name}`).waitFor({ state: 'visible' });
  };
  const confirm = async () => {
    await page.locator('dialog#confirm').waitFor({ state: 'visible' });
    await page.click('#confirm-ok');
  };
  const toast = async (outcome, text) => {
    const t = page.locator(`#toast[data-outcome="${outcome}"]`);
    try {
      await t.waitFor({ state: 'visible', timeout: 60_000 });
    } catch (e) {
      throw new Error(`no ${outcome} toast; the toast is ${await page.locator('#toast').evaluate((x) => x.outerHTML)}`);
    }
    if (text) await page.waitForFunction(([s]) => document.querySelector('#toast').textContent.includes(s), [text]);
    return t.textContent();
  };
  const verdict = (v, timeout) => page.locator(`#verdict[data-verdict="${v}"]`).waitFor({ timeout });

  step('first run: the setup form, a wrong setup code, then the first admin');
  await open(page, URL + '/');
  await page.locator('form#setup').waitFor();
  await page.fill('form#setup input[name=code]', 'AAAA-AAAA');
  await page.fill('form#setup input[name=user]', ADMIN.user);
  await page.fill('form#setup input[name=password]', ADMIN.password);
  await page.click('form#setup [type=submit]');
  await page.waitForFunction(() => /setup code/i.test(document.querySelector('#setup-error')?.textContent || ''));
  await page.fill('form#setup input[name=code]', env('SETUP_CODE'));
  await page.click('form#setup [type=submit]');
  await page.waitForFunction(() => document.querySelector('#whoami')?.textContent.includes('ana (admin)'));

  step('overview: all good once the link is online and every service healthy');
  await verdict('ok', 90_000);
  // Every verdict the page shows is recorded: PostgreSQL may be back within seconds.
  await page.evaluate(() => {
    window.__noReload = true;
    window.__verdicts = [];
    const v = document.querySelector('#verdict');
    // The observer runs after the whole render: the reasons are those of the same poll.
    new MutationObserver(() => window.__verdicts.push(`${v.dataset.verdict}: ${document.querySelector('#reasons').textContent}`))
      .observe(v, { attributes: true });
  });
  await shot('overview');

  step('stop PostgreSQL by hand: the overview turns to "action needed", then back, without a reload');
  // plantd starts it again within a second or two, which a page polling every 2 s can miss on a
  // busy machine; so the admin keeps stopping it for 8 s (plantd backs off 1, 2, 4 s between its
  // restarts, under the breaker's 5), and PostgreSQL is down most of that time.
  const until = Date.now() + 8_000;
  while (Date.now() < until) {
    docker('stop', '-t', '1', env('PG_CONTAINER'));
    await page.waitForTimeout(250);
  }
  await page.waitForFunction(
    () => window.__verdicts.some((v) => v.startsWith('action_needed:') && v.includes('postgres')),
    null,
    { timeout: 30_000 },
  );
  await verdict('ok', 180_000);
  console.log(`  verdicts shown:\n    ${(await page.evaluate(() => window.__verdicts)).join('\n    ')}`);
  if (!(await page.evaluate(() => window.__noReload))) throw new Error('the page reloaded');

  step('services: restart Redis from its row, confirmed; Docker shows a new start');
  await go('services');
  await page.locator('tr[data-service="redis"] button[data-action="reset"]').waitFor();
  if (await page.isEnabled('tr[data-service="redis"] button[data-action="reset"]')) throw new Error('"Reset breaker" is offered while the breaker is closed');
  const redisBefore = startedAt(env('REDIS_CONTAINER'));
  await page.click('tr[data-service="redis"] button[data-action="restart"]');
  await confirm();
  await toast('ok');
  const redisAfter = startedAt(env('REDIS_CONTAINER'));
  if (redisAfter === redisBefore) throw new Error(`redis was not restarted (started ${redisBefore})`);
  await page.click('tr[data-service="odoo"] button[data-action="logs"]');
  await page.waitForFunction(() => document.querySelector('pre#logs').dataset.service === 'odoo' && !/Could not/.test(document.querySelector('pre#logs').textContent));
  await page.locator('tr[data-service="redis"] td.health', { hasText: 'healthy' }).waitFor({ timeout: 60_000 });
  await shot('services');

  step('logs: follow Odoo\'s log, a new line shows within 2 s; search it; hide probes; plantd\'s own log; download');
  await page.check('#logs-form input[name=follow]');
  await page.uncheck('#logs-form input[name=hide_probes]');
  const marker = `plantd-ui-test-${Date.now()}`;
  await page.waitForTimeout(1500);
  const t0 = Date.now();
  // Written to the log as Odoo's own process (its user may write to its standard output).
  docker('exec', env('ODOO_CONTAINER'), 'sh', '-c', `echo ${marker} > /proc/1/fd/1`);
  await page.waitForFunction((m) => document.querySelector('#logs').textContent.includes(m), marker, { timeout: 10_000 });
  const took = Date.now() - t0;
  console.log(`  a followed line showed after ${took} ms`);
  if (took > 2000) throw new Error(`a followed line took ${took} ms to show`);
  await page.fill('#logs-form input[name=q]', marker);
  await page.click('#logs-form [type=submit]');
  await page.waitForFunction((m) => document.querySelector('#logs').textContent.trim() === m, marker);
  await page.fill('#logs-form input[name=q]', '');
  await page.check('#logs-form input[name=hide_probes]');
  await page.waitForFunction(() => !document.querySelector('#logs').textContent.includes('/web/health'), null, { timeout: 10_000 });
  await page.selectOption('#logs-form select[name=service]', 'plantd');
  await page.waitForFunction(() => document.querySelector('#logs').dataset.service === 'plantd' && /WARN|INFO|ERROR/.test(document.querySelector('#logs').textContent));
  const logFile = await page.evaluate(async () => {
    const r = await fetch(document.querySelector('#logs-download').href);
    return { status: r.status, kind: r.headers.get('content-disposition'), text: await r.text() };
  });
  if (logFile.status !== 200 || !/attachment; filename=".*-plantd-.*\.log"/.test(logFile.kind) || !logFile.text.length) throw new Error(`download: ${JSON.stringify(logFile).slice(0, 300)}`);
  await page.uncheck('#logs-form input[name=follow]');

  step('failover: island with a reason, then rejoin; the link follows');
  await go('failover');
  await page.locator('#link-state', { hasText: 'online' }).waitFor({ timeout: 60_000 });
  // Only what the state allows: Island while joined, Rejoin while islanded.
  await page.locator('button#rejoin').waitFor({ state: 'hidden' });
  await page.fill('input#island-reason', 'planned WAN work by the carrier');
  await page.click('button#island');
  await confirm();
  await toast('ok');
  await page.locator('#link-state', { hasText: 'islanded' }).waitFor({ timeout: 30_000 });
  await page.locator('button#island').waitFor({ state: 'hidden' });
  await page.locator('button#rejoin').waitFor({ state: 'visible' });
  await verdict('degraded', 30_000);
  await shot('failover');
  // A scanner goes on working while the plant is islanded: 300 transactions wait in the journal.
  for (let batch = 0; batch < 15; batch++) {
    const items = Array.from({ length: 20 }, (_, i) => ({
      key: `ui-test-${batch}-${i}`, kind: 'scan', payload: { item: 'BOLT-M8', qty: 1 + i },
    }));
    const r = await page.context().request.post(`${URL}/api/v1/transactions`, {
      headers: { Authorization: `Bearer ${env('DEVICE_TOKEN')}` }, data: items,
    });
    if (r.status() !== 201) throw new Error(`posting transactions: ${r.status()} ${await r.text()}`);
    await page.waitForTimeout(700);
  }
  await page.waitForFunction(() => document.querySelector('#reasons').textContent.includes('300 transactions wait in the journal'), null, { timeout: 30_000 });
  // The journal's history is sampled every 10 s: wait for a sample of the backlog before rejoining.
  for (let waited = 0; ; waited++) {
    const depths = await page.evaluate(async () => (await (await fetch('/api/v1/admin/journal')).json()).history.map((p) => p.depth));
    if (depths.includes(300)) break;
    if (waited === 30) throw new Error(`no sample of the backlog in 30 s: ${depths}`);
    await page.waitForTimeout(1000);
  }
  await page.fill('input#island-reason', 'carrier work done');
  await page.click('button#rejoin');
  await confirm();
  await toast('ok');
  await page.locator('#link-state', { hasText: 'online' }).waitFor({ timeout: 60_000 });
  await page.locator('button#island').waitFor({ state: 'visible' });
  await page.locator('table#link-history', { hasText: 'islanded' }).waitFor();

  step('backups: run one, verify it, restore it with the typed confirmation');
  await go('backups');
  await page.click('button#backup-run');
  await confirm();
  await toast('ok');
  // While it runs, its row says its phase (a small database may be done before a poll).
  const runningText = await page.locator('tr[data-job][data-state="running"] td.message').first().textContent({ timeout: 3_000 }).catch(() => null);
  if (runningText) console.log(`  while running: ${runningText}`);
  if (runningText && !/starting|checking|dumping|packing|writing|test-restoring/.test(runningText)) throw new Error(`a running backup says ${runningText}`);
  await page.locator('tr[data-job][data-state="succeeded"]').first().waitFor({ timeout: 180_000 });
  const phasesOf = async (kind) => page.evaluate(async (k) => {
    const jobs = (await (await fetch('/api/v1/admin/backups')).json()).jobs;
    return jobs.find((j) => j.kind === k).progress.done.map((d) => d.phase);
  }, kind);
  const ran = await phasesOf('run');
  for (const want of ['checking free space', 'dumping the database', 'packing the filestore', 'writing the archive', 'test-restoring into a scratch database and counting']) {
    if (!ran.includes(want)) throw new Error(`the backup's phases ${JSON.stringify(ran)} lack ${want}`);
  }
  const row = page.locator('tr[data-backup]').first();
  await row.waitFor();
  const id = await row.getAttribute('data-backup');
  // "Run backup now" verifies what it took, as the schedule does.
  await page.locator(`tr[data-backup="${id}"] td.verified`, { hasText: 'yes' }).waitFor({ timeout: 10_000 });
  await page.click(`tr[data-backup="${id}"] button[data-action="verify"]`);
  await confirm();
  await toast('ok');
  // The row said verified already (the run verified it): wait for this verify's job itself,
  // or the restore would be refused while it runs.
  await page.waitForFunction(
    () => [...document.querySelectorAll('tr[data-job]')].some((r) => r.querySelector('td.kind')?.textContent === 'verify' && r.dataset.state === 'succeeded'),
    null,
    { timeout: 180_000 },
  );
  await page.locator(`tr[data-backup="${id}"] td.verified`, { hasText: 'yes' }).waitFor({ timeout: 10_000 });
  await page.click(`tr[data-backup="${id}"] button[data-action="restore"]`);
  await page.locator('dialog#confirm').waitFor({ state: 'visible' });
  if (await page.isEnabled('#confirm-ok')) throw new Error('restore can be confirmed without typing the id');
  await page.fill('#confirm-input', 'not the id');
  if (await page.isEnabled('#confirm-ok')) throw new Error('restore can be confirmed with the wrong id');
  await page.fill('#confirm-input', id);
  await page.click('#confirm-ok');
  await toast('ok');
  await page.waitForFunction(
    () => [...document.querySelectorAll('tr[data-job]')].some((r) => r.querySelector('td.kind')?.textContent === 'restore' && r.dataset.state === 'succeeded'),
    null,
    { timeout: 300_000 },
  );
  const restored = await phasesOf('restore');
  if (!restored.includes('safety backup of the current data: dumping the database')) throw new Error(`the restore's phases do not name its safety backup: ${JSON.stringify(restored)}`);
  const download = page.locator(`tr[data-backup="${id}"] a[data-action="download"]`);
  const href = await download.getAttribute('href');
  if (!href.endsWith(`/backups/${id}/download`)) throw new Error(`no download link: ${href}`);
  const got = await page.evaluate(async (url) => {
    const r = await fetch(url);
    return { status: r.status, bytes: (await r.arrayBuffer()).byteLength, kind: r.headers.get('content-disposition') };
  }, href);
  if (got.status !== 200 || got.bytes < 1000 || !got.kind.includes(`${id}.tar.zst`)) throw new Error(`download: ${JSON.stringify(got)}`);
  await shot('backups');

  step('journal and sync: the rates, and the depth chart with the backlog the island left');
  await go('journal');
  await page.locator('svg#depth-chart polyline').waitFor({ state: 'attached', timeout: 30_000 });
  // The chart's line rises off its baseline where the island held the backlog.
  const heights = await page.evaluate(() => {
    const ys = document.querySelector('svg#depth-chart polyline').getAttribute('points').trim().split(/\s+/).map((p) => Number(p.split(',')[1]));
    return [Math.min(...ys), Math.max(...ys)];
  });
  if (!(heights[0] < heights[1])) throw new Error(`the depth chart is flat: y from ${heights[0]} to ${heights[1]}`);
  const label = await page.locator('svg#depth-chart').getAttribute('aria-label');
  if (!label.includes('between 0 and 300')) throw new Error(`the chart does not show the backlog: ${label}`);
  await page.waitForFunction(() => parseFloat(document.querySelector('#ingest-rate').textContent) > 0, null, { timeout: 30_000 });
  await shot('journal');

  step('audit: the restart, island, rejoin, backup run, verify and restore, by ana');
  await go('audit');
  for (const action of ['service.restart', 'island', 'rejoin', 'backup.run', 'backup.verify', 'backup.restore', 'backup.download']) {
    await page.locator('table#audit tr', { has: page.locator('td.action', { hasText: action }) })
      .filter({ has: page.locator('td.outcome', { hasText: 'ok' }) })
      .filter({ has: page.locator('td.user', { hasText: 'ana' }) })
      .first()
      .waitFor({ timeout: 30_000 });
  }
  await page.locator('table#audit td.detail, table#audit tr', { hasText: 'planned WAN work by the carrier' }).first().waitFor();
  await shot('audit');

  step('devices: the scanner, when it was last seen, and the refusal it just got');
  const bad = await page.context().request.post(`${URL}/api/v1/transactions`, {
    headers: { Authorization: `Bearer ${env('DEVICE_TOKEN')}` }, data: { kind: 'scan', payload: {} },
  });
  if (bad.status() !== 422) throw new Error(`a transaction without a key answered ${bad.status()}`);
  await go('devices');
  const scannerRow = page.locator('tr[data-device="scanner-1"]');
  await scannerRow.locator('td.accepted', { hasText: '300' }).waitFor({ timeout: 10_000 });
  await scannerRow.locator('td.refused', { hasText: '1' }).waitFor();
  await scannerRow.locator('td.latest', { hasText: '422' }).waitFor();
  await page.locator('table#refusals tr', { hasText: 'scanner-1' }).filter({ hasText: '422' }).first().waitFor();
  await shot('devices');

  step('users: add one, set her password, make her an admin, sign her out everywhere, remove her');
  await go('users');
  await page.locator('tr[data-user="ana"]').waitFor();
  await page.fill('#user-add input[name=user]', 'ola');
  await page.selectOption('#user-add select[name=role]', 'viewer');
  await page.fill('#user-add input[name=password]', 'ola password 1');
  await page.click('#user-add [type=submit]');
  await toast('ok', 'added ola');
  await page.locator('tr[data-user="ola"] td.role', { hasText: 'viewer' }).waitFor();
  // Ola works in a browser of her own.
  const other = await page.context().browser().newContext({ ignoreHTTPSErrors: true });
  const olaSignIn = async (password) => (await other.request.post(`${URL}/api/v1/admin/login`, { data: { user: 'ola', password } })).status();
  const olaReads = async () => (await other.request.get(`${URL}/api/v1/admin/overview`)).status();
  const olaSignedOut = async (why) => {
    const status = await olaReads();
    if (status !== 401) throw new Error(`ola still reads (${status}) after ${why}`);
  };
  if (await olaSignIn('ola password 1') !== 200) throw new Error('ola cannot sign in');
  await page.click('tr[data-user="ola"] button[data-action="password"]');
  await page.locator('dialog#confirm').waitFor({ state: 'visible' });
  await page.fill('#confirm-secret', 'short');
  if (await page.isEnabled('#confirm-ok')) throw new Error('a password under 10 characters can be confirmed');
  await page.fill('#confirm-secret', 'ola new password');
  await page.click('#confirm-ok');
  await toast('ok', 'new password');
  await olaSignedOut('her password was set');
  if (await olaSignIn('ola password 1') !== 401) throw new Error('the old password still works');
  if (await olaSignIn('ola new password') !== 200) throw new Error('the new password does not work');
  // A viewer becomes an operator: she may close a breaker but not take a backup or
  // download one, and the buttons she sees follow.
  await page.locator('tr[data-user="ola"] button[data-action="role0"]', { hasText: 'Make operator' }).waitFor();
  await page.click('tr[data-user="ola"] button[data-action="role0"]');
  await confirm();
  await toast('ok', 'is now operator');
  await page.locator('tr[data-user="ola"] td.role', { hasText: 'operator' }).waitFor();
  await olaSignedOut('she was made an operator');
  if (await olaSignIn('ola new password') !== 200) throw new Error('ola cannot sign in as an operator');
  const olaPost = async (path) => {
    const s = await (await other.request.get(`${URL}/api/v1/admin/session`)).json();
    if (s.role !== 'operator') throw new Error(`ola's session: ${JSON.stringify(s)}`);
    const r = await other.request.post(`${URL}/api/v1/admin${path}`, { data: {}, headers: { 'X-CSRF-Token': s.csrf } });
    return [r.status(), await r.text()];
  };
  const [resetStatus, resetBody] = await olaPost('/services/redis/reset');
  if (resetStatus !== 200) throw new Error(`an operator's breaker reset answered ${resetStatus}: ${resetBody}`);
  const [backupStatus, backupBody] = await olaPost('/backups/run');
  if (backupStatus !== 403 || !backupBody.includes('operator')) throw new Error(`an operator's backup answered ${backupStatus}: ${backupBody}`);
  const olaDownload = (await other.request.get(`${URL}/api/v1/admin/backups/${encodeURIComponent(id)}/download`)).status();
  if (olaDownload !== 403) throw new Error(`an operator's backup download answered ${olaDownload}`);
  await page.locator('tr[data-user="ola"] button[data-action="role0"]', { hasText: 'Make admin' }).waitFor();
  await page.click('tr[data-user="ola"] button[data-action="role0"]');
  await confirm();
  await toast('ok', 'is now admin');
  await page.locator('tr[data-user="ola"] td.role', { hasText: 'admin' }).waitFor();
  await olaSignedOut('her role changed');
  if (await olaSignIn('ola new password') !== 200) throw new Error('ola cannot sign in as an admin');
  await page.locator('tr[data-user="ola"] td.sessions', { hasText: '1' }).waitFor({ timeout: 10_000 });
  await page.click('tr[data-user="ola"] button[data-action="sign-out"]');
  await confirm();
  await toast('ok', 'signed ola out');
  await olaSignedOut('she was signed out everywhere');
  await page.click('tr[data-user="ola"] button[data-action="remove"]');
  await page.locator('dialog#confirm').waitFor({ state: 'visible' });
  if (await page.isEnabled('#confirm-ok')) throw new Error('a removal can be confirmed without typing the name');
  await page.fill('#confirm-input', 'ola');
  await page.click('#confirm-ok');
  await toast('ok', 'removed ola');
  await page.locator('tr[data-user="ola"]').waitFor({ state: 'detached' });
  if (await olaSignIn('ola new password') !== 401) throw new Error('a removed user signs in');
  await other.close();
  // The last admin stays: removing herself is refused, and she is still signed in.
  await page.click('tr[data-user="ana"] button[data-action="remove"]');
  await page.fill('#confirm-input', 'ana');
  await page.click('#confirm-ok');
  await toast('error', 'last admin');
  await page.locator('tr[data-user="ana"]').waitFor();
  await shot('users');
  await page.locator('table#audit, a[href="#/audit"]').first().waitFor();
  await go('audit');
  for (const action of ['user.add', 'user.password', 'user.role', 'user.sign_out', 'user.remove']) {
    await page.locator('table#audit tr', { has: page.locator('td.action', { hasText: action }) }).first().waitFor({ timeout: 30_000 });
  }

  step('second factor: set it up from the QR code plantd draws, then sign in with the app\'s code');
  await go('users');
  await page.click('button#totp-start');
  const qr = page.locator('img#totp-qr');
  await qr.waitFor();
  const drawn = await qr.evaluate((img) => img.complete && img.naturalWidth > 0 && img.src.startsWith('data:image/svg+xml'));
  if (!drawn) throw new Error('the QR code is not drawn');
  const secret = (await page.locator('#totp-secret').textContent()).trim();
  await page.fill('#totp-code', totp(secret, 0));
  await page.click('form#totp-confirm [type=submit]');
  const recovery = (await page.locator('pre#totp-recovery').textContent()).trim().split('\n');
  if (recovery.length !== 10) throw new Error(`recovery codes: ${recovery}`);
  await page.locator('tr[data-user="ana"] td.totp', { hasText: 'on' }).waitFor({ timeout: 20_000 });
  await page.click('button#signout');
  await page.locator('form#signin').waitFor();
  await page.fill('form#signin input[name=user]', ADMIN.user);
  await page.fill('form#signin input[name=password]', ADMIN.password);
  await page.click('form#signin [type=submit]');
  await page.locator('form#signin .signin-code').waitFor();
  // The code just used is used up: the app's next one (within the allowed skew).
  await page.fill('form#signin input[name=code]', totp(secret, 1));
  await page.click('form#signin [type=submit]');
  await page.waitForFunction(() => document.querySelector('#whoami')?.textContent.includes('ana (admin)'));

  step('a phone: every page at 390 x 844, every control inside the viewport');
  await page.setViewportSize({ width: 390, height: 844 });
  for (const name of ['overview', 'services', 'journal', 'apply', 'backups', 'failover', 'audit', 'devices', 'users']) {
    await go(name);
    // One poll drawn: the page's tables have their rows.
    await page.waitForFunction((n) => {
      const rows = document.querySelectorAll(`#page-${n} tbody tr`);
      return n === 'apply' || n === 'journal' || rows.length > 0;
    }, name);
    await page.waitForTimeout(300);
    const outside = await page.evaluate(() => {
      const W = document.documentElement.clientWidth;
      const bad = [];
      for (const e of document.querySelectorAll('button, a, input, select, summary')) {
        if (!e.getClientRects().length) continue; // not shown
        const r = e.getBoundingClientRect();
        if (r.left < -1 || r.right > W + 1) bad.push(`${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''} "${e.textContent.trim().slice(0, 30)}" at ${Math.round(r.left)}..${Math.round(r.right)}`);
      }
      if (document.documentElement.scrollWidth > W + 1) bad.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} px > ${W} px`);
      const v = document.querySelector('#verdict').getBoundingClientRect();
      const tabs = document.querySelector('nav.tabs').getBoundingClientRect();
      if (v.bottom > tabs.top + 1 && v.top < tabs.bottom) bad.push('the verdict overlaps the tabs');
      return bad;
    });
    if (outside.length) throw new Error(`${name} at 390 px: ${outside.join('; ')}`);
    await page.screenshot({ path: `${SHOTS}/phone-${name}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1366, height: 768 });

  step('dark mode follows the system');
  await go('overview');
  const luminance = async () => page.evaluate(() => {
    const [r, g, b] = getComputedStyle(document.body).backgroundColor.match(/\d+/g).map(Number);
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
  });
  if (await luminance() < 0.5) throw new Error('the light page is dark');
  await page.emulateMedia({ colorScheme: 'dark' });
  if (await luminance() > 0.2) throw new Error(`dark mode is not dark: luminance ${await luminance()}`);
  await shot('dark-overview');
  await page.emulateMedia({ colorScheme: 'light' });

  step('the daemon stops answering: the page says so, then recovers');
  await go('overview');
  process.kill(Number(env('PLANTD_PID')), 'SIGSTOP');
  try {
    await page.locator('#stale-banner').waitFor({ state: 'visible', timeout: 20_000 });
    await shot('overview-lost-contact');
  } finally {
    process.kill(Number(env('PLANTD_PID')), 'SIGCONT');
  }
  await page.locator('#stale-banner').waitFor({ state: 'hidden', timeout: 20_000 });

  step('sign out; a viewer sees no action buttons and the API refuses them');
  await page.click('button#signout');
  await page.locator('form#signin').waitFor();
  execFileSync(env('PLANTD_BIN'), ['admin', 'add', VIEWER.user, '--role', 'viewer', '--config', env('PLANTD_CONFIG'), '--data-dir', env('PLANTD_DATA_DIR')], { input: VIEWER.password + '\n' });
  await page.fill('form#signin input[name=user]', VIEWER.user);
  await page.fill('form#signin input[name=password]', VIEWER.password);
  await page.click('form#signin [type=submit]');
  await page.waitForFunction(() => document.querySelector('#whoami')?.textContent.includes('vic (viewer)'));
  await go('services');
  await page.locator('tr[data-service="redis"]').waitFor();
  for (const sel of ['button[data-action="restart"]', 'button[data-action="reset"]']) {
    if (await page.locator(sel).count()) throw new Error(`a viewer sees ${sel}`);
  }
  await go('backups');
  await page.locator('tr[data-backup]').first().waitFor();
  for (const sel of ['button#backup-run', 'button[data-action="restore"]', 'button[data-action="verify"]', 'a[data-action="download"]']) {
    if (await page.locator(sel).count()) throw new Error(`a viewer sees ${sel}`);
  }
  await go('failover');
  for (const sel of ['button#island', 'button#rejoin']) {
    if (await page.locator(sel).count()) throw new Error(`a viewer sees ${sel}`);
  }
  const refused = await page.evaluate(async () => {
    const s = await (await fetch('/api/v1/admin/session')).json();
    const r = await fetch('/api/v1/admin/services/redis/restart', {
      method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf }, body: '{}',
    });
    return r.status;
  });
  if (refused !== 403) throw new Error(`a viewer's restart answered ${refused}`);

  step('sign out; a wrong password, then five lock the name');
  await page.click('button#signout');
  await page.locator('form#signin').waitFor();
  for (let i = 1; i <= 5; i++) {
    await page.fill('form#signin input[name=user]', ADMIN.user);
    await page.fill('form#signin input[name=password]', 'not the password');
    await page.click('form#signin [type=submit]');
    const want = i < 5 ? 'wrong user name or password' : 'locked';
    await page.waitForFunction(([w]) => (document.querySelector('#signin-error')?.textContent || '').includes(w), [want]);
    if (i === 1) await shot('signin');
    await page.evaluate(() => { document.querySelector('#signin-error').textContent = ''; });
  }
  await page.fill('form#signin input[name=password]', ADMIN.password);
  await page.click('form#signin [type=submit]');
  await page.waitForFunction(() => (document.querySelector('#signin-error')?.textContent || '').includes('locked'));
});
