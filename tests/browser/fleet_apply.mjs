// The hub's fleet page in Debian's Chromium, headless (playwright-core): a plant's central apply
// stopped at a transaction the central Odoo rejects, parked by an admin, then seen by a viewer.
// Run by `cargo test --test plant apply_ui::the_fleet_page_shows_each_plants_central_apply`,
// which passes HUB_URL, SHOTS, PLANT, STOP_SEQ, MESSAGE (a part of Odoo's message), ADMIN_USER,
// ADMIN_PASSWORD, VIEWER_USER and VIEWER_PASSWORD through the environment.

import { drive, env, hasText, open, signIn as signInAs, step } from './lib.mjs';

const URL = env('HUB_URL');
const SHOTS = env('SHOTS');
const PLANT = env('PLANT');
const STOP = env('STOP_SEQ');


await drive({ url: URL, shots: SHOTS, height: 900, failure: 'fleet-failure' }, async (page) => {
  const shot = (name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
  const has = (sel, want, timeout) => hasText(page, sel, want, timeout);
  const signIn = (user, password) => signInAs(page, user, password);
  const row = `#fleet-apply tr[data-plant="${PLANT}"]`;
  const parked = `#fleet-parked tr[data-parked="${PLANT}/${STOP}"]`;

  step(`an admin sees ${PLANT}'s queue stopped at seq ${STOP} with the central Odoo's message`);
  await open(page, URL + '/fleet');
  await signIn(env('ADMIN_USER'), env('ADMIN_PASSWORD'));
  await has(`${row} td.state`, `stopped at seq ${STOP}`);
  await has(`${row} td.message`, env('MESSAGE'));
  await page.locator(`${row} button[data-action="retry"]`).waitFor();
  await shot('fleet-stopped');

  step('park it: the confirmation says what happens; the rest is applied');
  await page.click(`${row} button[data-action="park"]`);
  await page.locator('dialog#confirm').waitFor({ state: 'visible' });
  await has('#confirm-text', `Park ${PLANT} seq ${STOP}`, 5_000);
  await has('#confirm-text', 'nothing is deleted', 5_000);
  await shot('fleet-confirm-park');
  await page.click('#confirm-ok');
  await page.locator('#toast[data-outcome="ok"]').waitFor({ state: 'visible', timeout: 30_000 });
  await has('#toast', `${PLANT} seq ${STOP} is parked`, 5_000);
  await page.locator(parked).waitFor();
  await has(`${row} td.state`, 'caught up');
  await page.click('#toast');
  await shot('fleet-parked');

  step('a viewer sees the parked transaction, and no buttons');
  await page.click('button#signout');
  await signIn(env('VIEWER_USER'), env('VIEWER_PASSWORD'));
  await page.locator(parked).waitFor();
  const buttons = await page.locator('#central-apply button').count();
  if (buttons) throw new Error(`a viewer sees ${buttons} buttons on the apply`);
  await shot('fleet-viewer');
});
