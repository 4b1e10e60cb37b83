//! The admin UI and its API: sign-in, roles, CSRF and the audit log over HTTPS against the real
//! daemon; and the whole UI in Debian's Chromium, driven headless by `tests/browser/admin.mjs`
//! (playwright-core), against a plant supervising its stack and enrolled with a hub.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{self, Plant};

/// A signed-in browser, as far as the API can tell: its cookie and CSRF token.
pub(crate) struct Session {
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

pub(crate) async fn sign_in(
    plant: &Plant,
    path: &str,
    body: Value,
) -> Result<Session, (StatusCode, Value)> {
    sign_in_with(&plant.client(), plant, path, body).await
}

/// [`sign_in`] with `client` (one from another address, say).
async fn sign_in_with(
    client: &reqwest::Client,
    plant: &Plant,
    path: &str,
    body: Value,
) -> Result<Session, (StatusCode, Value)> {
    let r = client
        .post(plant.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = r.json().await.unwrap();
    match (status, cookie) {
        (StatusCode::OK, Some(cookie)) => {
            assert!(
                cookie.contains("HttpOnly")
                    && cookie.contains("Secure")
                    && cookie.contains("SameSite=Strict"),
                "{cookie}"
            );
            Ok(Session {
                cookie: cookie.split(';').next().unwrap().to_string(),
                csrf: body["csrf"].as_str().unwrap().to_string(),
            })
        }
        _ => Err((status, body)),
    }
}

/// A sign-in or setup that must be refused: its status and error body.
pub(crate) async fn refused(plant: &Plant, path: &str, body: Value) -> (StatusCode, Value) {
    match sign_in(plant, path, body).await {
        Ok(_) => panic!("{path} signed in; it should have been refused"),
        Err(e) => e,
    }
}

/// A change request: `csrf` is what is sent as `X-CSRF-Token`.
pub(crate) async fn act(
    plant: &Plant,
    session: Option<&Session>,
    csrf: Option<&str>,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = plant.client().post(plant.url(path)).json(&body);
    if let Some(s) = session {
        req = req.header("cookie", &s.cookie);
    }
    if let Some(c) = csrf {
        req = req.header("x-csrf-token", c);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn read(
    plant: &Plant,
    session: Option<&Session>,
    path: &str,
) -> (StatusCode, String) {
    let mut req = plant.client().get(plant.url(path));
    if let Some(s) = session {
        req = req.header("cookie", &s.cookie);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

fn admin_add(plant: &Plant, user: &str, role: &str, password: &str) -> std::process::Output {
    harness::admin_add(&plant.data_dir, user, role, password)
}

pub(crate) fn code(err: &Value) -> &str {
    err["error"]["code"].as_str().unwrap_or("")
}

#[test]
fn sign_in_roles_csrf_and_lockout_guard_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plain = harness::free_addr();
    let plant = Plant::start(&data, &format!("[api]\nlisten_plain = \"{plain}\"\n"));
    let island_marker = data.join("islanded");
    let rt = harness::rt();
    rt.block_on(async {
        // First run: no user, a setup code in the data directory (and the log).
        let (status, body) = read(&plant, None, "/api/v1/admin/session").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["setup_required"],
            true
        );
        let setup_code = std::fs::read_to_string(data.join("admin-setup-code")).unwrap();
        let wrong = refused(
            &plant,
            "/api/v1/admin/setup",
            json!({"code": "AAAA-AAAA", "user": "ana", "password": "correct horse"}),
        )
        .await;
        assert_eq!(
            (wrong.0, code(&wrong.1)),
            (StatusCode::FORBIDDEN, "bad_setup_code")
        );
        let short = refused(
            &plant,
            "/api/v1/admin/setup",
            json!({"code": setup_code.trim(), "user": "ana", "password": "short"}),
        )
        .await;
        assert_eq!(short.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", short.1);
        let ana = sign_in(
            &plant,
            "/api/v1/admin/setup",
            json!({"code": setup_code.trim(), "user": "ana", "password": "correct horse"}),
        )
        .await
        .unwrap();
        assert!(
            !data.join("admin-setup-code").exists(),
            "the setup code is used up"
        );
        let again = refused(
            &plant,
            "/api/v1/admin/setup",
            json!({"code": setup_code.trim(), "user": "eve", "password": "correct horse"}),
        )
        .await;
        assert_eq!(
            again.0,
            StatusCode::CONFLICT,
            "setup works once: {}",
            again.1
        );

        // No session: nothing to read, nothing to change.
        for path in ["/api/v1/admin/overview", "/api/v1/admin/audit", "/metrics"] {
            assert_eq!(
                read(&plant, None, path).await.0,
                StatusCode::UNAUTHORIZED,
                "{path}"
            );
        }
        let (status, body) = act(
            &plant,
            None,
            None,
            "/api/v1/admin/island",
            json!({"reason": "x"}),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "unauthenticated")
        );
        let forged = Session {
            cookie: "plantd_session=forged".into(),
            csrf: "forged".into(),
        };
        let (status, _) = act(
            &plant,
            Some(&forged),
            Some("forged"),
            "/api/v1/admin/island",
            json!({"reason": "x"}),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // A real session with a forged or missing CSRF token, or from another origin.
        for csrf in [None, Some("forged")] {
            let (status, body) = act(
                &plant,
                Some(&ana),
                csrf,
                "/api/v1/admin/island",
                json!({"reason": "x"}),
            )
            .await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::FORBIDDEN, "csrf"),
                "{csrf:?}"
            );
        }
        let r = plant
            .client()
            .post(plant.url("/api/v1/admin/island"))
            .header("cookie", &ana.cookie)
            .header("x-csrf-token", &ana.csrf)
            .header("origin", "https://evil.example")
            .json(&json!({"reason": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);

        // A viewer reads everything and changes nothing.
        let out = admin_add(&plant, "vic", "viewer", "viewer pass 1");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = admin_add(&plant, "vic", "admin", "viewer pass 1");
        assert!(!out.status.success(), "a name is added once");
        let out = admin_add(&plant, "bob", "admin", "short");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("at least 10"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vic = sign_in(
            &plant,
            "/api/v1/admin/login",
            json!({"user": "vic", "password": "viewer pass 1"}),
        )
        .await
        .unwrap();
        let (status, overview) = read(&plant, Some(&vic), "/api/v1/admin/overview").await;
        assert_eq!(status, StatusCode::OK);
        let overview: Value = serde_json::from_str(&overview).unwrap();
        assert_eq!(overview["verdict"], "degraded", "{overview}");
        assert_eq!(
            overview["reasons"][0],
            "not enrolled with a hub: transactions stay in this plant's journal"
        );
        for path in [
            "/api/v1/admin/island",
            "/api/v1/admin/backups/run",
            "/api/v1/admin/services/redis/restart",
        ] {
            let (status, body) = act(
                &plant,
                Some(&vic),
                Some(&vic.csrf),
                path,
                json!({"reason": "x"}),
            )
            .await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::FORBIDDEN, "forbidden"),
                "{path}: {body}"
            );
        }
        assert!(!island_marker.exists(), "nothing refused changed anything");

        // An admin's change without a reason is refused; with one, it happens and is audited.
        let (status, body) = act(
            &plant,
            Some(&ana),
            Some(&ana.csrf),
            "/api/v1/admin/island",
            json!({"reason": " "}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (status, body) = act(
            &plant,
            Some(&ana),
            Some(&ana.csrf),
            "/api/v1/admin/island",
            json!({"reason": "planned WAN work"}),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not enrolled"),
            "{body}"
        );

        // Monitoring tools read with a device token, and cannot change anything with it.
        let token = harness::create_token(&data, "prometheus");
        let r = plant
            .client()
            .get(plant.url("/metrics"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let metrics = r.text().await.unwrap();
        for line in [
            "plantd_journal_depth 0",
            "plantd_verdict{verdict=\"degraded\"} 1",
            "plantd_component_healthy{component=\"journal\"} 1",
        ] {
            assert!(
                metrics.lines().any(|l| l == line),
                "{line} not in\n{metrics}"
            );
        }
        // It reads the monitoring figures, not the audit log, the logs or the backups.
        for (path, status) in [
            ("/api/v1/admin/overview", StatusCode::OK),
            ("/api/v1/admin/journal", StatusCode::OK),
            ("/api/v1/admin/audit", StatusCode::UNAUTHORIZED),
            ("/api/v1/admin/backups", StatusCode::UNAUTHORIZED),
        ] {
            let r = plant
                .client()
                .get(plant.url(path))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), status, "{path} with a device token");
        }
        let r = plant
            .client()
            .post(plant.url("/api/v1/admin/island"))
            .bearer_auth(&token)
            .json(&json!({"reason": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

        // The plain-HTTP listener (legacy devices) serves neither the UI nor the admin API.
        for path in ["/", "/api/v1/admin/session", "/metrics"] {
            let r = harness::plain_client()
                .get(format!("http://{plain}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        }

        // Five wrong passwords lock the name for their address, even against the right one.
        for _ in 0..4 {
            let e = refused(
                &plant,
                "/api/v1/admin/login",
                json!({"user": "ana", "password": "wrong password"}),
            )
            .await;
            assert_eq!(
                (e.0, code(&e.1)),
                (StatusCode::UNAUTHORIZED, "bad_credentials")
            );
        }
        let e = refused(
            &plant,
            "/api/v1/admin/login",
            json!({"user": "ana", "password": "wrong password"}),
        )
        .await;
        assert_eq!(
            (e.0, code(&e.1)),
            (StatusCode::TOO_MANY_REQUESTS, "locked_out")
        );
        let e = refused(
            &plant,
            "/api/v1/admin/login",
            json!({"user": "ana", "password": "correct horse"}),
        )
        .await;
        assert_eq!(e.0, StatusCode::TOO_MANY_REQUESTS, "locked: {}", e.1);
        assert!(
            e.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("locked for 5 min"),
            "{}",
            e.1
        );
        // The lock is on the name from this address: the session ana already has still works,
        // and vic signs in.
        assert_eq!(
            read(&plant, Some(&ana), "/api/v1/admin/overview").await.0,
            StatusCode::OK
        );
        let vic2 = sign_in(
            &plant,
            "/api/v1/admin/login",
            json!({"user": "vic", "password": "viewer pass 1"}),
        )
        .await;
        assert!(vic2.is_ok(), "another name is not locked");

        // Signing out ends the session.
        let (status, _) = act(
            &plant,
            Some(&vic),
            Some(&vic.csrf),
            "/api/v1/admin/logout",
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(
            read(&plant, Some(&vic), "/api/v1/admin/overview").await.0,
            StatusCode::UNAUTHORIZED
        );

        // The audit log has who did what, refusals included.
        let (_, audit) = read(&plant, Some(&ana), "/api/v1/admin/audit").await;
        let entries: Vec<(String, String, String, String)> = serde_json::from_str::<Value>(&audit)
            .unwrap()["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let text = |k: &str| e[k].as_str().unwrap().to_string();
                (
                    text("user"),
                    text("action"),
                    text("outcome"),
                    text("detail"),
                )
            })
            .collect();
        let has = |user: &str, action: &str, outcome: &str, detail: &str| {
            entries
                .iter()
                .any(|(u, a, o, d)| u == user && a == action && o == outcome && d.contains(detail))
        };
        assert!(
            has("ana", "admin.setup", "ok", "first admin"),
            "{entries:?}"
        );
        assert!(
            has("ana", "admin.setup", "refused", "wrong setup code"),
            "{entries:?}"
        );
        assert!(
            has("eve", "admin.setup", "refused", "exists already"),
            "{entries:?}"
        );
        assert!(
            has("cli (uid 0)", "admin.add", "ok", "viewer"),
            "{entries:?}"
        );
        assert!(has("vic", "island", "refused", "viewer"), "{entries:?}");
        assert!(
            has("ana", "island", "refused", "X-CSRF-Token"),
            "{entries:?}"
        );
        assert!(
            has("ana", "island", "refused", "evil.example"),
            "{entries:?}"
        );
        assert!(
            has("ana", "island", "refused", "not enrolled"),
            "{entries:?}"
        );
        assert!(
            has("ana", "sign_in", "refused", "wrong user name or password"),
            "{entries:?}"
        );
        assert!(has("ana", "sign_in", "refused", "locked"), "{entries:?}");
        assert!(has("vic", "sign_out", "ok", ""), "{entries:?}");
    });
}

/// A user's audit entries for `action`, oldest first: (outcome, detail).
pub(crate) async fn audit_of(
    plant: &Plant,
    reader: &Session,
    user: &str,
    action: &str,
) -> Vec<(String, String)> {
    let (status, audit) = read(plant, Some(reader), "/api/v1/admin/audit?limit=10000").await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let audit: Value = serde_json::from_str(&audit).unwrap();
    let mut rows: Vec<(String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["user"] == user && e["action"] == action)
        .map(|e| {
            (
                e["outcome"].as_str().unwrap().to_string(),
                e["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.reverse();
    rows
}

/// Five wrong passwords for ana from 127.0.0.2 lock ana for 127.0.0.2 only: she signs in from
/// 127.0.0.3, and the sixth try from 127.0.0.2 gets 429 with `Retry-After`, even with the
/// right password. Before, a stranger who knew her name locked her out everywhere.
#[test]
fn wrong_passwords_from_one_address_do_not_lock_the_name_for_another() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let out = harness::admin_add(&data, "ana", "admin", "correct horse");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plant = Plant::start(&data, "");
    let (stranger, ana_desk) = (
        plant.client_from("127.0.0.2"),
        plant.client_from("127.0.0.3"),
    );
    let wrong = json!({"user": "ana", "password": "wrong password"});
    let right = json!({"user": "ana", "password": "correct horse"});
    harness::rt().block_on(async {
        for attempt in 1..=5 {
            let Err((status, body)) =
                sign_in_with(&stranger, &plant, "/api/v1/admin/login", wrong.clone()).await
            else {
                panic!("a wrong password signed in");
            };
            let want = if attempt < 5 {
                (StatusCode::UNAUTHORIZED, "bad_credentials")
            } else {
                (StatusCode::TOO_MANY_REQUESTS, "locked_out")
            };
            assert_eq!((status, code(&body)), want, "attempt {attempt}: {body}");
        }
        let ana = sign_in_with(&ana_desk, &plant, "/api/v1/admin/login", right.clone())
            .await
            .expect("ana signs in from her own address");
        assert_eq!(
            read(&plant, Some(&ana), "/api/v1/admin/overview").await.0,
            StatusCode::OK
        );

        let r = stranger
            .post(plant.url("/api/v1/admin/login"))
            .json(&right)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry_after: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (1..=300).contains(&retry_after),
            "Retry-After: {retry_after}"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(code(&body), "locked_out", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("locked for 5 min for your address"),
            "{message}"
        );

        // A wrong password from ana's address counts for that address alone.
        let e = sign_in_with(&ana_desk, &plant, "/api/v1/admin/login", wrong.clone())
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            (e.0, code(&e.1)),
            (StatusCode::UNAUTHORIZED, "bad_credentials")
        );
    });
}

/// 200 refused changes from a signed-in admin (100 without the CSRF token, 100 without a
/// reason) write the first of each kind, and, before her next entry, one entry per kind that
/// counts the rest; not 200 rows. Before, each refusal wrote its own fsync'd row.
#[test]
fn refused_actions_of_a_signed_in_admin_are_counted_not_written_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let out = harness::admin_add(&data, "ana", "admin", "correct horse");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plant = Plant::start(&data, "");
    let login = json!({"user": "ana", "password": "correct horse"});
    harness::rt().block_on(async {
        let ana = sign_in(&plant, "/api/v1/admin/login", login.clone())
            .await
            .unwrap();
        for i in 0..200 {
            let (status, body) = if i % 2 == 0 {
                act(
                    &plant,
                    Some(&ana),
                    Some(&ana.csrf),
                    "/api/v1/admin/island",
                    json!({"reason": " "}),
                )
                .await
            } else {
                act(
                    &plant,
                    Some(&ana),
                    None,
                    "/api/v1/admin/island",
                    json!({"reason": "x"}),
                )
                .await
            };
            let want = if i % 2 == 0 {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
            } else {
                (StatusCode::FORBIDDEN, "csrf")
            };
            assert_eq!((status, code(&body)), want, "{i}: {body}");
        }
        let during = audit_of(&plant, &ana, "ana", "island").await;
        println!("figures: 200 refused changes, {} audit rows", during.len());
        assert!(
            (2..=4).contains(&during.len()),
            "200 refusals wrote {} rows: {during:#?}",
            during.len()
        );

        // Her next entry (signing in again) brings the counts in first.
        sign_in(&plant, "/api/v1/admin/login", login).await.unwrap();
        let after = audit_of(&plant, &ana, "ana", "island").await;
        assert!(after.len() <= 6, "{after:#?}");
        for (kind, first) in [("invalid", "reason: say why"), ("csrf", "X-CSRF-Token")] {
            let written = after
                .iter()
                .filter(|(o, d)| o == "refused" && d.contains(first))
                .count();
            let counted: u64 = after
                .iter()
                .filter_map(|(_, d)| {
                    let (n, rest) = d.split_once(" more like it (")?;
                    rest.starts_with(&format!("{kind})"))
                        .then(|| n.parse::<u64>().unwrap())
                })
                .sum();
            assert!(written >= 1, "{kind}: {after:#?}");
            assert_eq!(
                written as u64 + counted,
                100,
                "{kind}: every refusal is in the log, written or counted: {after:#?}"
            );
        }
        assert!(
            after
                .iter()
                .any(|(_, d)| d.contains("99 more like it (invalid) within a minute of the first")),
            "{after:#?}"
        );
    });
}

/// The UI in a real browser: first-run setup, the verdict following a stopped PostgreSQL
/// without a reload, a restart, island and rejoin, a backup run, verified and restored, the
/// audit log, a lost daemon, a viewer, sign-out and lockout. Screenshots of every page go to
/// `target/tmp/admin-ui/`.
#[test]
fn the_admin_ui_in_chromium() {
    let modules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser/node_modules/playwright-core");
    assert!(
        modules.exists(),
        "tests/browser/node_modules is missing: run `npm ci --prefix tests/browser` (tests/run.sh does)"
    );
    let pg = crate::fleet::Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let hub = crate::fleet::Hub::start(
        &dir.path().join("hub"),
        &pg,
        crate::fleet::free_udp_addr(),
        None,
    );
    let extra = "[backup]\nschedule = \"off\"\n";
    let mut stack = crate::stack::TestStack::start(extra);
    let out = crate::fleet::enroll(&stack.plant.data_dir, &hub, &hub.token("lyon", "1h"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stack.restart_plantd(extra);
    stack.wait_all_healthy(Duration::from_secs(120));
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-ui");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let device_token = harness::create_token(&stack.plant.data_dir, "scanner-1");
    let setup_code =
        std::fs::read_to_string(stack.plant.data_dir.join("admin-setup-code")).unwrap();
    let out = Command::new("node")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/admin.mjs"))
        .env("PLANTD_URL", stack.plant.url(""))
        .env("SETUP_CODE", setup_code.trim())
        .env("SHOTS", &shots)
        .env("DEVICE_TOKEN", &device_token)
        .env("PLANTD_PID", stack.plant.pid().to_string())
        .env("PG_CONTAINER", stack.container("postgres"))
        .env("REDIS_CONTAINER", stack.container("redis"))
        .env("ODOO_CONTAINER", stack.container("odoo"))
        .env("PLANTD_BIN", harness::built_bin())
        .env("PLANTD_DATA_DIR", &stack.plant.data_dir)
        .env("PLANTD_CONFIG", &stack.config_path)
        .output()
        .expect("node runs (Debian's nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
    for page in [
        "overview",
        "services",
        "journal",
        "backups",
        "failover",
        "audit",
        "users",
        "devices",
        "signin",
        "phone-overview",
        "phone-services",
        "phone-backups",
        "phone-users",
        "phone-devices",
        "dark-overview",
    ] {
        let shot = shots.join(format!("{page}.png"));
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{}: {size} bytes", shot.display());
    }
}

/// `plantd admin ARGS --data-dir DATA`, with `stdin` as its input.
fn admin_cli(data: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(harness::built_bin())
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The users page's API and `plantd admin` beside the running daemon: an admin adds a viewer,
/// makes her an admin, sets her password, signs her out everywhere and removes her; each change
/// ends her sessions at once (from the API or the CLI), the last admin can be neither removed
/// nor demoted, a viewer changes nothing, and every change is in the audit log without a
/// password.
#[test]
fn users_are_added_changed_signed_out_and_removed_from_the_ui_api_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let out = harness::admin_add(&data, "ana", "admin", "correct horse");
    assert!(out.status.success(), "{out:?}");
    let plant = Plant::start(&data, "");
    let login = |user: &str, password: &str| json!({"user": user, "password": password});
    harness::rt().block_on(async {
        let ana = sign_in(&plant, "/api/v1/admin/login", login("ana", "correct horse"))
            .await
            .unwrap();
        let users = |s: &Session| {
            let s = Session {
                cookie: s.cookie.clone(),
                csrf: s.csrf.clone(),
            };
            let plant = &plant;
            async move {
                let (status, body) = read(plant, Some(&s), "/api/v1/admin/users").await;
                assert_eq!(status, StatusCode::OK, "{body}");
                serde_json::from_str::<Value>(&body).unwrap()["users"].clone()
            }
        };
        let listed = users(&ana).await;
        assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
        assert_eq!(
            (
                &listed[0]["name"],
                &listed[0]["role"],
                &listed[0]["you"],
                &listed[0]["sessions"]
            ),
            (&json!("ana"), &json!("admin"), &json!(true), &json!(1))
        );

        // Add a viewer; a weak password or a taken name is refused and adds nobody.
        let add = |body: Value| {
            act(
                &plant,
                Some(&ana),
                Some(&ana.csrf),
                "/api/v1/admin/users",
                body,
            )
        };
        let (status, body) =
            add(json!({"user": "vic", "role": "viewer", "password": "short"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (status, body) =
            add(json!({"user": "vic", "role": "viewer", "password": "viewer pass 12"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) =
            add(json!({"user": "vic", "role": "admin", "password": "viewer pass 12"})).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::CONFLICT, "conflict"),
            "{body}"
        );
        let vic = sign_in(
            &plant,
            "/api/v1/admin/login",
            login("vic", "viewer pass 12"),
        )
        .await
        .unwrap();
        // A viewer sees the users and changes none of them.
        assert_eq!(users(&vic).await.as_array().unwrap().len(), 2);
        let (status, _) = act(
            &plant,
            Some(&vic),
            Some(&vic.csrf),
            "/api/v1/admin/users/ana/sign-out",
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            read(&plant, Some(&ana), "/api/v1/admin/overview").await.0,
            StatusCode::OK
        );

        // The last admin can be neither removed nor made a viewer, by herself or anyone.
        for (path, body) in [
            ("/api/v1/admin/users/ana/remove", json!({})),
            ("/api/v1/admin/users/ana/role", json!({"role": "viewer"})),
        ] {
            let (status, body) = act(&plant, Some(&ana), Some(&ana.csrf), path, body).await;
            assert_eq!(status, StatusCode::CONFLICT, "{path}: {body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("last admin"),
                "{body}"
            );
        }
        let out = admin_cli(&data, &["remove", "ana"], "");
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("last admin"),
            "{out:?}"
        );

        // Making vic an admin ends her session at once; she signs in again as an admin.
        let (status, body) = act(
            &plant,
            Some(&ana),
            Some(&ana.csrf),
            "/api/v1/admin/users/vic/role",
            json!({"role": "admin"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            read(&plant, Some(&vic), "/api/v1/admin/overview").await.0,
            StatusCode::UNAUTHORIZED
        );
        let vic = sign_in(
            &plant,
            "/api/v1/admin/login",
            login("vic", "viewer pass 12"),
        )
        .await
        .unwrap();
        let (_, session) = read(&plant, Some(&vic), "/api/v1/admin/session").await;
        assert_eq!(
            serde_json::from_str::<Value>(&session).unwrap()["role"],
            "admin"
        );

        // A new password from the UI: her session ends, the old password no longer works.
        let (status, body) = act(
            &plant,
            Some(&ana),
            Some(&ana.csrf),
            "/api/v1/admin/users/vic/password",
            json!({"password": "a brand new one"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            read(&plant, Some(&vic), "/api/v1/admin/overview").await.0,
            StatusCode::UNAUTHORIZED
        );
        assert!(sign_in(
            &plant,
            "/api/v1/admin/login",
            login("vic", "viewer pass 12")
        )
        .await
        .is_err());
        let vic = sign_in(
            &plant,
            "/api/v1/admin/login",
            login("vic", "a brand new one"),
        )
        .await
        .unwrap();
        let vic_too = sign_in(
            &plant,
            "/api/v1/admin/login",
            login("vic", "a brand new one"),
        )
        .await
        .unwrap();
        let listed = users(&ana).await;
        let vic_row = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == "vic")
            .unwrap()
            .clone();
        assert_eq!(vic_row["sessions"], 2, "{vic_row}");
        assert!(vic_row["password_set_at"].is_string(), "{vic_row}");

        // Signed out everywhere from the UI: both her sessions end.
        let (status, body) = act(
            &plant,
            Some(&ana),
            Some(&ana.csrf),
            "/api/v1/admin/users/vic/sign-out",
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for s in [&vic, &vic_too] {
            assert_eq!(
                read(&plant, Some(s), "/api/v1/admin/overview").await.0,
                StatusCode::UNAUTHORIZED
            );
        }

        // The CLI beside the running daemon ends sessions the same way.
        let vic = sign_in(
            &plant,
            "/api/v1/admin/login",
            login("vic", "a brand new one"),
        )
        .await
        .unwrap();
        let out = admin_cli(&data, &["sign-out", "vic"], "");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            read(&plant, Some(&vic), "/api/v1/admin/overview").await.0,
            StatusCode::UNAUTHORIZED
        );
        let out = admin_cli(&data, &["passwd", "vic"], "set by the cli 1\n");
        assert!(out.status.success(), "{out:?}");
        let vic = sign_in(
            &plant,
            "/api/v1/admin/login",
            login("vic", "set by the cli 1"),
        )
        .await
        .unwrap();
        let out = admin_cli(&data, &["role", "vic", "viewer"], "");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            read(&plant, Some(&vic), "/api/v1/admin/overview").await.0,
            StatusCode::UNAUTHORIZED
        );
        let out = admin_cli(&data, &["list"], "");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("ana ") && l.contains("admin"))
                && text
                    .lines()
                    .any(|l| l.starts_with("vic ") && l.contains("viewer")),
            "{text}"
        );
        let out = admin_cli(&data, &["list", "--json"], "");
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("argon2"),
            "no hashes listed"
        );

        // Removed from the UI: she can no longer sign in; unknown users are 404.
        let vic = sign_in(
            &plant,
            "/api/v1/admin/login",
            login("vic", "set by the cli 1"),
        )
        .await
        .unwrap();
        let (status, body) = act(
            &plant,
            Some(&ana),
            Some(&ana.csrf),
            "/api/v1/admin/users/vic/remove",
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            read(&plant, Some(&vic), "/api/v1/admin/overview").await.0,
            StatusCode::UNAUTHORIZED
        );
        assert!(sign_in(
            &plant,
            "/api/v1/admin/login",
            login("vic", "set by the cli 1")
        )
        .await
        .is_err());
        let (status, _) = act(
            &plant,
            Some(&ana),
            Some(&ana.csrf),
            "/api/v1/admin/users/vic/remove",
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(users(&ana).await.as_array().unwrap().len(), 1);

        // Every change is audited, with who did it, and no password anywhere.
        let (_, audit) = read(&plant, Some(&ana), "/api/v1/admin/audit?limit=10000").await;
        for (user, action) in [
            ("ana", "user.add"),
            ("ana", "user.role"),
            ("ana", "user.password"),
            ("ana", "user.sign_out"),
            ("ana", "user.remove"),
            ("cli (uid 0)", "user.sign_out"),
            ("cli (uid 0)", "user.password"),
            ("cli (uid 0)", "user.role"),
        ] {
            let entries: Value = serde_json::from_str(&audit).unwrap();
            assert!(
                entries["entries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["user"] == user
                        && e["action"] == action
                        && e["target"] == "vic"
                        && e["outcome"] == "ok"),
                "no {action} by {user} in {audit}"
            );
        }
        for secret in ["viewer pass 12", "a brand new one", "set by the cli 1"] {
            assert!(!audit.contains(secret), "{secret} in the audit log");
        }
    });
}

/// The devices page's API and `plantd token list|show`: each device's last sight, its accepted
/// and refused requests and its latest refusals with the status it got (422, 409, 403, and a
/// revoked token's 403), requests with an unknown token counted apart; an admin revokes a
/// token from the page (audited); the activity outlives the daemon.
#[test]
fn devices_show_when_they_were_seen_and_what_was_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let out = harness::admin_add(&data, "ana", "admin", "correct horse");
    assert!(out.status.success(), "{out:?}");
    let scanner = harness::create_token(&data, "scanner-1");
    let old = harness::create_token(&data, "scanner-2");
    let mut plant = Plant::start(&data, "");
    let post = |token: &str, body: Value| {
        let req = plant
            .client()
            .post(plant.url("/api/v1/transactions"))
            .bearer_auth(token)
            .json(&body);
        async move { req.send().await.unwrap().status() }
    };
    harness::rt().block_on(async {
        let items: Vec<Value> = (0..3)
            .map(|i| json!({"key": format!("k{i}"), "kind": "scan", "payload": {"qty": i}}))
            .collect();
        assert_eq!(post(&scanner, json!(items)).await, StatusCode::CREATED);
        // A resend is not counted again.
        assert_eq!(post(&scanner, json!(items)).await, StatusCode::OK);
        assert_eq!(
            post(&scanner, json!({"kind": "scan", "payload": {}})).await,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            post(&scanner, json!({"key": "k0", "kind": "scan", "payload": {"qty": 99}})).await,
            StatusCode::CONFLICT
        );
        assert_eq!(
            post(&scanner, json!({"key": "k9", "kind": "odoo.create", "payload": {"model": "res.users", "values": {}}})).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            post("pdt_nobody-issued-this", json!({"key": "x", "kind": "scan", "payload": {}})).await,
            StatusCode::UNAUTHORIZED
        );

        let ana = sign_in(&plant, "/api/v1/admin/login", json!({"user": "ana", "password": "correct horse"}))
            .await
            .unwrap();
        let (status, body) = act(&plant, Some(&ana), Some(&ana.csrf), "/api/v1/admin/devices/scanner-2/revoke", json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _) = act(&plant, Some(&ana), Some(&ana.csrf), "/api/v1/admin/devices/scanner-2/revoke", json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _) = act(&plant, Some(&ana), Some(&ana.csrf), "/api/v1/admin/devices/ghost/revoke", json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            post(&old, json!({"key": "y", "kind": "scan", "payload": {}})).await,
            StatusCode::FORBIDDEN
        );

        let (status, body) = read(&plant, Some(&ana), "/api/v1/admin/devices").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        let device = |name: &str| {
            page["devices"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["name"] == name)
                .unwrap()
                .clone()
        };
        let s1 = device("scanner-1");
        assert_eq!((&s1["accepted"], &s1["refused"]), (&json!(3), &json!(3)), "{s1}");
        assert!(s1["last_seen_at"].is_string(), "{s1}");
        let statuses: Vec<u64> = s1["recent_refusals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect();
        assert_eq!(statuses, [403, 409, 422], "newest first: {s1}");
        assert_eq!(s1["recent_refusals"][1]["code"], "key_conflict", "{s1}");
        let s2 = device("scanner-2");
        assert!(s2["revoked_at"].is_string(), "{s2}");
        assert_eq!(s2["recent_refusals"][0]["code"], "token_revoked", "{s2}");
        assert_eq!(page["unknown_token"]["refused"], 1, "{page}");
        assert_eq!(page["unknown_token"]["recent_refusals"][0]["status"], 401);
        // Nobody without a session reads it, not even a device.
        let r = plant
            .client()
            .get(plant.url("/api/v1/admin/devices"))
            .bearer_auth(&scanner)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let (_, audit) = read(&plant, Some(&ana), "/api/v1/admin/audit").await;
        assert!(
            audit.contains("\"token.revoke\"") && audit.contains("scanner-2"),
            "{audit}"
        );
    });

    // The CLI beside the daemon, then without it: the activity was kept at shutdown.
    let list = harness::plantd(&["token", "list", "--data-dir", data.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&list.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("scanner-1 "))
        .unwrap_or_default();
    assert!(row.contains(" 3 ") && !row.contains("never"), "{text}");
    let show = harness::plantd(&[
        "token",
        "show",
        "scanner-1",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&show.stdout);
    for refusal in ["403 kind_not_allowed", "409 key_conflict", "422 "] {
        assert!(text.contains(refusal), "{refusal} not in {text}");
    }
    plant.stop();
    let list = harness::plantd(&[
        "token",
        "list",
        "--json",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let devices: Value = serde_json::from_slice(&list.stdout).unwrap();
    let s1 = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "scanner-1")
        .unwrap();
    assert_eq!(s1["activity"]["accepted"], 3, "{s1}");
    assert_eq!(s1["activity"]["refused"], 3, "{s1}");
}

/// The audit page's reads: a filter by user and action, pages that meet without overlap
/// (`next_before`), an export as CSV (no password in it), and a
/// viewer exporting in a loop who writes one entry a minute, not one per export (the log is
/// bounded: a flood would push the admins' entries out).
#[test]
fn the_audit_log_is_filtered_paged_exported_and_not_flooded_by_exports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (user, role) in [("ana", "admin"), ("vic", "viewer")] {
        let out = harness::admin_add(&data, user, role, "correct horse");
        assert!(out.status.success(), "{out:?}");
    }
    let plant = Plant::start(&data, "");
    harness::rt().block_on(async {
        let login = |user: &str| json!({"user": user, "password": "correct horse"});
        let ana = sign_in(&plant, "/api/v1/admin/login", login("ana"))
            .await
            .unwrap();
        let vic = sign_in(&plant, "/api/v1/admin/login", login("vic"))
            .await
            .unwrap();
        for name in ["u1", "u2", "u3"] {
            let body = json!({"user": name, "role": "viewer", "password": "=HYPERLINK(\"x\")"});
            let (status, body) = act(
                &plant,
                Some(&ana),
                Some(&ana.csrf),
                "/api/v1/admin/users",
                body,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let page = |path: String| {
            let plant = &plant;
            let vic = &vic;
            async move {
                let (status, body) = read(plant, Some(vic), &path).await;
                assert_eq!(status, StatusCode::OK, "{path}: {body}");
                serde_json::from_str::<Value>(&body).unwrap()
            }
        };
        let all = page("/api/v1/admin/audit?user=ana&action=user.add".into()).await;
        let targets: Vec<&str> = all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(
                    (&e["user"], &e["action"]),
                    (&json!("ana"), &json!("user.add"))
                );
                e["target"].as_str().unwrap()
            })
            .collect();
        assert_eq!(targets, ["u3", "u2", "u1"], "newest first: {all}");
        let first = page("/api/v1/admin/audit?action=user.add&limit=2".into()).await;
        assert_eq!(first["entries"].as_array().unwrap().len(), 2, "{first}");
        let before = first["next_before"].as_i64().expect("a next page");
        let second = page(format!(
            "/api/v1/admin/audit?action=user.add&limit=2&before={before}"
        ))
        .await;
        assert_eq!(second["entries"][0]["target"], "u1", "{second}");
        assert_eq!(second["entries"].as_array().unwrap().len(), 1, "{second}");
        assert!(second["next_before"].is_null(), "{second}");

        // The export: CSV of what the filter takes; no password, no cell that runs.
        let r = plant
            .client()
            .get(plant.url("/api/v1/admin/audit/export?action=user.add"))
            .header("cookie", &vic.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        assert!(r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("plantd-audit-"));
        let csv = r.text().await.unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "id,at,user,action,target,outcome,detail", "{csv}");
        assert_eq!(lines.len(), 4, "{csv}");
        assert!(lines[1].contains(r#""ana","user.add","u3","ok""#), "{csv}");
        assert!(!csv.contains("HYPERLINK"), "no password in {csv}");

        // Twenty more exports within the minute: still one entry of vic's.
        for _ in 0..20 {
            let r = plant
                .client()
                .get(plant.url("/api/v1/admin/audit/export?user=nobody"))
                .header("cookie", &vic.cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        let exports = audit_of(&plant, &ana, "vic", "audit.export").await;
        assert_eq!(exports.len(), 1, "{exports:?}");
        assert_eq!(exports[0].0, "ok");
    });
}
