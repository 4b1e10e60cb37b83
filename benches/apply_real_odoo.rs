//! Apply benchmark against a real Odoo 18: `cargo bench --bench apply_real_odoo`.
//!
//! The plant's own stack on `plantd-local/odoo:18.0` (`images/build-odoo.sh`; without it the
//! benchmark says SKIPPED and prints nothing else), with `stock` and `mrp` installed and the
//! master data of `tests/plant/real_odoo.rs`, the real `plantd up` applying locally. It prints:
//! - throughput of the local apply for a 9:1 mix of partners (`odoo.create`) and stock moves
//!   (each validated in a transfer of its own), and for stock moves alone: N transactions are
//!   posted at once (batches of 100), and the clock runs from the first post until the
//!   journal's `applied_seq` is the last seq;
//! - ack-to-applied latency (p50, p99, max) while a device posts the 9:1 mix at 100
//!   transactions a second for 30 s: each transaction's ack time against the first moment the
//!   journal says it is applied (polled every 20 ms).
//!
//! `PLANTD_BENCH_APPLY_N` sets N (default 3 000 for the mix, a third of it for moves).

use std::time::{Duration, Instant};

use plantd_testkit::harness::*;
use plantd_testkit::real_odoo;
use serde_json::{json, Value};

fn partner(i: u64) -> Value {
    json!({"key": format!("b-{i}"), "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": format!("BENCH-{i:06}")}}})
}

fn stock_move(i: u64) -> Value {
    json!({"key": format!("b-{i}"), "kind": "stock.move", "payload": {"product": "PLT-C2", "quantity": 1, "location": "WH/Stock", "location_dest": "Partners/Customers", "reference": format!("BENCH-{i:06}")}})
}

fn mix(i: u64) -> Value {
    if i % 10 == 9 {
        stock_move(i)
    } else {
        partner(i)
    }
}

struct Bench {
    client: reqwest::Client,
    post: String,
    journal: String,
    token: String,
    rt: tokio::runtime::Runtime,
}

impl Bench {
    fn applied(&self) -> u64 {
        let (_, j) = self
            .rt
            .block_on(get_json(&self.client, &self.journal, &self.token));
        j["applied_seq"].as_u64().unwrap_or(0)
    }

    fn post(&self, batch: Vec<Value>) -> Vec<u64> {
        let (code, body) = self.rt.block_on(post_json(
            &self.client,
            &self.post,
            &self.token,
            &Value::Array(batch),
        ));
        assert_eq!(code, 201, "{body}");
        body.as_array()
            .unwrap()
            .iter()
            .map(|a| a["seq"].as_u64().unwrap())
            .collect()
    }

    /// Posts `from..from+n` made by `make`, returns transactions a second until all applied.
    fn throughput(&self, from: u64, n: u64, make: fn(u64) -> Value) -> f64 {
        let started = Instant::now();
        let mut last = 0;
        for chunk in (from..from + n).collect::<Vec<_>>().chunks(100) {
            last = *self
                .post(chunk.iter().map(|i| make(*i)).collect())
                .last()
                .unwrap();
        }
        while self.applied() < last {
            assert!(started.elapsed() < Duration::from_secs(1800), "not applied");
            std::thread::sleep(Duration::from_millis(50));
        }
        n as f64 / started.elapsed().as_secs_f64()
    }
}

fn main() {
    if !real_odoo::real_odoo("cargo bench --bench apply_real_odoo") {
        return;
    }
    let n: u64 = std::env::var("PLANTD_BENCH_APPLY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("odoo.key");
    let stack = real_odoo::real_stack(
        &key_file,
        "[apply]\nlocal = true\n[apply.kinds.\"odoo.create\"]\nmodels = [\"res.partner\"]\n",
    );
    real_odoo::master_data(&stack, 0);
    let bench = Bench {
        client: stack.plant.client(),
        post: stack.plant.url("/api/v1/transactions"),
        journal: stack.plant.url("/api/v1/journal"),
        token: create_token_granted(&stack.plant.data_dir, "bench"),
        rt: rt(),
    };
    println!(
        "apply into a real Odoo 18 at the plant (2 cores shared by plantd, PostgreSQL and Odoo), with plantd_apply (a batch in one call):"
    );
    // Warm, as a plant's Odoo that has been running is: its workers have loaded the registry
    // that installing stock and mrp just changed (about half a second each), and each has
    // checked plantd's key once (its own cache); plantd is signed in.
    const WARM: u64 = 300;
    let r = bench.throughput(1, WARM, mix);
    println!("  (warm-up, not counted: {WARM} of the 9:1 mix at {r:.0} tx/s)");
    let r = bench.throughput(WARM + 1, n, mix);
    println!("  9:1 partners:moves, {n} transactions: {r:.0} tx/s");
    let m = n / 3;
    let r = bench.throughput(WARM + n + 1, m, stock_move);
    println!("  stock moves, each validated in a transfer, {m} transactions: {r:.0} tx/s");
    let mut first = WARM + n + m + 1;
    latency(&bench, &mut first);

    // The same without the module: plantd's own calls.
    real_odoo::uninstall_plantd_apply(&stack);
    println!("without plantd_apply (plantd's own calls, several per run):");
    let w = n / 3;
    let r = bench.throughput(first, w, mix);
    println!("  9:1 partners:moves, {w} transactions: {r:.0} tx/s");
    first += w;
    let r = bench.throughput(first, w / 2, stock_move);
    println!(
        "  stock moves, each validated in a transfer, {} transactions: {r:.0} tx/s",
        w / 2
    );
    first += w / 2;
    latency(&bench, &mut first);
}

/// Ack-to-applied latency while a device posts the 9:1 mix at 100 tx/s (10 every 100 ms) for
/// 30 s, from seq `first` on.
fn latency(bench: &Bench, first: &mut u64) {
    let mut acked: Vec<(u64, Instant)> = Vec::new();
    let started = Instant::now();
    let mut applied_at: Vec<(u64, Instant)> = Vec::new();
    let mut tick = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let seqs = bench.post((*first..*first + 10).map(mix).collect());
        let now = Instant::now();
        acked.extend(seqs.iter().map(|s| (*s, now)));
        *first += 10;
        tick += Duration::from_millis(100);
        while Instant::now() < tick {
            let a = bench.applied();
            if applied_at.last().is_none_or(|(s, _)| *s < a) {
                applied_at.push((a, Instant::now()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let last = acked.last().unwrap().0;
    while applied_at.last().is_none_or(|(s, _)| *s < last) {
        let a = bench.applied();
        if applied_at.last().is_none_or(|(s, _)| *s < a) {
            applied_at.push((a, Instant::now()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut lat: Vec<f64> = acked
        .iter()
        .map(|(seq, at)| {
            let done = applied_at.iter().find(|(s, _)| s >= seq).unwrap().1;
            done.saturating_duration_since(*at).as_secs_f64() * 1000.0
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "  ack to applied at 100 tx/s (9:1 mix, {} transactions over 30 s): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat.last().unwrap()
    );
}
