//! The smoke test: the daemon starts, takes a device's transaction, reports it, and stops
//! cleanly. `tests/run.sh` runs it a second time against the static musl binary
//! (`PLANTD_TEST_BIN`), which it builds with `installer/build-static.sh`.

use serde_json::Value;

use crate::harness::{self, Plant};

#[test]
fn the_daemon_takes_a_transaction_reports_it_and_stops() {
    println!("binary under test: {}", harness::bin());
    let (_dir, data, token) = harness::data_dir_with_token("scanner-1");
    let mut plant = Plant::start(&data, "");
    harness::rt().block_on(async {
        let client = plant.client();
        let (status, body) = harness::post_json(
            &client,
            &plant.url("/api/v1/transactions"),
            &token,
            &harness::tx("smoke-1"),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["seq"], 1);
        let r = client
            .get(plant.url("/api/v1/admin/session"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the admin UI answers");
    });
    let out = harness::plantd(&["status", "--json", "--data-dir", data.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["journal"]["last_seq"], 1, "{report}");
    plant.stop();
    assert_eq!(
        harness::journal_rows(&data),
        vec![(1, "smoke-1".to_string())]
    );
}

/// systemd's `stop` right after `start`: a SIGTERM that comes while the daemon is still
/// starting (its data directory just locked, nothing served yet) is carried out as a clean
/// stop once the start is done, not by the signal's default action, which would end the
/// process with nothing flushed and exit status "killed by signal 15".
#[test]
fn a_sigterm_during_the_start_is_a_clean_stop() {
    let (_dir, data, _token) = harness::data_dir_with_token("scanner-1");
    let config = data.with_extension("toml");
    std::fs::write(&config, "").unwrap();
    let mut child = std::process::Command::new(harness::bin())
        .args(["up", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("plantd starts");
    let lock = data.join("plantd.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !lock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "plantd did not lock its data directory within 20 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("plantd did not stop within 30 s of a SIGTERM sent during its start");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "plantd exited with {status}:\n{log}");
    assert!(log.contains("shutting down"), "no word of the stop:\n{log}");
}
