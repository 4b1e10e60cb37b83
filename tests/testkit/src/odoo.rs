//! Odoo in a test stack: the emulator's master data, `plantd odoo` calls, the apply's state at
//! the plant and at the hub, and a central Odoo for the hub.

use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};

use crate::stack::TestStack;

pub fn odoo(stack: &TestStack, args: &[&str]) -> Output {
    let mut all = vec!["odoo", "call"];
    all.extend_from_slice(args);
    stack.cli(&all)
}

/// Writes the emulator's API key to `key_file` and returns it. The emulator takes its admin
/// password as an API key of user admin (real Odoo issues keys in Preferences, Account
/// Security).
pub fn write_emulator_key(stack: &TestStack, key_file: &std::path::Path) -> String {
    let secrets: Value = serde_json::from_slice(
        &std::fs::read(stack.plant.data_dir.join("stack/secrets.json")).unwrap(),
    )
    .unwrap();
    let key = secrets["odoo_admin_password"].as_str().unwrap().to_string();
    std::fs::write(key_file, format!("{key}\n")).unwrap();
    key
}

pub fn ok(out: &Output) -> (Value, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

/// What the container logged (the emulator logs to stderr, as Odoo does).
pub fn logs(container: &str) -> String {
    let out = crate::stack::docker(&["logs", container]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `plantd odoo call MODEL METHOD ARGS` that must succeed: its answer.
pub fn call(stack: &TestStack, model: &str, method: &str, args: Value) -> Value {
    ok(&odoo(stack, &[model, method, &args.to_string()])).0
}

/// Creates records (one call) and returns their ids; a list of values gives a list of ids
/// through both APIs.
pub fn create(stack: &TestStack, model: &str, vals: Vec<Value>) -> Vec<i64> {
    let ids = call(
        stack,
        model,
        "create",
        Value::Array(vec![Value::Array(vals)]),
    );
    ids.as_array()
        .unwrap_or_else(|| panic!("{model}.create answered {ids}"))
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect()
}

/// The database ids of the master data [`emulator_master_data`] made.
#[derive(Debug, Clone, Copy)]
pub struct MasterData {
    pub bolt: i64,
    pub stock: i64,
    pub vendors: i64,
    pub customers: i64,
    pub receipts: i64,
}

/// Master data in an Odoo emulator, made as an admin would (through `plantd odoo call`), for
/// the shipped kinds to name by code: the product PLT-BOLT (barcode 4006381333931, external id
/// plant.bolt); the locations WH/Stock, Partners/Vendors and Partners/Customers; receipt,
/// delivery and internal operation types; a productive loss reason; the work center Welding
/// with the manufacturing order PLT/MO/1 and its work order (external id plant.wo_1).
pub fn emulator_master_data(stack: &TestStack) -> MasterData {
    let bolt = create(
        stack,
        "product.product",
        vec![
            json!({"name": "Bolt", "default_code": "PLT-BOLT", "barcode": "4006381333931", "is_storable": true}),
        ],
    )[0];
    let locations = create(
        stack,
        "stock.location",
        vec![
            json!({"name": "Stock", "complete_name": "WH/Stock", "usage": "internal"}),
            json!({"name": "Vendors", "complete_name": "Partners/Vendors", "usage": "supplier"}),
            json!({"name": "Customers", "complete_name": "Partners/Customers", "usage": "customer"}),
        ],
    );
    let (stock, vendors, customers) = (locations[0], locations[1], locations[2]);
    let types = create(
        stack,
        "stock.picking.type",
        vec![
            json!({"name": "Receipts", "code": "incoming", "sequence": 1, "sequence_code": "IN", "default_location_src_id": vendors, "default_location_dest_id": stock}),
            json!({"name": "Delivery Orders", "code": "outgoing", "sequence": 5, "sequence_code": "OUT", "default_location_src_id": stock, "default_location_dest_id": customers}),
            json!({"name": "Internal Transfers", "code": "internal", "sequence": 2, "sequence_code": "INT", "default_location_src_id": stock, "default_location_dest_id": stock}),
        ],
    );
    create(
        stack,
        "mrp.workcenter.productivity.loss",
        vec![json!({"name": "Productive", "loss_type": "productive", "sequence": 1})],
    );
    let welding = create(
        stack,
        "mrp.workcenter",
        vec![json!({"name": "Welding", "code": "PLT-WC"})],
    )[0];
    let mo = create(
        stack,
        "mrp.production",
        vec![json!({"name": "PLT/MO/1", "product_id": bolt, "product_qty": 10})],
    );
    call(stack, "mrp.production", "action_confirm", json!([mo]));
    let workorder = create(
        stack,
        "mrp.workorder",
        vec![
            json!({"name": "Weld", "workcenter_id": welding, "production_id": mo[0], "state": "ready"}),
        ],
    )[0];
    create(
        stack,
        "ir.model.data",
        vec![
            json!({"module": "plant", "name": "bolt", "model": "product.product", "res_id": bolt}),
            json!({"module": "plant", "name": "stock", "model": "stock.location", "res_id": stock}),
            json!({"module": "plant", "name": "wo_1", "model": "mrp.workorder", "res_id": workorder}),
        ],
    );
    MasterData {
        bolt,
        stock,
        vendors,
        customers,
        receipts: types[0],
    }
}

/// Receipts of `qty` bolts each from the vendors into WH/Stock, named `names`, confirmed (ready
/// to validate), as an admin makes them in Odoo.
pub fn emulator_receipts(stack: &TestStack, data: MasterData, names: &[String], qty: f64) {
    let vals = names
        .iter()
        .map(|name| {
            json!({"name": name, "picking_type_id": data.receipts, "location_id": data.vendors, "location_dest_id": data.stock,
                   "move_ids": [[0, 0, {"name": "Bolt", "product_id": data.bolt, "product_uom_qty": qty}]]})
        })
        .collect();
    let ids = create(stack, "stock.picking", vals);
    call(stack, "stock.picking", "action_confirm", json!([ids]));
}

pub fn apply_status(stack: &TestStack) -> Value {
    serde_json::from_str(&stack.cli_ok(&["apply", "status", "--json"])).unwrap()
}

pub fn wait_apply(stack: &TestStack, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let s = apply_status(stack);
        if check(&s) {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {s:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `field` of the `model` records whose `field` starts with `prefix`, in the order Odoo created
/// them.
pub fn in_id_order(stack: &TestStack, model: &str, field: &str, prefix: &str) -> Vec<String> {
    let (rows, _) = ok(&odoo(
        stack,
        &[
            model,
            "search_read",
            &format!(r#"[[["{field}", "=like", "{prefix}%"]]]"#),
            "--kwargs",
            &format!(r#"{{"fields": ["{field}"], "order": "id"}}"#),
        ],
    ));
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r[field].as_str().unwrap().to_string())
        .collect()
}

pub fn count(stack: &TestStack, model: &str, domain: &str) -> i64 {
    let (n, _) = ok(&odoo(
        stack,
        &[model, "search_count", &format!("[{domain}]")],
    ));
    n.as_i64().unwrap()
}

/// `plantd hub apply status --json`, by plant: (applied_seq, stopped_at, message).
pub fn hub_apply(
    hub: &crate::fleet::Hub,
) -> std::collections::BTreeMap<String, (i64, Option<i64>, String)> {
    let out = hub.cli(&["apply", "status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.iter()
        .map(|p| {
            (
                p["plant"].as_str().unwrap().to_string(),
                (
                    p["applied_seq"].as_i64().unwrap(),
                    p["stopped_at"].as_i64(),
                    p["message"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

/// The central Odoo: an emulator of Odoo `version` in a stack of its own, its key in `keys`.
/// Returns the stack and hub.toml's `[odoo]` section for it.
pub fn central_odoo(keys: &std::path::Path, version: &str) -> (TestStack, String) {
    let key_file = keys.join("central.key");
    let central = TestStack::start(&format!(
        "[odoo]\nkey_file = \"{}\"\n[stack.odoo]\nenv = {{ EMULATED_ODOO_VERSION = \"{version}\" }}\n",
        key_file.display()
    ));
    central.wait_all_healthy(Duration::from_secs(120));
    write_emulator_key(&central, &key_file);
    // The hub runs on the host, off the stack's network: it reaches the emulator at its address
    // there, which a stop and start of the container keeps (no other container joins that
    // network to take it meanwhile).
    let ip = crate::stack::docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &central.container("odoo"),
    ]);
    let section = format!(
        "[odoo]\nurl = \"http://{ip}:8069\"\ndatabase = \"odoo\"\nkey_file = \"{}\"\n",
        key_file.display()
    );
    (central, section)
}
