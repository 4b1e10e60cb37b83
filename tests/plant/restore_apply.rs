//! A restore rewinds the local apply with the data (design, invariant 9): what was applied
//! after the backup is applied again, once, and `apply status` says why. On the real binary,
//! with the stack on Docker and the Odoo emulator as the plant's Odoo.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{create_token_granted, post_json, rt};
use crate::odoo::{apply_status, count, wait_apply, write_emulator_key};
use crate::stack::TestStack;

/// How many partners named `name` the plant's Odoo holds.
fn partners(stack: &TestStack, name: &str) -> i64 {
    count(
        stack,
        "res.partner",
        &format!(r#"[["name", "=", "{name}"]]"#),
    )
}

fn each_once(stack: &TestStack, names: &[String]) {
    for name in names {
        assert_eq!(partners(stack, name), 1, "partner {name}");
    }
}

#[test]
fn a_restore_rewinds_the_apply_and_what_came_after_the_backup_is_applied_again_once() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("odoo.key");
    let stack = TestStack::start(&format!(
        "[odoo]\nkey_file = \"{}\"\n[apply]\nlocal = true\n[apply.kinds.\"odoo.create\"]\nmodels = [\"res.partner\", \"stock.lot\"]\n[backup]\nschedule = \"off\"\n",
        key_file.display()
    ));
    stack.wait_all_healthy(Duration::from_secs(120));
    write_emulator_key(&stack, &key_file);
    let token = create_token_granted(&stack.plant.data_dir, "scanner-1");
    let client = stack.plant.client();
    let url = stack.plant.url("/api/v1/transactions");
    let post = |prefix: &str, n: usize| -> Vec<String> {
        let names: Vec<String> = (1..=n).map(|i| format!("{prefix}-{i}")).collect();
        let batch: Vec<Value> = names
            .iter()
            .map(|name| json!({"key": name, "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": name}}}))
            .collect();
        let (code, body) = rt().block_on(post_json(&client, &url, &token, &Value::Array(batch)));
        assert_eq!(code, 201, "{body}");
        names
    };

    // N = 5 applied, then the backup; M = 4 more applied after it.
    let before = post("Before", 5);
    wait_apply(&stack, "seqs 1 to 5 applied", |s| s["applied_seq"] == 5);
    each_once(&stack, &before);
    let id = stack.cli_ok(&["backup", "run"]);
    let id = id.lines().last().unwrap().trim().to_string();
    let after = post("After", 4);
    wait_apply(&stack, "seqs 6 to 9 applied", |s| s["applied_seq"] == 9);
    each_once(&stack, &after);

    // The restore puts Odoo back to seq 5, and says the cursor followed.
    let out = stack.cli_ok(&["backup", "restore", &id, "--json"]);
    let restored: Value = serde_json::from_str(&out).unwrap();
    let apply = &restored["apply"];
    assert_eq!(apply["backup_applied_seq"], 5, "{restored:#}");
    assert_eq!(
        (
            &apply["rewound"]["from"],
            &apply["rewound"]["to"],
            &apply["rewound"]["again"],
            &apply["rewound"]["backup"]
        ),
        (&json!(9), &json!(5), &json!(4), &json!(id)),
        "{restored:#}"
    );
    let message = apply["message"].as_str().unwrap();
    assert!(
        message.contains("apply cursor rewound from 9 to 5; 4 transactions are applied again"),
        "{message}"
    );

    // `apply status` says so too, in JSON and in words, and the four are applied again: each
    // partner is in Odoo exactly once, those from before the backup too.
    let s = apply_status(&stack);
    assert_eq!(
        (
            &s["rewound"]["from"],
            &s["rewound"]["to"],
            &s["rewound"]["backup"]
        ),
        (&json!(9), &json!(5), &json!(id)),
        "{s:#}"
    );
    let text = stack.cli_ok(&["apply", "status"]);
    assert!(
        text.contains(&format!("rewound by the restore of backup {id}"))
            && text.contains("apply cursor rewound from 9 to 5"),
        "{text}"
    );
    let s = wait_apply(&stack, "seqs 6 to 9 applied again", |s| {
        s["applied_seq"] == 9
    });
    assert!(s["stopped_at"].is_null(), "{s:#}");
    each_once(&stack, &after);
    each_once(&stack, &before);
    assert_eq!(
        count(&stack, "ir.model.data", r#"[["module", "=", "plantd"]]"#),
        9
    );

    // The same backup as an Odoo zip, imported: it records no applied seq, so its restore
    // goes back to 0 and applies all nine again, which external ids keep to once each.
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("plant.zip");
    stack.cli_ok(&["backup", "export", &id, "--odoo-zip", zip.to_str().unwrap()]);
    let imported: Value =
        serde_json::from_str(&stack.cli_ok(&["backup", "import", zip.to_str().unwrap(), "--json"]))
            .unwrap();
    let imported = imported["id"].as_str().unwrap().to_string();
    let text = stack.cli_ok(&["backup", "restore", &imported]);
    assert!(
        text.contains("apply cursor rewound from 9 to 0; 9 transactions are applied again")
            && text.contains("imported from plant.zip"),
        "{text}"
    );
    wait_apply(&stack, "all nine applied again", |s| {
        s["applied_seq"] == 9 && s["rewound"]["to"] == 0
    });
    each_once(&stack, &after);
    each_once(&stack, &before);
    assert_eq!(
        count(&stack, "ir.model.data", r#"[["module", "=", "plantd"]]"#),
        9
    );

    // Odoo going away while nothing is to be applied is said within seconds (the stack holds
    // it stopped), not only when the next transaction comes.
    let held = std::time::Instant::now();
    stack.cli_ok(&["stack", "hold", "odoo", "--reason", "test"]);
    let s = wait_apply(&stack, "the apply to say it waits", |s| {
        !s["waiting"].is_null()
    });
    eprintln!(
        "the apply said it waits {:.1} s after Odoo was held",
        held.elapsed().as_secs_f64()
    );
    assert!(
        held.elapsed() < Duration::from_secs(15),
        "the apply said it waits only after {:?}: {s:#}",
        held.elapsed()
    );
    assert!(
        s["waiting"]
            .as_str()
            .unwrap()
            .contains("Odoo does not answer"),
        "{s:#}"
    );
    stack.cli_ok(&["stack", "release", "odoo"]);
    wait_apply(&stack, "the apply to stop waiting", |s| {
        s["waiting"].is_null()
    });
}
