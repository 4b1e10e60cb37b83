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
