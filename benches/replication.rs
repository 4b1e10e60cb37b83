//! Replication benchmark: `cargo bench --bench replication`.
//!
//! Starts a throwaway PostgreSQL 15 cluster, the real `plantd hub` and a real enrolled
//! `plantd up` on this machine and prints:
//! - drain: N transactions journaled while islanded, then `plantd rejoin`; the time until the
//!   hub holds them all, and the rate;
//! - the ceiling: the same rows inserted straight into PostgreSQL with one multi-row insert
//!   per batch of 2000 in its own transaction, from one connection;
//! - steady state: replication lag (hub `stored_at` minus plant `received_at`), p50 and p99,
//!   while devices post 5 000 transactions/s for 10 s.
//!
//! `PLANTD_BENCH_DRAIN` sets N (default 1 000 000).

use std::time::{Duration, Instant};

use plantd_testkit::fleet::*;
use plantd_testkit::harness::*;
use serde_json::{json, Value};

fn acked_seq(data: &std::path::Path) -> u64 {
    let out = plantd(&["status", "--data-dir", data.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["journal"]["hub_acked_seq"].as_u64().unwrap_or(0)
}

/// `plantd rejoin`, then the time until the hub has acknowledged seq `n`.
fn rejoin_and_drain(data: &std::path::Path, n: u64) -> Duration {
    let t = Instant::now();
    assert!(plantd(&["rejoin", "--data-dir", data.to_str().unwrap()])
        .status
        .success());
    while acked_seq(data) < n {
        assert!(
            t.elapsed() < Duration::from_secs(1800),
            "drain did not finish in 30 min"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    t.elapsed()
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n: u64 = std::env::var("PLANTD_BENCH_DRAIN")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let pg_cluster = Pg::start();
    let base = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile::tempdir_in(&base).unwrap();
    let hub = Hub::start(&dir.path().join("hub"), &pg_cluster, free_udp_addr(), None);
    let data = dir.path().join("plant");
    std::fs::create_dir_all(&data).unwrap();
    let token = create_token(&data, "bench");
    assert!(enroll(&data, &hub, &hub.token("bench", "1h"))
        .status
        .success());
    let plant = Plant::start(&data, "");
    let d = data.to_str().unwrap();
    let rt = rt();
    println!(
        "plantd replication benchmark: {} cores, plant, hub and PostgreSQL 15 on the same machine",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    // Drain.
    assert!(plantd(&["island", "--data-dir", d]).status.success());
    let client = plant.client();
    let url = plant.url("/api/v1/transactions");
    let t = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..4u64 {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let mut b = c;
                while b * 1000 < n {
                    let items: Vec<Value> = (0..1000.min(n - b * 1000))
                        .map(|i| json!({"key": format!("d{b}-{i}"), "kind": "move", "payload": {"item": "A-100", "qty": i, "from": "WH/Stock", "to": "WH/Line-3"}}))
                        .collect();
                    let (s, _) = post_json(&client, &url, &token, &Value::Array(items)).await;
                    assert_eq!(s, 201);
                    b += 4;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    println!(
        "journaled {n} transactions while islanded in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let drain = rejoin_and_drain(&data, n);
    println!(
        "| drain | {n} transactions | {:.1} s | {:.0} tx/s |",
        drain.as_secs_f64(),
        n as f64 / drain.as_secs_f64()
    );

    // The ceiling: the same rows, straight into PostgreSQL.
    let ceiling = rt.block_on(async {
        let mut db = connect(&pg_cluster.url()).await;
        db.batch_execute("CREATE TABLE ceiling (LIKE transactions INCLUDING ALL)").await.unwrap();
        let rows = db
            .query("SELECT seq, key, device, kind, payload, occurred_at, extract(epoch from received_at)::float8 FROM transactions WHERE plant = 'bench' ORDER BY seq", &[])
            .await
            .unwrap();
        let t = Instant::now();
        for chunk in rows.chunks(2000) {
            let col = |i: usize| chunk.iter().map(|r| r.get::<_, String>(i)).collect::<Vec<_>>();
            let seqs: Vec<i64> = chunk.iter().map(|r| r.get(0)).collect();
            let occurred: Vec<Option<String>> = chunk.iter().map(|r| r.get(5)).collect();
            let received: Vec<f64> = chunk.iter().map(|r| r.get(6)).collect();
            let tx = db.transaction().await.unwrap();
            tx.execute(
                "INSERT INTO ceiling (plant, seq, key, device, kind, payload, occurred_at, received_at)
                 SELECT 'bench', s, k, d, t, p, o, to_timestamp(r)
                 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[]) AS u(s, k, d, t, p, o, r)",
                &[&seqs, &col(1), &col(2), &col(3), &col(4), &occurred, &received],
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        t.elapsed()
    });
    println!(
        "| ceiling: multi-row insert of 2000 per transaction | {n} rows | {:.1} s | {:.0} rows/s |",
        ceiling.as_secs_f64(),
        n as f64 / ceiling.as_secs_f64()
    );

    // Steady state: 5 000 transactions/s for 10 s, in 50 requests of 10 per 100 ms... paced.
    let start_seq = acked_seq(&data);
    rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut tasks = Vec::new();
        for i in 0..1000u64 {
            tick.tick().await;
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                for j in 0..50u64 {
                    let key = format!("s{i}-{j}");
                    let (s, _) = post_json(&client, &url, &token, &tx(&key)).await;
                    assert_eq!(s, 201);
                }
            }));
            if tasks.len() > 200 {
                tasks.remove(0).await.unwrap();
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let end_seq = start_seq + 50_000;
    while acked_seq(&data) < end_seq {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (p50, p99) = rt.block_on(async {
        let db = connect(&pg_cluster.url()).await;
        let r = db
            .query_one(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), percentile_cont(0.99) WITHIN GROUP (ORDER BY lag)
                 FROM (SELECT extract(epoch FROM stored_at - received_at) AS lag FROM transactions WHERE plant = 'bench' AND seq > $1) l",
                &[&(start_seq as i64)],
            )
            .await
            .unwrap();
        (r.get::<_, f64>(0), r.get::<_, f64>(1))
    });
    println!("| steady state, 5000 tx/s offered | 50000 transactions | lag p50 {:.0} ms | lag p99 {:.0} ms |", p50 * 1e3, p99 * 1e3);
    drop(plant);
    drop(hub);
    slow_link(&pg_cluster, &base);
}

/// The same drain through a relay shaped to 1 Mbit/s and 100 ms RTT.
fn slow_link(pg_cluster: &Pg, base: &std::path::Path) {
    let n: u64 = std::env::var("PLANTD_BENCH_SLOW")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir_in(base).unwrap();
    let quic = free_udp_addr();
    let relay = Relay::shaped(quic, Duration::from_millis(100), 1_000_000);
    let hub = Hub::start(&dir.path().join("hub"), pg_cluster, quic, Some(relay.addr));
    let data = dir.path().join("plant");
    std::fs::create_dir_all(&data).unwrap();
    let token = create_token(&data, "bench");
    assert!(enroll(&data, &hub, &hub.token("slow", "1h"))
        .status
        .success());
    let plant = Plant::start(&data, "");
    let d = data.to_str().unwrap();
    assert!(plantd(&["island", "--data-dir", d]).status.success());
    let client = plant.client();
    let url = plant.url("/api/v1/transactions");
    rt().block_on(async {
        for b in 0..n.div_ceil(1000) {
            let items: Vec<Value> = (0..1000.min(n - b * 1000))
                .map(|i| json!({"key": format!("s{b}-{i}"), "kind": "move", "payload": {"item": "A-100", "qty": i}}))
                .collect();
            let (s, _) = post_json(&client, &url, &token, &Value::Array(items)).await;
            assert_eq!(s, 201);
        }
    });
    let took = rejoin_and_drain(&data, n);
    let out = plantd(&["status", "--data-dir", d, "--json"]);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    println!(
        "| slow link, 1 Mbit/s, 100 ms RTT | {n} transactions | {:.1} s | {:.0} tx/s | reconnects {} |",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        s["link"]["reconnects"]
    );
}
