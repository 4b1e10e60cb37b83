//! `plantd odoo call`: one client for both of Odoo's APIs, against the Odoo emulator in the
//! stack plantd supervises (Docker): `/json/2` when the server is 19, `/jsonrpc` when it is 17,
//! with Odoo's own messages for a rejection and a refused key.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::stack::TestStack;

fn odoo(stack: &TestStack, args: &[&str]) -> Output {
    let mut all = vec!["odoo", "call"];
    all.extend_from_slice(args);
    stack.cli(&all)
}

fn ok(out: &Output) -> (Value, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

/// What the container logged (the emulator logs to stderr, as Odoo does).
fn logs(container: &str) -> String {
    let out = crate::stack::docker(&["logs", container]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn odoo_call_speaks_json2_to_odoo_19_and_jsonrpc_to_odoo_17() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("odoo.key");
    let odoo_section = format!("[odoo]\nkey_file = \"{}\"\n", key_file.display());
    let stack = TestStack::start(&odoo_section);
    stack.wait_all_healthy(Duration::from_secs(120));

    // No key yet: the error says where it goes.
    let e = failed(&odoo(&stack, &["res.partner", "search", "[[]]"]));
    assert!(e.contains("reading [odoo] key_file"), "{e}");

    // The emulator takes its admin password as an API key of user admin (real Odoo issues
    // keys in Preferences, Account Security).
    let secrets: Value = serde_json::from_slice(
        &std::fs::read(stack.plant.data_dir.join("stack/secrets.json")).unwrap(),
    )
    .unwrap();
    let key = secrets["odoo_admin_password"].as_str().unwrap();
    std::fs::write(&key_file, format!("{key}\n")).unwrap();

    let (created, via) = ok(&odoo(
        &stack,
        &["res.partner", "create", r#"[{"name": "Acme"}]"#],
    ));
    assert!(
        via.contains("Odoo 19.0") && via.contains("through /json/2"),
        "{via}"
    );
    let id = created
        .as_array()
        .and_then(|a| a[0].as_i64())
        .expect("a list of ids");
    let (found, _) = ok(&odoo(
        &stack,
        &[
            "res.partner",
            "search_read",
            r#"[[["name", "=", "Acme"]]]"#,
            "--kwargs",
            r#"{"fields": ["name"]}"#,
        ],
    ));
    assert_eq!(found, serde_json::json!([{"id": id, "name": "Acme"}]));

    // Odoo's rejection, with its own message; a refused key; bad arguments, said where.
    let e = failed(&odoo(
        &stack,
        &["stock.move", "create", r#"[{"quantity": -1}]"#],
    ));
    assert!(
        e.contains("Odoo rejected it: The quantity must be positive (stock.move.quantity = -1)"),
        "{e}"
    );
    let e = failed(&odoo(&stack, &["res.partner", "unknown_method", "[]"]));
    assert!(e.contains("Odoo has no such method"), "{e}");
    let e = failed(&odoo(&stack, &["res.partner", "search", "not json"]));
    assert!(e.contains("ARGS:") && e.contains("JSON array"), "{e}");
    let e = failed(&odoo(
        &stack,
        &["res.partner", "search", "[]", "--kwargs", "[1]"],
    ));
    assert!(e.contains("--kwargs:"), "{e}");
    std::fs::write(&key_file, "not-the-key\n").unwrap();
    let e = failed(&odoo(&stack, &["res.partner", "search", "[[]]"]));
    assert!(e.contains("Odoo refused access"), "{e}");
    std::fs::write(&key_file, key).unwrap();
    let seen = logs(&stack.container("odoo"));
    assert!(seen.contains("POST /json/2/res.partner/create"), "{seen}");
    assert!(!seen.contains("POST /jsonrpc"), "{seen}");

    // The same Odoo as version 17: the same calls go through /jsonrpc, and find the record.
    let answer = stack.apply(&format!(
        "{odoo_section}[stack.odoo]\nenv = {{ EMULATED_ODOO_VERSION = \"17.0\" }}\n"
    ));
    assert!(answer.contains("odoo: recreating"), "{answer}");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let (found, via) = loop {
        let out = odoo(
            &stack,
            &[
                "res.partner",
                "search_read",
                r#"[[["name", "=", "Acme"]]]"#,
                "--kwargs",
                r#"{"fields": ["name"]}"#,
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.success() && stderr.contains("Odoo 17.0") {
            break (
                serde_json::from_slice::<Value>(&out.stdout).unwrap(),
                stderr,
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Odoo 17 did not answer: {stderr}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(via.contains("through /jsonrpc"), "{via}");
    assert_eq!(found, serde_json::json!([{"id": id, "name": "Acme"}]));
    let e = failed(&odoo(
        &stack,
        &["stock.move", "create", r#"[{"quantity": -1}]"#],
    ));
    assert!(
        e.contains("Odoo rejected it: The quantity must be positive"),
        "{e}"
    );

    let seen = logs(&stack.container("odoo"));
    assert!(seen.contains("POST /jsonrpc"), "{seen}");
    assert!(!seen.contains("POST /json/2/"), "{seen}");
}
