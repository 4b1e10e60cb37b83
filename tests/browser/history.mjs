// The Journal & sync page's history in Debian's Chromium, headless (playwright-core), after a
// plantd restart: the depth chart has its line and a marker for each start, every chart is
// drawn, the range switch gives 24 h and 7 d, pointing at a chart shows the values at that
// time, and dark mode keeps it readable. Run by `cargo test --test plant history::`, which
// passes PLANTD_URL, SHOTS, ADMIN_USER, ADMIN_PASSWORD and DEPTH (the backlog it left).

import { drive, env, open, signIn, step } from './lib.mjs';

const URL = env('PLANTD_URL');
const SHOTS = env('SHOTS');
const DEPTH = Number(env('DEPTH'));

const attr = (page, sel, name) => page.locator(sel).first().getAttribute(name);

await drive({ url: URL, shots: SHOTS, height: 1500, failure: 'history-failure' }, async (page) => {
  step('sign in and open Journal & sync');
  await open(page, URL + '/#/journal');
  await signIn(page, env('ADMIN_USER'), env('ADMIN_PASSWORD'));
  await page.locator('#page-journal').waitFor({ state: 'visible' });

  step('the depth chart: one line, the backlog from before the restart, a marker per start');
  await page.waitForFunction(
    () => document.querySelectorAll('svg#depth-chart polyline').length === 1
      && document.querySelectorAll('svg#depth-chart g.marker[data-kind="start"]').length === 2,
    null,
    { timeout: 30_000 },
  );
  const label = await attr(page, 'svg#depth-chart', 'aria-label');
  const m = label.match(/^Journal depth from \d\d:\d\d to \d\d:\d\d: between (\d+) and (\d+), now (\d+)$/);
  if (!m || Number(m[2]) < DEPTH) throw new Error(`the depth chart does not show the backlog of ${DEPTH}: ${label}`);
  const title = await page.locator('svg#depth-chart g.marker[data-kind="start"] title').first().textContent();
  if (!/UTC[+−]\d\d:\d\d: plantd .* started$/.test(title)) throw new Error(`a start marker's title: ${title}`);
  const axis = await page.locator('svg#depth-chart text.label').allTextContents();
  if (!axis.some((t) => /\d\d:\d\d UTC[+−]\d\d:\d\d$/.test(t))) throw new Error(`the time axis does not say its zone: ${axis}`);

  step('every chart is drawn: lag, rates (two lines), disk, CPU, memory; no apply backlog (apply is off)');
  for (const [id, lines] of [['lag-chart', 1], ['rate-chart', 2], ['disk-chart', 1], ['cpu-chart', 1], ['memory-chart', 1]]) {
    await page.waitForFunction(([s, n]) => document.querySelectorAll(`svg#${s} polyline`).length === n, [id, lines], { timeout: 15_000 })
      .catch(async () => { throw new Error(`${id}: ${await page.locator(`svg#${id}`).innerHTML()}`); });
  }
  if (await page.locator('#apply-backlog-box').isVisible()) throw new Error('the apply backlog chart shows while the apply is off');
  await page.screenshot({ path: `${SHOTS}/history-1h.png`, fullPage: true });

  step('pointing at the depth chart shows a rule and the values at that time');
  const box = await page.locator('svg#depth-chart').boundingBox();
  await page.mouse.move(box.x + box.width - 20, box.y + box.height / 2);
  await page.locator('#history-readout').waitFor({ state: 'visible', timeout: 5_000 });
  const readout = await page.locator('#history-readout').innerText();
  if (!/\d\d:\d\d:\d\d UTC[+−]\d\d:\d\d/.test(readout) || !/depth: \d+/.test(readout) || !/memory: [\d.]+ [KMG]iB/.test(readout)) {
    throw new Error(`the hover readout: ${readout}`);
  }
  const rule = await attr(page, 'svg#depth-chart .hover-rule', 'visibility');
  if (rule !== 'visible') throw new Error('no hover rule on the depth chart');
  await page.screenshot({ path: `${SHOTS}/history-hover.png`, fullPage: true });
  await page.mouse.move(0, 0);
  await page.locator('#history-readout').waitFor({ state: 'hidden', timeout: 5_000 });

  for (const [range, title] of [['24h', 'last 24 hours'], ['7d', 'last 7 days']]) {
    step(`${range}: the aggregates, with the starts`);
    await page.click(`#history-range button[data-range="${range}"]`);
    await page.waitForFunction(([r, t]) => document.querySelector(`#history-range button[data-range="${r}"]`).getAttribute('aria-pressed') === 'true'
      && document.querySelector('#history-title').textContent.includes(t), [range, title]);
    await page.waitForFunction(
      () => document.querySelectorAll('svg#depth-chart polyline').length === 1
        && document.querySelectorAll('svg#depth-chart g.marker[data-kind="start"]').length === 2,
      null,
      { timeout: 15_000 },
    );
    const l = await attr(page, 'svg#depth-chart', 'aria-label');
    if (!/between [\d.]+ and [\d.]+, now [\d.]+$/.test(l)) throw new Error(`${range}: ${l}`);
    await page.mouse.move(box.x + box.width - 20, box.y + box.height / 2);
    await page.locator('#history-readout').waitFor({ state: 'visible', timeout: 5_000 });
    const r = await page.locator('#history-readout').innerText();
    if (!r.includes('average') || !/depth: [\d.]+ \(max \d+\)/.test(r)) throw new Error(`${range}: the hover readout: ${r}`);
    await page.screenshot({ path: `${SHOTS}/history-${range}.png`, fullPage: true });
    await page.mouse.move(0, 0);
  }

  step('dark mode');
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.click('#history-range button[data-range="1h"]');
  await page.waitForFunction(() => document.querySelector('#history-title').textContent.includes('last hour'));
  await page.waitForFunction(() => document.querySelectorAll('svg#depth-chart polyline').length === 1, null, { timeout: 15_000 });
  await page.mouse.move(box.x + box.width - 20, box.y + box.height / 2);
  await page.locator('#history-readout').waitFor({ state: 'visible', timeout: 5_000 });
  await page.screenshot({ path: `${SHOTS}/history-dark.png`, fullPage: true });
});
