// The admin UI's overview in Debian's Chromium, measured: run by `cargo bench --bench admin_ui`
// (benches/admin_ui.rs),
// which starts the daemon and passes PLANTD_URL, ADMIN_USER, ADMIN_PASSWORD, RUNS, OPEN_S.
// For each run, a new browser context (a cold cache, no cookies) signs in through the API and
// opens the overview; it records
// - first render: navigation start to the first paint that shows the verdict (the page's own
//   data drawn, not just its frame), and to the first contentful paint;
// - transfer: every byte the browser received for the page, headers included;
// - the floor: a fresh context's first paint of a one-line page from memory, no network;
// - where the time goes: when the HTML, app.js and the overview had arrived, when the
//   scripts had run (DOMContentLoaded) and when the overview was asked for.
// Then one page stays open on the overview for OPEN_S seconds, polling as it does, while the
// driver samples the daemon's RSS. Prints one JSON line per run and a summary line.

import { chromium } from 'playwright-core';

const URL = process.env.PLANTD_URL;
const RUNS = Number(process.env.RUNS || 10);
const OPEN_S = Number(process.env.OPEN_S || 60);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});

async function signedIn() {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1366, height: 768 } });
  const r = await context.request.post(`${URL}/api/v1/admin/login`, {
    data: { user: process.env.ADMIN_USER, password: process.env.ADMIN_PASSWORD },
  });
  if (r.status() !== 200) throw new Error(`sign-in: ${r.status()} ${await r.text()}`);
  return context;
}

const results = [];
for (let run = 0; run < RUNS; run++) {
  const context = await signedIn();
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  let bytes = 0;
  let requests = 0;
  cdp.on('Network.loadingFinished', (e) => { bytes += e.encodedDataLength; requests += 1; });
  // The first frame in which the verdict carries the daemon's answer.
  await page.addInitScript(() => {
    window.__verdictAt = null;
    new MutationObserver(() => {
      const v = document.querySelector('#verdict');
      if (window.__verdictAt === null && v && v.dataset.verdict) {
        requestAnimationFrame(() => { window.__verdictAt = performance.now(); });
      }
    }).observe(document, { subtree: true, attributes: true, childList: true });
  });
  await page.goto(`${URL}/#/overview`, { waitUntil: 'load' });
  await page.waitForFunction(() => window.__verdictAt !== null, null, { timeout: 10_000 });
  await page.waitForLoadState('networkidle').catch(() => {});
  const m = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const res = (tail) => performance.getEntriesByType('resource').find((e) => e.name.endsWith(tail));
    return {
      verdict_ms: window.__verdictAt,
      fcp_ms: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null,
      html_ms: nav?.responseEnd,
      js_ms: res('/app.js')?.responseEnd,
      dcl_ms: nav?.domContentLoadedEventEnd,
      overview_asked_ms: res('/api/v1/admin/overview')?.startTime,
      overview_ms: res('/api/v1/admin/overview')?.responseEnd,
    };
  });
  // The floor on this machine: a fresh context's first paint of a one-line page from memory.
  const blank = await browser.newContext();
  const bp = await blank.newPage();
  await bp.goto('data:text/html,<p>plantd</p>');
  await bp.waitForFunction(() => performance.getEntriesByName('first-contentful-paint').length > 0);
  const floor = await bp.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0].startTime);
  await blank.close();
  const ms = (v) => (v == null ? null : Math.round(v));
  results.push({
    run, verdict_ms: ms(m.verdict_ms), fcp_ms: ms(m.fcp_ms), floor_fcp_ms: ms(floor), bytes, requests,
    html_ms: ms(m.html_ms), js_ms: ms(m.js_ms), dcl_ms: ms(m.dcl_ms), overview_asked_ms: ms(m.overview_asked_ms), overview_ms: ms(m.overview_ms),
  });
  console.log(JSON.stringify(results.at(-1)));
  await context.close();
}

const sorted = (k) => results.map((r) => r[k]).sort((a, b) => a - b);
const median = (k) => sorted(k)[Math.floor(results.length / 2)];
const max = (k) => sorted(k).at(-1);
console.log(JSON.stringify({
  summary: true,
  runs: RUNS,
  verdict_ms_median: median('verdict_ms'),
  verdict_ms_max: max('verdict_ms'),
  fcp_ms_median: median('fcp_ms'),
  floor_fcp_ms_median: median('floor_fcp_ms'),
  bytes_median: median('bytes'),
  requests_median: median('requests'),
  html_ms_median: median('html_ms'),
  js_ms_median: median('js_ms'),
  dcl_ms_median: median('dcl_ms'),
  overview_asked_ms_median: median('overview_asked_ms'),
  overview_ms_median: median('overview_ms'),
}));

// Leave the overview open and polling; the driver reads the daemon's RSS meanwhile.
const context = await signedIn();
const page = await context.newPage();
await page.goto(`${URL}/#/overview`);
console.log(JSON.stringify({ open: true }));
await page.waitForTimeout(OPEN_S * 1000);
await browser.close();
