// The Apply page in Debian's Chromium, headless, driven by playwright-core. Run by
// `cargo test --test plant apply_ui::the_apply_page_in_chromium`, which starts a plant applying
// to its stack's Odoo emulator, whose queue has stopped at a picking Odoo does not know, and
// passes through the environment: PLANTD_URL, SETUP_CODE, SHOTS (screenshot folder),
// PLANTD_BIN, PLANTD_DATA_DIR, PLANTD_CONFIG, PICKING (the missing picking's name), STOP_SEQ
// (where the queue stopped) and LAST_SEQ.
// The admin signs in with the setup code and sees the stop; a viewer sees it with no buttons;
// the admin parks it (the rest is applied), a replay is refused while the picking is missing,
// the picking is created in Odoo (with a move, confirmed), and the replay validates it. The
// test made the master data it needs (product PLT-BOLT, locations, a receipt type).

import { execFileSync } from 'node:child_process';
import { drive, env, hasText, open, signIn as signInAs, step } from './lib.mjs';

const URL = env('PLANTD_URL');
const SHOTS = env('SHOTS');
const PICKING = env('PICKING');
const STOP = env('STOP_SEQ');
const LAST = env('LAST_SEQ');
const ADMIN = { user: 'ana', password: 'correct horse battery' };
const VIEWER = { user: 'vic', password: 'viewer pass 12' };

const plantd = (...args) => execFileSync(env('PLANTD_BIN'), [...args, '--config', env('PLANTD_CONFIG'), '--data-dir', env('PLANTD_DATA_DIR')], { encoding: 'utf8' });
const odoo = (model, method, args, kwargs) => {
  const extra = kwargs ? ['--kwargs', JSON.stringify(kwargs)] : [];
  return JSON.parse(plantd('odoo', 'call', model, method, JSON.stringify(args), ...extra));
};

await drive({ url: URL, shots: SHOTS, height: 900, failure: 'failure' }, async (page) => {
  const shot = (name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
  const text = (sel) => page.locator(sel).textContent();
  const has = (sel, want, timeout) => hasText(page, sel, want, timeout);
  const go = async (name) => {
    await page.click(`a[href="#/${name}"]`);
    await page.locator(`#page-${name}`).waitFor({ state: 'visible' });
  };
  const signIn = (who) => signInAs(page, who.user, who.password);
  const signOut = async () => {
    await page.click('button#signout');
    await page.locator('form#signin').waitFor();
  };
  const confirm = async (want) => {
    await page.locator('dialog#confirm').waitFor({ state: 'visible' });
    for (const w of want) await has('#confirm-text', w, 5_000);
  };
  const toast = async (outcome, want) => {
    await page.locator(`#toast[data-outcome="${outcome}"]`).waitFor({ state: 'visible', timeout: 60_000 });
    await has('#toast', want, 10_000);
    const t = await text('#toast');
    await page.click('#toast');
    return t;
  };

  step('the admin signs in with the setup code');
  await open(page, URL + '/');
  await page.locator('form#setup').waitFor();
  await page.fill('form#setup input[name=code]', env('SETUP_CODE'));
  await page.fill('form#setup input[name=user]', ADMIN.user);
  await page.fill('form#setup input[name=password]', ADMIN.password);
  await page.click('form#setup [type=submit]');
  await page.waitForFunction(() => document.querySelector('#whoami')?.textContent.includes('ana (admin)'));

  step(`overview: action needed, the apply stopped at seq ${STOP}, with a link to the Apply page`);
  await page.locator('#verdict[data-verdict="action_needed"]').waitFor({ timeout: 60_000 });
  await has('#reasons', `apply: stopped at seq ${STOP}`);
  await page.locator('#apply-note').waitFor({ state: 'visible' });
  await has('#apply-summary', `${STOP - 1} / ${LAST}`);
  await shot('apply-overview');
  await page.click('#apply-link');
  await page.locator('#page-apply').waitFor({ state: 'visible' });
  if (!(await page.locator('a[href="#/apply"][aria-current="page"]').count())) throw new Error('the nav does not mark Apply as the page shown');

  step('apply page: where it stopped and Odoo\'s message');
  await page.locator('#apply-stop').waitFor({ state: 'visible' });
  await has('#apply-stop-title', `Stopped at seq ${STOP}`);
  await has('#apply-stop-kind', 'stock.picking.validate');
  await has('#apply-stop-message', `no stock.picking named "${PICKING}"`);
  await has('#apply-applied', `${STOP - 1} / ${LAST}`);
  await has('#apply-behind', String(LAST - STOP + 1));
  await has('#apply-state', `stopped at seq ${STOP}`);
  await page.locator('tr.empty', { hasText: 'Nothing is parked.' }).waitFor();
  await page.locator('#apply-retry').waitFor();
  await page.locator('#apply-park').waitFor();
  await shot('apply-stopped');

  step('a viewer sees the same stop, and no buttons');
  await signOut();
  // `admin add` reads the password from stdin.
  execFileSync(env('PLANTD_BIN'), ['admin', 'add', VIEWER.user, '--role', 'viewer', '--config', env('PLANTD_CONFIG'), '--data-dir', env('PLANTD_DATA_DIR')], { input: VIEWER.password + '\n' });
  await signIn(VIEWER);
  await go('apply');
  // Drawn for the viewer (only a viewer's page says who the remedies are for).
  await has('#apply-stop-help', 'For an operator or admin:');
  await has('#apply-stop-message', `no stock.picking named "${PICKING}"`);
  for (const sel of ['#apply-retry', '#apply-park']) {
    if (await page.locator(sel).count()) throw new Error(`a viewer sees ${sel}`);
  }
  await shot('apply-viewer');
  await signOut();
  await signIn(ADMIN);
  await go('apply');

  step(`park seq ${STOP}: the confirmation says what happens, then the rest is applied`);
  await page.click('#apply-park');
  await confirm([`Park seq ${STOP} (stock.picking.validate)`, `applies the ${LAST - STOP} transactions waiting behind it`, 'nothing is deleted', `no stock.picking named "${PICKING}"`]);
  await shot('apply-confirm-park');
  await page.click('#confirm-ok');
  await toast('ok', `seq ${STOP} is parked`);
  await page.locator(`#apply-parked tr[data-seq="${STOP}"]`).waitFor();
  await page.locator('#apply-stop').waitFor({ state: 'hidden' });
  await has('#apply-applied', `${LAST} / ${LAST}`);
  await has('#apply-state', 'caught up');
  // The emulator has no plantd_apply: the page says the apply goes through plantd's own calls.
  await has('#apply-how', 'plantd_apply is not installed');
  if (await page.locator('#apply-rewound').isVisible()) throw new Error('a rewind is shown where there was none');
  const row = `#apply-parked tr[data-seq="${STOP}"]`;
  await has(`${row} td.kind`, 'stock.picking.validate');
  await has(`${row} td.device`, 'scanner-1');
  await has(`${row} td.message`, `no stock.picking named "${PICKING}"`);
  await has(`${row} td.payload`, PICKING);
  await shot('apply-parked');

  step('a viewer sees it parked, with no Replay button');
  await signOut();
  await signIn(VIEWER);
  await go('apply');
  // Signing out cleared the rows: this one is drawn for the viewer.
  await has(`${row} td.payload`, PICKING);
  const replays = await page.locator(`${row} button`).count();
  if (replays) throw new Error(`a viewer sees ${replays} buttons on the parked seq ${STOP}`);
  await signOut();
  await signIn(ADMIN);
  await go('apply');
  await page.locator(`${row} button[data-action="replay"]`).waitFor();

  step('replay while the picking is still missing: refused with Odoo\'s message, still parked');
  await page.click(`${row} button[data-action="replay"]`);
  await confirm([`Replay seq ${STOP}`, 'once']);
  await page.click('#confirm-ok');
  await toast('error', 'stays parked');
  const status = JSON.parse(plantd('apply', 'status', '--json'));
  if (!status.parked.some((p) => String(p.seq) === STOP) || String(status.applied_seq) !== LAST) {
    throw new Error(`the refused replay changed the queue: ${JSON.stringify(status)}`);
  }

  step(`the picking ${PICKING} is created in Odoo; the replay validates it`);
  // As an admin makes a receipt: from the vendors into WH/Stock, 5 of PLT-BOLT, confirmed.
  const one = (model, domain) => odoo(model, 'search', [domain], { limit: 1 })[0];
  const vendors = one('stock.location', [['complete_name', '=', 'Partners/Vendors']]);
  const stock = one('stock.location', [['complete_name', '=', 'WH/Stock']]);
  const [created] = odoo('stock.picking', 'create', [[{
    name: PICKING, picking_type_id: one('stock.picking.type', [['code', '=', 'incoming']]),
    location_id: vendors, location_dest_id: stock,
    move_ids: [[0, 0, { name: 'Bolt', product_id: one('product.product', [['default_code', '=', 'PLT-BOLT']]), product_uom_qty: 5 }]],
  }]]);
  odoo('stock.picking', 'action_confirm', [[created]]);
  await page.click(`${row} button[data-action="replay"]`);
  await confirm([`Replay seq ${STOP}`]);
  await page.click('#confirm-ok');
  const said = await toast('ok', 'no longer parked');
  console.log(`  ${said}`);
  await page.locator(row).waitFor({ state: 'detached' });
  await page.locator('#apply-parked tr.empty', { hasText: 'Nothing is parked.' }).waitFor();
  const picking = odoo('stock.picking', 'search_read', [[['name', '=', PICKING]]], { fields: ['state'] });
  if (picking.length !== 1 || picking[0].state !== 'done') throw new Error(`the picking in Odoo: ${JSON.stringify(picking)}`);
  await page.locator('#verdict[data-verdict="action_needed"]').waitFor({ state: 'detached', timeout: 30_000 });
  await shot('apply-replayed');

  step('audit: the park and the replays, by ana');
  await go('audit');
  for (const [action, outcome] of [['apply.park', 'ok'], ['apply.replay', 'refused'], ['apply.replay', 'ok']]) {
    await page.locator('table#audit tr', { has: page.locator('td.action', { hasText: action }) })
      .filter({ has: page.locator('td.outcome', { hasText: outcome }) })
      .filter({ has: page.locator('td.target', { hasText: `seq ${STOP}` }) })
      .first()
      .waitFor({ timeout: 10_000 });
  }
});
