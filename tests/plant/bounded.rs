//! The journal stays bounded: once the hub acknowledged transactions and the retention
//! window passed, they are pruned and the files shrink back.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

fn files_size(data: &Path) -> u64 {
    ["journal.db", "journal.db-wal"]
        .iter()
        .map(|f| {
            std::fs::metadata(data.join(f))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn journal_files_shrink_after_200k_acknowledged_transactions_pass_retention() {
    const TOTAL: usize = 200_000;
    let (_dir, data, token) = data_dir_with_token("gateway");
    let mut plant = Plant::start(&data, "");
    let rt = rt();
    rt.block_on(async {
        let client = plant.client();
        for batch in 0..TOTAL / 1000 {
            let items: Vec<Value> = (0..1000)
                .map(|i| json!({"key": format!("b{batch}-{i}"), "kind": "move", "payload": {"from": "WH/Stock", "to": "WH/Line-1", "qty": i}}))
                .collect();
            let r = client
                .post(plant.url("/api/v1/transactions"))
                .bearer_auth(&token)
                .json(&items)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
        }
    });
    plant.stop();
    let full = files_size(&data);
    assert!(full > 10 << 20, "200k transactions take only {full} bytes?");

    // The hub acknowledges everything. Replication is not built yet, so the test moves the
    // hub cursor in the file, as the replicator will, while the daemon is down.
    let conn = rusqlite::Connection::open(data.join("journal.db")).unwrap();
    conn.execute(
        "UPDATE cursors SET seq = ?1 WHERE name = 'hub_acked'",
        [TOTAL as i64],
    )
    .unwrap();
    drop(conn);

    let config = "[journal]\nretention = \"1s\"\nprune_interval = \"200ms\"\n";
    let plant = Plant::start(&data, config);
    let deadline = Instant::now() + Duration::from_secs(120);
    while files_size(&data) > 1 << 20 || !journal_rows(&data).is_empty() {
        assert!(
            Instant::now() < deadline,
            "journal still {} bytes after 120 s",
            files_size(&data)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = files_size(&data);
    let sizes = |f: &str| {
        std::fs::metadata(data.join(f))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    println!(
        "journal files: {full} bytes with 200k transactions, {after} bytes after pruning (db {}, wal {})",
        sizes("journal.db"),
        sizes("journal.db-wal")
    );

    rt.block_on(async {
        let client = plant.client();
        let (status, _) = get_json(&client, &plant.url("/api/v1/transactions/b0-0"), &token).await;
        assert_eq!(status, 404, "pruned transactions are gone");
        let url = plant.url("/api/v1/transactions");
        let (_, v) = post_json(&client, &url, &token, &tx("after-pruning")).await;
        assert_eq!(
            v["seq"].as_u64(),
            Some(TOTAL as u64 + 1),
            "seq goes on after pruning"
        );
        let (_, j) = get_json(&client, &plant.url("/api/v1/journal"), &token).await;
        assert_eq!(
            (j["depth"].as_u64(), j["hub_acked_seq"].as_u64()),
            (Some(1), Some(TOTAL as u64))
        );
    });
}
