//! Remote actions (issue 17, item 3): a hub admin asks a plant to act over its QUIC link, the
//! plant carries the action out as `hub:<admin>` in its own audit log (or refuses it when its
//! `[remote] allow` says so), the hub keeps the result and its own audit (`hub_audit`), an
//! offline plant gets its action when it comes back, and an action that expired never runs.
//! One hub and its PostgreSQL serve every assertion.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fleet::{enroll, free_udp_addr, Hub, Pg};
use crate::harness::{self, client_for, create_token, last_line, rt, Plant};
use crate::stack::TestStack;

/// A signed-in browser of the fleet page.
struct Web {
    client: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl Web {
    async fn sign_in(hub: &Hub, user: &str, password: &str) -> Web {
        let client = client_for(&hub.data_dir.join("ca/ca.crt"), hub.https);
        let base = format!("https://localhost:{}", hub.https.port());
        let r = client
            .post(format!("{base}/api/v1/admin/login"))
            .json(&json!({"user": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{user} signs in");
        let cookie = r.headers()["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_string();
        let body: Value = r.json().await.unwrap();
        Web {
            client,
            base,
            cookie,
            csrf: body["csrf"].as_str().unwrap().to_string(),
        }
    }

    async fn ask(&self, plant: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .client
            .post(format!("{}/api/v1/fleet/plants/{plant}/actions", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> Value {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.json().await.unwrap()
    }

    /// Asks and returns the queued action's id.
    async fn queue(&self, plant: &str, body: Value) -> i64 {
        let (status, answer) = self.ask(plant, body.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{plant} {body}: {answer}");
        assert_eq!(answer["state"], "pending", "{answer}");
        answer["id"].as_i64().unwrap()
    }

    /// Waits for action `id` to end (not pending, not sent); returns it with its result.
    async fn finished(&self, id: i64, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let a = self.get(&format!("/api/v1/fleet/actions/{id}")).await;
            if !["pending", "sent"].contains(&a["state"].as_str().unwrap()) {
                return a;
            }
            assert!(Instant::now() < deadline, "action {id} still {a}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The plant's (or hub's) audit log in `admin.db`: (user, action, outcome, detail).
fn audit(data_dir: &Path) -> Vec<(String, String, String, String)> {
    let conn = rusqlite::Connection::open_with_flags(
        data_dir.join("admin.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut s = conn
        .prepare("SELECT user, action, outcome, detail FROM audit ORDER BY id")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// The hub's own audit of `plant`'s remote `action`: (who, outcome, detail).
async fn hub_audit(pg: &Pg, plant: &str, action: &str) -> Vec<(String, String, String)> {
    crate::fleet::connect(&pg.url())
        .await
        .query(
            "SELECT who, outcome, detail FROM hub_audit WHERE target = $1 AND action = $2 ORDER BY id",
            &[&plant, &format!("remote.{action}")],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn enrolled(data: &Path, hub: &Hub, plant: &str) -> String {
    std::fs::create_dir_all(data).unwrap();
    let token = hub.token(plant, "1h");
    let out = enroll(data, hub, &token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    token
}

#[test]
fn remote_actions_run_audited_at_both_ends_are_refused_by_config_and_wait_for_or_expire_offline() {
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let hub_dir = dir.path().join("hub");
    std::fs::create_dir_all(&hub_dir).unwrap();
    for (user, role, pw) in [
        ("ana", "admin", "central admin 1"),
        ("vic", "viewer", "central viewer 1"),
    ] {
        assert!(harness::admin_add(&hub_dir, user, role, pw)
            .status
            .success());
    }
    let hub = Hub::start(&hub_dir, &pg, free_udp_addr(), None);
    let api = last_line(&hub.cli(&["api-token", "create", "--name", "remote-test"]));

    // Turin: no stack, and only diagnostics allowed.
    let turin_dir = dir.path().join("turin");
    enrolled(&turin_dir, &hub, "turin");
    // Its Odoo URL (unused without [apply]) carries a user, a password and a query: none of
    // them may reach a diagnostics bundle.
    let turin_config = "[remote]\nallow = [\"diagnostics\"]\n[odoo]\nurl = \"https://apiuser:url-pass-93@odoo.invalid/?token=qs-secret-41\"\n";
    let mut turin = Plant::start(&turin_dir, turin_config);

    // Lyon: a supervised stack, every action allowed.
    // A secret with a quote and a backslash, which Debug and JSON escape.
    let extra = "[backup]\nschedule = \"off\"\n[stack.odoo.env]\nSMTP_PASSWORD = \"hunter2-smtp-secret\"\nMAIL_TOKEN = 'q\"uo\\te-secret-7'\n";
    let mut lyon = TestStack::start(extra);
    let lyon_enrollment = enrolled(&lyon.plant.data_dir, &hub, "lyon");
    lyon.restart_plantd(extra);
    let device_token = create_token(&lyon.plant.data_dir, "scanner-7");
    assert!(harness::admin_add(
        &lyon.plant.data_dir,
        "pia",
        "admin",
        "plant admin password 9"
    )
    .status
    .success());
    lyon.wait_all_healthy(Duration::from_secs(180));

    rt().block_on(async {
        let ana = Web::sign_in(&hub, "ana", "central admin 1").await;
        let vic = Web::sign_in(&hub, "vic", "central viewer 1").await;

        // Only admins ask; bad requests are refused with the field; unknown plants are 404.
        let (status, _) = vic.ask("lyon", json!({"action": "backup"})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        for (body, field) in [
            (json!({"action": "reboot"}), "action"),
            (
                json!({"action": "restart", "args": {"service": "nginx"}}),
                "args.service",
            ),
            (json!({"action": "apply_retry", "args": {}}), "args.seq"),
            (
                json!({"action": "backup", "expires_in_s": 0}),
                "expires_in_s",
            ),
            (json!({"action": "backup", "colour": "red"}), "colour"),
        ] {
            let (status, answer) = ana.ask("lyon", body.clone()).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
            assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
            assert_eq!(answer["error"]["code"], "invalid");
        }
        let (status, answer) = ana.ask("nowhere", json!({"action": "backup"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
        // A rejoin can never reach a plant that needs one: refused, saying where it is done.
        let (status, answer) = ana.ask("lyon", json!({"action": "rejoin"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"]["field"], "action", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("plantd rejoin"),
            "{answer}"
        );

        // A quick action's round trip, once the link is surely up.
        let first = ana
            .queue(
                "turin",
                json!({"action": "diagnostics", "args": {"lines": 20}}),
            )
            .await;
        let first = ana.finished(first, Duration::from_secs(60)).await;
        assert_eq!(first["state"], "ok", "{first}");
        // Turin's bundle has its Odoo URL's host, not its user, password or query.
        let turin_bundle = first["result"].to_string();
        assert!(turin_bundle.contains("odoo.invalid"), "{turin_bundle}");
        for s in ["apiuser", "url-pass-93", "qs-secret-41"] {
            assert!(!turin_bundle.contains(s), "{s} in turin's bundle");
        }
        // A viewer follows the action but does not read its result.
        let seen = vic.get(&format!("/api/v1/fleet/actions/{}", first["id"])).await;
        assert_eq!(seen["state"], "ok", "{seen}");
        assert!(seen["detail"].is_string(), "{seen}");
        assert!(seen["result"].is_null(), "{seen}");
        assert!(
            seen["result_note"].as_str().unwrap().contains("admins only"),
            "{seen}"
        );
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            let id = ana
                .queue(
                    "turin",
                    json!({"action": "diagnostics", "args": {"lines": 20}}),
                )
                .await;
            let a = ana.finished(id, Duration::from_secs(30)).await;
            best = best.min(started.elapsed());
            assert_eq!(a["state"], "ok", "{a}");
        }
        println!("FIGURE remote action round trip: {} ms", best.as_millis());

        // 2. Turin's plant.toml allows diagnostics only: a backup is refused, audited at both
        // ends, and none is taken.
        let id = ana.queue("turin", json!({"action": "backup"})).await;
        let a = ana.finished(id, Duration::from_secs(30)).await;
        assert_eq!(a["state"], "refused", "{a}");
        assert!(
            a["detail"]
                .as_str()
                .unwrap()
                .contains("plant.toml [remote] allow does not list \"backup\""),
            "{a}"
        );
        let at_turin = audit(&turin_dir);
        assert!(
            at_turin.iter().any(|(u, act, o, d)| u == "hub:ana"
                && act == "backup.run"
                && o == "refused"
                && d.contains("[remote] allow")),
            "{at_turin:?}"
        );
        let at_hub = hub_audit(&pg, "turin", "backup").await;
        let outcomes: Vec<&str> = at_hub.iter().map(|(_, o, _)| o.as_str()).collect();
        assert_eq!(outcomes, ["requested", "refused"], "{at_hub:?}");
        assert!(at_hub.iter().all(|(w, _, _)| w == "ana"));
        let backups = turin_dir.join("backups");
        assert!(
            !backups.exists() || std::fs::read_dir(&backups).unwrap().next().is_none(),
            "no backup taken"
        );

        // 1. A backup at lyon: taken, audited as the hub admin at the plant and at the hub,
        // and its offsite copy becomes lyon's last backup at the hub.
        // Asked on the fleet page, in Chromium, as an admin would.
        let hub_url = format!("https://localhost:{}", hub.https.port());
        tokio::task::spawn_blocking(move || fleet_page_backs_up(&hub_url, "lyon"))
            .await
            .unwrap();
        let listed = ana.get("/api/v1/fleet/plants/lyon/actions").await;
        let id = listed["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["action"] == "backup")
            .unwrap_or_else(|| panic!("no backup action for lyon: {listed}"))["id"]
            .as_i64()
            .unwrap();
        let a = ana.finished(id, Duration::from_secs(300)).await;
        assert_eq!(a["state"], "ok", "{a}");
        let backup_id = a["result"]["id"].as_str().unwrap().to_string();
        assert!(lyon
            .plant
            .data_dir
            .join("backups")
            .join(format!("{backup_id}.tar.zst"))
            .exists());
        let at_lyon = audit(&lyon.plant.data_dir);
        assert!(
            at_lyon.iter().any(|(u, act, o, d)| u == "hub:ana"
                && act == "backup.run"
                && o == "ok"
                && d.contains(&backup_id)),
            "{at_lyon:?}"
        );
        let at_hub = hub_audit(&pg, "lyon", "backup").await;
        let outcomes: Vec<&str> = at_hub.iter().map(|(_, o, _)| o.as_str()).collect();
        assert_eq!(outcomes, ["requested", "ok"], "{at_hub:?}");
        let listed = ana.get("/api/v1/fleet/plants/lyon/actions").await;
        assert_eq!(listed["actions"][0]["id"], id, "newest first: {listed}");
        assert!(
            listed["actions"][0].get("result").is_none(),
            "lists carry no results"
        );
        let api_client = client_for(&hub.data_dir.join("ca/ca.crt"), hub.https);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let plants: Value = api_client
                .get(format!(
                    "https://localhost:{}/api/v1/plants",
                    hub.https.port()
                ))
                .bearer_auth(&api)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let lyon_row = plants
                .as_array()
                .or_else(|| plants["plants"].as_array())
                .unwrap()
                .iter()
                .find(|p| p["plant"] == "lyon")
                .cloned()
                .unwrap();
            if lyon_row["last_backup"]["id"] == backup_id.as_str() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the copy never reached the hub: {lyon_row}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        // 3. Diagnostics from lyon: status and container logs, and none of its secrets.
        let id = ana
            .queue(
                "lyon",
                json!({"action": "diagnostics", "args": {"lines": 100}}),
            )
            .await;
        let a = ana.finished(id, Duration::from_secs(60)).await;
        assert_eq!(a["state"], "ok", "{a}");
        let bundle = &a["result"];
        assert!(bundle["status"]["journal"].is_object(), "{bundle}");
        assert!(bundle["status"]["components"].as_array().unwrap().len() > 2);
        let odoo_lines = bundle["logs"]["odoo"].as_array().unwrap();
        assert!(
            !odoo_lines.is_empty(),
            "the odoo container's log lines: {bundle}"
        );
        assert!(bundle["logs"]["postgres"]
            .as_array()
            .is_some_and(|l| !l.is_empty()));
        assert!(bundle["logs"]["plantd"].is_array());
        assert!(
            bundle["stack"]["services"].is_array(),
            "{}",
            bundle["stack"]
        );
        assert!(bundle["config"].as_str().unwrap().contains("SMTP_PASSWORD"));
        let text = bundle.to_string();
        let mut secrets = vec![
            device_token.clone(),
            lyon_enrollment.clone(),
            "plant admin password 9".to_string(),
            "hunter2-smtp-secret".to_string(),
        ];
        let stack_secrets: Value = serde_json::from_str(
            &std::fs::read_to_string(lyon.plant.data_dir.join("stack/secrets.json")).unwrap(),
        )
        .unwrap();
        for (name, v) in stack_secrets.as_object().unwrap() {
            if let Some(s) = v.as_str() {
                assert!(s.len() >= 8, "{name} is a real secret");
                secrets.push(s.to_string());
            }
        }
        assert!(secrets.len() >= 6, "{secrets:?}");
        secrets.push(r#"q"uo\te-secret-7"#.to_string());
        for s in &secrets {
            // As written, and escaped as Rust's Debug and as JSON write it (then as JSON again,
            // the bundle being JSON).
            let debug = format!("{s:?}");
            let json = serde_json::to_string(s).unwrap();
            for form in [s.as_str(), &debug[1..debug.len() - 1], &json[1..json.len() - 1]] {
                let in_json = serde_json::to_string(form).unwrap();
                assert!(
                    !text.contains(form) && !text.contains(&in_json[1..in_json.len() - 1]),
                    "a secret in the bundle: {s} (as {form})"
                );
            }
        }
        assert!(!text.contains("te-secret-7"), "no part of it either");
        assert!(audit(&lyon.plant.data_dir)
            .iter()
            .any(|(u, act, o, _)| u == "hub:ana" && act == "diagnostics" && o == "ok"));

        // 4. Turin goes offline: an action waits and is delivered when it is back; one whose
        // expiry passes meanwhile ends expired and never runs.
        let ran_before = audit(&turin_dir)
            .iter()
            .filter(|(_, a, _, _)| a == "diagnostics")
            .count();
        turin.stop();
        let waits = ana
            .queue(
                "turin",
                json!({"action": "diagnostics", "args": {"lines": 5}}),
            )
            .await;
        let lapses = ana
            .queue("turin", json!({"action": "diagnostics", "expires_in_s": 1}))
            .await;
        let lapsed = ana.finished(lapses, Duration::from_secs(15)).await;
        assert_eq!(lapsed["state"], "expired", "{lapsed}");
        assert!(lapsed["sent_at"].is_null(), "never sent: {lapsed}");
        let still = ana.get(&format!("/api/v1/fleet/actions/{waits}")).await;
        assert_eq!(still["state"], "pending", "{still}");
        turin = Plant::start(&turin_dir, turin_config);
        let delivered = ana.finished(waits, Duration::from_secs(60)).await;
        assert_eq!(delivered["state"], "ok", "{delivered}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let ran_after = audit(&turin_dir)
            .iter()
            .filter(|(_, a, _, _)| a == "diagnostics")
            .count();
        assert_eq!(ran_after, ran_before + 1, "only the waiting action ran");
        assert_eq!(
            ana.get(&format!("/api/v1/fleet/actions/{lapses}")).await["state"],
            "expired"
        );
        let expired: Vec<_> = hub_audit(&pg, "turin", "diagnostics")
            .await
            .into_iter()
            .filter(|(_, o, _)| o == "expired")
            .collect();
        assert_eq!(expired.len(), 1, "{expired:?}");

        // The CLI asks too, audited as the local user, and waits for the answer.
        let out = hub.cli(&["action", "turin", "diagnostics", "--wait"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("ok"), "{said}");
        let out = hub.cli(&["action", "turin", "restart", "--service", "odoo", "--wait"]);
        assert!(!out.status.success(), "refused at turin");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("refused"),
            "{out:?}"
        );
        let out = hub.cli(&["action", "turin", "rejoin"]);
        assert!(!out.status.success(), "no rejoin from the hub");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("plantd rejoin"),
            "{out:?}"
        );
        // --wait gives up when told, and says so.
        let out = hub.cli(&["action", "turin", "diagnostics", "--wait", "--timeout", "1ms"]);
        assert!(!out.status.success(), "gave up: {out:?}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("stopped waiting"), "{said}");

        // An action left `sent` (its replica crashed) ends failed once its answer is overdue.
        let db = crate::fleet::connect(&pg.url()).await;
        let stuck: i64 = db
            .query_one(
                "INSERT INTO remote_actions (plant, action, args, requested_by, expires_at, state, sent_at)
                 VALUES ('turin', 'restart', '{\"service\":\"odoo\"}', 'ana', now() + interval '1 hour', 'sent', now() - interval '11 minutes')
                 RETURNING id",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let ended = ana.finished(stuck, Duration::from_secs(15)).await;
        assert_eq!(ended["state"], "failed", "{ended}");
        assert!(
            ended["detail"]
                .as_str()
                .unwrap()
                .contains("no answer from the plant within 10m"),
            "{ended}"
        );
    });
    drop(turin);
}

/// `tests/browser/fleet_remote.mjs`: ana asks `plant` for a backup on the fleet page and sees
/// it end ok. Screenshots go to `target/tmp/fleet-remote/`.
fn fleet_page_backs_up(hub_url: &str, plant: &str) {
    harness::run_browser(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/fleet_remote.mjs"),
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleet-remote"),
        &[
            ("HUB_URL", hub_url),
            ("PLANT", plant),
            ("ADMIN_USER", "ana"),
            ("ADMIN_PASSWORD", "central admin 1"),
        ],
        &["fleet-remote-backup"],
    );
}
