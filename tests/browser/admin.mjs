// The admin UI in Debian's Chromium, headless, driven by playwright-core. Run by
// `cargo test --test plant admin::the_admin_ui_in_chromium`, which starts a plant with its
// stack, enrolled with a hub, and passes where things are through the environment:
// PLANTD_URL, SETUP_CODE, SHOTS (screenshot folder), PLANTD_PID, PG_CONTAINER, REDIS_CONTAINER,
// PLANTD_BIN, PLANTD_DATA_DIR, PLANTD_CONFIG.
// Every step says what it checks; the first failure ends the run with a non-zero exit.

import { execFileSync } from 'node:child_process';
import { drive, env, open, step } from './lib.mjs';

const URL = env('PLANTD_URL');
const SHOTS = env('SHOTS');
const ADMIN = { user: 'ana', password: 'correct horse battery' };
const VIEWER = { user: 'vic', password: 'viewer pass 12' };

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
  const redisBefore = startedAt(env('REDIS_CONTAINER'));
  await page.click('tr[data-service="redis"] button[data-action="restart"]');
  await confirm();
  await toast('ok');
  const redisAfter = startedAt(env('REDIS_CONTAINER'));
  if (redisAfter === redisBefore) throw new Error(`redis was not restarted (started ${redisBefore})`);
  await page.click('tr[data-service="odoo"] button[data-action="logs"]');
  await page.waitForFunction(() => (document.querySelector('pre#logs')?.textContent || '').length > 0);
  await page.locator('tr[data-service="redis"] td.health', { hasText: 'healthy' }).waitFor({ timeout: 60_000 });
  await shot('services');

  step('failover: island with a reason, then rejoin; the link follows');
  await go('failover');
  await page.locator('#link-state', { hasText: 'online' }).waitFor({ timeout: 60_000 });
  await page.fill('input#island-reason', 'planned WAN work by the carrier');
  await page.click('button#island');
  await confirm();
  await toast('ok');
  await page.locator('#link-state', { hasText: 'islanded' }).waitFor({ timeout: 30_000 });
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
  await page.locator('table#link-history', { hasText: 'islanded' }).waitFor();

  step('backups: run one, verify it, restore it with the typed confirmation');
  await go('backups');
  await page.click('button#backup-run');
  await confirm();
  await toast('ok');
  await page.locator('tr[data-job][data-state="succeeded"]').first().waitFor({ timeout: 180_000 });
  const row = page.locator('tr[data-backup]').first();
  await row.waitFor();
  const id = await row.getAttribute('data-backup');
  await page.click(`tr[data-backup="${id}"] button[data-action="verify"]`);
  await confirm();
  await toast('ok');
  await page.locator(`tr[data-backup="${id}"] td.verified`, { hasText: 'yes' }).waitFor({ timeout: 180_000 });
  await page.click(`tr[data-backup="${id}"] button[data-action="restore"]`);
  await page.locator('dialog#confirm').waitFor({ state: 'visible' });
  if (await page.isEnabled('#confirm-ok')) throw new Error('restore can be confirmed without typing the id');
  await page.fill('#confirm-input', 'not the id');
  if (await page.isEnabled('#confirm-ok')) throw new Error('restore can be confirmed with the wrong id');
  await page.fill('#confirm-input', id);
  await page.click('#confirm-ok');
  await toast('ok');
  await page.waitForFunction(
    () => [...document.querySelectorAll('tr[data-job]')].some((r) => r.textContent.includes('restore') && r.dataset.state === 'succeeded'),
    null,
    { timeout: 300_000 },
  );
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
  for (const sel of ['button#backup-run', 'button[data-action="restore"]', 'button[data-action="verify"]']) {
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
