//! Signed releases: `plantd hub release keygen|publish|list` against a real PostgreSQL, and a
//! plant that pins the key accepting exactly what was signed (`plantd release verify`).

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use serde_json::Value;

use crate::harness;

/// The binary published: any ELF executable will do for signatures, and a small one keeps
/// PostgreSQL's work small (plantd itself is a few MB in release builds, hundreds in debug).
const RELEASE: &str = "/usr/bin/true";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_release_signed_on_the_hub_is_accepted_only_by_plants_pinning_its_key() {
    let pg = crate::fleet::Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let hub_dir = dir.path().join("hub");
    let database = pg.url();
    let hub = |args: &[&str]| {
        let mut all = vec!["hub"];
        all.extend_from_slice(args);
        all.extend([
            "--data-dir",
            hub_dir.to_str().unwrap(),
            "--database",
            &database,
        ]);
        harness::plantd(&all)
    };

    // Keys: the secret one readable by its owner only, never overwritten.
    let key = dir.path().join("release.key");
    let k = key.to_str().unwrap();
    let public = harness::last_line(&hub(&["release", "keygen", "--out", k]));
    assert!(public.starts_with("plantd-release-ed25519:"), "{public}");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let secret = std::fs::read(&key).unwrap();
    let again = hub(&["release", "keygen", "--out", k]);
    assert!(!again.status.success(), "{}", text(&again));
    assert_eq!(
        std::fs::read(&key).unwrap(),
        secret,
        "an existing key is never overwritten"
    );
    let other_key = dir.path().join("other.key");
    let other_public = harness::last_line(&hub(&[
        "release",
        "keygen",
        "--out",
        other_key.to_str().unwrap(),
    ]));

    // Publish: once per version; the same bytes again are fine, other bytes are refused.
    let published = hub(&[
        "release",
        "publish",
        RELEASE,
        "--version",
        "2.0.0",
        "--key",
        k,
    ]);
    assert!(published.status.success(), "{}", text(&published));
    assert!(
        text(&published).contains("published version 2.0.0"),
        "{}",
        text(&published)
    );
    let again = hub(&[
        "release",
        "publish",
        RELEASE,
        "--version",
        "2.0.0",
        "--key",
        k,
    ]);
    assert!(
        text(&again).contains("already published"),
        "{}",
        text(&again)
    );
    let changed = dir.path().join("plantd-changed");
    let mut bytes = std::fs::read(RELEASE).unwrap();
    bytes.push(0);
    std::fs::write(&changed, &bytes).unwrap();
    let refused = hub(&[
        "release",
        "publish",
        changed.to_str().unwrap(),
        "--version",
        "2.0.0",
        "--key",
        k,
    ]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("already published with sha256"),
        "{}",
        text(&refused)
    );
    let not_elf = dir.path().join("script.sh");
    std::fs::write(&not_elf, b"#!/bin/sh\necho hi\n").unwrap();
    let refused = hub(&[
        "release",
        "publish",
        not_elf.to_str().unwrap(),
        "--version",
        "2.0.1",
        "--key",
        k,
    ]);
    assert!(
        text(&refused).contains("not an ELF executable"),
        "{}",
        text(&refused)
    );
    let refused = hub(&[
        "release",
        "publish",
        RELEASE,
        "--version",
        "../2",
        "--key",
        k,
    ]);
    assert!(
        text(&refused).contains("version \"../2\""),
        "{}",
        text(&refused)
    );
    let refused = hub(&[
        "release",
        "publish",
        RELEASE,
        "--version",
        "2.0.2",
        "--key",
        RELEASE,
    ]);
    assert!(
        text(&refused).contains("not a release signing key file"),
        "{}",
        text(&refused)
    );

    let listed = hub(&["release", "list", "--json"]);
    let rows: Vec<Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["version"], "2.0.0");
    assert_eq!(rows[0]["public_key"], public.as_str());
    let signature = rows[0]["signature"].as_str().unwrap().to_string();

    // A plant that pins the key accepts exactly that binary as that version.
    let plant = |pinned: &[&str], file: &str, version: &str| {
        let config = dir.path().join("plant.toml");
        let keys: Vec<String> = pinned.iter().map(|k| format!("\"{k}\"")).collect();
        std::fs::write(
            &config,
            format!("[update]\nrelease_keys = [{}]\n", keys.join(", ")),
        )
        .unwrap();
        harness::plantd(&[
            "release",
            "verify",
            file,
            "--version",
            version,
            "--signature",
            &signature,
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.path().join("plant").to_str().unwrap(),
        ])
    };
    let ok = plant(&[&other_public, &public], RELEASE, "2.0.0");
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).contains(&format!("is signed by {public}")),
        "{}",
        text(&ok)
    );
    for (pinned, file, version, says) in [
        (
            vec![other_public.as_str()],
            RELEASE,
            "2.0.0",
            "no pinned release key signed version 2.0.0",
        ),
        (
            vec![public.as_str()],
            changed.to_str().unwrap(),
            "2.0.0",
            "no pinned release key signed",
        ),
        (
            vec![public.as_str()],
            RELEASE,
            "2.0.1",
            "no pinned release key signed version 2.0.1",
        ),
        (vec![], RELEASE, "2.0.0", "pins no release key"),
    ] {
        let out = plant(&pinned, file, version);
        assert!(!out.status.success(), "{pinned:?} {file} {version}");
        assert!(text(&out).contains(says), "{}", text(&out));
    }
}

#[test]
fn a_rollout_plan_puts_each_enrolled_plant_in_one_wave() {
    let pg = crate::fleet::Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let database = pg.url();
    let hub = |args: &[&str]| {
        let mut all = vec!["hub"];
        all.extend_from_slice(args);
        let data = dir.path().join("hub");
        all.extend([
            "--data-dir",
            data.to_str().unwrap(),
            "--database",
            &database,
        ]);
        harness::plantd(&all)
    };
    // A wave list that cannot work is refused before the database is asked anything.
    let refused = hub(&["rollout", "plan", "--waves", "1,10%"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("the last wave must be 100%"),
        "{}",
        text(&refused)
    );
    let empty = hub(&["rollout", "plan"]);
    assert!(
        text(&empty).contains("no enrolled plant"),
        "{}",
        text(&empty)
    );

    // Four enrolled plants, one revoked, one only invited.
    harness::rt().block_on(async {
        let (client, conn) = tokio_postgres::connect(&database, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(
                "INSERT INTO plants (name, enrolled_at) VALUES
                    ('turin', now()), ('lyon', now()), ('graz', now()), ('brno', now()),
                    ('pilsen', now());
                 UPDATE plants SET revoked_at = now() WHERE name = 'pilsen';
                 INSERT INTO plants (name) VALUES ('invited');",
            )
            .await
            .unwrap();
    });
    let out = hub(&["rollout", "plan", "--waves", "1,50%,100%", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan,
        vec![vec!["brno"], vec!["graz"], vec!["lyon", "turin"]]
    );
}
