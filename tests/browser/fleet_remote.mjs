// The hub's fleet page in Debian's Chromium, headless (playwright-core): an admin asks a plant
// for a backup with "Back up now", confirms, and sees the action end ok in the plant's row.
// Run by `cargo test --test plant remote::`, which passes HUB_URL, SHOTS, PLANT, ADMIN_USER
// and ADMIN_PASSWORD through the environment.

import { drive, env, hasText, open, signIn, step } from './lib.mjs';

const URL = env('HUB_URL');
const SHOTS = env('SHOTS');
const PLANT = env('PLANT');

await drive({ url: URL, shots: SHOTS, height: 1400, failure: 'fleet-remote-failure' }, async (page) => {
  const row = `#remote-actions tr[data-remote-plant="${PLANT}"]`;
  step(`an admin asks ${PLANT} for a backup from the fleet page`);
  await open(page, URL + '/fleet');
  await signIn(page, env('ADMIN_USER'), env('ADMIN_PASSWORD'));
  await page.locator(`${row} button[data-action="backup"]`).waitFor();
  await page.click(`${row} button[data-action="backup"]`);
  await page.locator('dialog#confirm').waitFor({ state: 'visible' });
  await hasText(page, '#confirm-text', 'take a backup now', 5_000);
  await page.click('#confirm-ok');
  await page.locator('#toast[data-outcome="ok"]').waitFor({ state: 'visible', timeout: 30_000 });

  step('the action is listed in the plant\'s row, and ends ok there');
  await page.locator(`${row} div[data-remote-action]`).first().waitFor({ timeout: 30_000 });
  await hasText(page, row, 'backup: ok', 300_000);
  await page.screenshot({ path: `${SHOTS}/fleet-remote-backup.png`, fullPage: true });
});
