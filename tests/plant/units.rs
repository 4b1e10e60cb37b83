//! The systemd units: `systemd-analyze verify` accepts them, and they say what the plant and the
//! hub need (notify readiness, a watchdog, restarts, a sandbox).

use std::process::Command;

use crate::harness;

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for unit in ["plantd.service", "plantd-hub.service"] {
        let text =
            std::fs::read_to_string(format!("{}/systemd/{unit}", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        for line in [
            "Type=notify",
            "WatchdogSec=30s",
            "Restart=always",
            "ProtectSystem=strict",
            "NoNewPrivileges=true",
            "PrivateTmp=true",
        ] {
            assert!(text.lines().any(|l| l == line), "{unit} lacks {line}");
        }
        // verify checks that ExecStart's program exists: point it at the binary under test.
        let path = dir.path().join(unit);
        std::fs::write(
            &path,
            text.replace("/usr/local/lib/plantd/plantd", harness::built_bin()),
        )
        .unwrap();
        paths.push(path);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .expect("systemd-analyze runs (Debian's systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}
