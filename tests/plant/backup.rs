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

/// `search_read` of `model`, as (name, other field) pairs sorted by name.
async fn names(stack: &TestStack, model: &str, field: &str) -> Vec<(String, Value)> {
    let rows = odoo_call(stack, model, "search_read", json!([[], ["name", field]])).await;
    let mut out: Vec<(String, Value)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r[field].clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What a user would look at: the partners (name, id) and attachments (name, content).
type Records = (Vec<(String, Value)>, Vec<(String, Value)>);

async fn records(stack: &TestStack) -> Records {
    (
        names(stack, "res.partner", "id").await,
        names(stack, "ir.attachment", "datas").await,
    )
}

fn b64(text: &str) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text)
}

/// The files under Odoo's filestore for database odoo, and what else is in its volume.
fn odoo_volume(stack: &TestStack) -> (Vec<String>, Vec<String>) {
    let odoo = stack.container("odoo");
    let list = |script: &str| -> Vec<String> {
        let out = Command::new("docker")
            .args(["exec", &odoo, "sh", "-c", script])
            .output()
            .unwrap();
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    (
        list("cd /var/lib/odoo/filestore/odoo && find . -type f"),
        list("ls -A /var/lib/odoo"),
    )
}

#[test]
fn a_restore_brings_back_exactly_the_backed_up_records_and_files() {
    let stack = TestStack::start("");
    stack.wait_all_healthy(Duration::from_secs(120));
    let rt = harness::rt();
    let partners = [
        json!({"name": "Plant Lyon"}),
        json!({"name": "Plant Turin"}),
    ];
    rt.block_on(async {
        odoo_call(&stack, "res.partner", "create", json!([partners])).await;
        let label = json!([{"name": "label.txt", "datas": b64("first label")}]);
        odoo_call(&stack, "ir.attachment", "create", label).await;
    });
    let backed_up = rt.block_on(records(&stack));
    let files_backed_up = odoo_volume(&stack).0;
    assert_eq!(files_backed_up.len(), 1, "{files_backed_up:?}");
    // Taken and verified in one command, as the schedule does.
    let id = stack.cli_ok(&["backup", "run", "--verify"]);
    let id = id.lines().last().unwrap().trim().to_string();
    let listed = list(&stack);
    let entry = listed.iter().find(|b| b["id"] == id.as_str()).unwrap();
    assert_eq!(entry["verified"], true, "{entry}");

    // After the backup: a partner renamed, one deleted, one added; the attachment's content
    // replaced (a new file in the filestore) and a second attachment.
    rt.block_on(async {
        let lyon = backed_up
            .0
            .iter()
            .find(|p| p.0 == "Plant Lyon")
            .unwrap()
            .1
            .clone();
        let turin = backed_up
            .0
            .iter()
            .find(|p| p.0 == "Plant Turin")
            .unwrap()
            .1
            .clone();
        odoo_call(
            &stack,
            "res.partner",
            "write",
            json!([[lyon], {"name": "Plant Lyon (moved)"}]),
        )
        .await;
        odoo_call(&stack, "res.partner", "unlink", json!([[turin]])).await;
        odoo_call(
            &stack,
            "res.partner",
            "create",
            json!([{"name": "Plant Porto"}]),
        )
        .await;
        let label: Vec<i64> = serde_json::from_value(
            odoo_call(
                &stack,
                "ir.attachment",
                "search",
                json!([[["name", "=", "label.txt"]]]),
            )
            .await,
        )
        .unwrap();
        odoo_call(
            &stack,
            "ir.attachment",
            "write",
            json!([label, {"datas": b64("second label")}]),
        )
        .await;
        let photo = json!([{"name": "photo.jpg", "datas": b64("a photo")}]);
        odoo_call(&stack, "ir.attachment", "create", photo).await;
    });
    assert_ne!(odoo_volume(&stack).0, files_backed_up);
    let odoo_before = stack.service("odoo");

    let out = stack.cli_ok(&["backup", "restore", &id, "--json"]);
    let restored: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(restored["id"], id.as_str());
    assert_eq!(restored["database"], "odoo");
    let safety = restored["safety_backup"].as_str().unwrap().to_string();

    // Exactly the backed-up records, attachment content and filestore files; nothing staged
    // or set aside is left behind.
    let now = rt.block_on(records(&stack));
    assert_eq!(now, backed_up);
    assert_eq!(
        now.1[0].1,
        json!(b64("first label")),
        "the attachment reads its backed-up content from the restored filestore"
    );
    let (files, volume) = odoo_volume(&stack);
    assert_eq!(files, files_backed_up);
    assert!(
        !volume.iter().any(|v| v.starts_with(".plantd")),
        "{volume:?}"
    );
    let dbs = stack.psql("SELECT datname FROM pg_database ORDER BY 1");
    assert!(
        !dbs.contains("plantd_"),
        "no staging or previous database is left: {dbs}"
    );
    // Healthy by plantd's own probe (the supervisor's next probe agrees within seconds).
    stack.wait_all_healthy(Duration::from_secs(30));
    let odoo = stack.service("odoo");
    assert!(odoo["held"].is_null(), "{odoo}");
    assert_ne!(
        odoo["since"], odoo_before["since"],
        "Odoo was stopped for the swap"
    );
    let events: Vec<String> = stack
        .events()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert!(
        events.contains(&"hold".to_string()) && events.contains(&"release".to_string()),
        "{events:?}"
    );

    // The safety backup holds the data the restore replaced, and is listed.
    let listed: Vec<Value> =
        serde_json::from_str(&stack.cli_ok(&["backup", "list", "--json"])).unwrap();
    let mut ids: Vec<&str> = listed.iter().map(|b| b["id"].as_str().unwrap()).collect();
    // Two backups in the same second sort by their random suffix.
    ids.sort();
    let mut want = [id.as_str(), safety.as_str()];
    want.sort();
    assert_eq!(ids, want);
    stack.cli_ok(&["backup", "restore", &safety]);
    let after_safety = rt.block_on(names(&stack, "res.partner", "id"));
    let mut after: Vec<&str> = after_safety.iter().map(|p| p.0.as_str()).collect();
    after.sort();
    assert_eq!(after, ["Plant Lyon (moved)", "Plant Porto"]);
    let files_after_safety = odoo_volume(&stack).0;
    assert_eq!(files_after_safety.len(), 2, "{files_after_safety:?}");

    // A restore that pg_restore rejects: refused before Odoo stops; it keeps serving the data
    // it had, and nothing staged is left.
    let dir = tempfile::tempdir().unwrap();
    let archive = stack.plant.data_dir.join(format!("backups/{id}.tar.zst"));
    let tar = Command::new("tar")
        .args(["--zstd", "-xf"])
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(tar.status.success());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    let forged = forge_with_bad_dump(dir.path(), &manifest);
    let backups = stack.plant.data_dir.join("backups");
    std::fs::copy(&forged, backups.join("20260101T000000Z-forged.tar.zst")).unwrap();
    let odoo_before = stack.service("odoo");
    let out = stack.cli(&["backup", "restore", "20260101T000000Z-forged"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pg_restore") && err.contains("nothing was changed"),
        "{err}"
    );
    let odoo = stack.service("odoo");
    assert_eq!(odoo["since"], odoo_before["since"], "Odoo never stopped");
    assert_eq!(odoo["id"], odoo_before["id"]);
    assert_eq!(
        rt.block_on(names(&stack, "res.partner", "id")),
        after_safety
    );
    assert_eq!(odoo_volume(&stack).0, files_after_safety);
    assert!(!odoo_volume(&stack)
        .1
        .iter()
        .any(|v| v.starts_with(".plantd")));
    let dbs = stack.psql("SELECT datname FROM pg_database ORDER BY 1");
    assert!(!dbs.contains("plantd_"), "{dbs}");
}

/// A `[backup]` whose daily slot is the next whole UTC minute at least 20 s away.
fn backup_soon(extra: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut slot = (now / 60 + 1) * 60;
    if slot - now < 20 {
        slot += 60;
    }
    let minute_of_day = (slot % 86_400) / 60;
    format!(
        "[backup]\nschedule = \"daily {:02}:{:02}\"\ntimezone = \"UTC\"\n{extra}",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

fn backup_component(stack: &TestStack) -> Value {
    let out = stack.cli_ok(&["status", "--json"]);
    let status: Value = serde_json::from_str(&out).unwrap();
    status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "backup")
        .cloned()
        .unwrap_or(Value::Null)
}

fn list(stack: &TestStack) -> Vec<Value> {
    serde_json::from_str(&stack.cli_ok(&["backup", "list", "--json"])).unwrap()
}

#[test]
fn the_daemon_backs_up_on_schedule_verifies_prunes_and_alerts_on_failure() {
    let mut stack = TestStack::start("[backup]\nschedule = \"off\"\n");
    stack.wait_all_healthy(Duration::from_secs(120));
    assert!(backup_component(&stack)["detail"]
        .as_str()
        .unwrap()
        .contains("off"));
    // A backup by hand today, and two from long ago.
    let manual = stack.cli_ok(&["backup", "run"]);
    let manual = manual.lines().last().unwrap().trim().to_string();
    let backups = stack.plant.data_dir.join("backups");
    let archive = backups.join(format!("{manual}.tar.zst"));
    for old in ["20250101T020000Z-0000a1", "20250301T020000Z-0000a2"] {
        std::fs::copy(&archive, backups.join(format!("{old}.tar.zst"))).unwrap();
    }
    assert_eq!(list(&stack).len(), 3);

    // Keep one a day for one day: after the scheduled backup, only it is left.
    stack.restart_plantd(&backup_soon(
        "keep_daily = 1\nkeep_weekly = 0\nkeep_monthly = 0\n",
    ));
    let detail = backup_component(&stack)["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains("next backup at"), "{detail}");
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let scheduled = loop {
        let listed = list(&stack);
        if listed.len() == 1 && listed[0]["id"] != manual.as_str() {
            break listed[0].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled backup, or the old ones were kept: {listed:?}"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    assert_eq!(scheduled["verified"], true, "{scheduled}");
    let component = backup_component(&stack);
    assert_eq!(component["state"], "ok", "{component}");
    let detail = component["detail"].as_str().unwrap();
    let id = scheduled["id"].as_str().unwrap();
    assert!(
        detail.contains(id) && detail.contains("3 older ones deleted"),
        "{detail}"
    );

    // A scheduled backup that fails (its directory is not a directory) is an alert.
    let aside = stack.plant.data_dir.join("backups.aside");
    std::fs::rename(&backups, &aside).unwrap();
    std::fs::write(&backups, b"not a directory").unwrap();
    stack.restart_plantd(&backup_soon(""));
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let failed = loop {
        let c = backup_component(&stack);
        if c["state"] == "unhealthy" {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "no alert: {c}");
        std::thread::sleep(Duration::from_secs(2));
    };
    let detail = failed["detail"].as_str().unwrap();
    assert!(
        detail.contains("the scheduled backup of") && detail.contains("retrying in 5 min"),
        "{detail}"
    );
    std::fs::remove_file(&backups).unwrap();
    std::fs::rename(&aside, &backups).unwrap();
}

#[test]
fn encrypted_backups_open_with_age_and_restore_and_a_wrong_key_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let office_key = keys.path().join("office.txt");
    let gen = Command::new("age-keygen")
        .arg("-o")
        .arg(&office_key)
        .output()
        .unwrap();
    assert!(gen.status.success());
    let public = String::from_utf8_lossy(&gen.stderr)
        .trim()
        .trim_start_matches("Public key: ")
        .to_string();
    let stack = TestStack::start(&format!(
        "[backup]\nschedule = \"off\"\nencrypt_to = [\"{public}\"]\n"
    ));
    stack.wait_all_healthy(Duration::from_secs(120));
    let rt = harness::rt();
    rt.block_on(odoo_call(
        &stack,
        "res.partner",
        "create",
        json!([{"name": "Plant Graz"}]),
    ));
    let taken: Value = serde_json::from_str(&stack.cli_ok(&["backup", "run", "--json"])).unwrap();
    let id = taken["id"].as_str().unwrap().to_string();
    let path = std::path::PathBuf::from(taken["path"].as_str().unwrap());
    assert!(path.to_str().unwrap().ends_with(".tar.zst.age"), "{path:?}");
    assert_eq!(taken["encrypted"], true);
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1"));

    // The office's key opens it with the standard age and tar.
    let dir = tempfile::tempdir().unwrap();
    let open = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i '{}' '{}' | tar --zstd -xf - -C '{}'",
            office_key.display(),
            path.display(),
            dir.path().display()
        ))
        .output()
        .unwrap();
    assert!(
        open.status.success(),
        "{}",
        String::from_utf8_lossy(&open.stderr)
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["id"], id.as_str());

    // The plant verifies with its own key; listed, it says encrypted.
    stack.cli_ok(&["backup", "verify", &id]);
    let listed = list(&stack);
    assert_eq!(listed[0]["encrypted"], true);
    assert_eq!(listed[0]["verified"], true);

    // Without the plant's key, only the office's opens it; a stranger's is refused, by name.
    let own = stack.plant.data_dir.join("backup-identity.txt");
    let aside = keys.path().join("plant-key.txt");
    std::fs::rename(&own, &aside).unwrap();
    let stranger = keys.path().join("stranger.txt");
    assert!(Command::new("age-keygen")
        .arg("-o")
        .arg(&stranger)
        .output()
        .unwrap()
        .status
        .success());
    for args in [vec![], vec!["--identity", stranger.to_str().unwrap()]] {
        let out = stack.cli(&[&["backup", "verify", &id][..], &args[..]].concat());
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("encrypted to none of the keys") && err.contains("--identity"),
            "{err}"
        );
        let out = stack.cli(&[&["backup", "restore", &id][..], &args[..]].concat());
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was changed"));
    }
    rt.block_on(odoo_call(
        &stack,
        "res.partner",
        "create",
        json!([{"name": "Plant Linz"}]),
    ));
    // The safety backup a restore takes first is encrypted too, and needs the plant's key:
    // put it back, and restore with the office's key given.
    std::fs::rename(&aside, &own).unwrap();
    stack.cli_ok(&[
        "backup",
        "restore",
        &id,
        "--identity",
        office_key.to_str().unwrap(),
    ]);
    let names: Vec<String> = rt
        .block_on(names(&stack, "res.partner", "id"))
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(names, ["Plant Graz"]);
}

/// A zip of `(name, data)` entries, written as given.
fn write_zip(path: &std::path::Path, entries: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, data) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut zip, data).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn an_exported_odoo_zip_imports_back_and_restores_the_same_records() {
    let stack = TestStack::start("[backup]\nschedule = \"off\"\n");
    stack.wait_all_healthy(Duration::from_secs(120));
    let rt = harness::rt();
    rt.block_on(async {
        let partners = json!([[{"name": "Plant Lyon"}, {"name": "Plant Turin"}]]);
        odoo_call(&stack, "res.partner", "create", partners).await;
        let label = json!([{"name": "label.txt", "datas": b64("hello zip")}]);
        odoo_call(&stack, "ir.attachment", "create", label).await;
    });
    let backed_up = rt.block_on(records(&stack));
    let id = stack.cli_ok(&["backup", "run"]);
    let id = id.lines().last().unwrap().trim().to_string();

    // The zip is Odoo's database-manager format.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lyon.zip");
    let said = stack.cli_ok(&["backup", "export", &id, "--odoo-zip", out.to_str().unwrap()]);
    assert!(said.contains("1 filestore files"), "{said}");
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
    let names_in_zip: Vec<String> = zip.file_names().map(|n| n.unwrap().to_string()).collect();
    assert_eq!(names_in_zip[0], "dump.sql", "{names_in_zip:?}");
    assert!(names_in_zip.contains(&"manifest.json".to_string()));
    let mut sql = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("dump.sql").unwrap(), &mut sql).unwrap();
    assert!(sql.contains("PostgreSQL database dump") && sql.contains("CREATE TABLE"));
    assert!(sql.contains("Plant Turin"), "the rows are in the SQL");
    assert!(!sql.contains("OWNER TO"), "no owners, as Odoo's own dumps");
    let attachment = names_in_zip
        .iter()
        .find(|n| n.starts_with("filestore/") && !n.ends_with('/'))
        .unwrap()
        .clone();
    assert_eq!(
        attachment.matches('/').count(),
        2,
        "filestore/ab/abcd...: {attachment}"
    );
    let mut content = String::new();
    std::io::Read::read_to_string(&mut zip.by_name(&attachment).unwrap(), &mut content).unwrap();
    assert_eq!(content, "hello zip");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("manifest.json").unwrap(), &mut text).unwrap();
    let manifest: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(manifest["odoo_dump"], "1");
    assert_eq!(manifest["db_name"], "odoo");
    assert_eq!(manifest["pg_version"], "15.0");
    assert_eq!(
        manifest["version"], "19.0",
        "the emulator's version_info: {manifest}"
    );
    assert_eq!(manifest["major_version"], "19.0");
    assert!(manifest["version_info"].is_array(), "{manifest}");
    assert!(manifest["modules"].is_object(), "{manifest}");

    // Imported back, it is a new backup that verifies and restores the same records.
    rt.block_on(async {
        odoo_call(
            &stack,
            "res.partner",
            "create",
            json!([{"name": "Plant Porto"}]),
        )
        .await;
        let all: Vec<i64> =
            serde_json::from_value(odoo_call(&stack, "ir.attachment", "search", json!([[]])).await)
                .unwrap();
        odoo_call(&stack, "ir.attachment", "unlink", json!([all])).await;
    });
    let imported: Value =
        serde_json::from_str(&stack.cli_ok(&["backup", "import", out.to_str().unwrap(), "--json"]))
            .unwrap();
    let new_id = imported["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, id);
    stack.cli_ok(&["backup", "verify", &new_id]);
    stack.cli_ok(&["backup", "restore", &new_id]);
    let now = rt.block_on(records(&stack));
    assert_eq!(now, backed_up);

    // Zips that are not Odoo backups are refused, saying why, and leave nothing behind.
    let before = list(&stack).len();
    let bad = |name: &str, entries: &[(&str, &[u8])]| {
        let path = dir.path().join(name);
        write_zip(&path, entries);
        path
    };
    let not_zip = dir.path().join("notes.zip");
    std::fs::write(&not_zip, "just text").unwrap();
    let cases = [
        (not_zip, "not a zip archive"),
        (
            bad("no-dump.zip", &[("manifest.json", b"{}")]),
            "no dump.sql",
        ),
        (
            bad(
                "escape.zip",
                &[("dump.sql", b"SELECT 1;"), ("../../etc/cron.d/x", b"x")],
            ),
            "points outside",
        ),
        (
            bad(
                "bad-sql.zip",
                &[(
                    "dump.sql",
                    b"CREATE TABLE t (id int);\nINSERT INTO nowhere VALUES (1);\n",
                )],
            ),
            "nowhere",
        ),
        (
            bad(
                "shell.zip",
                &[("dump.sql", b"SELECT 1;\n\\! touch /pwned\n")],
            ),
            "psql command",
        ),
    ];
    for (file, want) in cases {
        let out = stack.cli(&["backup", "import", file.to_str().unwrap()]);
        assert!(!out.status.success(), "{file:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(want) && err.contains("nothing was made"),
            "{file:?}: {err}"
        );
    }
    assert_eq!(list(&stack).len(), before);
    let dbs = stack.psql("SELECT datname FROM pg_database ORDER BY 1");
    assert!(!dbs.contains("plantd_"), "{dbs}");
}

/// The archive's parts, extracted with tar into `dir`; returns the manifest and the entry
/// names in archive order.
fn extract(archive: &std::path::Path, dir: &std::path::Path) -> (Value, Vec<String>) {
    let tar = Command::new("tar")
        .args(["--zstd", "-xf"])
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .output()
        .unwrap();
    assert!(tar.status.success());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let mut order = vec!["manifest.json".to_string()];
    order.extend(
        manifest["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string()),
    );
    (manifest, order)
}

/// Packs `files` (name, bytes) in order as plantd does: tar, zstd.
fn repack(out: &std::path::Path, files: &[(String, Vec<u8>)]) {
    let encoder = zstd::Encoder::new(std::fs::File::create(out).unwrap(), 3).unwrap();
    let mut tar = tar::Builder::new(encoder);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        tar.append_data(&mut h, name, &data[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

#[test]
fn one_flipped_byte_in_any_part_is_named_by_verify() {
    let stack = TestStack::start("[backup]\nschedule = \"off\"\n");
    stack.wait_all_healthy(Duration::from_secs(120));
    harness::rt().block_on(async {
        let label = json!([{"name": "label.txt", "datas": b64(&"label ".repeat(2000))}]);
        odoo_call(&stack, "ir.attachment", "create", label).await;
    });
    let id = stack.cli_ok(&["backup", "run"]);
    let id = id.lines().last().unwrap().trim().to_string();
    let backups = stack.plant.data_dir.join("backups");
    let dir = tempfile::tempdir().unwrap();
    let (_, order) = extract(&backups.join(format!("{id}.tar.zst")), dir.path());
    assert_eq!(order.len(), 5, "{order:?}");
    let files: Vec<(String, Vec<u8>)> = order
        .iter()
        .map(|n| (n.clone(), std::fs::read(dir.path().join(n)).unwrap()))
        .collect();
    // The untouched repack verifies: only the flip makes the difference.
    repack(&backups.join(format!("{id}-same.tar.zst")), &files);
    stack.cli_ok(&["backup", "verify", &format!("{id}-same")]);
    for (i, name) in order.iter().enumerate() {
        let mut flipped = files.clone();
        let data = &mut flipped[i].1;
        // manifest.json: its first byte, so that it no longer parses; others: the middle.
        let at = if i == 0 { 0 } else { data.len() / 2 };
        data[at] ^= 0x01;
        let copy = format!("{id}-flip{i}");
        repack(&backups.join(format!("{copy}.tar.zst")), &flipped);
        let out = stack.cli(&["backup", "verify", &copy]);
        assert!(!out.status.success(), "a flip in {name} must not verify");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name.as_str()), "a flip in {name}: {err}");
        for other in order
            .iter()
            .filter(|o| *o != name && !name.contains(o.as_str()))
        {
            assert!(
                !err.contains(&format!("{other}:")),
                "a flip in {name} blames {other}: {err}"
            );
        }
    }
}

#[test]
fn a_backup_killed_midway_leaves_nothing_listed_and_the_next_one_succeeds() {
    let stack = TestStack::start("[backup]\nschedule = \"off\"\n");
    stack.wait_all_healthy(Duration::from_secs(120));
    // Enough rows that the dump takes a few seconds.
    let fill = Command::new("docker")
        .args(["exec", &stack.container("postgres"), "psql", "-U", "odoo", "-d", "odoo", "-c"])
        .arg("CREATE TABLE filler AS SELECT i, md5(i::text) || md5((i * 7)::text) AS pad FROM generate_series(1, 3000000) AS i")
        .output()
        .unwrap();
    assert!(
        fill.status.success(),
        "{}",
        String::from_utf8_lossy(&fill.stderr)
    );
    let backups = stack.plant.data_dir.join("backups");
    let mut child = Command::new(harness::built_bin())
        .args(stack.args(&["backup", "run"]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed while it writes the dump.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let dumping = std::fs::read_dir(&backups).ok().and_then(|d| {
            d.flatten()
                .find(|e| e.file_name().to_string_lossy().ends_with(".parts"))
                .and_then(|e| std::fs::metadata(e.path().join("db.dump")).ok())
        });
        if dumping.is_some_and(|m| m.len() > 1 << 20) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it was killed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the dump never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(list(&stack).is_empty(), "{:?}", list(&stack));
    let left: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(left.iter().any(|n| n.ends_with(".parts")), "{left:?}");

    let id = stack.cli_ok(&["backup", "run"]);
    let id = id.lines().last().unwrap().trim().to_string();
    let listed = list(&stack);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    stack.cli_ok(&["backup", "verify", &id]);
    let left: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".parts") || n.ends_with(".partial"))
        .collect();
    assert!(
        left.is_empty(),
        "the killed backup's leftovers are cleaned: {left:?}"
    );
}

fn sha256_of(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    ring::digest::digest(&ring::digest::SHA256, &bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn the_hub_keeps_a_copy_that_rebuilds_a_lost_plant() {
    let pg = crate::fleet::Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let hub = crate::fleet::Hub::start(
        &dir.path().join("hub"),
        &pg,
        crate::fleet::free_udp_addr(),
        None,
    );
    let extra = "[backup]\nschedule = \"off\"\n";
    let mut stack = TestStack::start(extra);
    let name = stack.name.clone();
    let out = crate::fleet::enroll(&stack.plant.data_dir, &hub, &hub.token("lyon", "1h"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stack.restart_plantd(extra);
    stack.wait_all_healthy(Duration::from_secs(120));
    let rt = harness::rt();
    rt.block_on(async {
        let partners = json!([[{"name": "Plant Lyon"}, {"name": "Plant Turin"}]]);
        odoo_call(&stack, "res.partner", "create", partners).await;
        let label = json!([{"name": "label.txt", "datas": b64("offsite label")}]);
        odoo_call(&stack, "ir.attachment", "create", label).await;
    });
    let backed_up = rt.block_on(records(&stack));
    let taken: Value = serde_json::from_str(&stack.cli_ok(&["backup", "run", "--json"])).unwrap();
    let id = taken["id"].as_str().unwrap().to_string();
    let local_sha = sha256_of(std::path::Path::new(taken["path"].as_str().unwrap()));

    // The daemon copies it to the hub on its own (it looks every 30 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while list(&stack)[0]["offsite"] != true {
        assert!(
            std::time::Instant::now() < deadline,
            "never copied: {:?}",
            list(&stack)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let held = hub.cli(&["backups", "--plant", "lyon", "--json"]);
    assert!(
        held.status.success(),
        "{}",
        String::from_utf8_lossy(&held.stderr)
    );
    let held: Vec<Value> = serde_json::from_slice(&held.stdout).unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["id"], id.as_str());
    assert_eq!(held[0]["sha256"], local_sha.as_str(), "the same bytes");
    let copy = hub.data_dir.join(format!(
        "backups/lyon/{}",
        held[0]["name"].as_str().unwrap()
    ));
    assert_eq!(sha256_of(&copy), local_sha);

    // The plant server is lost: its containers, volumes and data directory.
    drop(stack);
    let stack = TestStack::start_named(name, extra);
    stack.wait_all_healthy(Duration::from_secs(120));
    assert!(
        rt.block_on(names(&stack, "res.partner", "id")).is_empty(),
        "a new, empty Odoo"
    );
    let out = crate::fleet::enroll(&stack.plant.data_dir, &hub, &hub.token("lyon", "1h"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A fetch cut off earlier resumes; one whose start is not the archive's is refused by
    // its checksum and starts over.
    let backups = stack.plant.data_dir.join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let partial = backups.join(format!(".{id}.fetch.partial"));
    let bytes = std::fs::read(&copy).unwrap();
    let mut wrong = bytes[..1000].to_vec();
    wrong[10] ^= 0xff;
    std::fs::write(&partial, &wrong).unwrap();
    let out = stack.cli(&["backup", "fetch", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another SHA-256"));
    assert!(!partial.exists(), "the bad partial fetch is deleted");
    std::fs::write(&partial, &bytes[..bytes.len() / 2]).unwrap();
    let out = stack.cli_ok(&["backup", "fetch", &id]);
    assert_eq!(out.lines().last().unwrap().trim(), id);
    let listed = list(&stack);
    assert_eq!(listed.len(), 1);
    assert_eq!(
        sha256_of(std::path::Path::new(listed[0]["path"].as_str().unwrap())),
        local_sha
    );

    // Restored, the rebuilt plant has the records and files again.
    stack.cli_ok(&["backup", "restore", &id]);
    let now = rt.block_on(records(&stack));
    assert_eq!(now, backed_up);
    let missing = stack.cli(&["backup", "fetch", "20200101T000000Z-000000"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("holds no backup"));
}

#[test]
fn a_restored_database_odoo_cannot_serve_is_swapped_back() {
    let stack = TestStack::start("[backup]\nschedule = \"off\"\n");
    stack.wait_all_healthy(Duration::from_secs(120));
    let rt = harness::rt();
    rt.block_on(async {
        let partners = json!([[{"name": "Plant Lyon"}]]);
        odoo_call(&stack, "res.partner", "create", partners).await;
        let label = json!([{"name": "label.txt", "datas": b64("kept label")}]);
        odoo_call(&stack, "ir.attachment", "create", label).await;
    });
    let before = rt.block_on(records(&stack));
    let files_before = odoo_volume(&stack).0;
    // A database that restores cleanly but that Odoo cannot serve (tables of its own names
    // with other columns), with a filestore of its own.
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("foreign.zip");
    write_zip(
        &zip,
        &[
            (
                "dump.sql",
                b"CREATE TABLE emulator_record (x int);\nCREATE TABLE res_users (x int);\n",
            ),
            ("filestore/ab/abcdef", b"foreign file"),
        ],
    );
    let imported: Value =
        serde_json::from_str(&stack.cli_ok(&["backup", "import", zip.to_str().unwrap(), "--json"]))
            .unwrap();
    let id = imported["id"].as_str().unwrap();
    let out = stack.cli(&["backup", "restore", id, "--health-deadline", "20s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Odoo is back on the data it had before") && err.contains("/web/login"),
        "{err}"
    );
    stack.wait_all_healthy(Duration::from_secs(60));
    assert!(stack.service("odoo")["held"].is_null());
    let after = rt.block_on(records(&stack));
    assert_eq!(after, before);
    let (files, volume) = odoo_volume(&stack);
    assert_eq!(files, files_before);
    assert!(
        !volume.iter().any(|v| v.starts_with(".plantd")),
        "{volume:?}"
    );
    let dbs = stack.psql("SELECT datname FROM pg_database ORDER BY 1");
    assert!(!dbs.contains("plantd_"), "{dbs}");
}

/// A small tmpfs mounted over a directory, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_backup_that_could_fill_the_disk_is_refused_before_it_writes() {
    let stack = TestStack::start("[backup]\nschedule = \"off\"\n");
    stack.wait_all_healthy(Duration::from_secs(120));
    let backups = stack.plant.data_dir.join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=32m", "tmpfs"])
        .arg(&backups)
        .output()
        .unwrap();
    assert!(
        mounted.status.success(),
        "this test mounts a tmpfs and needs root"
    );
    let disk = SmallDisk(backups.clone());
    // 32 MiB free is less than the journal's 64 MiB reserve alone.
    let out = stack.cli(&["backup", "run"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not enough free space") && err.contains("Nothing was written"),
        "{err}"
    );
    let written: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n != ".lock")
        .collect();
    assert!(written.is_empty(), "{written:?}");
    drop(disk);
    stack.cli_ok(&["backup", "run"]);
    assert_eq!(list(&stack).len(), 1);
}
