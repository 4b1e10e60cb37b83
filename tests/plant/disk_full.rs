//! A full disk refuses new transactions with 507, damages nothing stored, and recovers when
//! space is freed. Runs on a small tmpfs this test mounts (needs root, as CI and the dev
//! machines have).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::*;

/// A tmpfs of a fixed size, unmounted on drop.
pub struct SmallDisk(PathBuf);

impl SmallDisk {
    pub fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes a file until the file system says it is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    loop {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
}

#[test]
fn full_disk_answers_507_and_recovers_after_space_is_freed() {
    // With a free-space reserve, plantd refuses before SQLite ever meets a full disk.
    full_disk_scenario("[journal]\nmin_free_space = \"1MiB\"\n", true);
}

#[test]
fn full_disk_without_a_reserve_is_caught_from_sqlite_itself() {
    // With no reserve, the refusal comes from SQLite's own ENOSPC; /healthz can then only
    // tell whether a small write still fits, so it is not asserted here.
    full_disk_scenario("[journal]\nmin_free_space = \"0B\"\n", false);
}

fn full_disk_scenario(config: &str, with_reserve: bool) {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("disk"), "8m");
    let data = disk.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let token = create_token(&data, "scanner");
    let plant = Plant::start(&data, config);
    let client = plant.client();
    let post = |key: String, blob: usize| {
        let client = client.clone();
        let url = plant.url("/api/v1/transactions");
        let token = token.clone();
        async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"key": key, "kind": "scan", "payload": {"blob": "z".repeat(blob)}}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    rt().block_on(async {
        let mut accepted: Vec<(String, u64)> = Vec::new();
        for i in 0..20 {
            let (s, v) = post(format!("early-{i}"), 2000).await;
            assert_eq!(s, 201, "{v}");
            accepted.push((format!("early-{i}"), v["seq"].as_u64().unwrap()));
        }
        // Leave the journal almost no room, then keep posting until it says the disk is full.
        let filler = disk.0.join("filler");
        fill(&filler);
        let mut refused = None;
        for i in 0..5_000 {
            let key = format!("late-{i}");
            let (s, v) = post(key.clone(), 4000).await;
            match s {
                201 => accepted.push((key, v["seq"].as_u64().unwrap())),
                507 => {
                    assert_eq!(v["error"]["code"], "disk_full", "{v}");
                    assert!(
                        v["error"]["message"].as_str().unwrap().contains("full"),
                        "{v}"
                    );
                    refused = Some(key);
                    break;
                }
                other => panic!("unexpected {other}: {v}"),
            }
        }
        let refused = refused.expect("the disk never filled up");
        // Still full: refused again, and /healthz says why.
        let (s, _) = post(refused.clone(), 4000).await;
        assert_eq!(s, 507);
        if with_reserve {
            let h = client.get(plant.url("/healthz")).send().await.unwrap();
            assert_eq!(h.status().as_u16(), 507);
        }

        // Everything accepted before is intact; the refused key was not stored.
        let check = |key: String| {
            let client = client.clone();
            let url = plant.url(&format!("/api/v1/transactions/{key}"));
            let token = token.clone();
            async move {
                let r = client.get(url).bearer_auth(token).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        };
        for (key, seq) in &accepted {
            let (s, v) = check(key.clone()).await;
            assert_eq!((s, v["seq"].as_u64()), (200, Some(*seq)), "{key}: {v}");
        }
        assert_eq!(check(refused.clone()).await.0, 404);

        // Free the space: the same key is accepted now, with the next seq; no gap.
        std::fs::remove_file(&filler).unwrap();
        let last = accepted.last().unwrap().1;
        let (s, v) = post(refused.clone(), 4000).await;
        assert_eq!((s, v["seq"].as_u64()), (201, Some(last + 1)), "{v}");
        let h = client.get(plant.url("/healthz")).send().await.unwrap();
        assert_eq!(h.status().as_u16(), 200);
    });
    drop(plant);
    let rows = journal_rows(&data);
    let seqs: Vec<u64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(seqs, (1..=rows.len() as u64).collect::<Vec<_>>());
}
