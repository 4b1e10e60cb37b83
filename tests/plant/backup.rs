//! Backups of a real stack (PostgreSQL and the Odoo emulator in Docker): what goes in, that
//! standard tools open it, that verify restores it, and that a damaged archive is refused.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness;
use crate::stack::TestStack;

/// One JSON-RPC call to Odoo through plantd's ingress.
async fn odoo_call(stack: &TestStack, model: &str, method: &str, args: Value) -> Value {
    let secrets: Value = serde_json::from_slice(
        &std::fs::read(stack.plant.data_dir.join("stack/secrets.json")).unwrap(),
    )
    .unwrap();
    let password = secrets["odoo_admin_password"].as_str().unwrap();
    let client = harness::client_for(&stack.plant.data_dir.join("tls/api.crt"), stack.ingress);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "call", "params": {
        "service": "object", "method": "execute_kw",
        "args": ["odoo", 2, password, model, method, args]}});
    let r: Value = client
        .post(format!(
            "https://localhost:{}/jsonrpc",
            stack.ingress.port()
        ))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r.get("error").is_none(), "{r}");
    r["result"].clone()
}

#[test]
fn a_backup_holds_database_filestore_and_config_and_verifies() {
    // A secret in the stack's environment must not end up in the archive's plant.toml.
    let stack = TestStack::start("[stack.odoo.env]\nSMTP_PASSWORD = \"hunter2-smtp\"\n");
    stack.wait_all_healthy(Duration::from_secs(120));
    harness::rt().block_on(async {
        odoo_call(
            &stack,
            "res.partner",
            "create",
            json!([{"name": "Plant Lyon"}]),
        )
        .await;
        // "hello filestore", base64.
        let attachment = json!([{"name": "label.txt", "datas": "aGVsbG8gZmlsZXN0b3Jl"}]);
        odoo_call(&stack, "ir.attachment", "create", attachment).await;
    });

    let out = stack.cli_ok(&["backup", "run"]);
    let id = out.lines().last().unwrap().trim().to_string();
    let listed: Vec<Value> =
        serde_json::from_str(&stack.cli_ok(&["backup", "list", "--json"])).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let entry = &listed[0];
    assert_eq!(entry["id"], id.as_str());
    assert_eq!(entry["verified"], false);
    assert!(entry["size"].as_u64().unwrap() > 1000);
    assert!(entry["created_at"].as_str().unwrap().starts_with("20"));
    let archive = std::path::PathBuf::from(entry["path"].as_str().unwrap());
    assert!(archive.ends_with(format!("{id}.tar.zst")));

    // Standard tools open it: tar with zstd, then Debian's own pg_restore reads the dump.
    let dir = tempfile::tempdir().unwrap();
    let tar = Command::new("tar")
        .args(["--zstd", "-xf"])
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["id"], id.as_str());
    assert_eq!(manifest["database"], "odoo");
    assert!(manifest["postgres_version"]
        .as_str()
        .unwrap()
        .starts_with("15"));
    let parts: Vec<&str> = manifest["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        parts,
        [
            "db.dump",
            "filestore.tar",
            "config/odoo.conf",
            "config/plant.toml"
        ]
    );
    let list = Command::new("/usr/lib/postgresql/15/bin/pg_restore")
        .arg("-l")
        .arg(dir.path().join("db.dump"))
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(String::from_utf8_lossy(&list.stdout).contains("TABLE DATA"));
    // And restores it, outside plantd, into a PostgreSQL of the test's own: every table has
    // the rows the manifest counted.
    let pg = crate::fleet::Pg::start();
    let restore = Command::new("/usr/lib/postgresql/15/bin/pg_restore")
        .args(["--no-owner", "--create", "-d"])
        .arg(pg.url())
        .arg(dir.path().join("db.dump"))
        .output()
        .unwrap();
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let tables = manifest["tables"].as_object().unwrap().clone();
    assert!(!tables.is_empty());
    harness::rt().block_on(async {
        let url = format!("postgres://postgres@127.0.0.1:{}/odoo", pg.port);
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        for (table, rows) in &tables {
            let n: i64 = client
                .query_one(&format!("SELECT count(*) FROM public.\"{table}\""), &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(Some(n), rows.as_i64(), "rows of {table}");
        }
    });

    // The attachment's bytes are in the filestore part, under Odoo's layout.
    let files = Command::new("tar")
        .args(["-xOf"])
        .arg(dir.path().join("filestore.tar"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&files.stdout).contains("hello filestore"));
    // No password in the archive's config.
    let odoo_conf = std::fs::read_to_string(dir.path().join("config/odoo.conf")).unwrap();
    assert!(
        odoo_conf.contains("admin_passwd = (left out of backups)"),
        "{odoo_conf}"
    );
    let plant_toml = std::fs::read_to_string(dir.path().join("config/plant.toml")).unwrap();
    assert!(plant_toml.contains("SMTP_PASSWORD"), "{plant_toml}");
    assert!(!plant_toml.contains("hunter2-smtp"), "{plant_toml}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&archive).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the archive holds the whole database");
    let secrets = std::fs::read_to_string(stack.plant.data_dir.join("stack/secrets.json")).unwrap();
    let secrets: Value = serde_json::from_str(&secrets).unwrap();
    assert!(!odoo_conf.contains(secrets["postgres_password"].as_str().unwrap()));

    // Verify restores the dump into a scratch database and compares the counts.
    let out = stack.cli_ok(&["backup", "verify", &id]);
    assert!(out.contains("verified"), "{out}");
    let listed: Vec<Value> =
        serde_json::from_str(&stack.cli_ok(&["backup", "list", "--json"])).unwrap();
    assert_eq!(listed[0]["verified"], true);
    let dbs = stack.psql("SELECT datname FROM pg_database");
    assert!(
        !dbs.contains("plantd_verify"),
        "the scratch database is dropped: {dbs}"
    );

    // A damaged copy and a truncated copy are refused, saying so.
    let bytes = std::fs::read(&archive).unwrap();
    let backups = archive.parent().unwrap();
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    for b in &mut damaged[middle..middle + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(backups.join(format!("{id}-damaged.tar.zst")), &damaged).unwrap();
    std::fs::write(
        backups.join(format!("{id}-truncated.tar.zst")),
        &bytes[..bytes.len() * 2 / 3],
    )
    .unwrap();
    for copy in ["damaged", "truncated"] {
        let out = stack.cli(&["backup", "verify", &format!("{id}-{copy}")]);
        assert!(!out.status.success(), "a {copy} archive must not verify");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{id}-{copy}.tar.zst")), "{err}");
    }
    assert!(!stack.cli(&["backup", "verify", "../etc"]).status.success());
    assert!(!stack
        .cli(&["backup", "verify", "x\"; DROP DATABASE odoo"])
        .status
        .success());

    // A dump that passes its checksum but is not a dump (and is larger than any pipe buffer):
    // pg_restore's own error comes back, nothing hangs, and no scratch database is left.
    let forged = forge_with_bad_dump(dir.path(), &manifest);
    std::fs::copy(&forged, backups.join(format!("{id}-forged.tar.zst"))).unwrap();
    let out = stack.cli(&["backup", "verify", &format!("{id}-forged")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pg_restore") && err.contains("failed"),
        "{err}"
    );
    let dbs = stack.psql("SELECT datname FROM pg_database");
    assert!(!dbs.contains("plantd_verify"), "{dbs}");
}

/// An archive like the extracted one in `dir`, but whose db.dump is 1 MiB of noise with a
/// manifest that matches it.
fn forge_with_bad_dump(dir: &std::path::Path, manifest: &Value) -> std::path::PathBuf {
    let noise: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut manifest = manifest.clone();
    for part in manifest["parts"].as_array_mut().unwrap() {
        if part["name"] == "db.dump" {
            part["size"] = json!(noise.len());
            let digest = ring::digest::digest(&ring::digest::SHA256, &noise);
            part["sha256"] = json!(digest
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>());
        }
    }
    let out = dir.join("forged.tar.zst");
    let encoder = zstd::Encoder::new(std::fs::File::create(&out).unwrap(), 3).unwrap();
    let mut tar = tar::Builder::new(encoder);
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        tar.append_data(&mut h, name, data).unwrap();
    };
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    for part in manifest["parts"].as_array().unwrap() {
        let name = part["name"].as_str().unwrap();
        let data = if name == "db.dump" {
            noise.clone()
        } else {
            std::fs::read(dir.join(name)).unwrap()
        };
        add(name, &data);
    }
    tar.into_inner().unwrap().finish().unwrap();
    out
}
