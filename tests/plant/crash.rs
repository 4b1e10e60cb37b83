//! Ack means durable: `kill -9` under concurrent load loses nothing that was acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::harness::*;

const CLIENTS: usize = 32;
const ACKS_BEFORE_KILL: usize = 10_000;

#[test]
fn kill_9_under_load_keeps_every_acknowledged_transaction() {
    let (_dir, data, token) = data_dir_with_token("line-1");
    let mut plant = Plant::start(&data, "");
    let addr = plant.addr;
    let rt = rt();

    let acked_count = Arc::new(AtomicUsize::new(0));
    let (acked, unanswered) = rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let client = plant.client();
            let url = plant.url("/api/v1/transactions");
            let token = token.clone();
            let count = acked_count.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut unanswered = Vec::new();
                // Bounded: each client sends at most this many.
                for i in 0..5_000 {
                    let key = format!("c{c}-{i}");
                    let r = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&tx(&key))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().as_u16() == 201 => {
                            let v: serde_json::Value = r.json().await.unwrap();
                            acked.push((key, v["seq"].as_u64().unwrap()));
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => panic!("unexpected {} for {key}", r.status()),
                        Err(_) => {
                            // The daemon died with this request in flight.
                            unanswered.push(key);
                            break;
                        }
                    }
                }
                (acked, unanswered)
            }));
        }
        while acked_count.load(Ordering::Relaxed) < ACKS_BEFORE_KILL {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        plant.kill9();
        let mut acked = BTreeMap::new();
        let mut unanswered = BTreeSet::new();
        for t in tasks {
            let (a, u) = t.await.unwrap();
            acked.extend(a);
            unanswered.extend(u);
        }
        (acked, unanswered)
    });
    assert!(acked.len() >= ACKS_BEFORE_KILL, "only {} acks", acked.len());

    // Restart on the same data directory and port.
    let plant = Plant::start_on(&data, "", addr);
    let rows = journal_rows(&data);
    let stored: BTreeMap<String, u64> = rows.iter().map(|(s, k)| (k.clone(), *s)).collect();

    // Every acknowledged transaction is there, with the seq its device was told.
    for (key, seq) in &acked {
        assert_eq!(
            stored.get(key),
            Some(seq),
            "acknowledged {key} lost or moved"
        );
    }
    // Seqs are gap-free from 1.
    let seqs: Vec<u64> = rows.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=rows.len() as u64).collect::<Vec<_>>(),
        "seqs have a gap"
    );
    // Nothing else is there: only acknowledged or in-flight keys.
    for (_, key) in &rows {
        assert!(
            acked.contains_key(key) || unanswered.contains(key),
            "{key} is in the journal but was never sent"
        );
    }
    println!(
        "acked {}, unanswered {}, of which committed {}",
        acked.len(),
        unanswered.len(),
        unanswered
            .iter()
            .filter(|k| stored.contains_key(*k))
            .count()
    );

    // Each device that never got its answer retries with the same key: committed ones get
    // their original seq back, the others are journaled now, after the last seq.
    rt.block_on(async {
        let client = plant.client();
        let mut next = rows.len() as u64;
        for key in &unanswered {
            let url = plant.url("/api/v1/transactions");
            let (status, v) = post_json(&client, &url, &token, &tx(key)).await;
            match stored.get(key) {
                Some(seq) => {
                    assert_eq!(
                        (status, v["seq"].as_u64(), v["duplicate"].as_bool()),
                        (200, Some(*seq), Some(true)),
                        "{key}"
                    );
                }
                None => {
                    next += 1;
                    assert_eq!(
                        (status, v["seq"].as_u64(), v["duplicate"].as_bool()),
                        (201, Some(next), Some(false)),
                        "{key}"
                    );
                }
            }
        }
    });
}

#[test]
fn a_retry_after_a_crash_gets_the_original_seq() {
    let (_dir, data, token) = data_dir_with_token("scanner");
    let mut plant = Plant::start(&data, "");
    let rt = rt();
    let post = |plant: &Plant, key: &'static str| {
        let client = plant.client();
        let url = plant.url("/api/v1/transactions");
        let token = token.clone();
        rt.block_on(async move {
            let (status, v) = post_json(&client, &url, &token, &tx(key)).await;
            (
                status,
                v["seq"].as_u64().unwrap(),
                v["duplicate"].as_bool().unwrap(),
            )
        })
    };
    assert_eq!(post(&plant, "before-1"), (201, 1, false));
    assert_eq!(post(&plant, "lost-answer"), (201, 2, false));
    // The power fails right after the answer left; the device never saw it.
    plant.kill9();
    let plant = Plant::start_on(&data, "", plant.addr);
    assert_eq!(post(&plant, "lost-answer"), (200, 2, true));
    assert_eq!(post(&plant, "after-1"), (201, 3, false));
    let status = plantd(&["status", "--data-dir", data.to_str().unwrap(), "--json"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["journal"]["last_seq"], 3);
    assert_eq!(v["journal"]["depth"], 3);
    drop(plant);
}
