//! Against a real Odoo 18 (the image `images/build-odoo.sh` builds from Odoo's source): every
//! shipped kind does what its name says, at the plant (its own stack) and in the centre (the
//! hub's apply to a central Odoo of its own), with records named by code, barcode or external
//! id, so that the two Odoos' different database ids do not matter.
//!
//! These tests run whenever the image exists, and print one loud SKIPPED line otherwise. The
//! emulator-based tests cover the same paths on machines without it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{create_token_granted, post_json, rt};
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
fn wait_hub_applied(hub: &crate::fleet::Hub, seq: i64, limit: Duration) {
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

fn wait_applied(stack: &TestStack, seq: u64, limit: Duration) -> Value {
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

#[test]
fn every_shipped_kind_does_what_it_says_at_the_plant_and_in_the_centre_on_real_odoo_18() {
    use crate::fleet::{enroll, free_udp_addr, Hub, Pg};
    if !real_odoo(
        "every_shipped_kind_does_what_it_says_at_the_plant_and_in_the_centre_on_real_odoo_18",
    ) {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let (key_file, central_key) = (
        keys.path().join("odoo.key"),
        keys.path().join("central.key"),
    );
    let local = "[apply]\nlocal = true\n[apply.kinds.\"odoo.create\"]\nmodels = [\"res.partner\", \"stock.lot\"]\n";
    // The plant's Odoo and the central one, each in a stack of its own, set up alike but with
    // different database ids for the same records.
    let (mut stack, central) = std::thread::scope(|s| {
        let plant = s.spawn(|| real_stack(&key_file, local));
        let central = s.spawn(|| real_stack(&central_key, ""));
        (plant.join().unwrap(), central.join().unwrap())
    });
    // The plant's Odoo has plantd_apply (the stack installs it): creates and moves go in one
    // call there. The centre's is taken out: the hub applies with its own calls, so both ways
    // meet real Odoo here.
    uninstall_plantd_apply(&central);
    let (here, there) = (master_data(&stack, 0), master_data(&central, 3));
    assert_eq!(here["r1_state"], "assigned", "{here}");
    assert_eq!(here["workorders"], 1, "{here}");
    assert_ne!(
        here["bolt"], there["bolt"],
        "the two Odoos should differ in ids"
    );

    // The hub applies to the central Odoo; the plant enrolls with it.
    let ip = crate::stack::docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &central.container("odoo"),
    ]);
    let pg = Pg::start();
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_with(
        &hub_dir.path().join("hub"),
        &pg,
        free_udp_addr(),
        &format!(
            "[odoo]\nurl = \"http://{ip}:8069\"\ndatabase = \"odoo\"\nkey_file = \"{}\"\n[apply]\ncentral = true\n",
            central_key.display()
        ),
    );
    stack.plant.stop();
    let out = enroll(&stack.plant.data_dir, &hub, &hub.token("lyon", "1h"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stack.restart_plantd(&real_config(&key_file, local));

    let token = create_token_granted(&stack.plant.data_dir, "scanner-1");
    let client = stack.plant.client();
    let url = stack.plant.url("/api/v1/transactions");
    let post = |body: Value| rt().block_on(post_json(&client, &url, &token, &body));

    // A naive time is refused at once: Odoo would read it in the API user's time zone.
    let (code, body) = post(
        json!({"key": "naive", "kind": "workorder.time", "payload": {"workorder_xmlid": "plant.wo_mo3", "started_at": "2026-12-06T08:00:00", "minutes": 5}}),
    );
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["error"]["field"], "payload.started_at", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no UTC offset"),
        "{body}"
    );

    let started = Instant::now();
    for t in kinds_batch("plant") {
        let (code, body) = post(t);
        assert_eq!(code, 201, "{body}");
    }
    let s = wait_applied(&stack, 11, Duration::from_secs(300));
    eprintln!(
        "real Odoo: 11 transactions applied at the plant in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(s["stopped_at"].is_null(), "{s:#}");
    assert_eq!(
        s["odoo_module"], true,
        "the plant's Odoo has plantd_apply: {s:#}"
    );
    wait_hub_applied(&hub, 11, Duration::from_secs(300));
    eprintln!(
        "real Odoo: 11 transactions applied in the centre {:.1} s after the first post",
        started.elapsed().as_secs_f64()
    );
    check_outcome("plant", &outcome(&stack, &prefix_of(&s)));
    check_outcome("centre", &outcome(&central, "lyon"));

    // The central Odoo's API key is rotated (the old one removed): the hub's kept connection is
    // refused once, and a fresh one, with the new key from the file, goes on. Nothing stops.
    let rotated = odoo_shell(
        &central,
        "import json\nadmin = env.ref('base.user_admin')\nenv['res.users.apikeys'].with_user(admin).search([('user_id', '=', admin.id)])._remove()\nkey = env['res.users.apikeys'].with_user(admin)._generate('rpc', 'plantd rotated', None)\nenv.cr.commit()\nprint('PLANTD_JSON=' + json.dumps(key))\n",
    );
    std::fs::write(&central_key, format!("{}\n", rotated.as_str().unwrap())).unwrap();
    let (code, body) = post(
        json!({"key": "rotated", "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": "after the key rotation"}}}),
    );
    assert_eq!(code, 201, "{body}");
    wait_hub_applied(&hub, 12, Duration::from_secs(120));

    // Odoo Community has no quality.check: now that the apply has met this Odoo, the kind is
    // refused at ingest, naming the kind and the model.
    let (code, body) = post(
        json!({"key": "qc", "kind": "quality.check", "payload": {"product": "PLT-FG", "result": "pass"}}),
    );
    assert_eq!(code, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("quality.check") && message.contains("no model"),
        "{body}"
    );
}

/// Transaction `i` of the 3 000: mostly partners and moves, some time logs and picking
/// validations, all named by code or external id.
fn mixed(i: u64) -> Value {
    let key = format!("mix-{i}");
    match i % 10 {
        0..=5 => {
            json!({"key": key, "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": format!("MIX-{i:05}")}}})
        }
        6..=8 => {
            json!({"key": key, "kind": "stock.move", "payload": {"product": "PLT-C2", "quantity": 1 + i % 4, "location": "WH/Stock", "location_dest": "Partners/Customers", "reference": format!("MIX-{i:05}")}})
        }
        _ if i % 100 == 9 => {
            json!({"key": key, "kind": "stock.picking.validate", "payload": {"picking": format!("MIX/IN/{}", i / 100)}})
        }
        _ => {
            json!({"key": key, "kind": "workorder.time", "payload": {"workorder_xmlid": "plant.wo_mo3", "started_at": "2026-12-06T06:00:00Z", "minutes": i as f64 / 100.0}})
        }
    }
}

#[test]
fn three_thousand_mixed_transactions_land_once_in_order_through_two_kills_on_real_odoo_18() {
    if !real_odoo(
        "three_thousand_mixed_transactions_land_once_in_order_through_two_kills_on_real_odoo_18",
    ) {
        return;
    }
    const N: u64 = 3_000;
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("odoo.key");
    let mut stack = real_stack(&key_file, "[apply]\nlocal = true\n[apply.kinds.\"odoo.create\"]\nmodels = [\"res.partner\", \"stock.lot\"]\n");
    master_data(&stack, 0);
    odoo_shell(&stack, "import json\nwh = env.ref('stock.warehouse0')\nsupplier = env.ref('stock.stock_location_suppliers')\nstock = env.ref('stock.stock_location_stock')\nbolt = env['product.product'].search([('default_code', '=', 'PLT-BOLT')])\nfor n in range(30):\n    p = env['stock.picking'].create({'name': 'MIX/IN/%d' % n, 'picking_type_id': wh.in_type_id.id, 'location_id': supplier.id, 'location_dest_id': stock.id, 'move_ids': [(0, 0, {'name': 'bolt', 'product_id': bolt.id, 'product_uom_qty': 3, 'location_id': supplier.id, 'location_dest_id': stock.id})]})\n    p.action_confirm()\nenv.cr.commit()\nprint('PLANTD_JSON=1')\n");
    let token = create_token_granted(&stack.plant.data_dir, "scanner-1");
    let post_all = |stack: &TestStack, from: u64| {
        let client = stack.plant.client();
        let url = stack.plant.url("/api/v1/transactions");
        for chunk in (from..=N).collect::<Vec<_>>().chunks(100) {
            let batch: Vec<Value> = chunk.iter().map(|i| mixed(*i)).collect();
            let (code, body) =
                rt().block_on(post_json(&client, &url, &token, &Value::Array(batch)));
            assert_eq!(code, 201, "{body}");
        }
    };
    let started = Instant::now();
    post_all(&stack, 1);
    // Two kill -9s of plantd while it applies; each time plantd comes back on the same data.
    for at in [700, 1900] {
        let deadline = Instant::now() + Duration::from_secs(600);
        while apply_status(&stack)["applied_seq"].as_u64().unwrap() < at {
            assert!(Instant::now() < deadline, "the apply did not reach {at}");
            std::thread::sleep(Duration::from_millis(50));
        }
        stack.kill9_and_restart();
        eprintln!("kill -9 of plantd at applied seq {at}+");
    }
    let s = wait_applied(&stack, N, Duration::from_secs(1200));
    let took = started.elapsed().as_secs_f64();
    assert_eq!(
        s["odoo_module"], true,
        "the batches went through plantd_apply: {s:#}"
    );
    eprintln!(
        "real Odoo: {N} mixed transactions applied in {took:.0} s ({:.0} tx/s, two kills included)",
        N as f64 / took
    );
    let prefix = prefix_of(&s);
    let o = odoo_shell(
        &stack,
        &format!(
            r#"
import json
data = env['ir.model.data'].search([('module', '=', 'plantd'), ('name', '=like', '{prefix}_%')], order='id')
seqs = [(int(d.name.rsplit('_', 1)[1]), d.model) for d in data]
partners = env['res.partner'].search([('name', '=like', 'MIX-%')], order='id').mapped('name')
moves = env['stock.move'].search([('name', '=like', 'MIX-%')], order='id')
logs = env['mrp.workcenter.productivity'].search([('workorder_id', '=', env.ref('plant.wo_mo3').id)], order='id').mapped('duration')
pickings = env['stock.picking'].search([('name', '=like', 'MIX/IN/%')]).mapped('state')
print('PLANTD_JSON=' + json.dumps({{'seqs': seqs, 'partners': partners, 'moves': moves.mapped('name'), 'move_states': sorted(set(moves.mapped('state'))), 'logs': logs, 'pickings': pickings}}))
"#
        ),
    );
    let want: Vec<(u64, &str)> = (1..=N)
        .filter_map(|i| match i % 10 {
            0..=5 => Some((i, "res.partner")),
            6..=8 => Some((i, "stock.move")),
            _ if i % 100 == 9 => None,
            _ => Some((i, "mrp.workcenter.productivity")),
        })
        .collect();
    let got: Vec<(u64, String)> = serde_json::from_value(o["seqs"].clone()).unwrap();
    assert_eq!(got.len(), want.len(), "one external id per create, no more");
    assert!(
        got.iter().zip(&want).all(|(g, w)| g.0 == w.0 && g.1 == w.1),
        "external ids in seq order, each on its kind's model"
    );
    let names = |v: &Value| -> Vec<String> { serde_json::from_value(v.clone()).unwrap() };
    let expect = |r: std::ops::RangeInclusive<u64>| -> Vec<String> {
        (1..=N)
            .filter(|i| r.contains(&(i % 10)))
            .map(|i| format!("MIX-{i:05}"))
            .collect()
    };
    assert_eq!(
        names(&o["partners"]),
        expect(0..=5),
        "each partner once, in order"
    );
    assert_eq!(
        names(&o["moves"]),
        expect(6..=8),
        "each move once, in order"
    );
    assert_eq!(o["move_states"], json!(["done"]));
    let logs: Vec<f64> = serde_json::from_value(o["logs"].clone()).unwrap();
    let want_logs: Vec<f64> = (1..=N)
        .filter(|i| i % 10 == 9 && i % 100 != 9)
        .map(|i| (i as f64 / 100.0 * 100.0).round() / 100.0)
        .collect();
    assert_eq!(logs.len(), want_logs.len(), "each time log once");
    assert_eq!(o["pickings"].as_array().unwrap().len(), 30);
    assert!(
        o["pickings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p == "done"),
        "{}",
        o["pickings"]
    );
}

#[test]
fn a_restore_of_an_older_backup_rewinds_and_reapplies_once_on_real_odoo_18() {
    if !real_odoo("a_restore_of_an_older_backup_rewinds_and_reapplies_once_on_real_odoo_18") {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("odoo.key");
    let stack = real_stack(
        &key_file,
        "[apply]\nlocal = true\n[apply.kinds.\"odoo.create\"]\nmodels = [\"res.partner\", \"stock.lot\"]\n[backup]\nschedule = \"off\"\n",
    );
    master_data(&stack, 0);
    let token = create_token_granted(&stack.plant.data_dir, "scanner-1");
    let client = stack.plant.client();
    let url = stack.plant.url("/api/v1/transactions");
    let post = |from: u64| {
        // Two partners and a move of 3 bolts to a customer, named by seq.
        let batch: Vec<Value> = (from..from + 3)
            .map(|i| match i % 3 {
                0 => json!({"key": format!("r-{i}"), "kind": "stock.move", "payload": {"product": "PLT-C1", "quantity": 3, "location": "WH/Stock", "location_dest": "Partners/Customers", "reference": format!("R-{i:02}")}}),
                _ => json!({"key": format!("r-{i}"), "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": format!("R-{i:02}")}}}),
            })
            .collect();
        let (code, body) = rt().block_on(post_json(&client, &url, &token, &Value::Array(batch)));
        assert_eq!(code, 201, "{body}");
    };
    let state = || {
        odoo_shell(&stack, "import json\nc1 = env['product.product'].search([('default_code', '=', 'PLT-C1')])\nstock = env.ref('stock.stock_location_stock')\nq = sum(env['stock.quant'].search([('product_id', '=', c1.id), ('location_id', '=', stock.id)]).mapped('quantity'))\nnames = sorted(env['res.partner'].search([('name', '=like', 'R-%')]).mapped('name') + env['stock.move'].search([('name', '=like', 'R-%'), ('state', '=', 'done')]).mapped('name'))\nprint('PLANTD_JSON=' + json.dumps({'c1': q, 'names': names}))\n")
    };
    post(1);
    wait_applied(&stack, 3, Duration::from_secs(120));
    let id = stack.cli_ok(&["backup", "run"]);
    let id = id.lines().last().unwrap().trim().to_string();
    post(4);
    post(7);
    wait_applied(&stack, 9, Duration::from_secs(120));
    let all: Vec<String> = (1..=9).map(|i| format!("R-{i:02}")).collect();
    assert_eq!(state(), json!({"c1": 1000.0 - 9.0, "names": all}));

    // The older backup restored: Odoo is back to seq 3, the cursor follows, and seqs 4 to 9
    // are applied again: every record once, and the stock moved once per move.
    let out = stack.cli_ok(&["backup", "restore", &id, "--json"]);
    let restored: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(restored["apply"]["rewound"]["from"], 9, "{restored:#}");
    assert_eq!(restored["apply"]["rewound"]["to"], 3, "{restored:#}");
    let s = wait_applied(&stack, 9, Duration::from_secs(300));
    assert_eq!(s["rewound"]["to"], 3, "{s:#}");
    assert_eq!(state(), json!({"c1": 1000.0 - 9.0, "names": all}));
}

/// plantd_apply validates a batch's transfers together; when Odoo refuses that (here a move
/// of a lot-tracked product without a lot), the batch is carried out again run by run, so the
/// queue still stops at exactly the refused transaction, with Odoo's message, and everything
/// before it is applied once (the earlier move done, its stock moved once).
#[test]
fn a_refused_move_among_a_batchs_transfers_or_a_partner_linking_a_user_stops_the_queue_there_on_real_odoo_18(
) {
    if !real_odoo(
        "a_refused_move_among_a_batchs_transfers_or_a_partner_linking_a_user_stops_the_queue_there_on_real_odoo_18",
    ) {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("odoo.key");
    let stack = real_stack(
        &key_file,
        "[apply]\nlocal = true\n[apply.kinds.\"odoo.create\"]\nmodels = [\"res.partner\"]\n",
    );
    master_data(&stack, 0);
    let on_hand = "import json\nc2 = env['product.product'].search([('default_code', '=', 'PLT-C2')])\nstock = env.ref('stock.stock_location_stock')\nq = sum(env['stock.quant'].search([('product_id', '=', c2.id), ('location_id', '=', stock.id)]).mapped('quantity'))\npartners = env['res.partner'].search([('name', '=like', 'REF-%')], order='id').mapped('name')\nmoves = {m.name: [m.state, m.picking_id.state] for m in env['stock.move'].search([('name', '=like', 'REF-%')])}\nprint('PLANTD_JSON=' + json.dumps({'c2': q, 'partners': partners, 'moves': moves}))\n";
    let before = odoo_shell(&stack, on_hand);
    odoo_shell(&stack, "import json\nenv['product.product'].create({'name': 'Lotted', 'default_code': 'PLT-LOT', 'is_storable': True, 'tracking': 'lot'})\nenv.cr.commit()\nprint('PLANTD_JSON=1')\n");
    let token = create_token_granted(&stack.plant.data_dir, "scanner-1");
    let partner = |i: u64| json!({"key": format!("ref-{i}"), "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": format!("REF-{i}")}}});
    let move_of = |i: u64, product: &str| json!({"key": format!("ref-{i}"), "kind": "stock.move", "payload": {"product": product, "quantity": 1, "location": "WH/Stock", "location_dest": "Partners/Customers", "reference": format!("REF-{i}")}});
    let batch = vec![
        partner(1),
        move_of(2, "PLT-C2"),
        partner(3),
        move_of(4, "PLT-LOT"),
        partner(5),
        move_of(6, "PLT-C2"),
    ];
    let (code, body) = rt().block_on(post_json(
        &stack.plant.client(),
        &stack.plant.url("/api/v1/transactions"),
        &token,
        &Value::Array(batch),
    ));
    assert_eq!(code, 201, "{body}");
    let s = crate::odoo::wait_apply(&stack, "the queue to stop at seq 4", |s| {
        s["stopped_at"] == 4
    });
    assert_eq!(s["applied_seq"], 3, "{s:#}");
    assert_eq!(s["odoo_module"], true, "{s:#}");
    assert!(
        s["message"].as_str().unwrap_or("").contains("Lot/Serial"),
        "Odoo's own refusal: {s:#}"
    );
    let after = odoo_shell(&stack, on_hand);
    assert_eq!(after["partners"], json!(["REF-1", "REF-3"]), "{after}");
    assert_eq!(after["moves"]["REF-2"], json!(["done", "done"]), "{after}");
    assert!(after["moves"]["REF-6"].is_null(), "{after}");
    assert_eq!(
        before["c2"].as_f64().unwrap() - after["c2"].as_f64().unwrap(),
        1.0,
        "the one move before the refused one moved its stock once: {before} {after}"
    );

    // A partner whose users field names the admin (res.partner is allowed, res.users is not):
    // Odoo's import would move the admin user onto the new partner. The queue stops there
    // before Odoo sees it, the admin keeps their partner, and once it is parked the partner
    // after it goes through.
    stack.cli_ok(&["apply", "park", "4"]);
    wait_applied(&stack, 6, Duration::from_secs(120));
    let admin = "import json\nadmin = env.ref('base.user_admin')\nprint('PLANTD_JSON=' + json.dumps({'partner': admin.partner_id.name, 'linked': env['res.partner'].search_count([('name', '=', 'LINKS-ADMIN')])}))\n";
    let before = odoo_shell(&stack, admin);
    let (code, body) = rt().block_on(post_json(
        &stack.plant.client(),
        &stack.plant.url("/api/v1/transactions"),
        &token,
        &json!([
            {"key": "link-admin", "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": "LINKS-ADMIN", "user_ids/id": "base.user_admin"}}},
            partner(8),
        ]),
    ));
    assert_eq!(code, 201, "{body}");
    let s = crate::odoo::wait_apply(&stack, "the queue to stop at seq 7", |s| {
        s["stopped_at"] == 7
    });
    assert!(
        s["message"]
            .as_str()
            .unwrap_or("")
            .contains("res.partner.user_ids is a one2many to res.users, a security model"),
        "{s:#}"
    );
    let after = odoo_shell(&stack, admin);
    assert_eq!(after, before, "the admin user is untouched");
    assert_eq!(after["linked"], 0, "{after}");
    stack.cli_ok(&["apply", "park", "7"]);
    wait_applied(&stack, 8, Duration::from_secs(120));
    let partners = odoo_shell(&stack, on_hand)["partners"].clone();
    assert_eq!(partners, json!(["REF-1", "REF-3", "REF-5", "REF-8"]));
}
