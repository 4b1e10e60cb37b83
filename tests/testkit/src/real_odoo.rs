//! Real Odoo 18 (`plantd-local/odoo:18.0`, from images/build-odoo.sh) in a test stack: whether
//! the image is there (a loud SKIPPED when not), its shell, a plant's stack on it with `stock`
//! and `mrp`, master data, and what every shipped kind left in it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::odoo::apply_status;
use crate::stack::{docker, TestStack};

pub const IMAGE: &str = "plantd-local/odoo:18.0";

/// Whether the real Odoo image is here; says SKIPPED loudly when it is not.
pub fn real_odoo(test: &str) -> bool {
    if docker(&["image", "inspect", IMAGE]).status.success() {
        return true;
    }
    eprintln!("\n*** SKIPPED: no real Odoo image (images/build-odoo.sh): {test} did not run ***\n");
    false
}

/// Runs Python in Odoo's shell on the stack's database (as an admin would, with `odoo shell`),
/// and returns the JSON the script prints on its last line.
pub fn odoo_shell(stack: &TestStack, script: &str) -> Value {
    let mut child = Command::new("docker")
        .args([
            "exec",
            "-i",
            &stack.container("odoo"),
            "odoo",
            "shell",
            "-c",
            "/etc/odoo/odoo.conf",
            "-d",
            "odoo",
            "--no-http",
            "--log-level=warn",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("PLANTD_JSON="))
        .unwrap_or_else(|| {
            panic!(
                "odoo shell printed no result:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(&last["PLANTD_JSON=".len()..]).unwrap()
}

/// The plant.toml sections for a stack on the real Odoo, its key in `key_file`, and `extra`.
pub fn real_config(key_file: &Path, extra: &str) -> String {
    format!(
        "[odoo]\nkey_file = \"{}\"\n[stack.odoo]\nimage = \"{IMAGE}\"\n{extra}",
        key_file.display()
    )
}

/// A plant stack on the real Odoo, with `stock` and `mrp` installed and an API key for plantd
/// in `key_file`.
pub fn real_stack(key_file: &Path, extra: &str) -> TestStack {
    let stack = TestStack::start(&real_config(key_file, extra));
    let started = Instant::now();
    stack.wait_all_healthy(Duration::from_secs(900));
    eprintln!(
        "real Odoo: database created and healthy in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let out = docker(&[
        "exec",
        &stack.container("odoo"),
        "odoo",
        "-c",
        "/etc/odoo/odoo.conf",
        "-d",
        "odoo",
        "-i",
        "stock,mrp",
        "--stop-after-init",
        "--no-http",
        "--log-level=warn",
    ]);
    assert!(
        out.status.success(),
        "installing stock and mrp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "real Odoo: stock and mrp installed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let key = odoo_shell(
        &stack,
        "import json\nadmin = env.ref('base.user_admin')\nkey = env['res.users.apikeys'].with_user(admin)._generate('rpc', 'plantd', None)\nenv.cr.commit()\nprint('PLANTD_JSON=' + json.dumps(key))\n",
    );
    std::fs::write(key_file, format!("{}\n", key.as_str().unwrap())).unwrap();
    stack
}

/// Master data for the kinds, made as an admin would (here in Odoo's shell), under codes and
/// external ids of module `plant`. `shift` records made first move the database ids, so that
/// two Odoos set up alike have different ids for the same records.
pub fn master_data(stack: &TestStack, shift: usize) -> Value {
    odoo_shell(
        stack,
        &format!(
            r#"
import json
for i in range({shift}):
    env['product.product'].create({{'name': 'filler %d' % i}})
    env['stock.location'].create({{'name': 'filler %d' % i, 'usage': 'internal'}})
P = env['product.product']
def product(code, name, barcode=False):
    return P.create({{'name': name, 'default_code': code, 'barcode': barcode, 'is_storable': True}})
bolt = product('PLT-BOLT', 'Bolt', '4006381333931')
fg = product('PLT-FG', 'Frame')
fg2 = product('PLT-FG2', 'Frame with routing')
c1 = product('PLT-C1', 'Tube', '4006381333948')
c2 = product('PLT-C2', 'Weld wire')
nostock = product('PLT-NS', 'Cap')
stock = env.ref('stock.stock_location_stock')
for p in (c1, c2):
    env['stock.quant']._update_available_quantity(p, stock, 1000)
# 4 bolts on hand: a move of 7 out of stock reserves 4 and must move all 7.
env['stock.quant']._update_available_quantity(bolt, stock, 4)
wc = env['mrp.workcenter'].create({{'name': 'Welding', 'code': 'PLT-WC'}})
env['mrp.bom'].create({{'product_tmpl_id': fg.product_tmpl_id.id, 'product_qty': 1,
    'bom_line_ids': [(0, 0, {{'product_id': c1.id, 'product_qty': 2}}), (0, 0, {{'product_id': c2.id, 'product_qty': 1}})]}})
env['mrp.bom'].create({{'product_tmpl_id': fg2.product_tmpl_id.id, 'product_qty': 1,
    'bom_line_ids': [(0, 0, {{'product_id': c1.id, 'product_qty': 1}})],
    'operation_ids': [(0, 0, {{'name': 'Weld', 'workcenter_id': wc.id, 'time_cycle_manual': 30}})]}})
wh = env.ref('stock.warehouse0')
def picking(name, type_, src, dst, product, qty):
    p = env['stock.picking'].create({{'name': name, 'picking_type_id': type_.id, 'location_id': src.id, 'location_dest_id': dst.id,
        'move_ids': [(0, 0, {{'name': product.name, 'product_id': product.id, 'product_uom_qty': qty, 'location_id': src.id, 'location_dest_id': dst.id}})]}})
    p.action_confirm()
    return p
supplier = env.ref('stock.stock_location_suppliers')
customer = env.ref('stock.stock_location_customers')
r1 = picking('PLT/IN/1', wh.in_type_id, supplier, stock, bolt, 50)
r2 = picking('PLT/IN/2', wh.in_type_id, supplier, stock, bolt, 50)
r3 = picking('PLT/IN/3', wh.in_type_id, supplier, stock, bolt, 50)
d1 = picking('PLT/OUT/1', wh.out_type_id, stock, customer, nostock, 20)
def mo(name, product, qty):
    m = env['mrp.production'].create({{'name': name, 'product_id': product.id, 'product_qty': qty}})
    m.action_confirm()
    return m
mo1 = mo('PLT/MO/1', fg, 10)
mo2 = mo('PLT/MO/2', fg, 10)
mo3 = mo('PLT/MO/3', fg2, 5)
env['ir.model.data'].create({{'module': 'plant', 'name': 'wo_mo3', 'model': 'mrp.workorder', 'res_id': mo3.workorder_ids[0].id}})
env.cr.commit()
print('PLANTD_JSON=' + json.dumps({{'bolt': bolt.id, 'd1_state': d1.state, 'r1_state': r1.state, 'workorders': len(mo3.workorder_ids)}}))
"#
        ),
    )
}

/// What a plant's transactions did in one Odoo, read as an admin would.
pub fn outcome(stack: &TestStack, prefix: &str) -> Value {
    odoo_shell(
        stack,
        &format!(
            r#"
import json
def xid(seq):
    return env.ref('plantd.{prefix}_%d' % seq, raise_if_not_found=False)
P = env['product.product']
def code(c):
    return P.search([('default_code', '=', c)])
stock = env.ref('stock.stock_location_stock')
customer = env.ref('stock.stock_location_customers')
def on_hand(product, loc):
    return sum(env['stock.quant'].search([('product_id', '=', product.id), ('location_id', '=', loc.id)]).mapped('quantity'))
Pick = env['stock.picking']
def pick(name):
    p = Pick.search([('name', '=', name)])
    back = Pick.search([('backorder_id', '=', p.id)])
    return {{'state': p.state, 'done': float(sum(p.move_ids.mapped('quantity'))), 'backorders': [b.state for b in back], 'backorder_demand': float(sum(back.move_ids.mapped('product_uom_qty')))}}
Mo = env['mrp.production']
def mo(name):
    # A production split for a backorder is renamed NAME-001, its backorder NAME-002.
    ms = Mo.search(['|', ('name', '=', name), ('name', '=like', name + '-___')], order='id')
    m, back = ms[:1], ms[1:]
    return {{'state': m.state, 'produced': m.qty_produced, 'consumed': {{l.product_id.default_code: l.quantity for l in m.move_raw_ids if l.state == 'done'}},
             'backorders': [(b.state, b.product_qty) for b in back], 'workorders': [w.state for w in m.workorder_ids]}}
moves = [xid(s) for s in (2, 3)]
log = xid(10)
out = {{
  'partner': env['res.partner'].search_count([('name', '=', 'Real partner')]),
  'partner_xid': xid(1)._name if xid(1) else None,
  'moves': [{{'model': m._name, 'state': m.state, 'qty': m.quantity, 'from': m.location_id.complete_name, 'to': m.location_dest_id.complete_name, 'picking': m.picking_id.state}} if m else None for m in moves],
  'bolt_stock': on_hand(code('PLT-BOLT'), stock),
  'bolt_customer': on_hand(code('PLT-BOLT'), customer),
  'r1': pick('PLT/IN/1'), 'r2': pick('PLT/IN/2'), 'r3': pick('PLT/IN/3'), 'd1': pick('PLT/OUT/1'),
  'mo1': mo('PLT/MO/1'), 'mo2': mo('PLT/MO/2'), 'mo3': mo('PLT/MO/3'),
  'log': {{'model': log._name, 'workcenter': log.workcenter_id.code, 'loss': log.loss_id.loss_type, 'start': str(log.date_start), 'end': str(log.date_end), 'duration': log.duration}} if log else None,
}}
print('PLANTD_JSON=' + json.dumps(out))
"#
        ),
    )
}

/// The transactions every side gets: one of each shipped kind, in each of its forms.
pub fn kinds_batch(prefix: &str) -> Vec<Value> {
    let k = |i: u32| format!("{prefix}-{i}");
    vec![
        json!({"key": k(1), "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": "Real partner"}}}),
        // By code and full location names; then by barcode and external ids.
        json!({"key": k(2), "kind": "stock.move", "payload": {"product": "PLT-BOLT", "quantity": 7, "location": "WH/Stock", "location_dest": "Partners/Customers", "reference": "scan 2"}}),
        json!({"key": k(3), "kind": "stock.move", "payload": {"product": "4006381333931", "quantity": 5, "location_xmlid": "stock.stock_location_suppliers", "location_dest_xmlid": "stock.stock_location_stock"}}),
        json!({"key": k(4), "kind": "stock.picking.validate", "payload": {"picking": "PLT/IN/1"}}),
        json!({"key": k(5), "kind": "stock.picking.validate", "payload": {"picking": "PLT/IN/2", "lines": [{"product": "PLT-BOLT", "quantity": 30}]}}),
        json!({"key": k(6), "kind": "stock.picking.validate", "payload": {"picking": "PLT/IN/3", "lines": [{"product": "PLT-BOLT", "quantity": 30}], "backorder": false}}),
        json!({"key": k(7), "kind": "stock.picking.validate", "payload": {"picking": "PLT/OUT/1"}}),
        json!({"key": k(8), "kind": "mrp.production.done", "payload": {"production": "PLT/MO/1"}}),
        json!({"key": k(9), "kind": "mrp.production.done", "payload": {"production": "PLT/MO/2", "quantity": 4}}),
        json!({"key": k(10), "kind": "workorder.time", "payload": {"workorder_xmlid": "plant.wo_mo3", "started_at": "2026-12-06T08:00:00+01:00", "minutes": 45}}),
        json!({"key": k(11), "kind": "mrp.production.done", "payload": {"production": "PLT/MO/3"}}),
    ]
}

/// Checks one Odoo's outcome of [`kinds_batch`].
pub fn check_outcome(side: &str, o: &Value) {
    let ctx = format!("{side}: {o:#}");
    assert_eq!(o["partner"], 1, "{ctx}");
    assert_eq!(o["partner_xid"], "res.partner", "{ctx}");
    assert_eq!(
        o["moves"][0],
        json!({"model": "stock.move", "state": "done", "qty": 7.0, "from": "WH/Stock", "to": "Partners/Customers", "picking": "done"}),
        "{ctx}"
    );
    assert_eq!(
        o["moves"][1],
        json!({"model": "stock.move", "state": "done", "qty": 5.0, "from": "Partners/Vendors", "to": "WH/Stock", "picking": "done"}),
        "{ctx}"
    );
    // Receipts: 50 in full, 30 with the rest in a backorder, 30 without; the moves: +5, and -7
    // of which only 4 were on hand (all 7 move: the move is picked in full).
    assert_eq!(
        o["r1"],
        json!({"state": "done", "done": 50.0, "backorders": [], "backorder_demand": 0.0}),
        "{ctx}"
    );
    assert_eq!(o["r2"]["state"], "done", "{ctx}");
    assert_eq!(o["r2"]["done"], 30.0, "{ctx}");
    assert_eq!(o["r2"]["backorders"], json!(["assigned"]), "{ctx}");
    assert_eq!(o["r2"]["backorder_demand"], 20.0, "{ctx}");
    assert_eq!(
        o["r3"],
        json!({"state": "done", "done": 30.0, "backorders": [], "backorder_demand": 0.0}),
        "{ctx}"
    );
    assert_eq!(
        o["bolt_stock"],
        4.0 + 50.0 + 30.0 + 30.0 + 5.0 - 7.0,
        "{ctx}"
    );
    assert_eq!(o["bolt_customer"], 7.0, "{ctx}");
    // Nothing reserved: validated for the demand all the same.
    assert_eq!(o["d1"]["state"], "done", "{ctx}");
    assert_eq!(o["d1"]["done"], 20.0, "{ctx}");
    // Productions: components consumed as the bill of materials says.
    assert_eq!(o["mo1"]["state"], "done", "{ctx}");
    assert_eq!(o["mo1"]["produced"], 10.0, "{ctx}");
    assert_eq!(
        o["mo1"]["consumed"],
        json!({"PLT-C1": 20.0, "PLT-C2": 10.0}),
        "{ctx}"
    );
    assert_eq!(o["mo2"]["state"], "done", "{ctx}");
    assert_eq!(o["mo2"]["produced"], 4.0, "{ctx}");
    assert_eq!(
        o["mo2"]["consumed"],
        json!({"PLT-C1": 8.0, "PLT-C2": 4.0}),
        "{ctx}"
    );
    assert_eq!(o["mo2"]["backorders"], json!([["confirmed", 6.0]]), "{ctx}");
    assert_eq!(o["mo3"]["state"], "done", "{ctx}");
    assert_eq!(o["mo3"]["workorders"], json!(["done"]), "{ctx}");
    // The time log: on the workorder's work center, productive, in UTC.
    assert_eq!(
        o["log"],
        json!({"model": "mrp.workcenter.productivity", "workcenter": "PLT-WC", "loss": "productive", "start": "2026-12-06 07:00:00", "end": "2026-12-06 07:45:00", "duration": 45.0}),
        "{ctx}"
    );
}

/// The `<plant>` of external ids `plantd.<plant>_<seq>`, as `apply status` says it.
pub fn prefix_of(status: &Value) -> String {
    let ids = status["external_ids"].as_str().unwrap();
    ids.strip_prefix("plantd.")
        .and_then(|s| s.strip_suffix("_<seq>"))
        .unwrap_or_else(|| panic!("external ids {ids}"))
        .to_string()
}

/// Takes plantd's module out of a stack's Odoo (the stack installs it in the database it
/// creates), as an Odoo without it would be.
pub fn uninstall_plantd_apply(stack: &TestStack) {
    let state = odoo_shell(
        stack,
        // Odoo refuses while a scheduled action holds its lock: tried again for a minute.
        "import json, time\nm = env['ir.module.module'].search([('name', '=', 'plantd_apply')])\nfor _ in range(60):\n    try:\n        m.button_immediate_uninstall()\n        break\n    except Exception:\n        env.cr.rollback()\n        time.sleep(1)\nenv.cr.commit()\nprint('PLANTD_JSON=' + json.dumps(env['ir.module.module'].search([('name', '=', 'plantd_apply')]).state))\n",
    );
    assert_eq!(state, "uninstalled", "plantd_apply is {state}");
}

/// Waits until the hub has applied plant lyon's transactions through `seq`; its apply must not
/// stop meanwhile.
pub fn wait_hub_applied(hub: &crate::fleet::Hub, seq: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let h = crate::odoo::hub_apply(hub);
        match h.get("lyon") {
            Some((applied, None, _)) if *applied == seq => return,
            Some((_, Some(at), message)) => panic!("the central apply stopped at {at}: {message}"),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "the centre did not apply through {seq}: {h:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn wait_applied(stack: &TestStack, seq: u64, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let s = apply_status(stack);
        if s["applied_seq"].as_u64() >= Some(seq) {
            return s;
        }
        assert!(s["stopped_at"].is_null(), "the apply stopped: {s:#}");
        assert!(
            Instant::now() < deadline,
            "not applied through {seq}: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
