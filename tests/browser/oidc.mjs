// Sign-in through the company's OpenID Connect provider (Debian's glewlwyd, started by
// `cargo test --test plant oidc::oidc_users_sign_in_through_the_provider_to_their_groups_role`)
// in Debian's Chromium, headless: the sign-in page's button, the provider's own login page, back
// to the console in each group's role; a user of no mapped group refused with a page that says
// why; sign-out at the provider too; and the provider stopped: the sign-in page says so and a
// local admin still gets in. PLANTD_URL, IDP_ORIGIN, IDP_PID, SHOTS come from the test.

import { chromium } from 'playwright-core';
import { env, hasText, open, signIn, step } from './lib.mjs';

const URL = env('PLANTD_URL');
const IDP = env('IDP_ORIGIN');
const SHOTS = env('SHOTS');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-http2'],
});
let failed = false;
let page = null;
try {
  /* A fresh browser (no cookies of the provider or of plantd), at plantd's sign-in page. */
  const fresh = async (button = true) => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1366, height: 800 } });
    page = await context.newPage();
    page.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(URL) && !u.startsWith(IDP) && !u.startsWith('data:')) {
        throw new Error(`the page fetched from elsewhere: ${u}`);
      }
    });
    page.on('requestfailed', (r) => console.log(`  ${r.method()} ${r.url()} failed: ${r.failure()?.errorText}`));
    page.on('console', (m) => { if (m.type() === 'error') console.log(`  console: ${m.text()}`); });
    await open(page, URL);
    await page.locator('form#signin').waitFor({ state: 'visible' });
    if (button) await page.locator('#signin-oidc-go').waitFor({ state: 'visible' });
    return page;
  };
  /* Through the provider's login page: name, password, its "Continue". */
  const throughProvider = async (user, password) => {
    await hasText(page, '#signin-oidc-go', 'Sign in with Plant SSO');
    await page.click('#signin-oidc-go');
    await page.waitForURL((u) => u.href.startsWith(IDP));
    await page.locator('#username').waitFor({ state: 'visible' });
    await page.locator('#username').pressSequentially(user);
    await page.locator('#password').pressSequentially(password);
    await page.click('#loginbut');
    const go = page.locator('button.btn-success:has(i.fa-play)');
    await go.waitFor({ state: 'visible' });
    const t0 = Date.now();
    await go.click();
    return t0;
  };

  for (const [user, password, role] of [
    ['ada', "ada's idp secret", 'admin'],
    ['otto', "otto's idp secret", 'operator'],
    ['vic', "vic's idp secret", 'viewer'],
  ]) {
    step(`${user} signs in through the provider and is ${role === 'viewer' ? 'a' : 'an'} ${role}`);
    await fresh();
    const t0 = await throughProvider(user, password);
    await page.waitForFunction(([w]) => document.querySelector('#whoami')?.textContent === w, [`${user} (${role})`], { timeout: 30_000 });
    step(`  back in the console ${Date.now() - t0} ms after the provider's "Continue"`);
    if (role === 'admin') {
      await page.screenshot({ path: `${SHOTS}/signed-in-admin.png` });
      step('ada signs out: plantd, then the provider');
      await page.click('#signout');
      await page.waitForURL((u) => u.href.startsWith(IDP));
      const out = page.locator('button.btn-danger:has(i.fa-sign-out-alt)');
      await out.waitFor({ state: 'visible' });
      await out.click();
      await page.waitForURL((u) => u.href.startsWith(URL));
      await page.locator('form#signin').waitFor({ state: 'visible' });
      step('  back at the sign-in page; the provider asks for the password again');
      await page.click('#signin-oidc-go');
      await page.waitForURL((u) => u.href.startsWith(IDP));
      await page.locator('#username').waitFor({ state: 'visible' });
    }
    await page.context().close();
  }

  step('nemo, in no mapped group, is refused with a page that says why');
  await fresh();
  await throughProvider('nemo', "nemo's idp secret");
  await hasText(page, '#oidc-message', 'none of the groups that give a role');
  await page.screenshot({ path: `${SHOTS}/refused.png` });
  await page.click('a[href="/"]');
  await page.locator('form#signin').waitFor({ state: 'visible' });
  await page.context().close();

  step('the provider stops: the sign-in page says so, and a local admin gets in');
  process.kill(Number(env('IDP_PID')), 'SIGKILL');
  await fresh(false);
  await hasText(page, '#signin-oidc-note', 'cannot be reached', 30_000);
  await hasText(page, '#signin-oidc-note', 'Only this server\'s local users can sign in now');
  if (await page.locator('#signin-oidc-go').isVisible()) throw new Error('the provider\'s button shows while it cannot be reached');
  await page.screenshot({ path: `${SHOTS}/provider-down.png` });
  await signIn(page, 'ana', 'correct horse');
  step('all checks passed');
} catch (e) {
  failed = true;
  console.error(`FAILED: ${e.stack || e}`);
  if (page) console.error(`  at ${page.url()}`);
  try { if (page) await page.screenshot({ path: `${SHOTS}/failure.png`, fullPage: true }); } catch {}
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
