//! Chaos: for a minute under load, random `kill -9` of the plant and of either of two hubs on
//! one PostgreSQL, and WAN cuts in front of either hub, with the plant failing over between
//! them. Then the checker: every acknowledged key is at the hub exactly once, seqs are
//! gap-free, and nothing is there that the plant did not journal.
//! `PLANTD_CHAOS_SECS` sets the duration (default 60); the seed is printed for a rerun
//! (`PLANTD_CHAOS_SEED`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fleet::*;
use crate::harness::*;

/// xorshift64*: a reproducible schedule without another dependency.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `PLANTD_CHAOS_SEED`, else from the clock; the seed is printed for a rerun.
    pub fn from_env() -> Rng {
        let seed: u64 = std::env::var("PLANTD_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        println!("chaos seed {seed} (PLANTD_CHAOS_SEED={seed} replays it)");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn a_minute_of_crashes_cuts_and_failovers_loses_and_duplicates_nothing() {
    let secs: u64 = std::env::var("PLANTD_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    println!("chaos for {secs} s");
    let mut rng = Rng::from_env();

    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let (qa, qb) = (free_udp_addr(), free_udp_addr());
    let (relay_a, relay_b) = (Relay::start(qa), Relay::start(qb));
    // Two replicas share the CA and the database; the plant is told about both.
    let hub_dir_a = dir.path().join("hub-a");
    let hub_dir_b = dir.path().join("hub-b");
    let mut hub_a = Hub::start(&hub_dir_a, &pg, qa, None);
    std::fs::create_dir_all(hub_dir_b.join("ca")).unwrap();
    for f in ["ca.crt", "ca.key"] {
        std::fs::copy(hub_dir_a.join("ca").join(f), hub_dir_b.join("ca").join(f)).unwrap();
    }
    let mut hub_b = Hub::start(&hub_dir_b, &pg, qb, None);
    let (_pd, data, token) = data_dir_with_token("line-9");
    assert!(enroll(&data, &hub_a, &hub_a.token("chaos", "1h"))
        .status
        .success());
    let config = format!(
        "[replication]\nhubs = [\"{}\", \"{}\"]\n",
        relay_a.addr, relay_b.addr
    );
    let mut plant = Plant::start(&data, &config);

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, token) = (stop.clone(), token.clone());
        let (cert, addr, url) = (
            data.join("tls/api.crt"),
            plant.addr,
            plant.url("/api/v1/transactions"),
        );
        std::thread::spawn(move || {
            let client = client_for(&cert, addr);
            rt().block_on(async {
                let (mut acked, mut unanswered) = (BTreeMap::new(), BTreeSet::new());
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && i < 200_000 {
                    let key = format!("k{i}");
                    i += 1;
                    match client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&tx(&key))
                        .send()
                        .await
                    {
                        Ok(r) if r.status().as_u16() == 201 => {
                            let v: serde_json::Value = r.json().await.unwrap();
                            acked.insert(key, v["seq"].as_u64().unwrap());
                        }
                        Ok(r) => panic!("{key}: {}", r.status()),
                        Err(_) => {
                            unanswered.insert(key);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                (acked, unanswered)
            })
        })
    };

    let end = Instant::now() + Duration::from_secs(secs);
    let mut events = Vec::new();
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(1500 + rng.below(2500)));
        match rng.below(5) {
            0 => {
                plant.kill9();
                plant = Plant::start_on(&data, &config, plant.addr);
                events.push("plant kill -9");
            }
            1 => {
                hub_a.kill9();
                std::thread::sleep(Duration::from_millis(500 + rng.below(1500)));
                hub_a.restart();
                events.push("hub A kill -9");
            }
            2 => {
                hub_b.kill9();
                std::thread::sleep(Duration::from_millis(500 + rng.below(1500)));
                hub_b.restart();
                events.push("hub B kill -9");
            }
            3 => {
                relay_a.cut();
                std::thread::sleep(Duration::from_millis(1000 + rng.below(4000)));
                relay_a.heal();
                events.push("WAN cut to A");
            }
            _ => {
                relay_b.cut();
                std::thread::sleep(Duration::from_millis(1000 + rng.below(4000)));
                relay_b.heal();
                events.push("WAN cut to B");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (mut acked, unanswered) = load.join().unwrap();
    println!("{} events: {events:?}", events.len());
    println!("acked {}, unanswered {}", acked.len(), unanswered.len());
    assert!(acked.len() > 1000, "the load barely ran: {}", acked.len());

    // Hub A is gone for good: what comes next must reach the hub through B.
    hub_a.kill9();
    let client = plant.client();
    let url = plant.url("/api/v1/transactions");
    rt().block_on(async {
        for i in 0..100 {
            let key = format!("after-a-{i}");
            let (status, v) = post_json(&client, &url, &token, &tx(&key)).await;
            assert_eq!(status, 201);
            acked.insert(key, v["seq"].as_u64().unwrap());
        }
    });

    let journal: BTreeMap<String, u64> = journal_rows(&data)
        .into_iter()
        .map(|(s, k)| (k, s))
        .collect();
    let last = journal.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while pg.rows("chaos").len() < last {
        assert!(
            Instant::now() < deadline,
            "hub holds {} of {last} after 120 s",
            pg.rows("chaos").len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let rows = pg.rows("chaos");
    let seqs: Vec<u64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(
        seqs,
        (1..=last as u64).collect::<Vec<_>>(),
        "hub seqs are not 1..={last} exactly once"
    );
    let at_hub: BTreeMap<String, u64> = rows.into_iter().map(|(s, k)| (k, s)).collect();
    assert_eq!(at_hub, journal, "the hub differs from the plant's journal");
    for (key, seq) in &acked {
        assert_eq!(
            at_hub.get(key),
            Some(seq),
            "acknowledged {key} missing or moved at the hub"
        );
    }
    for key in at_hub.keys() {
        assert!(
            acked.contains_key(key) || unanswered.contains(key),
            "{key} at the hub was never sent"
        );
    }
    drop(plant);
}
