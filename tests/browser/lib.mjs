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

/**
 * Opens `url` in `page`. Docker tests beside this one add and remove veth interfaces, and
 * Chromium then aborts a navigation in flight with ERR_NETWORK_CHANGED: a person would press
 * reload, so this does, up to five times.
 */
export async function open(page, url) {
  for (let attempt = 1; ; attempt++) {
    try {
      await page.goto(url);
      return;
    } catch (e) {
      if (attempt >= 5 || !String(e).includes('ERR_NETWORK_CHANGED')) throw e;
      await page.waitForTimeout(500);
    }
  }
}

/** Waits until the element `sel` says `want`; else fails saying what it says. */
export async function hasText(page, sel, want, timeout = 30_000) {
  try {
    await page.waitForFunction(([s, w]) => (document.querySelector(s)?.textContent || '').includes(w), [sel, want], { timeout });
  } catch (e) {
    throw new Error(`${sel} does not say ${JSON.stringify(want)}: it says ${JSON.stringify(await page.locator(sel).textContent().catch(() => null))}`);
  }
}

/** Signs in through the sign-in form and waits until the page says who is signed in. */
export async function signIn(page, user, password) {
  await page.locator('form#signin').waitFor();
  await page.fill('form#signin input[name=user]', user);
  await page.fill('form#signin input[name=password]', password);
  await page.click('form#signin [type=submit]');
  await page.waitForFunction(([u]) => document.querySelector('#whoami')?.textContent.startsWith(u), [`${user} (`]);
}
