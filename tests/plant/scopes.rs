//! Nothing outside gets more than its role (issue 16): a device token sends only its kinds and
//! creates records only of the models the plant allows; keys are each device's own; the data
//! directory is private whatever mode it had; an image bundle is read as Docker reads it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

/// `plantd token create --device NAME --kinds KINDS`; the token is the last line.
fn token_with_kinds(data_dir: &Path, config: &Path, device: &str, kinds: &str) -> String {
    let out = plantd(&[
        "token",
        "create",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--device",
        device,
        "--kinds",
        kinds,
    ]);
    last_line(&out)
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or("")
}

/// The stored (seq, device, kind, payload) rows, read from the journal file.
fn journaled(data_dir: &Path) -> Vec<(i64, String, String, String)> {
    let conn = rusqlite::Connection::open_with_flags(
        data_dir.join("journal.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut s = conn
        .prepare("SELECT seq, device, kind, payload FROM transactions ORDER BY seq")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn a_device_token_creates_only_what_it_was_granted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config =
        "[apply]\nlocal = false\n[apply.kinds.\"odoo.create\"]\nmodels = [\"res.partner\"]\n";
    let config_path = dir.path().join("plant.toml");
    std::fs::write(&config_path, config).unwrap();
    // The token of issue 16: made with no scope, as every token before scopes.
    let prometheus = create_token(&data, "prometheus");
    let gateway = token_with_kinds(&data, &config_path, "gateway", "odoo.create");
    // A kind the plant does not know cannot be granted.
    let unknown = plantd(&[
        "token",
        "create",
        "--config",
        config_path.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--device",
        "x",
        "--kinds",
        "scan",
    ]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("\"scan\""));

    let plant = Plant::start(&data, config);
    let client = plant.client();
    let url = plant.url("/api/v1/transactions");
    let admin_user = json!({"key": "u1", "kind": "odoo.create", "payload": {"model": "res.users", "values": {"name": "Mallory", "login": "mallory", "groups_id/id": "base.group_system"}}});
    let cron = json!({"key": "c1", "kind": "odoo.create", "payload": {"model": "ir.cron", "values": {"name": "x", "model_id/id": "base.model_res_partner", "state": "code", "code": "env['res.users'].browse(2).write({'password': 'x'})"}}});
    let partner = |key: &str| json!({"key": key, "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": "Acme"}}});
    rt().block_on(async {
        // The default scope: every kind but odoo.create.
        for body in [&admin_user, &cron, &partner("p0")] {
            let (status, answer) = post_json(&client, &url, &prometheus, body).await;
            assert_eq!(status, 403, "{body}: {answer}");
            assert_eq!(code(&answer), "kind_not_allowed", "{answer}");
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.contains("\"prometheus\"") && message.contains("--kinds"), "{message}");
        }
        // Granted odoo.create: a partner, and nothing else.
        let (status, answer) = post_json(&client, &url, &gateway, &partner("p1")).await;
        assert_eq!(status, 201, "{answer}");
        for body in [&admin_user, &cron] {
            let (status, answer) = post_json(&client, &url, &gateway, body).await;
            assert_eq!(status, 403, "{body}: {answer}");
            assert_eq!(code(&answer), "model_not_allowed", "{answer}");
            assert_eq!(answer["error"]["field"], "payload.model");
        }
        let other = json!({"key": "g1", "kind": "odoo.create", "payload": {"model": "product.product", "values": {"name": "P"}}});
        let (status, answer) = post_json(&client, &url, &gateway, &other).await;
        assert_eq!((status, code(&answer)), (403, "model_not_allowed"), "{answer}");
        // A partner whose import would make a user through its users field.
        let smuggled = json!({"key": "p2", "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": "A", "user_ids/login": "mallory"}}});
        let (status, answer) = post_json(&client, &url, &gateway, &smuggled).await;
        assert_eq!((status, code(&answer)), (422, "invalid_payload"), "{answer}");
        // A kind it was not granted.
        let mv = json!({"key": "m1", "kind": "stock.move", "payload": {"product": "A", "quantity": 1, "location_id": 1, "location_dest_id": 2}});
        let (status, answer) = post_json(&client, &url, &gateway, &mv).await;
        assert_eq!((status, code(&answer)), (403, "kind_not_allowed"), "{answer}");
        // One refused item refuses the whole array: nothing of it is journaled.
        let mixed = json!([partner("p3"), admin_user]);
        let (status, answer) = post_json(&client, &url, &gateway, &mixed).await;
        assert_eq!(status, 403, "{answer}");
        assert_eq!(answer["error"]["field"], "[1].payload.model");
        // The default scope still sends the plant's other kinds.
        let (status, answer) = post_json(&client, &url, &prometheus, &mv).await;
        assert_eq!(status, 201, "{answer}");
    });
    let rows = journaled(&data);
    let kinds: Vec<(&str, &str)> = rows.iter().map(|r| (r.1.as_str(), r.2.as_str())).collect();
    assert_eq!(
        kinds,
        vec![("gateway", "odoo.create"), ("prometheus", "stock.move")],
        "{rows:?}"
    );
    assert!(rows[0].3.contains("res.partner"));

    // `token list` shows each device's kinds.
    let list = plantd(&["token", "list", "--data-dir", data.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&list.stdout);
    let line = |d: &str| {
        text.lines()
            .find(|l| l.starts_with(d))
            .unwrap_or("")
            .to_string()
    };
    assert!(line("gateway").ends_with("odoo.create"), "{text}");
    assert!(
        line("prometheus").contains("default (every kind but odoo.create)"),
        "{text}"
    );
}

#[test]
fn keys_are_each_devices_own() {
    let (_dir, data, a) = data_dir_with_token("line-a");
    let b = create_token(&data, "line-b");
    let c = create_token(&data, "line-c");
    let plant = Plant::start(&data, "");
    let client = plant.client();
    let url = plant.url("/api/v1/transactions");
    let scan =
        |key: &str, item: &str| json!({"key": key, "kind": "scan", "payload": {"item": item}});
    rt().block_on(async {
        let (status, first) = post_json(&client, &url, &a, &scan("k1", "A-1")).await;
        assert_eq!(status, 201, "{first}");
        let a_seq = first["seq"].as_u64().unwrap();
        // B uses A's key: its own transaction, not a conflict naming A's seq.
        let (status, answer) = post_json(&client, &url, &b, &scan("k1", "B-1")).await;
        assert_eq!(status, 201, "{answer}");
        assert_ne!(answer["seq"].as_u64().unwrap(), a_seq);
        assert_eq!(answer["duplicate"], false);
        // B takes a key first; A's real transaction with it still goes in.
        let (status, _) = post_json(&client, &url, &b, &scan("k2", "B-2")).await;
        assert_eq!(status, 201);
        let (status, answer) = post_json(&client, &url, &a, &scan("k2", "A-2")).await;
        assert_eq!(
            (status, answer["duplicate"].clone()),
            (201, json!(false)),
            "{answer}"
        );
        // A's retry is still a duplicate of its own.
        let (status, answer) = post_json(&client, &url, &a, &scan("k1", "A-1")).await;
        assert_eq!(
            (status, answer["seq"].as_u64()),
            (200, Some(a_seq)),
            "{answer}"
        );

        // Each device reads its own; C, which never sent k1, reads nothing of A's.
        let (status, mine) = get_json(&client, &plant.url("/api/v1/transactions/k1"), &b).await;
        assert_eq!(status, 200);
        assert_eq!(
            (mine["device"].as_str(), mine["payload"]["item"].as_str()),
            (Some("line-b"), Some("B-1"))
        );
        let (status, mine) = get_json(&client, &plant.url("/api/v1/transactions/k1"), &a).await;
        assert_eq!((status, mine["seq"].as_u64()), (200, Some(a_seq)));
        let r = client
            .get(plant.url("/api/v1/transactions/k1"))
            .bearer_auth(&c)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404);
        let text = r.text().await.unwrap();
        assert!(
            !text.contains("A-1") && !text.contains("line-a") && !text.contains("\"seq\""),
            "{text}"
        );
    });
    assert_eq!(journaled(&data).len(), 4);
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// `plantd up` with its log (warnings) written to a file; stopped by the returned guard.
struct Logged(std::process::Child);
impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn up_logged(data: &Path, log: &Path) -> Logged {
    let addr = free_addr();
    let child = Command::new(bin())
        .args([
            "up",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(data.join("plantd.sock").exists() && std::net::TcpStream::connect(addr).is_ok()) {
        assert!(
            Instant::now() < deadline,
            "plantd did not start: {}",
            std::fs::read_to_string(log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    Logged(child)
}

#[test]
fn a_wide_data_directory_is_private_after_start() {
    let (dir, data, _token) = data_dir_with_token("scanner");
    // A first start makes the journal, the admin store and the TLS key.
    let secrets = ["journal.db", "state.db", "admin.db", "tls/api.key"];
    {
        let mut plant = Plant::start(&data, "");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !secrets.iter().all(|f| data.join(f).exists()) {
            assert!(Instant::now() < deadline, "plantd made {secrets:?}");
            std::thread::sleep(Duration::from_millis(25));
        }
        plant.kill9();
    }
    // As a hand-made or restored directory might be.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join("tls"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in secrets {
        assert!(data.join(f).exists(), "{f}");
        std::fs::set_permissions(data.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let log = dir.path().join("plantd.log");
    let _plant = up_logged(&data, &log);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("tls")), 0o700);
    for f in secrets {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("WARN"), "{log}");
    for f in ["journal.db", "state.db", "api.key"] {
        assert!(
            log.lines().any(|l| l.contains(f)
                && l.contains("0644")
                && l.contains("readable by other local users")),
            "{f}: {log}"
        );
    }
    assert!(
        log.contains(&format!("{} was readable", data.display())),
        "{log}"
    );
}

#[test]
fn a_bundle_with_two_manifests_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.path().join("plant.toml");
    std::fs::write(&config, "[stack]\n").unwrap();
    let tag = |t: &str| format!("plantd-test-scopes/{t}:{}", std::process::id());
    // Checked as "benign"; Docker reads the last manifest.json, "./manifest.json", as "evil".
    let manifest = |t: &str| {
        format!(
            r#"[{{"Config":"{}.json","RepoTags":["{}"],"Layers":[]}}]"#,
            "ab".repeat(32),
            tag(t)
        )
    };
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in [
        ("manifest.json", manifest("benign")),
        ("./manifest.json", manifest("evil")),
    ] {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, body.as_bytes()).unwrap();
    }
    let bundle = dir.path().join("bundle.tar");
    std::fs::write(&bundle, b.into_inner().unwrap()).unwrap();
    let out = plantd(&[
        "images",
        "load",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        bundle.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("Docker reads as manifest.json")
            && err.contains("./manifest.json")
            && err.contains(bundle.to_str().unwrap()),
        "{err}"
    );
    let evil = Command::new("docker")
        .args(["image", "inspect", &tag("evil")])
        .output()
        .unwrap();
    assert!(!evil.status.success(), "nothing was loaded");
}
