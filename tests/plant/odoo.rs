//! `plantd odoo call`: one client for both of Odoo's APIs, against the Odoo emulator in the
//! stack plantd supervises (Docker): `/json/2` when the server is 19, `/jsonrpc` when it is 17,
//! with Odoo's own messages for a rejection and a refused key.

use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};

pub use plantd_testkit::odoo::*;

use crate::stack::TestStack;

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A complete stock move with a negative quantity: the emulator's stand-in constraint refuses it.
const NEGATIVE_MOVE: &str = r#"[{"name": "neg", "product_id": 1, "location_id": 1, "location_dest_id": 2, "quantity": -1}]"#;

#[test]
fn odoo_call_speaks_json2_to_odoo_19_and_jsonrpc_to_odoo_17() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("odoo.key");
    let odoo_section = format!("[odoo]\nkey_file = \"{}\"\n", key_file.display());
    let stack = TestStack::start(&odoo_section);
    stack.wait_all_healthy(Duration::from_secs(120));

    // No key yet: the error says where it goes.
    let e = failed(&odoo(&stack, &["res.partner", "search", "[[]]"]));
    assert!(e.contains("reading [odoo] key_file"), "{e}");

    let key = write_emulator_key(&stack, &key_file);

    let (created, via) = ok(&odoo(
        &stack,
        &["res.partner", "create", r#"[{"name": "Acme"}]"#],
    ));
    assert!(
        via.contains("Odoo 19.0") && via.contains("through /json/2"),
        "{via}"
    );
    let id = created
        .as_array()
        .and_then(|a| a[0].as_i64())
        .expect("a list of ids");
    let (found, _) = ok(&odoo(
        &stack,
        &[
            "res.partner",
            "search_read",
            r#"[[["name", "=", "Acme"]]]"#,
            "--kwargs",
            r#"{"fields": ["name"]}"#,
        ],
    ));
    assert_eq!(found, serde_json::json!([{"id": id, "name": "Acme"}]));

    // Odoo's rejection, with its own message; a refused key; bad arguments, said where.
    let e = failed(&odoo(&stack, &["stock.move", "create", NEGATIVE_MOVE]));
    assert!(
        e.contains("Odoo rejected it: The quantity must be positive (stock.move.quantity = -1)"),
        "{e}"
    );
    let e = failed(&odoo(
        &stack,
        &["stock.move", "create", r#"[{"product_uom_qty": 1}]"#],
    ));
    assert!(
        e.contains("Odoo rejected it: The operation cannot be completed:")
            && e.contains("Field: Description (name)"),
        "{e}"
    );
    let e = failed(&odoo(&stack, &["res.partner", "unknown_method", "[]"]));
    assert!(e.contains("Odoo has no such method"), "{e}");
    // A model Odoo lacks (Community has no quality.check), as Odoo 19's /json/2 says it.
    let e = failed(&odoo(&stack, &["quality.check", "search", "[[]]"]));
    assert!(
        e.contains("Odoo has no such method: the model 'quality.check' does not exist"),
        "{e}"
    );
    let e = failed(&odoo(&stack, &["res.partner", "search", "not json"]));
    assert!(e.contains("ARGS:") && e.contains("JSON array"), "{e}");
    let e = failed(&odoo(
        &stack,
        &["res.partner", "search", "[]", "--kwargs", "[1]"],
    ));
    assert!(e.contains("--kwargs:"), "{e}");
    std::fs::write(&key_file, "not-the-key\n").unwrap();
    let e = failed(&odoo(&stack, &["res.partner", "search", "[[]]"]));
    assert!(e.contains("Odoo refused access"), "{e}");
    std::fs::write(&key_file, key).unwrap();
    let seen = logs(&stack.container("odoo"));
    assert!(seen.contains("POST /json/2/res.partner/create"), "{seen}");
    assert!(!seen.contains("POST /jsonrpc"), "{seen}");

    // The same Odoo as version 17: the same calls go through /jsonrpc, and find the record.
    let answer = stack.apply(&format!(
        "{odoo_section}[stack.odoo]\nenv = {{ EMULATED_ODOO_VERSION = \"17.0\" }}\n"
    ));
    assert!(answer.contains("odoo: recreating"), "{answer}");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let (found, via) = loop {
        let out = odoo(
            &stack,
            &[
                "res.partner",
                "search_read",
                r#"[[["name", "=", "Acme"]]]"#,
                "--kwargs",
                r#"{"fields": ["name"]}"#,
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.success() && stderr.contains("Odoo 17.0") {
            break (
                serde_json::from_slice::<Value>(&out.stdout).unwrap(),
                stderr,
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Odoo 17 did not answer: {stderr}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(via.contains("through /jsonrpc"), "{via}");
    assert_eq!(found, serde_json::json!([{"id": id, "name": "Acme"}]));
    let e = failed(&odoo(&stack, &["stock.move", "create", NEGATIVE_MOVE]));
    assert!(
        e.contains("Odoo rejected it: The quantity must be positive"),
        "{e}"
    );
    // /jsonrpc's word for a model Odoo lacks.
    let e = failed(&odoo(&stack, &["quality.check", "search", "[[]]"]));
    assert!(
        e.contains("Odoo rejected it: Object quality.check doesn't exist"),
        "{e}"
    );

    let seen = logs(&stack.container("odoo"));
    assert!(seen.contains("POST /jsonrpc"), "{seen}");
    assert!(!seen.contains("POST /json/2/"), "{seen}");
}

#[test]
fn transactions_reach_the_plants_odoo_once_in_order_and_a_rejection_stops_the_queue() {
    use crate::harness::{create_token_granted, post_json, rt};
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("odoo.key");
    // A kind of the plant's own: a write on a partner found by name.
    let stack = TestStack::start(&format!(
        "[odoo]\nkey_file = \"{}\"\n[apply]\nlocal = true\n[apply.kinds.\"odoo.create\"]\nmodels = [\"res.partner\", \"stock.lot\"]\n[apply.kinds.\"partner.code\"]\nmodel = \"res.partner\"\noperation = \"write\"\nrecord_name = \"partner\"\nvalues = {{ ref = \"code\" }}\n",
        key_file.display()
    ));
    stack.wait_all_healthy(Duration::from_secs(120));
    write_emulator_key(&stack, &key_file);
    let data = emulator_master_data(&stack);
    let token = create_token_granted(&stack.plant.data_dir, "scanner-1");
    let client = stack.plant.client();
    let url = stack.plant.url("/api/v1/transactions");
    let post = |body: Value| rt().block_on(post_json(&client, &url, &token, &body));
    // A stock move of `quantity` bolts from WH/Stock to the customers, described `name`.
    let bolts = |key: &str, product: &str, quantity: i64, name: &str| json!({"key": key, "kind": "stock.move", "payload": {"product": product, "quantity": quantity, "location": "WH/Stock", "location_dest": "Partners/Customers", "reference": name}});

    // What cannot be applied is refused when it arrives, and nothing is journaled.
    let (code, body) = post(json!({"key": "x1", "kind": "scan", "payload": {}}));
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (422, Some("unknown_kind")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stock.move"),
        "{body}"
    );
    let (code, body) = post(json!([
        {"key": "x2", "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": "ok"}}},
        {"key": "x3", "kind": "stock.move", "payload": {"quantity": 1}},
    ]));
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (422, Some("[1].payload")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("name the product.product"),
        "{body}"
    );
    assert_eq!(apply_status(&stack)["last_seq"], 0);

    // 60 of mixed kinds: each lands once, in order; the moves by product code and location
    // names (or barcode and external ids), the time logs on a work order by external id.
    let batch: Vec<Value> = (1..=60)
        .map(|i| match i % 3 {
            0 => json!({"key": format!("t{i}"), "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": format!("P-{i:03}"), "ref": i}}}),
            1 if i % 2 == 0 => json!({"key": format!("t{i}"), "kind": "stock.move", "payload": {"product": "4006381333931", "quantity": i, "location_xmlid": "plant.stock", "location_dest_id": data.customers, "reference": format!("M-{i:03}")}}),
            1 => bolts(&format!("t{i}"), "PLT-BOLT", i, &format!("M-{i:03}")),
            _ => json!({"key": format!("t{i}"), "kind": "workorder.time", "payload": {"workorder_xmlid": "plant.wo_1", "started_at": format!("2026-12-06T{:02}:00:00+01:00", i / 3), "minutes": i}}),
        })
        .collect();
    let (code, body) = post(Value::Array(batch));
    assert_eq!(code, 201, "{body}");
    let s = wait_apply(&stack, "all 60 applied", |s| s["applied_seq"] == 60);
    assert!(s["stopped_at"].is_null(), "{s}");
    assert_eq!(
        count(&stack, "ir.model.data", r#"[["module", "=", "plantd"]]"#),
        60
    );
    assert_eq!(
        count(&stack, "res.partner", r#"[["name", "like", "P-"]]"#),
        20
    );
    // Each move done, in a transfer of its own that is done, out of WH/Stock to the customers.
    let (moves, _) = ok(&odoo(
        &stack,
        &[
            "stock.move",
            "search_read",
            r#"[[["name", "like", "M-"]]]"#,
            "--kwargs",
            r#"{"fields": ["state", "quantity", "product_id", "location_id", "location_dest_id", "picking_id"], "order": "id"}"#,
        ],
    ));
    let moves = moves.as_array().unwrap();
    assert_eq!(moves.len(), 20, "{moves:?}");
    for (n, m) in moves.iter().enumerate() {
        let i = 1 + 3 * n as i64;
        assert_eq!(
            (&m["state"], m["quantity"].as_f64(), &m["product_id"]),
            (&json!("done"), Some(i as f64), &json!(data.bolt)),
            "{m}"
        );
        assert_eq!(
            (&m["location_id"], &m["location_dest_id"]),
            (&json!(data.stock), &json!(data.customers)),
            "{m}"
        );
        let picking = call(
            &stack,
            "stock.picking",
            "read",
            json!([[m["picking_id"]], ["state", "origin", "picking_type_id"]]),
        );
        assert_eq!(picking[0]["state"], "done", "{picking}");
        assert_eq!(picking[0]["origin"], format!("M-{i:03}"), "{picking}");
    }
    // The time logs: on the work order's work center, productive, as long as the payload said.
    let (logs_read, _) = ok(&odoo(
        &stack,
        &[
            "mrp.workcenter.productivity",
            "search_read",
            "[[]]",
            "--kwargs",
            r#"{"fields": ["duration", "loss_type", "date_start"], "order": "id"}"#,
        ],
    ));
    let durations: Vec<f64> = logs_read
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["duration"].as_f64().unwrap())
        .collect();
    assert_eq!(
        durations,
        (1..=20).map(|n| (3 * n - 1) as f64).collect::<Vec<_>>(),
        "{logs_read}"
    );
    assert_eq!(logs_read[0]["loss_type"], "productive", "{logs_read}");
    assert_eq!(
        logs_read[0]["date_start"], "2026-12-05 23:00:00",
        "{logs_read}"
    );
    // In order: ids grow with seq.
    let refs = in_id_order(&stack, "stock.move", "name", "M-");
    let mut sorted = refs.clone();
    sorted.sort();
    assert_eq!((refs.len(), &refs), (20, &sorted));

    // Odoo Community has no quality.check: now that the apply has met this Odoo, the kind is
    // refused at ingest, naming the model.
    let (code, body) = post(
        json!({"key": "qc", "kind": "quality.check", "payload": {"product": "PLT-BOLT", "result": "pass"}}),
    );
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (422, Some("kind")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this Odoo has no model quality.check"),
        "{body}"
    );

    // Seq 61 names a product this Odoo does not have: the queue stops there with the
    // message, and 62 waits behind it.
    let (code, _) = post(json!([
        bolts("bad", "PLT-NOPE", 1, "BAD"),
        {"key": "after", "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": "after-bad"}}},
    ]));
    assert_eq!(code, 201);
    let s = wait_apply(&stack, "the queue to stop at 61", |s| s["stopped_at"] == 61);
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("no product.product \"PLT-NOPE\""),
        "{s}"
    );
    assert_eq!(s["applied_seq"], 60);
    let status = stack.cli_ok(&["status"]);
    assert!(status.contains("stopped at seq 61"), "{status}");
    // Odoo did commit it after all (an operator keyed it in under plantd's external id, as a
    // call that timed out after committing would have): the retry finds it, creates nothing.
    let xmlid = s["external_ids"].as_str().unwrap().replace("<seq>", "61");
    ok(&odoo(
        &stack,
        &[
            "stock.move",
            "load",
            &format!(
                r#"[["id", "product_id/.id", "product_uom_qty", "location_id/.id", "location_dest_id/.id", "name"], [["{xmlid}", "{}", "1", "{}", "{}", "BAD"]]]"#,
                data.bolt, data.stock, data.customers
            ),
        ],
    ));
    stack.cli_ok(&["apply", "retry", "61"]);
    wait_apply(&stack, "61 and 62 applied", |s| s["applied_seq"] == 62);
    assert_eq!(
        count(
            &stack,
            "stock.move",
            r#"[["name", "=", "BAD"], ["state", "=", "done"]]"#
        ),
        1
    );
    assert_eq!(
        count(&stack, "res.partner", r#"[["name", "=", "after-bad"]]"#),
        1
    );

    // A picking that does not exist yet: stopped; parked, the rest goes through; the picking
    // created in Odoo, the replay validates it once.
    let (code, _) = post(json!([
        {"key": "pick", "kind": "stock.picking.validate", "payload": {"picking": "WH/IN/T1"}},
        {"key": "after-pick", "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": "after-pick"}}},
    ]));
    assert_eq!(code, 201);
    let s = wait_apply(&stack, "the queue to stop at 63", |s| s["stopped_at"] == 63);
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("no stock.picking named \"WH/IN/T1\""),
        "{s}"
    );
    let e = stack.cli(&["apply", "park", "62"]);
    assert!(!e.status.success());
    stack.cli_ok(&["apply", "park", "63"]);
    let s = wait_apply(&stack, "64 applied past the parked 63", |s| {
        s["applied_seq"] == 64
    });
    assert_eq!(s["parked"][0]["seq"], 63, "{s}");
    assert_eq!(s["parked"][0]["kind"], "stock.picking.validate", "{s}");
    assert_eq!(
        count(&stack, "res.partner", r#"[["name", "=", "after-pick"]]"#),
        1
    );
    let replay = stack.cli(&["apply", "replay", "63"]);
    assert!(
        !replay.status.success(),
        "still no picking: it stays parked"
    );
    emulator_receipts(&stack, data, &["WH/IN/T1".to_string()], 5.0);
    let out = stack.cli_ok(&["apply", "replay", "63"]);
    assert!(out.contains("no longer parked"), "{out}");
    let (picking, _) = ok(&odoo(
        &stack,
        &[
            "stock.picking",
            "search_read",
            r#"[[["name", "=", "WH/IN/T1"]]]"#,
            "--kwargs",
            r#"{"fields": ["state", "move_ids"]}"#,
        ],
    ));
    assert_eq!(picking[0]["state"], "done", "{picking}");
    let moves = call(
        &stack,
        "stock.move",
        "read",
        json!([picking[0]["move_ids"], ["state", "quantity"]]),
    );
    assert_eq!(
        (&moves[0]["state"], moves[0]["quantity"].as_f64()),
        (&json!("done"), Some(5.0)),
        "{moves}"
    );
    assert!(apply_status(&stack)["parked"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(!stack.cli(&["apply", "replay", "63"]).status.success());

    // Odoo away for a while: the apply waits and says why, skips nothing, and catches up.
    stack.cli_ok(&["stack", "hold", "odoo", "--reason", "test: Odoo away"]);
    let batch: Vec<Value> = (1..=5)
        .map(|i| json!({"key": format!("away-{i}"), "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": format!("away-{i}")}}}))
        .collect();
    assert_eq!(post(Value::Array(batch)).0, 201);
    let s = wait_apply(&stack, "the apply to wait for Odoo", |s| {
        !s["waiting"].is_null()
    });
    assert_eq!(s["applied_seq"], 64, "{s}");
    assert!(s["stopped_at"].is_null(), "{s}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(apply_status(&stack)["applied_seq"], 64);
    stack.cli_ok(&["stack", "release", "odoo"]);
    let s = wait_apply(&stack, "the apply to catch up", |s| s["applied_seq"] == 69);
    assert!(s["waiting"].is_null(), "{s}");
    assert_eq!(
        count(&stack, "res.partner", r#"[["name", "like", "away-"]]"#),
        5
    );

    // Moves go to Odoo as one load; when one cannot be applied (the fifth of ten, seq 74, a
    // product Odoo lacks), the queue still stops exactly there, the four before it applied once.
    let batch: Vec<Value> = (1..=10)
        .map(|i| {
            let product = if i == 5 { "PLT-NOPE" } else { "PLT-BOLT" };
            bolts(&format!("b-{i}"), product, i, &format!("B-{i:02}"))
        })
        .collect();
    assert_eq!(post(Value::Array(batch)).0, 201);
    let s = wait_apply(&stack, "the queue to stop at 74", |s| s["stopped_at"] == 74);
    assert_eq!(s["applied_seq"], 73, "{s}");
    assert_eq!(
        in_id_order(&stack, "stock.move", "name", "B-"),
        ["B-01", "B-02", "B-03", "B-04"]
    );
    stack.cli_ok(&["apply", "park", "74"]);
    wait_apply(&stack, "the rest of the batch", |s| s["applied_seq"] == 79);
    assert_eq!(
        in_id_order(&stack, "stock.move", "name", "B-"),
        ["B-01", "B-02", "B-03", "B-04", "B-06", "B-07", "B-08", "B-09", "B-10"]
    );
    assert_eq!(
        count(
            &stack,
            "stock.move",
            r#"[["name", "=like", "B-%"], ["state", "=", "done"]]"#
        ),
        9
    );

    // A write: the partner P-003 gets its new code, and nothing else changes.
    let (code, body) = post(
        json!({"key": "w1", "kind": "partner.code", "payload": {"partner": "P-003", "code": "X-3"}}),
    );
    assert_eq!(code, 201, "{body}");
    wait_apply(&stack, "the write applied", |s| s["applied_seq"] == 80);
    let (partner, _) = ok(&odoo(
        &stack,
        &[
            "res.partner",
            "search_read",
            r#"[[["name", "=", "P-003"]]]"#,
            "--kwargs",
            r#"{"fields": ["ref"]}"#,
        ],
    ));
    assert_eq!(partner.as_array().map(Vec::len), Some(1), "{partner}");
    assert_eq!(partner[0]["ref"], "X-3", "{partner}");

    // A receipt validated in part (the rest in a backorder) and 4 of a production of 10 (the
    // rest in a backorder), as real Odoo does them (real_odoo.rs).
    emulator_receipts(&stack, data, &["WH/IN/P1".to_string()], 50.0);
    let (code, body) = post(json!([
        {"key": "p1", "kind": "stock.picking.validate", "payload": {"picking": "WH/IN/P1", "lines": [{"product": "PLT-BOLT", "quantity": 30}]}},
        {"key": "mo1", "kind": "mrp.production.done", "payload": {"production": "PLT/MO/1", "quantity": 4}},
    ]));
    assert_eq!(code, 201, "{body}");
    let s = wait_apply(&stack, "the receipt and the production", |s| {
        s["applied_seq"] == 82 || !s["stopped_at"].is_null()
    });
    assert!(s["stopped_at"].is_null(), "{s}");
    let receipt = call(
        &stack,
        "stock.picking",
        "search_read",
        json!([[["name", "=", "WH/IN/P1"]], ["state", "move_ids"]]),
    );
    assert_eq!(receipt[0]["state"], "done", "{receipt}");
    let done = call(
        &stack,
        "stock.move",
        "read",
        json!([receipt[0]["move_ids"], ["quantity", "state"]]),
    );
    assert_eq!(
        (done[0]["quantity"].as_f64(), &done[0]["state"]),
        (Some(30.0), &json!("done")),
        "{done}"
    );
    let backorder = call(
        &stack,
        "stock.picking",
        "search_read",
        json!([
            [["backorder_id", "=", receipt[0]["id"]]],
            ["state", "move_ids"]
        ]),
    );
    assert_eq!(backorder.as_array().map(Vec::len), Some(1), "{backorder}");
    assert_eq!(backorder[0]["state"], "assigned", "{backorder}");
    let rest = call(
        &stack,
        "stock.move",
        "read",
        json!([backorder[0]["move_ids"], ["product_uom_qty"]]),
    );
    assert_eq!(rest[0]["product_uom_qty"].as_f64(), Some(20.0), "{rest}");
    let orders = call(
        &stack,
        "mrp.production",
        "search_read",
        json!([
            [["name", "=like", "PLT/MO/1%"]],
            ["name", "state", "product_qty", "qty_produced"],
            0,
            0,
            "id"
        ]),
    );
    assert_eq!(
        orders,
        json!([
            {"id": orders[0]["id"], "name": "PLT/MO/1-001", "state": "done", "product_qty": 4.0, "qty_produced": 4.0},
            {"id": orders[1]["id"], "name": "PLT/MO/1-002", "state": "confirmed", "product_qty": 6.0, "qty_produced": 0.0},
        ]),
        "{orders}"
    );
    assert_eq!(
        count(&stack, "mrp.workorder", r#"[["state", "=", "done"]]"#),
        1
    );

    // A partner (a model this device may create) whose users field would link an existing
    // user: the queue stops there, naming the field and the security model, before Odoo sees
    // it; parked, the partner after it goes through.
    let (code, body) = post(json!([
        {"key": "link-admin", "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": "LINKS-ADMIN", "user_ids/.id": 2}}},
        {"key": "after-link", "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": "after-link"}}},
    ]));
    assert_eq!(code, 201, "{body}");
    let s = wait_apply(&stack, "the queue to stop at 83", |s| s["stopped_at"] == 83);
    let message = s["message"].as_str().unwrap_or("");
    assert!(
        message.contains("res.partner.user_ids") && message.contains("res.users, a security model"),
        "{s}"
    );
    assert_eq!(
        count(&stack, "res.partner", r#"[["name", "=", "LINKS-ADMIN"]]"#),
        0
    );
    stack.cli_ok(&["apply", "park", "83"]);
    wait_apply(&stack, "the partner after it", |s| s["applied_seq"] == 84);
    assert_eq!(
        count(&stack, "res.partner", r#"[["name", "=", "after-link"]]"#),
        1
    );
}

#[test]
fn the_hub_applies_each_plants_transactions_to_the_central_odoo_once_in_order() {
    use crate::fleet::{enroll, free_udp_addr, Hub, Pg};
    use crate::harness::{create_token_granted, post_json, rt, Plant};
    let keys = tempfile::tempdir().unwrap();
    let (central, odoo_section) = central_odoo(keys.path(), "19.0");
    emulator_master_data(&central);
    let hub_toml = format!("{odoo_section}[apply]\ncentral = true\nworkers = 2\n");

    // Two hub replicas on one PostgreSQL: both apply, each plant by one at a time.
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start_with(&dir.path().join("hub-a"), &pg, free_udp_addr(), &hub_toml);
    let _replica = Hub::start_with(&dir.path().join("hub-b"), &pg, free_udp_addr(), &hub_toml);
    let mut plants = Vec::new();
    for name in ["lyon", "turin"] {
        let data = dir.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        let token = create_token_granted(&data, "scanner-1");
        let out = enroll(&data, &hub, &hub.token(name, "1h"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plant = Plant::start(&data, "[apply]\nlocal = false\n[apply.kinds.\"odoo.create\"]\nmodels = [\"res.partner\", \"stock.lot\"]\n");
        plants.push((name, plant, token));
    }
    let n = 300;
    let runtime = rt();
    for (name, plant, token) in &plants {
        let (client, url) = (plant.client(), plant.url("/api/v1/transactions"));
        for chunk in 0..n / 50 {
            let batch: Vec<Value> = (chunk * 50 + 1..=chunk * 50 + 50)
                .map(|i| match i % 2 {
                    0 => json!({"key": format!("{name}-{i}"), "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": format!("{name}-{i:04}")}}}),
                    _ => json!({"key": format!("{name}-{i}"), "kind": "stock.move", "payload": {"product": "PLT-BOLT", "quantity": 1, "location": "WH/Stock", "location_dest": "Partners/Customers", "reference": format!("{name}-{i:04}")}}),
                })
                .collect();
            let (code, body) =
                runtime.block_on(post_json(&client, &url, token, &Value::Array(batch)));
            assert_eq!(code, 201, "{body}");
        }
    }
    // A hub replica killed in the middle of it: the other goes on, and nothing is applied twice.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while hub_apply(&hub).values().all(|(a, _, _)| *a < 50) {
        assert!(
            std::time::Instant::now() < deadline,
            "the apply did not start: {:?}",
            hub_apply(&hub)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    hub.kill9();
    hub.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let s = hub_apply(&hub);
        if s.values().all(|(a, _, _)| *a == n as i64) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the central apply did not finish: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    for (name, _, _) in &plants {
        let (ids, _) = ok(&odoo(
            &central,
            &[
                "ir.model.data",
                "search_count",
                &format!(r#"[[["module", "=", "plantd"], ["name", "like", "{name}_"]]]"#),
            ],
        ));
        assert_eq!(ids, n, "{name}: every transaction has its external id");
        for (model, field) in [("stock.move", "name"), ("res.partner", "name")] {
            let values = in_id_order(&central, model, field, &format!("{name}-"));
            let mut sorted = values.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(values.len(), n / 2, "{name}: each {model} created once");
            assert_eq!(values, sorted, "{name}: {model} in seq order");
        }
        assert_eq!(
            count(
                &central,
                "stock.move",
                &format!(r#"[["name", "=like", "{name}-%"], ["state", "=", "done"]]"#)
            ),
            n as i64 / 2,
            "{name}: every move done"
        );
    }

    // The central Odoo rejects one of lyon's: lyon's queue stops there, turin's goes on.
    let (_, lyon, token) = &plants[0];
    let (code, _) = runtime.block_on(post_json(
        &lyon.client(),
        &lyon.url("/api/v1/transactions"),
        token,
        &json!([
            {"key": "lyon-bad", "kind": "stock.move", "payload": {"product": "PLT-NOPE", "quantity": 5, "location": "WH/Stock", "location_dest": "Partners/Customers"}},
            {"key": "lyon-after", "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": "lyon-after"}}},
        ]),
    ));
    assert_eq!(code, 201);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (applied, stopped, message) = loop {
        let s = hub_apply(&hub);
        if s["lyon"].1.is_some() {
            break s["lyon"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "lyon's queue did not stop: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!((applied, stopped), (n as i64, Some(n as i64 + 1)));
    assert!(
        message.contains("no product.product \"PLT-NOPE\""),
        "{message}"
    );
    let out = hub.cli(&["apply", "park", "lyon", &(n + 1).to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while hub_apply(&hub)["lyon"].0 != n as i64 + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            hub_apply(&hub)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (after, _) = ok(&odoo(
        &central,
        &[
            "res.partner",
            "search_count",
            r#"[[["name", "=", "lyon-after"]]]"#,
        ],
    ));
    assert_eq!(after, 1);
    // Turin's queue was never stopped: what it takes now is applied.
    let (_, turin, turin_token) = &plants[1];
    let (code, _) = runtime.block_on(post_json(
        &turin.client(),
        &turin.url("/api/v1/transactions"),
        turin_token,
        &json!({"key": "turin-late", "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": "turin-late"}}}),
    ));
    assert_eq!(code, 201);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while hub_apply(&hub)["turin"].0 != n as i64 + 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            hub_apply(&hub)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(hub_apply(&hub)["lyon"].0, n as i64 + 2);
    let status = hub.cli(&["apply", "status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains(&format!("parked seq {}", n + 1)), "{text}");
}
