//! Apply status and its remedies where admins see them: the plant's Apply page (in Chromium,
//! driven by `tests/browser/apply.mjs`, and its API with reqwest) against the stack's Odoo
//! emulator, and the hub's fleet page (in Chromium through `tests/browser/fleet_apply.mjs`,
//! and its API) against a central emulator. Each queue is stopped by
//! what Odoo really rejects (a picking it does not know), parked, and replayed once the picking
//! exists; refusals (a viewer, no CSRF token, the wrong seq, a bad body) change nothing and are
//! in the audit log.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fleet::{enroll, free_udp_addr, Hub, Pg};
use crate::harness::{self, client_for, create_token_granted, post_json, rt, Plant};
use crate::stack::TestStack;

/// A signed-in browser, as far as the API can tell.
struct Session {
    cookie: String,
    csrf: String,
}

/// The admin API of a plant or a hub, over HTTPS.
struct Web {
    client: reqwest::Client,
    port: u16,
}

impl Web {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    async fn sign_in(&self, path: &str, body: Value) -> Session {
        let r = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let cookie = r.headers()["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_string();
        let body: Value = r.json().await.unwrap();
        Session {
            cookie,
            csrf: body["csrf"].as_str().unwrap().to_string(),
        }
    }

    async fn login(&self, user: &str, password: &str) -> Session {
        self.sign_in(
            "/api/v1/admin/login",
            json!({"user": user, "password": password}),
        )
        .await
    }

    /// A change: `csrf` is what is sent as `X-CSRF-Token`.
    async fn post(
        &self,
        session: &Session,
        csrf: Option<&str>,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .post(self.url(path))
            .header("cookie", &session.cookie)
            .json(&body);
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        let r = req.send().await.unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, session: &Session, path: &str) -> Value {
        let r = self
            .client
            .get(self.url(path))
            .header("cookie", &session.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.unwrap()
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn message(body: &Value) -> &str {
    body["error"]["message"]
        .as_str()
        .or(body["message"].as_str())
        .unwrap_or("")
}

/// `plantd admin add`, which must succeed.
fn admin_add(data_dir: &Path, user: &str, role: &str, password: &str) {
    let out = harness::admin_add(data_dir, user, role, password);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `plantd odoo call MODEL METHOD ARGS [--kwargs]` through `stack`'s plantd.
fn odoo(stack: &TestStack, model: &str, method: &str, args: &str, kwargs: Option<&str>) -> Value {
    let mut all = vec!["odoo", "call", model, method, args];
    if let Some(k) = kwargs {
        all.extend(["--kwargs", k]);
    }
    serde_json::from_str(&stack.cli_ok(&all)).unwrap()
}

fn picking_state(stack: &TestStack, name: &str) -> Value {
    let found = odoo(
        stack,
        "stock.picking",
        "search_read",
        &format!(r#"[[["name", "=", "{name}"]]]"#),
        Some(r#"{"fields": ["state"]}"#),
    );
    found[0]["state"].clone()
}

fn partners(stack: &TestStack, name: &str) -> Value {
    odoo(
        stack,
        "res.partner",
        "search_count",
        &format!(r#"[[["name", "=", "{name}"]]]"#),
        None,
    )
}

/// Polls `read` until `check` holds, for at most a minute.
async fn until<F, Fut>(what: &str, read: F, check: impl Fn(&Value) -> bool) -> Value
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    until_within(what, Duration::from_secs(60), read, check).await
}

/// [`until`] for at most `limit`.
async fn until_within<F, Fut>(
    what: &str,
    limit: Duration,
    read: F,
    check: impl Fn(&Value) -> bool,
) -> Value
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = Instant::now() + limit;
    loop {
        let v = read().await;
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn partner(key: &str, name: &str) -> Value {
    json!({"key": key, "kind": "odoo.create", "payload": {"model": "res.partner", "values": {"name": name}}})
}

fn validate(key: &str, picking: &str) -> Value {
    json!({"key": key, "kind": "stock.picking.validate", "payload": {"picking": picking}})
}

/// The audit log's entries as (user, action, target, outcome, detail).
fn audit_has(entries: &[Value], user: &str, action: &str, outcome: &str, detail: &str) -> bool {
    entries.iter().any(|e| {
        e["user"] == user
            && e["action"] == action
            && e["outcome"] == outcome
            && e["detail"].as_str().unwrap_or("").contains(detail)
    })
}

#[test]
fn the_apply_page_in_chromium_parks_and_replays_what_odoo_rejected() {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules");
    assert!(
        modules.join("playwright-core").exists(),
        "tests/browser/node_modules is missing: run `npm ci --prefix tests/browser` (tests/run.sh does)"
    );
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("odoo.key");
    let stack = TestStack::start(&format!(
        "[odoo]\nkey_file = \"{}\"\n[apply]\nlocal = true\n[apply.kinds.\"odoo.create\"]\nmodels = [\"res.partner\", \"stock.lot\"]\n[backup]\nschedule = \"off\"\n",
        key_file.display()
    ));
    stack.wait_all_healthy(Duration::from_secs(120));
    crate::odoo::write_emulator_key(&stack, &key_file);
    let master = crate::odoo::emulator_master_data(&stack);
    let data = &stack.plant.data_dir;
    let token = create_token_granted(data, "scanner-1");
    let plant = &stack.plant;
    let web = Web {
        client: plant.client(),
        port: plant.addr.port(),
    };
    let runtime = rt();
    // The queue as `plantd apply status` shows it.
    let apply = || async {
        serde_json::from_str::<Value>(&stack.cli_ok(&["apply", "status", "--json"])).unwrap()
    };
    // A device token reads the overview's figures, not the parked transactions' content.
    let r = runtime.block_on(async {
        web.client
            .get(web.url("/api/v1/admin/apply"))
            .bearer_auth(&token)
            .send()
            .await
    });
    assert_eq!(
        r.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "a device token reads the apply's content"
    );

    // Seq 2 validates a picking Odoo does not have: the queue stops there, 3 and 4 wait.
    let (status, body) = runtime.block_on(post_json(
        &plant.client(),
        &plant.url("/api/v1/transactions"),
        &token,
        &json!([
            partner("ui-1", "UI-before"),
            validate("ui-2", "WH/IN/UI1"),
            partner("ui-3", "UI-after-1"),
            partner("ui-4", "UI-after-2"),
        ]),
    ));
    assert_eq!(status, 201, "{body}");
    runtime.block_on(until("the queue to stop at 2", apply, |s| {
        s["stopped_at"] == 2
    }));

    let setup_code = std::fs::read_to_string(data.join("admin-setup-code")).unwrap();
    let config = stack.config_path.display().to_string();
    harness::run_browser(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/apply.mjs"),
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("apply-ui"),
        &[
            ("PLANTD_URL", &plant.url("")),
            ("SETUP_CODE", setup_code.trim()),
            ("PLANTD_BIN", harness::built_bin()),
            ("PLANTD_DATA_DIR", &data.display().to_string()),
            ("PLANTD_CONFIG", &config),
            ("PICKING", "WH/IN/UI1"),
            ("STOP_SEQ", "2"),
            ("LAST_SEQ", "4"),
        ],
        &[
            "apply-overview",
            "apply-stopped",
            "apply-viewer",
            "apply-confirm-park",
            "apply-parked",
            "apply-replayed",
        ],
    );
    // What the admin did in the browser is what Odoo has: each record once, the picking done.
    assert_eq!(picking_state(&stack, "WH/IN/UI1"), "done");
    for name in ["UI-before", "UI-after-1", "UI-after-2"] {
        assert_eq!(partners(&stack, name), 1, "{name}");
    }

    // The API: seq 5 waits for another missing picking.
    runtime.block_on(async {
        let ana = web.login("ana", "correct horse battery").await;
        let vic = web.login("vic", "viewer pass 12").await;
        let s = web.get(&ana, "/api/v1/admin/apply").await;
        assert_eq!(
            (s["applied_seq"].as_u64(), s["behind"].as_u64()),
            (Some(4), Some(0)),
            "{s}"
        );
        assert_eq!(s["parked"], json!([]), "{s}");
        let (status, _) = post_json(
            &plant.client(),
            &plant.url("/api/v1/transactions"),
            &token,
            &validate("ui-5", "WH/IN/UI2"),
        )
        .await;
        assert_eq!(status, 201);
        until("the queue to stop at 5", apply, |s| s["stopped_at"] == 5).await;
        let refusals = [
            (
                &vic,
                Some(vic.csrf.as_str()),
                "park",
                json!({"seq": 5}),
                StatusCode::FORBIDDEN,
                "forbidden",
            ),
            (
                &ana,
                None,
                "park",
                json!({"seq": 5}),
                StatusCode::FORBIDDEN,
                "csrf",
            ),
            (
                &ana,
                Some(ana.csrf.as_str()),
                "retry",
                json!({"seq": 4}),
                StatusCode::CONFLICT,
                "conflict",
            ),
            (
                &ana,
                Some(ana.csrf.as_str()),
                "park",
                json!({"seq": 6}),
                StatusCode::CONFLICT,
                "conflict",
            ),
            (
                &ana,
                Some(ana.csrf.as_str()),
                "replay",
                json!({"seq": 5}),
                StatusCode::CONFLICT,
                "conflict",
            ),
            (
                &ana,
                Some(ana.csrf.as_str()),
                "retry",
                json!({"seq": "5"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
            ),
            (
                &ana,
                Some(ana.csrf.as_str()),
                "retry",
                json!({}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
            ),
        ];
        for (who, csrf, remedy, body, want, want_code) in refusals {
            let (status, answer) = web
                .post(
                    who,
                    csrf,
                    &format!("/api/v1/admin/apply/{remedy}"),
                    body.clone(),
                )
                .await;
            assert_eq!(
                (status, code(&answer)),
                (want, want_code),
                "{remedy} {body}: {answer}"
            );
        }
        let (_, answer) = web
            .post(
                &ana,
                Some(&ana.csrf),
                "/api/v1/admin/apply/retry",
                json!({"seq": 4}),
            )
            .await;
        assert!(
            message(&answer).contains("stopped at seq 5, not 4"),
            "{answer}"
        );
        let (_, answer) = web
            .post(
                &ana,
                Some(&ana.csrf),
                "/api/v1/admin/apply/retry",
                json!({"seq": -3}),
            )
            .await;
        assert_eq!(answer["error"]["field"], "seq", "{answer}");
        let r = web
            .client
            .post(web.url("/api/v1/admin/apply/park"))
            .bearer_auth(&token)
            .json(&json!({"seq": 5}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "a device token changes nothing"
        );
        // Nothing of that changed anything.
        let s = apply().await;
        assert_eq!(
            (s["stopped_at"].as_u64(), s["applied_seq"].as_u64()),
            (Some(5), Some(4)),
            "{s}"
        );
        assert!(
            s["message"]
                .as_str()
                .unwrap()
                .contains("no stock.picking named \"WH/IN/UI2\""),
            "{s}"
        );
        assert_eq!(s["parked"], json!([]), "{s}");

        // The cause fixed in Odoo, a retry of the right seq applies it.
        crate::odoo::emulator_receipts(&stack, master, &["WH/IN/UI2".to_string()], 5.0);
        let (status, answer) = web
            .post(
                &ana,
                Some(&ana.csrf),
                "/api/v1/admin/apply/retry",
                json!({"seq": 5}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        until("seq 5 applied", apply, |s| {
            s["applied_seq"] == 5 && s["stopped_at"].is_null()
        })
        .await;
        assert_eq!(picking_state(&stack, "WH/IN/UI2"), "done");

        let audit = web.get(&ana, "/api/v1/admin/audit").await;
        let entries = audit["entries"].as_array().unwrap();
        for (user, action, outcome, detail) in [
            ("ana", "apply.park", "ok", "seq 2 is parked"),
            ("ana", "apply.replay", "refused", "stays parked"),
            ("ana", "apply.replay", "ok", "no longer parked"),
            ("vic", "apply.park", "refused", "viewer"),
            ("ana", "apply.park", "refused", "X-CSRF-Token"),
            ("ana", "apply.retry", "refused", "stopped at seq 5, not 4"),
            ("ana", "apply.replay", "refused", "seq 5 is not parked"),
            ("ana", "apply.retry", "refused", "seq:"),
            ("ana", "apply.retry", "ok", "seq 5 is tried again"),
        ] {
            assert!(
                audit_has(entries, user, action, outcome, detail),
                "no ({user}, {action}, {outcome}, {detail}) in {audit:#}"
            );
        }

        // 600 that Odoo rejects (pickings it does not know) among 12 it takes: one bulk park
        // sets the 600 aside with Odoo's message each, applies the rest, and is one audit entry.
        let mut items = Vec::new();
        for i in 0..612 {
            items.push(if i % 51 == 0 {
                partner(&format!("bulk-{i}"), &format!("Bulk-{i}"))
            } else {
                validate(&format!("bulk-{i}"), &format!("WH/IN/B{i}"))
            });
        }
        let (status, body) = post_json(
            &plant.client(),
            &plant.url("/api/v1/transactions"),
            &token,
            &json!(items),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let first = until("the queue to stop in the bulk", apply, |s| {
            s["stopped_at"].as_u64().is_some_and(|n| n > 5)
        })
        .await["stopped_at"]
            .as_u64()
            .unwrap();
        let last = first - 2 + 612;
        let bulk = json!({"kind": "stock.picking.validate"});
        let (status, preview) = web
            .post(
                &ana,
                Some(&ana.csrf),
                "/api/v1/admin/apply/bulk-park",
                json!({"kind": "stock.picking.validate", "preview": true}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{preview}");
        assert_eq!(
            (&preview["matching"], &preview["to_seq"]),
            (&json!(600), &json!(last)),
            "{preview}"
        );
        let (status, _) = web
            .post(
                &vic,
                Some(&vic.csrf),
                "/api/v1/admin/apply/bulk-park",
                bulk.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // A range that ends before it begins parks nothing: refused, and nothing changes.
        let (status, _) = web
            .post(
                &ana,
                Some(&ana.csrf),
                "/api/v1/admin/apply/bulk-park",
                json!({"from_seq": 9, "to_seq": 3}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, answer) = web
            .post(
                &ana,
                Some(&ana.csrf),
                "/api/v1/admin/apply/bulk-park",
                json!({"from_seq": "9"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        let started = Instant::now();
        let (status, answer) = web
            .post(
                &ana,
                Some(&ana.csrf),
                "/api/v1/admin/apply/bulk-park",
                bulk.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        // Each of the 600 is a rejection by Odoo (a call or two each): minutes on a busy machine.
        let s = until_within(
            "the bulk park through the last seq",
            Duration::from_secs(600),
            apply,
            |s| s["applied_seq"].as_u64() == Some(last) && s["park_rule"].is_null(),
        )
        .await;
        println!(
            "figures: 600 parked by one bulk park in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let parked = s["parked"].as_array().unwrap();
        assert_eq!(parked.len(), 600, "{s}");
        assert!(parked.iter().all(|p| p["kind"] == "stock.picking.validate"));
        assert!(
            parked[0]["message"]
                .as_str()
                .unwrap()
                .contains("no stock.picking named"),
            "{}",
            parked[0]
        );
        for i in (0..612).step_by(51) {
            assert_eq!(partners(&stack, &format!("Bulk-{i}")), 1, "Bulk-{i}");
        }
        let audit = web.get(&ana, "/api/v1/admin/audit?limit=10000").await;
        let of = |action: &str| {
            audit["entries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["action"] == action && e["outcome"] == "ok")
                .count()
        };
        assert_eq!(of("apply.bulk_park"), 1, "{audit:#}");
        assert_eq!(
            of("apply.park"),
            1,
            "only the park of seq 2 before: {audit:#}"
        );

        // The parked list comes in pages, filtered.
        let page = web.get(&ana, "/api/v1/admin/apply?limit=50").await;
        assert_eq!(page["parked"].as_array().unwrap().len(), 50);
        assert_eq!(
            (&page["parked_total"], &page["parked_matching"]),
            (&json!(600), &json!(600))
        );
        assert_eq!(page["stopped_at"], Value::Null, "{page}");
        let tail = web
            .get(&ana, "/api/v1/admin/apply?offset=580&limit=50")
            .await;
        assert_eq!(tail["parked"].as_array().unwrap().len(), 20);
        let one = web
            .get(
                &ana,
                &format!("/api/v1/admin/apply?message={}", "WH%2FIN%2FB611"),
            )
            .await;
        assert_eq!(one["parked_matching"], 1, "{one}");
        let r = web
            .client
            .get(web.url("/api/v1/admin/apply?limit=501"))
            .header("cookie", &ana.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);

        // Five pickings made in Odoo: a bulk replay of their seqs applies them, the rest stay.
        let seqs: Vec<u64> = parked[..5]
            .iter()
            .map(|p| p["seq"].as_u64().unwrap())
            .collect();
        let names: Vec<String> = parked[..5]
            .iter()
            .map(|p| {
                serde_json::from_str::<Value>(p["payload"].as_str().unwrap()).unwrap()["picking"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        crate::odoo::emulator_receipts(&stack, master, &names, 5.0);
        let range = json!({"from_seq": seqs[0], "to_seq": seqs[4] + 1});
        let (_, preview) = web
            .post(
                &ana,
                Some(&ana.csrf),
                "/api/v1/admin/apply/bulk-replay",
                json!({"from_seq": seqs[0], "to_seq": seqs[4] + 1, "preview": true}),
            )
            .await;
        assert_eq!(preview["matching"], 6, "the five and the next: {preview}");
        let (status, answer) = web
            .post(
                &ana,
                Some(&ana.csrf),
                "/api/v1/admin/apply/bulk-replay",
                range,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(
            (&answer["applied"], &answer["still_parked"]),
            (&json!(5), &json!(1)),
            "{answer}"
        );
        for name in &names {
            assert_eq!(picking_state(&stack, name), "done", "{name}");
        }
        let after = web.get(&ana, "/api/v1/admin/apply?limit=1").await;
        assert_eq!(after["parked_total"], 595, "{after}");
        let audit = web.get(&ana, "/api/v1/admin/audit").await;
        assert!(
            audit_has(
                audit["entries"].as_array().unwrap(),
                "ana",
                "apply.bulk_replay",
                "ok",
                "5 applied, 1 still parked"
            ),
            "{audit:#}"
        );
        // Parked transactions are not "all good".
        let overview = web.get(&ana, "/api/v1/admin/overview").await;
        assert_ne!(overview["verdict"], "ok", "{overview}");
        assert!(
            overview["reasons"]
                .to_string()
                .contains("595 transactions are parked"),
            "{overview}"
        );
    });
}

#[test]
fn without_local_apply_the_apply_page_says_so_and_refuses_remedies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plant = Plant::start(&data, "");
    let web = Web {
        client: plant.client(),
        port: plant.addr.port(),
    };
    rt().block_on(async {
        // An answer over HTTPS: the admin UI is up, and has written its setup code.
        let r = web
            .client
            .get(web.url("/api/v1/admin/session"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let code_text = std::fs::read_to_string(data.join("admin-setup-code")).unwrap();
        let ana = web
            .sign_in(
                "/api/v1/admin/setup",
                json!({"code": code_text.trim(), "user": "ana", "password": "correct horse"}),
            )
            .await;
        let apply = web.get(&ana, "/api/v1/admin/apply").await;
        assert_eq!(apply["enabled"], false, "{apply}");
        assert!(
            apply["note"]
                .as_str()
                .unwrap()
                .contains("[apply] local = true"),
            "{apply}"
        );
        let overview = web.get(&ana, "/api/v1/admin/overview").await;
        assert!(overview["apply"].is_null(), "{overview}");
        let (status, answer) = web
            .post(
                &ana,
                Some(&ana.csrf),
                "/api/v1/admin/apply/retry",
                json!({"seq": 1}),
            )
            .await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::CONFLICT, "conflict"),
            "{answer}"
        );
        assert!(message(&answer).contains("nothing was changed"), "{answer}");
        let audit = web.get(&ana, "/api/v1/admin/audit").await;
        assert!(
            audit_has(
                audit["entries"].as_array().unwrap(),
                "ana",
                "apply.retry",
                "refused",
                "[apply] local"
            ),
            "{audit:#}"
        );
    });
}

/// The hub's audit log, read from its `admin.db` (the hub has no audit page yet).
fn hub_audit(hub: &Hub) -> Vec<Value> {
    let conn = rusqlite::Connection::open_with_flags(
        hub.data_dir.join("admin.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut s = conn
        .prepare(
            "SELECT user, action, COALESCE(target, ''), outcome, detail FROM audit ORDER BY id",
        )
        .unwrap();
    s.query_map([], |r| {
        Ok(json!({
            "user": r.get::<_, String>(0)?, "action": r.get::<_, String>(1)?,
            "target": r.get::<_, String>(2)?, "outcome": r.get::<_, String>(3)?,
            "detail": r.get::<_, String>(4)?,
        }))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

fn hub_web(hub: &Hub) -> Web {
    Web {
        client: client_for(&hub.data_dir.join("ca/ca.crt"), hub.https),
        port: hub.https.port(),
    }
}

/// `tests/browser/fleet_apply.mjs`: carla parks `plant`'s `seq` on the fleet page, and vic
/// sees it parked with no buttons. Screenshots go to `target/tmp/fleet-apply/`.
fn fleet_page_parks(hub: &Hub, plant: &str, seq: u64) {
    harness::run_browser(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/fleet_apply.mjs"),
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleet-apply"),
        &[
            (
                "HUB_URL",
                &format!("https://localhost:{}", hub.https.port()),
            ),
            ("PLANT", plant),
            ("STOP_SEQ", &seq.to_string()),
            ("MESSAGE", "no stock.picking named"),
            ("ADMIN_USER", "carla"),
            ("ADMIN_PASSWORD", "central admin 1"),
            ("VIEWER_USER", "vic"),
            ("VIEWER_PASSWORD", "central viewer 1"),
        ],
        &[
            "fleet-stopped",
            "fleet-confirm-park",
            "fleet-parked",
            "fleet-viewer",
        ],
    );
}

#[test]
fn the_fleet_page_shows_each_plants_central_apply_and_its_remedies() {
    let keys = tempfile::tempdir().unwrap();
    let (central, odoo_section) = crate::odoo::central_odoo(keys.path(), "19.0");
    let master = crate::odoo::emulator_master_data(&central);
    let hub_toml = format!("{odoo_section}[apply]\ncentral = true\nworkers = 1\n");
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_with(&dir.path().join("hub"), &pg, free_udp_addr(), &hub_toml);
    admin_add(&hub.data_dir, "carla", "admin", "central admin 1");
    admin_add(&hub.data_dir, "vic", "viewer", "central viewer 1");
    // A hub replica without [apply] central, on the same database: its fleet page says so.
    let plain = Hub::start(&dir.path().join("hub-plain"), &pg, free_udp_addr(), None);
    admin_add(&plain.data_dir, "carla", "admin", "central admin 1");

    let data = dir.path().join("lyon");
    std::fs::create_dir_all(&data).unwrap();
    let token = create_token_granted(&data, "scanner-1");
    let out = enroll(&data, &hub, &hub.token("lyon", "1h"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lyon = Plant::start(&data, "[apply]\nlocal = false\n[apply.kinds.\"odoo.create\"]\nmodels = [\"res.partner\", \"stock.lot\"]\n");

    let web = hub_web(&hub);
    rt().block_on(async {
        let (status, body) = post_json(
            &lyon.client(),
            &lyon.url("/api/v1/transactions"),
            &token,
            &json!([
                partner("hub-1", "HUB-before"),
                validate("hub-2", "WH/IN/HUB1"),
                partner("hub-3", "HUB-after"),
            ]),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let carla = web.login("carla", "central admin 1").await;
        let vic = web.login("vic", "central viewer 1").await;
        let fleet = || async { web.get(&carla, "/api/v1/fleet").await };
        let lyon_apply = |f: &Value| {
            f["plants"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["plant"] == "lyon")
                .map(|p| p["apply"].clone())
                .unwrap_or(Value::Null)
        };

        // The fleet shows lyon's queue stopped at 2 with the central Odoo's message.
        let f = until("lyon's queue to stop at 2", fleet, |f| {
            lyon_apply(f)["stopped_at"] == 2
        })
        .await;
        assert_eq!(f["central_apply"]["enabled"], true, "{f}");
        let a = lyon_apply(&f);
        assert_eq!(
            (
                a["applied_seq"].as_i64(),
                a["last_seq"].as_i64(),
                a["behind"].as_i64()
            ),
            (Some(1), Some(3), Some(2)),
            "{a}"
        );
        assert_eq!(a["stopped_kind"], "stock.picking.validate", "{a}");
        assert!(
            a["message"]
                .as_str()
                .unwrap()
                .contains("no stock.picking named \"WH/IN/HUB1\""),
            "{a}"
        );

        // Refusals change nothing.
        let refusals = [
            (
                &vic,
                Some(vic.csrf.as_str()),
                "park",
                json!({"plant": "lyon", "seq": 2}),
                StatusCode::FORBIDDEN,
                "forbidden",
            ),
            (
                &carla,
                None,
                "park",
                json!({"plant": "lyon", "seq": 2}),
                StatusCode::FORBIDDEN,
                "csrf",
            ),
            (
                &carla,
                Some(carla.csrf.as_str()),
                "park",
                json!({"plant": "lyon", "seq": 3}),
                StatusCode::CONFLICT,
                "conflict",
            ),
            (
                &carla,
                Some(carla.csrf.as_str()),
                "retry",
                json!({"plant": "nowhere", "seq": 2}),
                StatusCode::CONFLICT,
                "conflict",
            ),
            (
                &carla,
                Some(carla.csrf.as_str()),
                "park",
                json!({"plant": "lyon"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
            ),
            (
                &carla,
                Some(carla.csrf.as_str()),
                "park",
                json!({"seq": 2}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
            ),
        ];
        for (who, csrf, remedy, body, want, want_code) in refusals {
            let (status, answer) = web
                .post(
                    who,
                    csrf,
                    &format!("/api/v1/fleet/apply/{remedy}"),
                    body.clone(),
                )
                .await;
            assert_eq!(
                (status, code(&answer)),
                (want, want_code),
                "{remedy} {body}: {answer}"
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let a = lyon_apply(&fleet().await);
        assert_eq!(
            (a["stopped_at"].as_i64(), a["applied_seq"].as_i64()),
            (Some(2), Some(1)),
            "{a}"
        );
        assert_eq!(a["parked"], json!([]), "{a}");

        // Parked by carla on the fleet page, in Chromium: the rest goes through; a viewer
        // sees it with no buttons. Then a replay while the picking is missing is refused.
        fleet_page_parks(&hub, "lyon", 2);
        let f = until("lyon applied past the parked 2", fleet, |f| {
            lyon_apply(f)["applied_seq"] == 3
        })
        .await;
        let a = lyon_apply(&f);
        assert!(a["stopped_at"].is_null(), "{a}");
        assert_eq!(
            (
                a["parked"][0]["seq"].as_i64(),
                a["parked"][0]["device"].as_str()
            ),
            (Some(2), Some("scanner-1")),
            "{a}"
        );
        assert_eq!(partners(&central, "HUB-after"), 1);
        let (status, answer) = web
            .post(
                &carla,
                Some(&carla.csrf),
                "/api/v1/fleet/apply/replay",
                json!({"plant": "lyon", "seq": 2}),
            )
            .await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::CONFLICT, "conflict"),
            "{answer}"
        );
        assert!(message(&answer).contains("stays parked"), "{answer}");

        // The picking created in the central Odoo: the replay validates it, once.
        crate::odoo::emulator_receipts(&central, master, &["WH/IN/HUB1".to_string()], 5.0);
        let (status, answer) = web
            .post(
                &carla,
                Some(&carla.csrf),
                "/api/v1/fleet/apply/replay",
                json!({"plant": "lyon", "seq": 2}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert!(message(&answer).contains("no longer parked"), "{answer}");
        assert_eq!(picking_state(&central, "WH/IN/HUB1"), "done");
        assert_eq!(lyon_apply(&fleet().await)["parked"], json!([]));
        let (status, _) = web
            .post(
                &carla,
                Some(&carla.csrf),
                "/api/v1/fleet/apply/replay",
                json!({"plant": "lyon", "seq": 2}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "a replay happens once");

        // The hub without [apply] central says so, and refuses a replay (it has no central Odoo
        // to apply to); retry and park, which only touch the hub's database, work there as
        // `plantd hub apply` does.
        let plain_web = hub_web(&plain);
        let carla_plain = plain_web.login("carla", "central admin 1").await;
        let f = plain_web.get(&carla_plain, "/api/v1/fleet").await;
        assert_eq!(f["central_apply"]["enabled"], false, "{f}");
        assert!(
            f["central_apply"]["note"]
                .as_str()
                .unwrap()
                .contains("[apply] central = true"),
            "{f}"
        );
        let (status, answer) = plain_web
            .post(
                &carla_plain,
                Some(&carla_plain.csrf),
                "/api/v1/fleet/apply/replay",
                json!({"plant": "lyon", "seq": 2}),
            )
            .await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::CONFLICT, "conflict"),
            "{answer}"
        );
        assert!(
            message(&answer).contains("[apply] central = true"),
            "{answer}"
        );
    });

    let audit = hub_audit(&hub);
    for (user, action, outcome, detail) in [
        ("vic", "apply.park", "refused", "viewer"),
        ("carla", "apply.park", "refused", "X-CSRF-Token"),
        ("carla", "apply.park", "refused", "stopped at seq 2, not 3"),
        (
            "carla",
            "apply.retry",
            "refused",
            "no enrolled plant \"nowhere\"",
        ),
        ("carla", "apply.park", "refused", "seq:"),
        ("carla", "apply.park", "ok", "lyon seq 2 is parked"),
        ("vic", "sign_in", "ok", "signed in"),
        ("carla", "apply.replay", "refused", "stays parked"),
        ("carla", "apply.replay", "ok", "no longer parked"),
        ("carla", "apply.replay", "refused", "is not parked"),
    ] {
        assert!(
            audit_has(&audit, user, action, outcome, detail),
            "no ({user}, {action}, {outcome}, {detail}) in {audit:#?}"
        );
    }
}
