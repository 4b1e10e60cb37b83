//! The command line as an admin meets it.

use crate::harness::*;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_and_version_speak_to_a_plant_admin() {
    let help = plantd(&["--help"]);
    assert!(help.status.success());
    for cmd in ["up", "status", "config", "token"] {
        assert!(stdout(&help).contains(cmd), "--help lists {cmd}");
    }
    let up = plantd(&["up", "--help"]);
    assert!(stdout(&up).contains("--data-dir") && stdout(&up).contains("--listen"));
    let v = plantd(&["--version"]);
    assert_eq!(
        stdout(&v).trim(),
        format!("plantd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn hub_flags_work_before_and_after_a_hub_subcommand() {
    // Nothing listens on port 1: each order of flags gets as far as the database.
    for args in [
        &[
            "hub",
            "--listen",
            "127.0.0.1:9443",
            "--quic",
            "127.0.0.1:9444",
            "plants",
        ][..],
        &[
            "hub",
            "plants",
            "--listen",
            "127.0.0.1:9443",
            "--quic",
            "127.0.0.1:9444",
        ][..],
    ] {
        let mut args = args.to_vec();
        args.extend(["--database", "postgres://plantd@127.0.0.1:1/plantd"]);
        let out = plantd(&args);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("cannot reach the hub database"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn config_check_accepts_the_example_and_names_line_and_field_of_errors() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/installer/plant.toml");
    let ok = plantd(&["config", "check", example]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains(": ok"));

    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[api]\nlisten = \"8443\"\n", "bad.toml:2: api.listen:"),
        (
            "[journal]\nretention = \"a week\"\n",
            "bad.toml:2: journal.retention:",
        ),
        ("[jornal]\nretention = \"7d\"\n", "bad.toml:1:"),
        ("[api]\nlisten = 8443\n", "bad.toml:2: api.listen:"),
        (
            "[apply.kinds.k]\nmodel = \"m\"\noperation = \"delete\"\n",
            "bad.toml:3: apply.kinds.k.operation:",
        ),
        ("[odoo]\nurl = \"ftp://x\"\n", "bad.toml:2: odoo.url:"),
    ];
    for (text, expected) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(built_bin())
            .current_dir(dir.path())
            .args(["config", "check", "bad.toml"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{text} passed");
        assert!(stderr(&out).contains(expected), "{text}: {}", stderr(&out));
    }
    let missing = plantd(&["config", "check", "/nonexistent/plant.toml"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("/nonexistent/plant.toml"));
}

#[test]
fn tokens_are_listed_and_revoked_through_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let plant = Plant::start(&data, "");
    // Created while the daemon runs: usable at once.
    let token = create_token(&data, "terminal-7");
    let client = plant.client();
    let post = |token: &str| {
        let r = rt().block_on(async {
            client
                .post(plant.url("/api/v1/transactions"))
                .bearer_auth(token)
                .json(&tx(&format!("k-{token}")))
                .send()
                .await
        });
        r.unwrap().status().as_u16()
    };
    assert_eq!(post(&token), 201);
    let list = plantd(&["token", "list", "--data-dir", d]);
    assert!(stdout(&list).contains("terminal-7") && stdout(&list).contains("active"));
    assert!(
        !stdout(&list).contains(&token),
        "the token itself is never shown again"
    );
    let dup = plantd(&["token", "create", "--data-dir", d, "--device", "terminal-7"]);
    assert!(!dup.status.success());
    assert!(stderr(&dup).contains("already has an active token"));
    let revoke = plantd(&["token", "revoke", "--data-dir", d, "terminal-7"]);
    assert!(revoke.status.success(), "{}", stderr(&revoke));
    assert_eq!(post(&token), 403);
    let unknown = plantd(&["token", "revoke", "--data-dir", d, "ghost"]);
    assert!(stderr(&unknown).contains("no device named \"ghost\""));

    // The control socket is private to the daemon's user.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("plantd.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let status = plantd(&["status", "--data-dir", d]);
    let text = stdout(&status);
    assert!(text.contains("journal: depth 1, last seq 1"), "{text}");
    assert!(
        text.contains("replication") && text.contains("not enrolled"),
        "{text}"
    );

    // A second daemon on the same data directory refuses to start.
    let second = std::process::Command::new(built_bin())
        .args(["up", "--data-dir", d, "--listen", &free_addr().to_string()])
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("already running"),
        "{}",
        stderr(&second)
    );
    drop(plant);

    let down = plantd(&["status", "--data-dir", d]);
    assert!(!down.status.success());
    assert!(stderr(&down).contains("not running"), "{}", stderr(&down));
}

#[test]
fn plain_http_listener_is_off_by_default_and_works_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plain = free_addr();
    let plant = Plant::start(&data, &format!("[api]\nlisten_plain = \"{plain}\"\n"));
    let token = create_token(&data, "legacy-plc");
    let r = rt().block_on(async {
        plain_client()
            .post(format!("http://{plain}/api/v1/transactions"))
            .bearer_auth(&token)
            .json(&tx("plc-1"))
            .send()
            .await
    });
    assert_eq!(r.unwrap().status().as_u16(), 201);
    drop(plant);
}

#[test]
fn a_configured_certificate_is_served_and_a_missing_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("site.crt");
    let key = dir.path().join("site.key");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let config = format!(
        "[api]\ntls_cert = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let plant = Plant::start(&data, &config);
    assert!(
        !data.join("tls/api.crt").exists(),
        "no self-signed certificate is made"
    );
    let token = create_token(&data, "scanner");
    let client = client_for(&cert, plant.addr);
    let url = plant.url("/api/v1/transactions");
    let (status, _) = rt().block_on(post_json(&client, &url, &token, &tx("site-cert")));
    assert_eq!(status, 201);
    drop(plant);

    let missing = dir.path().join("config-missing.toml");
    std::fs::write(
        &missing,
        "[api]\ntls_cert = \"/etc/nope/api.crt\"\ntls_key = \"/etc/nope/api.key\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(built_bin())
        .args([
            "up",
            "--config",
            missing.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .args(["--listen", &free_addr().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/etc/nope/api.crt"),
        "{}",
        stderr(&out)
    );
}

/// `plantd status | head -1` ends quietly and exits 0 (it panicked on the closed pipe), and
/// the daemon's log redirected to a file is plain text, without terminal colours.
#[test]
fn a_closed_pipe_ends_a_command_quietly_and_a_redirected_log_has_no_colours() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("plantd.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut plant = Plant::start_with(&data, "", free_addr(), |c| {
        c.stderr(log_file);
    });
    // `true` reads nothing and exits at once: plantd writes to a pipe already closed.
    let script = format!(
        "set -o pipefail; for i in 1 2 3 4 5; do {bin} status --data-dir {data} | true || exit $?; done",
        bin = built_bin(),
        data = data.display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    // Ended by SIGPIPE (141), as any other tool whose reader went away, or done first (0).
    assert!(
        matches!(out.status.code(), Some(0) | Some(141)),
        "{:?}: {err}",
        out.status
    );
    let single = std::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "{} status --data-dir {} | head -1",
                built_bin(),
                data.display()
            ),
        ])
        .output()
        .unwrap();
    assert!(single.status.success(), "{single:?}");
    assert!(
        stdout(&single).starts_with("plantd "),
        "{}",
        stdout(&single)
    );
    assert!(!stderr(&single).contains("panicked"), "{}", stderr(&single));
    plant.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("no admin user yet"),
        "the log has its lines: {text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "terminal escapes in a redirected log: {text:?}"
    );
}
