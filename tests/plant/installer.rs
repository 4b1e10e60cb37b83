//! `installer/install.sh`: into a staging root (twice, then uninstalled), and for real in a
//! container of the local Debian image, where it installs Docker from Debian's packages.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn install(args: &[&str]) -> Output {
    Command::new(format!("{ROOT}/installer/install.sh"))
        .args(args)
        .output()
        .expect("install.sh runs")
}

fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "install.sh failed:\n{text}");
    text
}

fn refused(out: &Output) -> String {
    assert!(!out.status.success(), "install.sh should have refused");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn install_into_a_staging_root_twice_then_uninstall() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let r = root.to_str().unwrap();
    let plant = [
        "--plant",
        "--root",
        r,
        "--binary",
        harness::built_bin(),
        "--name",
        "lyon",
    ];
    ok(&install(&plant));
    let bin = root.join("usr/local/lib/plantd/plantd");
    assert_eq!(
        std::fs::read_link(root.join("usr/local/bin/plantd")).unwrap(),
        Path::new("../lib/plantd/plantd"),
        "the admin's plantd is a link to the binary updates swap"
    );
    let config = root.join("etc/plantd/plant.toml");
    let unit = root.join("etc/systemd/system/plantd.service");
    let data = root.join("var/lib/plantd");
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(harness::built_bin()).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(&unit).unwrap(),
        std::fs::read_to_string(format!("{ROOT}/systemd/plantd.service")).unwrap()
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let checked = harness::plantd(&["config", "check", config.to_str().unwrap()]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(String::from_utf8_lossy(&checked.stdout).contains("stack         lyon"));

    // Again, as an upgrade: the admin's config edits and the data stay.
    let edited = format!(
        "{}\n# edited by the plant's admin\n",
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, &edited).unwrap();
    std::fs::write(data.join("journal.db"), b"the plant's journal").unwrap();
    std::fs::write(&bin, b"an older plantd").unwrap();
    let again = ok(&install(&plant));
    assert!(again.contains("kept"), "{again}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
    assert_eq!(
        std::fs::read(data.join("journal.db")).unwrap(),
        b"the plant's journal"
    );
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(harness::built_bin()).unwrap(),
        "upgraded"
    );

    // Uninstall keeps config and data; --purge deletes them.
    ok(&install(&["--uninstall", "--root", r]));
    assert!(!bin.exists() && !unit.exists());
    assert!(config.exists() && data.join("journal.db").exists());
    ok(&install(&["--uninstall", "--purge", "--root", r]));
    assert!(!config.exists() && !data.exists());

    // A hub: its config holds the database URL, readable by root only.
    let db = "postgres://plantd:secret@db.internal/plantd";
    ok(&install(&[
        "--hub",
        "--root",
        r,
        "--binary",
        harness::built_bin(),
        "--database",
        db,
    ]));
    let hub = root.join("etc/plantd/hub.toml");
    assert!(std::fs::read_to_string(&hub).unwrap().contains(db));
    assert_eq!(
        std::fs::metadata(&hub).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(root.join("etc/systemd/system/plantd-hub.service").exists());

    // Refusals say what is wrong and change nothing.
    let empty = dir.path().join("empty");
    let e = refused(&install(&["--root", empty.to_str().unwrap()]));
    assert!(e.contains("--plant, --hub or --uninstall"), "{e}");
    let e = refused(&install(&[
        "--plant",
        "--root",
        empty.to_str().unwrap(),
        "--binary",
        "/nonexistent",
    ]));
    assert!(e.contains("--binary /nonexistent"), "{e}");
    let e = refused(&install(&[
        "--plant",
        "--name",
        "Lyon Plant",
        "--root",
        empty.to_str().unwrap(),
    ]));
    assert!(e.contains("--name Lyon Plant"), "{e}");
    let e = refused(&install(&[
        "--plant",
        "--root",
        empty.to_str().unwrap(),
        "--binary",
        harness::built_bin(),
        "--token",
        "t",
    ]));
    assert!(e.contains("needs both --hub-addr and --token"), "{e}");
    let e = refused(&install(&[
        "--hub",
        "--root",
        empty.to_str().unwrap(),
        "--binary",
        harness::built_bin(),
        "--database",
        "postgres://a\"b@db/x",
    ]));
    assert!(e.contains("quotes, backslashes"), "{e}");
    assert!(!empty.join("etc").exists() && !empty.join("usr").exists());
}

/// For real, as root on Debian: the local base image has no Docker, so the installer installs
/// it from Debian's packages; then the files, the config and the unit are checked inside, a
/// second run keeps the config, and an uninstall keeps config and data.
#[test]
fn install_for_real_in_a_debian_container() {
    let name = format!("plantd-test-install-{}", std::process::id());
    let script = r#"
set -e
/opt/plantd/installer/install.sh --plant --binary /opt/plantd/plantd --name turin
echo "docker: $(command -v dockerd)"
plantd config check /etc/plantd/plant.toml
cmp /etc/systemd/system/plantd.service /opt/plantd/systemd/plantd.service && echo "unit: same"
stat -c 'data: %a' /var/lib/plantd
echo '# kept' >> /etc/plantd/plant.toml
/opt/plantd/installer/install.sh --plant --binary /opt/plantd/plantd --name turin
tail -n 1 /etc/plantd/plant.toml
/opt/plantd/installer/install.sh --uninstall
test ! -e /usr/local/bin/plantd && test ! -e /usr/local/lib/plantd && test -e /etc/plantd/plant.toml && echo "uninstalled, config kept"
"#;
    let bin = Path::new(harness::built_bin());
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--name",
            &name,
            "--label",
            "io.plantd.test=installer",
        ])
        .args(["-v", &format!("{ROOT}/installer:/opt/plantd/installer:ro")])
        .args(["-v", &format!("{ROOT}/systemd:/opt/plantd/systemd:ro")])
        .args(["-v", &format!("{}:/opt/plantd/plantd:ro", bin.display())])
        .args(["plantd-local/base:bookworm", "bash", "-c", script])
        .output()
        .expect("docker runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    assert!(out.status.success(), "{text}");
    for line in [
        "installing docker.io (for dockerd)",
        "docker: /usr/sbin/dockerd",
        "stack         turin",
        "unit: same",
        "data: 700",
        "# kept",
        "uninstalled, config kept",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
}
