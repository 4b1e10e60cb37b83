// What the browser tests share: their environment, a step log with the time since start, and
// a run of Debian's Chromium, headless, with the checks every page must pass (nothing fetched
// from anywhere but the server under test).

import { chromium } from 'playwright-core';

/** An environment variable the Rust test sets; a missing one ends the run. */
export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

const started = Date.now();
const elapsed = () => ((Date.now() - started) / 1000).toFixed(1);

/** Says what the run checks next, with the seconds since it started. */
export const step = (what) => console.log(`[${elapsed()} s] ${what}`);

/**
 * Opens a page of `url` in headless Chromium (viewport 1366 x `height`), runs `body(page)`, and
 * ends the process: 0 when every check passed; 1 when one failed, with `${failure}.png` in
 * `shots`. A request to anywhere but `url` fails the run; every POST and its answer, and every
 * request that failed, is logged.
 */
export async function drive({ url, shots, height = 900, failure = 'failure' }, body) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // HTTP/1.1: Chromium drops HTTP/2 streams in flight when a network interface appears or
    // goes (ERR_NETWORK_CHANGED), and Docker adds and removes one whenever a container
    // restarts on this host. An admin's browser sits on another machine and never sees those.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-http2'],
  });
  let failed = false;
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1366, height } });
    const page = await context.newPage();
    const external = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(url)) external.push(r.url());
    });
    page.on('response', (r) => {
      if (r.request().method() === 'POST') console.log(`  POST ${new globalThis.URL(r.url()).pathname} -> ${r.status()}`);
    });
    page.on('requestfailed', (r) => console.log(`  ${r.method()} ${r.url()} failed: ${r.failure()?.errorText}`));
    await body(page);
    if (external.length) throw new Error(`the page fetched from elsewhere: ${external.join(', ')}`);
    step('all checks passed');
  } catch (e) {
    failed = true;
    console.error(`FAILED after ${elapsed()} s: ${e.stack || e}`);
    try {
      const pages = browser.contexts().flatMap((c) => c.pages());
      if (pages[0]) await pages[0].screenshot({ path: `${shots}/${failure}.png`, fullPage: true });
    } catch {}
  } finally {
    await browser.close();
  }
  process.exit(failed ? 1 : 0);
}
