// The hub's fleet page in Debian's Chromium, headless (playwright-core): a plant killed with
// `kill -9` shows offline, and its production alert is listed as firing. Run by `cargo test
// --test plant alerts::`, which passes HUB_URL, SHOTS, PLANT, VIEWER_USER and VIEWER_PASSWORD
// through the environment.

import { drive, env, hasText, open, signIn, step } from './lib.mjs';

const URL = env('HUB_URL');
const SHOTS = env('SHOTS');
const PLANT = env('PLANT');

await drive({ url: URL, shots: SHOTS, height: 900, failure: 'fleet-alerts-failure' }, async (page) => {
  step(`a viewer sees ${PLANT} offline, first in the list, with why`);
  await open(page, URL + '/fleet');
  await signIn(page, env('VIEWER_USER'), env('VIEWER_PASSWORD'));
  const row = `#plants tbody tr[data-plant="${PLANT}"][data-state="offline"]`;
  await page.locator(row).waitFor({ timeout: 30_000 });
  await hasText(page, `${row} td.state`, 'not heard from');
  const first = await page.locator('#plants tbody tr').first().getAttribute('data-plant');
  if (first !== PLANT) throw new Error(`the first plant listed is ${first}, not the offline ${PLANT}`);

  step('its production alert is listed as firing, and the history says it was sent');
  const alert = `#alerts-firing tr[data-alert="offline/${PLANT}"][data-tier="production"]`;
  await page.locator(alert).waitFor({ timeout: 30_000 });
  await hasText(page, alert, 'not heard from');
  await page.locator('#alerts-history tr[data-event="sent"]').first().waitFor({ state: 'attached' });
  await page.screenshot({ path: `${SHOTS}/fleet-offline.png`, fullPage: true });

  step(`${PLANT}'s page: its alert history and its log lines`);
  await page.click(`#plants tbody tr[data-plant="${PLANT}"] button[data-action="open-plant"]`);
  const detail = `section#plant-detail[data-plant="${PLANT}"]`;
  await page.locator(detail).waitFor({ state: 'visible', timeout: 10_000 });
  await hasText(page, '#plant-detail-state', 'offline');
  await page.locator(`#plant-detail-alerts tr[data-event="fired"]`).first().waitFor({ state: 'attached' });
  await page.locator(`#plant-detail-links tr[data-event="connected"]`).first().waitFor({ state: 'attached' });
  await page.locator(`#plant-detail-logs tr[data-level="warn"]`).first().waitFor({ state: 'attached' });
  await page.screenshot({ path: `${SHOTS}/fleet-plant-page.png`, fullPage: true });
});
