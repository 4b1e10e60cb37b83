//! Apply benchmark: `cargo bench --bench apply`.
//!
//! A central Odoo (the emulator, `plantd-local/odoo-emulator:19.0`, in a stack the real
//! `plantd up` supervises), a throwaway PostgreSQL 15 cluster, the real `plantd hub` and real
//! enrolled plants, all on this machine. It prints:
//! - apply throughput into the central Odoo, through `/json/2` and through `/jsonrpc`, with 1
//!   and with 4 plants applied in parallel: N transactions per plant (`odoo.create` of a
//!   res.partner) are replicated to the hub with the apply off, then the hub restarts with
//!   `[apply] central = true` and the clock runs until every plant's `applied_seq` is N;
//! - end-to-end latency, from the device's ack to the record in the central Odoo (the hub moves
//!   a plant's `applied_seq` past a transaction once Odoo answered its `load`), p50 and p99,
//!   while 4 plants take 250 transactions/s each (1 000/s in all) for 5 s.
//!
//! `PLANTD_BENCH_APPLY_N` sets N (default 1 000).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use plantd_testkit::fleet::*;
use plantd_testkit::harness::*;
use plantd_testkit::stack;
use serde_json::{json, Value};

/// Each plant's (acked_seq, applied_seq) at the hub.
async fn seqs(c: &tokio_postgres::Client) -> BTreeMap<String, (i64, i64)> {
    c.query("SELECT name, acked_seq, applied_seq FROM plants", &[])
        .await
        .map(|rows| {
            rows.iter()
                .map(|r| (r.get(0), (r.get(1), r.get(2))))
                .collect()
        })
        .unwrap_or_default()
}

struct Fleet {
    hub: Hub,
    plants: Vec<(String, Plant, String)>,
    _pg: Pg,
    _dir: tempfile::TempDir,
}

/// A hub on a fresh PostgreSQL with `hub_toml`, and `count` enrolled plants that check kinds.
fn fleet(count: usize, hub_toml: &str) -> Fleet {
    let pg = Pg::start();
    let base = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile::tempdir_in(&base).unwrap();
    let hub = Hub::start_with(&dir.path().join("hub"), &pg, free_udp_addr(), hub_toml);
    let plants = (0..count)
        .map(|i| {
            let name = format!("plant-{i}");
            let data = dir.path().join(&name);
            std::fs::create_dir_all(&data).unwrap();
            let token = create_token_granted(&data, "bench");
            assert!(enroll(&data, &hub, &hub.token(&name, "1h"))
                .status
                .success());
            let plant = Plant::start(
                &data,
                "[apply]\nlocal = false\n[apply.kinds.\"odoo.create\"]\nmodels = [\"res.partner\"]\n",
            );
            (name, plant, token)
        })
        .collect();
    Fleet {
        hub,
        plants,
        _pg: pg,
        _dir: dir,
    }
}

fn partner(plant: &str, run: &str, i: usize) -> Value {
    json!({"key": format!("{run}-{i}"), "kind": "odoo.create",
           "payload": {"model": "res.partner", "values": {"name": format!("{plant}-{run}-{i:06}"), "ref": i}}})
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n: usize = std::env::var("PLANTD_BENCH_APPLY_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("central.key");
    let central =
        stack::TestStack::start(&format!("[odoo]\nkey_file = \"{}\"\n", key_file.display()));
    central.wait_all_healthy(Duration::from_secs(180));
    let secrets: Value = serde_json::from_slice(
        &std::fs::read(central.plant.data_dir.join("stack/secrets.json")).unwrap(),
    )
    .unwrap();
    std::fs::write(&key_file, secrets["odoo_admin_password"].as_str().unwrap()).unwrap();
    let ip = stack::docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &central.container("odoo"),
    ]);
    let hub_toml = |api: &str, central_on: bool| {
        format!(
            "[odoo]\nurl = \"http://{ip}:8069\"\ndatabase = \"odoo\"\nkey_file = \"{}\"\napi = \"{api}\"\n[apply]\ncentral = {central_on}\nworkers = 4\n",
            key_file.display()
        )
    };
    let rt = rt();
    println!(
        "plantd apply benchmark: {} cores; the central Odoo emulator 19.0, PostgreSQL 15, the hub and the plants on the same machine",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!("| API | plants | transactions | time | apply rate |");
    println!("|---|---|---|---|---|");
    let mut run = 0;
    for api in ["json2", "jsonrpc"] {
        for count in [1, 4] {
            run += 1;
            let tag = format!("r{run}");
            let mut f = fleet(count, &hub_toml(api, false));
            rt.block_on(async {
                for (name, plant, token) in &f.plants {
                    let (client, url) = (plant.client(), plant.url("/api/v1/transactions"));
                    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
                        let items: Vec<Value> =
                            chunk.iter().map(|i| partner(name, &tag, *i)).collect();
                        let (s, body) = post_json(&client, &url, token, &Value::Array(items)).await;
                        assert_eq!(s, 201, "{body}");
                    }
                }
                let db = connect(&f.hub.database).await;
                let t = Instant::now();
                while seqs(&db)
                    .await
                    .values()
                    .filter(|(a, _)| *a == n as i64)
                    .count()
                    < count
                {
                    assert!(
                        t.elapsed() < Duration::from_secs(300),
                        "replication did not finish"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            f.hub.kill9();
            std::fs::write(&f.hub.config, hub_toml(api, true)).unwrap();
            f.hub.restart();
            let took = rt.block_on(async {
                let db = connect(&f.hub.database).await;
                let t = Instant::now();
                while seqs(&db)
                    .await
                    .values()
                    .filter(|(_, a)| *a == n as i64)
                    .count()
                    < count
                {
                    assert!(
                        t.elapsed() < Duration::from_secs(1800),
                        "the apply did not finish in 30 min"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                t.elapsed()
            });
            let total = n * count;
            println!(
                "| {} | {count} | {total} | {:.1} s | {:.0} tx/s |",
                if api == "json2" {
                    "/json/2"
                } else {
                    "/jsonrpc"
                },
                took.as_secs_f64(),
                total as f64 / took.as_secs_f64()
            );
        }
    }

    // Latency under 1 000 transactions/s: 4 plants, 250/s each (a batch of 25 every 100 ms).
    let f = fleet(4, &hub_toml("json2", true));
    let (acks, seen, took) = rt.block_on(async {
        let db = connect(&f.hub.database).await;
        let seconds = 5;
        let mut tasks = Vec::new();
        for (name, plant, token) in &f.plants {
            let (client, url, token, name) = (
                plant.client(),
                plant.url("/api/v1/transactions"),
                token.clone(),
                name.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut acks: Vec<(i64, Instant)> = Vec::new();
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                for b in 0..seconds * 10 {
                    tick.tick().await;
                    let items: Vec<Value> = (b * 25..b * 25 + 25)
                        .map(|i| partner(&name, "lat", i))
                        .collect();
                    let (s, body) = post_json(&client, &url, &token, &Value::Array(items)).await;
                    assert_eq!(s, 201, "{body}");
                    let at = Instant::now();
                    for a in body.as_array().unwrap() {
                        acks.push((a["seq"].as_i64().unwrap(), at));
                    }
                }
                (name, acks)
            }));
        }
        // When each plant's applied_seq first reached each value.
        let t = Instant::now();
        let total = (seconds * 10 * 25) as i64;
        let mut seen: BTreeMap<String, Vec<(i64, Instant)>> = BTreeMap::new();
        loop {
            let now = Instant::now();
            let s = seqs(&db).await;
            for (plant, (_, applied)) in &s {
                let v = seen.entry(plant.clone()).or_default();
                if v.last().is_none_or(|(a, _)| applied > a) {
                    v.push((*applied, now));
                }
            }
            if s.len() == 4 && s.values().all(|(_, a)| *a >= total) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(1800),
                "the apply did not catch up in 30 min"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut acks = BTreeMap::new();
        for task in tasks {
            let (name, a) = task.await.unwrap();
            acks.insert(name, a);
        }
        (acks, seen, t.elapsed())
    });
    let mut latencies: Vec<Duration> = Vec::new();
    for (plant, list) in &acks {
        let steps = &seen[plant];
        for (seq, acked) in list {
            let at = steps
                .iter()
                .find(|(a, _)| a >= seq)
                .map(|(_, t)| *t)
                .expect("applied");
            latencies.push(at.saturating_duration_since(*acked));
        }
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "latency from device ack to the record in the central Odoo, 4 plants posting 1 000 tx/s for 5 s ({} transactions, all applied {:.1} s after the first post): p50 {:.0} ms, p99 {:.0} ms",
        latencies.len(),
        took.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0
    );
}
