//! Apply under fire: 10 000 shop-floor transactions of mixed kinds reach the plant's Odoo and
//! the central Odoo exactly once and in seq order, while the test kills the plant and the hub
//! with `kill -9` at random during apply and stops both Odoo emulators for a while.
//!
//! Both Odoos are the emulator, each in a stack of its own that plantd supervises (Docker); the
//! hub stores in a throwaway PostgreSQL. The devices post in batches of 50 at about 500
//! transactions a second and post a batch again, with the same keys, when the plant does not
//! answer. The schedule is random; its seed is printed (`PLANTD_CHAOS_SEED` replays it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::chaos::Rng;
use crate::fleet::{enroll, free_udp_addr, Hub, Pg};
use crate::harness::{client_for, create_token_granted, rt};
use crate::odoo::{
    apply_status, central_odoo, count, emulator_master_data, emulator_receipts, hub_apply, logs,
    odoo, ok, write_emulator_key,
};
use crate::stack::TestStack;

const N: u64 = 10_000;
const BATCH: u64 = 50;
const PLANT: &str = "lyon";

/// What transaction `i` (1-based; its seq once journaled) is, and the Odoo model it lands in.
/// Each batch of 50 is one device's kind: partners, stock moves (by product code and location
/// names, each done in a transfer of its own), lots of a product named by external id, and
/// time logs on a work order named by external id. One batch in twenty starts with five
/// picking validations (actions: no external id, guarded by the picking's state).
fn transaction(i: u64) -> (Value, &'static str) {
    let (b, j) = ((i - 1) / BATCH, (i - 1) % BATCH);
    let key = format!("{PLANT}-{i}");
    if b % 20 == 19 && j < 5 {
        let picking = format!("CH/IN/{:03}", (b / 20) * 5 + j);
        return (
            json!({"key": key, "kind": "stock.picking.validate", "payload": {"picking": picking}}),
            "stock.picking",
        );
    }
    let name = format!("{PLANT}-{i:05}");
    match b % 4 {
        0 => (
            json!({"key": key, "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": name}}}),
            "res.partner",
        ),
        1 => (
            json!({"key": key, "kind": "stock.move", "payload": {"product": "PLT-BOLT", "quantity": 1 + i % 9, "location": "WH/Stock", "location_dest": "Partners/Customers", "reference": name}}),
            "stock.move",
        ),
        2 => (
            json!({"key": key, "kind": "odoo.create", "payload": {"model": "stock.lot", "values": {"name": name, "product_id/id": "plant.bolt"}}}),
            "stock.lot",
        ),
        _ => (
            json!({"key": key, "kind": "workorder.time", "payload": {"workorder_xmlid": "plant.wo_1", "started_at": "2026-12-06T08:00:00+01:00", "minutes": i}}),
            "mrp.workcenter.productivity",
        ),
    }
}

fn pickings() -> Vec<String> {
    (1..=N)
        .filter_map(|i| match transaction(i) {
            (t, "stock.picking") => Some(t["payload"]["picking"].as_str().unwrap().to_string()),
            _ => None,
        })
        .collect()
}

/// The device side: posts every batch, in order, until the plant answers it; checks that each
/// transaction got its own seq (a batch posted again gets the seqs of its first post).
fn post_all(
    cert: std::path::PathBuf,
    addr: std::net::SocketAddr,
    url: String,
    token: String,
    posted: Arc<AtomicU64>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let client = client_for(&cert, addr);
        rt().block_on(async {
            let mut retries = 0;
            for b in 0..N / BATCH {
                let batch: Vec<Value> = (b * BATCH + 1..=b * BATCH + BATCH)
                    .map(|i| transaction(i).0)
                    .collect();
                let tick = tokio::time::sleep(Duration::from_millis(100));
                loop {
                    let answer = match client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&batch)
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                        Ok(r) if r.status().is_server_error() => None,
                        Ok(r) => panic!("batch {b}: {} {:?}", r.status(), r.text().await),
                        Err(_) => None,
                    };
                    if let Some(answer) = answer {
                        let seqs: Vec<u64> = answer
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|a| a["seq"].as_u64().unwrap())
                            .collect();
                        let want: Vec<u64> = (b * BATCH + 1..=b * BATCH + BATCH).collect();
                        assert_eq!(seqs, want, "batch {b}: seqs");
                        break;
                    }
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                posted.store((b + 1) * BATCH, Ordering::Relaxed);
                tick.await;
            }
            retries
        })
    })
}

fn local_applied(stack: &TestStack) -> u64 {
    apply_status(stack)["applied_seq"].as_u64().unwrap()
}

fn central_applied(hub: &Hub) -> u64 {
    hub_apply(hub).get(PLANT).map_or(0, |p| p.0 as u64)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    KillPlant,
    KillHub,
    OdooAway,
}

/// `field` of every `model` record matching `domain`, in the order Odoo created them.
fn values_in_id_order(stack: &TestStack, model: &str, domain: &str, field: &str) -> Vec<String> {
    let (rows, _) = ok(&odoo(
        stack,
        &[
            model,
            "search_read",
            &format!("[{domain}]"),
            "--kwargs",
            &format!(r#"{{"fields": ["{field}"], "order": "id"}}"#),
        ],
    ));
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| match &r[field] {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        })
        .collect()
}

/// What one Odoo holds of the plant's transactions: each created once, in seq order, under
/// its external id; each picking validated.
fn check_odoo(side: &str, stack: &TestStack, prefix: &str) {
    // Every created record's external id, in the order Odoo made them: the seqs in order, each
    // once, each on the model its kind maps to.
    let (rows, _) = ok(&odoo(
        stack,
        &[
            "ir.model.data",
            "search_read",
            &format!(r#"[[["module", "=", "plantd"], ["name", "=like", "{prefix}_%"]]]"#),
            "--kwargs",
            r#"{"fields": ["name", "model"], "order": "id"}"#,
        ],
    ));
    let got: Vec<(u64, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap();
            let seq = name
                .strip_prefix(&format!("{prefix}_"))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{side}: external id {name}"));
            (seq, r["model"].as_str().unwrap().to_string())
        })
        .collect();
    let want: Vec<(u64, String)> = (1..=N)
        .map(|i| (i, transaction(i).1))
        .filter(|(_, m)| *m != "stock.picking")
        .map(|(i, m)| (i, m.to_string()))
        .collect();
    if got != want {
        let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).take(5).collect();
        let out_of_order = got.windows(2).find(|w| w[0].0 >= w[1].0);
        panic!(
            "{side}: {} external ids, {} expected; first missing {missing:?}; first out of order {out_of_order:?}",
            got.len(),
            want.len()
        );
    }
    // Each record once (a second create would show as a second record with the same value),
    // in seq order.
    for (model, field) in [
        ("res.partner", "name"),
        ("stock.move", "name"),
        ("stock.lot", "name"),
    ] {
        let values = values_in_id_order(
            stack,
            model,
            &format!(r#"[["{field}", "=like", "{PLANT}-%"]]"#),
            field,
        );
        let want: Vec<String> = (1..=N)
            .filter(|i| transaction(*i).1 == model)
            .map(|i| format!("{PLANT}-{i:05}"))
            .collect();
        assert_eq!(
            (values.len(), values == want),
            (want.len(), true),
            "{side}: {model} records once each, in seq order"
        );
    }
    // Each move done (validated in its transfer), once.
    let moves = (1..=N)
        .filter(|i| transaction(*i).1 == "stock.move")
        .count();
    assert_eq!(
        count(
            stack,
            "stock.move",
            &format!(r#"[["name", "=like", "{PLANT}-%"], ["state", "=", "done"]]"#)
        ),
        moves as i64,
        "{side}: every stock move done"
    );
    // Odoo computes a time log's duration (minutes) from its start and end.
    let minutes = values_in_id_order(stack, "mrp.workcenter.productivity", "[]", "duration");
    let want: Vec<String> = (1..=N)
        .filter(|i| transaction(*i).1 == "mrp.workcenter.productivity")
        .map(|i| json!(i as f64).to_string())
        .collect();
    assert_eq!(
        (minutes.len(), minutes == want),
        (want.len(), true),
        "{side}: work order time logs once each, in seq order"
    );
    let states = values_in_id_order(
        stack,
        "stock.picking",
        r#"[["name", "=like", "CH/IN/%"]]"#,
        "state",
    );
    assert_eq!(
        states,
        vec!["done"; pickings().len()],
        "{side}: every picking validated"
    );
}

fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: not within {limit:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

#[test]
fn ten_thousand_transactions_reach_both_odoos_once_in_order_through_kills_and_an_odoo_outage() {
    let mut rng = Rng::from_env();
    let keys = tempfile::tempdir().unwrap();

    // The central Odoo, an Odoo 17 (the hub's apply speaks /jsonrpc to it, the plant's
    // /json/2 to its Odoo 19), and the hub applying to it.
    let (central, odoo_section) = central_odoo(keys.path(), "17.0");
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start_with(
        &dir.path().join("hub"),
        &pg,
        free_udp_addr(),
        &format!("{odoo_section}[apply]\ncentral = true\nworkers = 2\n"),
    );

    // The plant: its own stack and Odoo, enrolled before it applies (the external ids carry the
    // enrolled name), then applying locally.
    let local_key = keys.path().join("local.key");
    let odoo_section = format!("[odoo]\nkey_file = \"{}\"\n", local_key.display());
    let mut stack = TestStack::start(&odoo_section);
    stack.wait_all_healthy(Duration::from_secs(120));
    write_emulator_key(&stack, &local_key);
    let out = enroll(&stack.plant.data_dir, &hub, &hub.token(PLANT, "1h"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stack.restart_plantd(&format!("{odoo_section}[apply]\nlocal = true\n[apply.kinds.\"odoo.create\"]\nmodels = [\"res.partner\", \"stock.lot\"]\n"));
    let prefix = apply_status(&stack)["external_ids"]
        .as_str()
        .unwrap()
        .strip_prefix("plantd.")
        .and_then(|s| s.strip_suffix("_<seq>"))
        .unwrap()
        .to_string();
    assert_eq!(prefix, PLANT, "the local apply names records by the plant");

    // The master data the kinds name, and the receipts the validations act on, in both Odoos
    // (as an admin sets them up).
    for side in [&stack, &central] {
        let data = emulator_master_data(side);
        emulator_receipts(side, data, &pickings(), 5.0);
    }

    let token = create_token_granted(&stack.plant.data_dir, "line-3");
    let posted = Arc::new(AtomicU64::new(0));
    let devices = post_all(
        stack.plant.data_dir.join("tls/api.crt"),
        stack.plant.addr,
        stack.plant.url("/api/v1/transactions"),
        token,
        posted.clone(),
    );

    // The schedule: three kills of each, and both Odoos away once, early, all in random order,
    // a random 0.5 to 2.5 s apart.
    let mut plan = vec![Event::KillPlant; 3];
    plan.extend([Event::KillHub; 3]);
    for i in (1..plan.len()).rev() {
        plan.swap(i, rng.below(i as u64 + 1) as usize);
    }
    plan.insert(rng.below(3) as usize, Event::OdooAway);
    let started = Instant::now();
    let mut log = Vec::new();
    // kill -9s of (the plant, the hub) while their applies were behind.
    let mut kills = (0, 0);
    for event in plan {
        std::thread::sleep(Duration::from_millis(500 + rng.below(2000)));
        let (local, central_seq) = (local_applied(&stack), central_applied(&hub));
        let at = format!(
            "{:5.1} s: posted {:5}, applied at the plant {local:5}, at the hub {central_seq:5}",
            started.elapsed().as_secs_f64(),
            posted.load(Ordering::Relaxed)
        );
        match event {
            // A kill is what it claims only while that side's apply is behind; one that would
            // come after it is passed over (and counted below).
            Event::KillPlant if local == N => {
                log.push(format!(
                    "{at}: {event:?} passed over, the plant had applied all"
                ));
                continue;
            }
            Event::KillHub if central_seq == N => {
                log.push(format!(
                    "{at}: {event:?} passed over, the hub had applied all"
                ));
                continue;
            }
            Event::KillPlant => {
                stack.kill9_and_restart();
                kills.0 += 1;
            }
            Event::KillHub => {
                hub.kill9();
                std::thread::sleep(Duration::from_millis(200 + rng.below(1300)));
                hub.restart();
                kills.1 += 1;
            }
            Event::OdooAway => {
                for side in [&stack, &central] {
                    side.cli_ok(&["stack", "hold", "odoo", "--reason", "test: Odoo away"]);
                }
                // Calls in flight when Odoo stopped end within a few seconds; from then on,
                // for the rest of the hold, the hub applies nothing.
                std::thread::sleep(Duration::from_secs(3));
                let during = central_applied(&hub);
                std::thread::sleep(Duration::from_millis(5000 + rng.below(4000)));
                assert_eq!(
                    central_applied(&hub),
                    during,
                    "the hub applied while the central Odoo was away"
                );
                // The plant says why it waits.
                let s = apply_status(&stack);
                assert!(
                    s["waiting"].as_str().is_some_and(|w| !w.is_empty()),
                    "the plant's apply does not say it waits for Odoo: {s}"
                );
                for side in [&stack, &central] {
                    side.cli_ok(&["stack", "release", "odoo"]);
                }
            }
        }
        log.push(format!("{at}: {event:?}"));
    }
    let retries = devices.join().expect("every batch was acknowledged");
    assert!(
        kills.0 > 0 && kills.1 > 0,
        "the applies finished before the schedule killed each side once: {kills:?}\n{}",
        log.join("\n")
    );
    println!(
        "{}\nall {N} posted after {:.1} s ({retries} batches posted again)",
        log.join("\n"),
        started.elapsed().as_secs_f64()
    );

    let (mut local_done, mut central_done) = (None, None);
    wait_until("both applies to finish", Duration::from_secs(600), || {
        let (local, central_seq) = (apply_status(&stack), central_applied(&hub));
        if local["applied_seq"] == N {
            local_done.get_or_insert(started.elapsed());
        }
        if central_seq == N {
            central_done.get_or_insert(started.elapsed());
        }
        if local_done.is_some() && central_done.is_some() {
            return Ok(());
        }
        Err(format!("plant {local}, hub {:?}", hub_apply(&hub)))
    });
    println!(
        "all {N} applied at the plant after {:.1} s, at the hub after {:.1} s",
        local_done.unwrap().as_secs_f64(),
        central_done.unwrap().as_secs_f64()
    );
    let local = apply_status(&stack);
    assert!(local["stopped_at"].is_null(), "{local}");
    assert_eq!(local["last_seq"], N, "{local}");
    assert_eq!(hub_apply(&hub)[PLANT].1, None, "the hub's queue stopped");
    let stored: Vec<u64> = pg.rows(PLANT).iter().map(|r| r.0).collect();
    assert_eq!(
        stored,
        (1..=N).collect::<Vec<_>>(),
        "the hub stores 1..=N once each"
    );

    check_odoo("the plant's Odoo", &stack, &prefix);
    check_odoo("the central Odoo", &central, PLANT);
    // Odoo Community has no quality.check: having met its Odoo, the plant refuses the kind at
    // ingest, naming the model.
    let (code, body) = rt().block_on(async {
        let r = client_for(&stack.plant.data_dir.join("tls/api.crt"), stack.plant.addr)
            .post(stack.plant.url("/api/v1/transactions"))
            .bearer_auth(create_token_granted(&stack.plant.data_dir, "line-4"))
            .json(&json!({"key": "qc-1", "kind": "quality.check", "payload": {"product": "PLT-BOLT", "result": "pass"}}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (422, Some("kind")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no model quality.check")),
        "{body}"
    );
    // One client, both APIs.
    let (local_log, central_log) = (
        logs(&stack.container("odoo")),
        logs(&central.container("odoo")),
    );
    assert!(
        local_log.contains("POST /json/2/stock.move/load") && !local_log.contains("POST /jsonrpc")
    );
    assert!(central_log.contains("POST /jsonrpc") && !central_log.contains("POST /json/2/"));
}
