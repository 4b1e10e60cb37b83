//! Against a real Odoo 18 (the image `images/build-odoo.sh` builds from Odoo's source): every
//! shipped kind does what its name says, at the plant (its own stack) and in the centre (the
//! hub's apply to a central Odoo of its own), with records named by code, barcode or external
//! id, so that the two Odoos' different database ids do not matter.
//!
//! These tests run whenever the image exists, and print one loud SKIPPED line otherwise. The
//! emulator-based tests cover the same paths on machines without it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{create_token_granted, post_json, rt};
use crate::odoo::apply_status;
pub use plantd_testkit::real_odoo::*;

use crate::stack::TestStack;

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
