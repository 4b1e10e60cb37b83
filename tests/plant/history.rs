//! The admin UI's history survives the daemon: samples and markers taken before a restart are
//! still charted after it, through `GET /api/v1/admin/history` and on the Journal & sync page
//! in Chromium (`tests/browser/history.mjs`); a bad range is refused in the error shape; and a
//! full week of history (`metrics.db` filled to its bounds) is answered within its bounds, with
//! the daemon's resident memory printed as a figure.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{self, Plant};

/// The sampler ticks every second in these tests (10 s in production).
fn fast_sampler(c: &mut Command) {
    c.env("PLANTD_TEST_SAMPLE_MS", "1000");
}

async fn get(client: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn at(v: &Value) -> jiff::Timestamp {
    v["at"].as_str().unwrap().parse().unwrap()
}

/// Waits until the 1-hour chart has a point with a depth of at least `depth`.
async fn wait_for_depth(plant: &Plant, token: &str, depth: f64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, chart) = get(
            &plant.client(),
            &plant.url("/api/v1/admin/history?range=1h"),
            Some(token),
        )
        .await;
        assert_eq!(status, 200, "{chart}");
        let seen = chart["points"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["depth"].as_f64().unwrap() >= depth);
        if seen {
            return chart;
        }
        assert!(
            Instant::now() < deadline,
            "no sample with depth {depth} within 30 s: {chart}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[test]
fn the_history_outlives_a_restart_in_the_api_and_the_ui() {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules");
    assert!(
        modules.exists(),
        "tests/browser/node_modules is missing: run `npm ci --prefix tests/browser` (tests/run.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let token = harness::create_token(&data, "scanner-1");
    let out = harness::admin_add(&data, "ana", "admin", "history admin 1");
    assert!(out.status.success(), "{out:?}");
    let addr = harness::free_addr();
    let mut plant = Plant::start_with(&data, "", addr, fast_sampler);
    let rt = harness::rt();
    rt.block_on(async {
        for i in 0..20 {
            let (status, body) = harness::post_json(
                &plant.client(),
                &plant.url("/api/v1/transactions"),
                &token,
                &harness::tx(&format!("hist-{i}")),
            )
            .await;
            assert_eq!(status, 201, "{body}");
        }
        wait_for_depth(&plant, &token, 20.0).await;
    });
    plant.stop();
    let restarted = jiff::Timestamp::now();
    let plant = Plant::start_with(&data, "", addr, fast_sampler);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("metrics.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "metrics.db is private");

    rt.block_on(async {
        let client = plant.client();
        // A sample after the restart, beside those from before it.
        let deadline = Instant::now() + Duration::from_secs(30);
        let chart = loop {
            let chart = wait_for_depth(&plant, &token, 20.0).await;
            if chart["points"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| at(p) > restarted)
            {
                break chart;
            }
            assert!(
                Instant::now() < deadline,
                "no sample after the restart: {chart}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        assert_eq!(chart["range"], "1h");
        assert_eq!(chart["step_s"], 1);
        let points = chart["points"].as_array().unwrap();
        let before: Vec<&Value> = points.iter().filter(|p| at(p) < restarted).collect();
        assert!(
            before.iter().any(|p| p["depth"].as_f64().unwrap() >= 20.0),
            "the backlog sampled before the restart is still charted: {chart}"
        );
        // The 20 transactions arrived within the first run: some interval shows them.
        assert!(
            points
                .iter()
                .any(|p| p["ingest_per_s"].as_f64().unwrap_or(0.0) > 0.0),
            "{chart}"
        );
        for p in points {
            assert!(p["memory_used_bytes"].as_u64().unwrap() > 0, "{p}");
            let disk = p["disk_used_pct"].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&disk), "{p}");
        }
        let starts: Vec<&Value> = chart["markers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] == "start")
            .collect();
        assert_eq!(starts.len(), 2, "one start marker per start: {chart}");
        assert!(
            starts[0]["detail"].as_str().unwrap().starts_with("plantd ")
                && starts[0]["detail"].as_str().unwrap().ends_with(" started"),
            "{chart}"
        );
        assert!(
            at(starts[0]) < restarted
                && at(starts[1])
                    >= restarted
                        .checked_sub(jiff::SignedDuration::from_secs(1))
                        .unwrap()
        );

        // The journal page's last hour comes from the same samples, in its own shape.
        let (status, journal) =
            get(&client, &plant.url("/api/v1/admin/journal"), Some(&token)).await;
        assert_eq!(status, 200);
        let depths: Vec<u64> = journal["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| at(p) < restarted)
            .map(|p| p["depth"].as_u64().unwrap())
            .collect();
        assert!(depths.contains(&20), "{journal}");

        for (range, step) in [("24h", 300), ("7d", 1800)] {
            let (status, chart) = get(
                &client,
                &plant.url(&format!("/api/v1/admin/history?range={range}")),
                Some(&token),
            )
            .await;
            assert_eq!(status, 200, "{chart}");
            assert_eq!(chart["range"], range);
            assert_eq!(chart["step_s"], step);
            let points = chart["points"].as_array().unwrap();
            assert!(!points.is_empty(), "{chart}");
            assert!(
                points
                    .iter()
                    .any(|p| p["depth_max"].as_u64().unwrap() >= 20),
                "{chart}"
            );
            assert_eq!(chart["markers"].as_array().unwrap().len(), 2, "{chart}");
        }

        for bad in ["2h", "", "7D", "1h%00"] {
            let (status, body) = get(
                &client,
                &plant.url(&format!("/api/v1/admin/history?range={bad}")),
                Some(&token),
            )
            .await;
            assert_eq!(status, 400, "{bad}: {body}");
            assert_eq!(body["error"]["code"], "bad_request", "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("choose 1h, 24h or 7d"),
                "{body}"
            );
        }
        let (status, body) = get(&client, &plant.url("/api/v1/admin/history"), None).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "unauthenticated");
    });

    harness::run_browser(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/history.mjs"),
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("history-ui"),
        &[
            ("PLANTD_URL", &plant.url("")),
            ("ADMIN_USER", "ana"),
            ("ADMIN_PASSWORD", "history admin 1"),
            ("DEPTH", "20"),
        ],
        &[
            "history-1h",
            "history-hover",
            "history-24h",
            "history-7d",
            "history-dark",
        ],
    );
}

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `metrics.db` filled to its bounds (7 days of 5-minute aggregates, an hour of 10-s samples,
/// 5000 markers), as a forensic check would write it.
fn fill_a_week(data: &Path) {
    let conn = rusqlite::Connection::open(data.join("metrics.db")).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let tx = conn.unchecked_transaction().unwrap();
    let week = 7 * 86_400;
    let first = now - week - (now - week).rem_euclid(300);
    for (k, at) in (first..now - 300).step_by(300).enumerate() {
        let seq = k as i64 * 300;
        tx.execute(
            "INSERT OR REPLACE INTO coarse (at, end_at, samples, depth, depth_max, lag_s,
                apply_backlog, disk_used_pct, cpu_pct, memory_used_bytes, last_seq, hub_acked_seq)
             VALUES (?1, ?2, 30, ?3, ?4, 12.5, NULL, 41.5, 7.5, 2.0e9, ?5, ?6)",
            rusqlite::params![
                at,
                at + 290,
                (k % 40) as f64,
                (k % 40 + 5) as i64,
                seq,
                seq - 100
            ],
        )
        .unwrap();
    }
    for k in 0..360i64 {
        let at = now - 3600 + 10 + k * 10;
        tx.execute(
            "INSERT OR REPLACE INTO fine (at, depth, lag_s, last_seq, hub_acked_seq, apply_backlog,
                disk_used_pct, cpu_pct, memory_used_bytes)
             VALUES (?1, ?2, 3, ?3, ?4, NULL, 41.5, 7.5, 2000000000)",
            rusqlite::params![at, k % 40, 1_000_000 + k * 10, 1_000_000 + k * 10 - 5],
        )
        .unwrap();
    }
    for k in 0..5000i64 {
        tx.execute(
            "INSERT INTO markers (at, kind, detail) VALUES (?1, 'restart', 'odoo restarted by plantd')",
            [now - week + 60 + k * 120],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn a_full_week_of_history_is_answered_within_its_bounds() {
    let (_dir, data, token) = harness::data_dir_with_token("monitor");
    let mut plant = Plant::start(&data, "");
    // Serving comes a moment before the daemon listens for SIGTERM.
    std::thread::sleep(Duration::from_secs(1));
    plant.stop();
    fill_a_week(&data);
    let plant = Plant::start(&data, "");
    let idle = rss_kib(plant.pid());
    let rt = harness::rt();
    let (mut bytes, mut counts) = (0, Vec::new());
    rt.block_on(async {
        let client = plant.client();
        for _ in 0..5 {
            for range in ["1h", "24h", "7d"] {
                let r = client
                    .get(plant.url(&format!("/api/v1/admin/history?range={range}")))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let body = r.bytes().await.unwrap();
                let chart: Value = serde_json::from_slice(&body).unwrap();
                if range == "7d" {
                    bytes = body.len();
                }
                counts.push((
                    range,
                    chart["points"].as_array().unwrap().len(),
                    chart["markers"].as_array().unwrap().len(),
                ));
                if range == "7d" {
                    assert!(
                        chart["markers_left_off"].as_i64().unwrap() > 4000,
                        "{}",
                        chart["markers_left_off"]
                    );
                }
            }
        }
    });
    let busy = rss_kib(plant.pid());
    for (range, points, markers) in &counts {
        let (lo, hi) = match *range {
            "1h" => (355, 362),
            "24h" => (287, 290),
            _ => (335, 338),
        };
        assert!(
            (lo..=hi).contains(points),
            "{range}: {points} points, want {lo} to {hi}"
        );
        // The filled markers end over an hour ago: the last hour has this start's only.
        let want = if *range == "1h" { 1 } else { 200 };
        assert_eq!(*markers, want, "{range}: at most the newest 200 markers");
    }
    println!(
        "FIGURE plantd VmRSS with a full week of history: {:.1} MiB after start, {:.1} MiB after 15 chart requests (7d answer: {} KiB; metrics.db {} KiB)",
        idle as f64 / 1024.0,
        busy as f64 / 1024.0,
        bytes / 1024,
        std::fs::metadata(data.join("metrics.db")).unwrap().len() / 1024,
    );
}
