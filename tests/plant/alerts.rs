//! The hub tells the truth about a plant that dies and tells people: a `kill -9`'d plant shows
//! offline in the fleet API, the command line and the fleet page (Chromium) within 30 s, and
//! one production alert reaches a webhook (signed) and a mailbox (a real exim4, STARTTLS and
//! AUTH required), then "resolved" once the plant is back; an info alert outside business
//! hours waits and is never sent at night.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fleet::*;
use crate::harness::*;
use plantd_testkit::mail::MailServer;

fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One request a webhook receiver got.
#[derive(Clone, Debug)]
struct Hook {
    at: Instant,
    signature: String,
    body: Vec<u8>,
}

/// A webhook receiver on loopback: answers 200 to every POST and keeps what it got.
fn webhook_receiver() -> (String, Arc<Mutex<Vec<Hook>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/plantd", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut length, mut signature) = (0usize, String::new());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap_or(("", ""));
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "x-plantd-signature" => signature = value.trim().to_string(),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            keep.lock().unwrap().push(Hook {
                at: Instant::now(),
                signature,
                body,
            });
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, got)
}

/// Whether `hook` is signed with `secret` as the receiver is told to check it.
fn signed(hook: &Hook, secret: &[u8]) -> bool {
    let Some((t, v1)) = hook
        .signature
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(&hook.body);
    let want: String = ring::hmac::sign(&key, &message)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    want == v1
}

fn hooks_of(got: &Arc<Mutex<Vec<Hook>>>, condition: &str, subject: &str) -> Vec<(Hook, Value)> {
    got.lock()
        .unwrap()
        .iter()
        .map(|h| (h.clone(), serde_json::from_slice::<Value>(&h.body).unwrap()))
        .filter(|(_, v)| v["condition"] == condition && v["subject"] == subject)
        .collect()
}

/// GET `url` with a session cookie: the status and the JSON answer (null when none).
fn get_as(client: &reqwest::Client, url: &str, cookie: &str) -> (u16, Value) {
    rt().block_on(async {
        let r = client
            .get(url)
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    })
}

/// Signs in to the fleet page's API; returns the session cookie.
fn sign_in(client: &reqwest::Client, base: &str, user: &str, password: &str) -> String {
    sign_in_csrf(client, base, user, password).0
}

/// Signs in; returns the session cookie and the CSRF token.
fn sign_in_csrf(
    client: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
) -> (String, String) {
    rt().block_on(async {
        let r = client
            .post(format!("{base}/api/v1/admin/login"))
            .json(&json!({"user": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let cookie = r.headers()["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_string();
        let body: Value = r.json().await.unwrap();
        (cookie, body["csrf"].as_str().unwrap().to_string())
    })
}

#[test]
fn a_dead_plant_shows_offline_and_alerts_by_mail_and_webhook_within_30_s_then_resolves() {
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let mail = MailServer::start_requiring_auth();
    let (hook_url, hooks) = webhook_receiver();
    let secret = b"0123456789abcdef-webhook-secret".to_vec();
    std::fs::write(dir.path().join("hook.key"), &secret).unwrap();
    std::fs::write(
        dir.path().join("smtp.pass"),
        format!("{}\n", mail.password()),
    )
    .unwrap();
    // Business hours that are closed all of today and tomorrow (holidays), so that an info
    // alert waits; production alerts go anyway.
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    let tomorrow = today.tomorrow().unwrap();
    let config = format!(
        r#"
[alerts]
repeat = "1h"
[alerts.calendar]
timezone = "UTC"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
hours = "00:00-23:59"
holidays = ["{today}", "{tomorrow}"]
[[alerts.rules]]
when = "offline"
for = "0s"
tier = "production"
[[alerts.rules]]
when = "backup_overdue"
tier = "info"
[[alerts.webhooks]]
url = "{hook_url}"
secret_file = "{key}"
[alerts.email]
server = "localhost"
port = {port}
from = "plantd-hub@hub.example"
to = ["noc@plant.example", "maintenance@plant.example"]
user = "{user}"
password_file = "{pass}"
ca_file = "{ca}"
"#,
        key = dir.path().join("hook.key").display(),
        port = mail.port,
        user = mail.user(),
        pass = dir.path().join("smtp.pass").display(),
        ca = mail.ca_file().display(),
    );
    let hub = Hub::start_with(&dir.path().join("hub"), &pg, free_udp_addr(), &config);
    let client = client_for(&hub.data_dir.join("ca/ca.crt"), hub.https);
    let base = format!("https://localhost:{}", hub.https.port());
    let api = last_line(&hub.cli(&["api-token", "create", "--name", "noc"]));
    let fleet = || {
        let (status, v) = rt().block_on(get_json(&client, &format!("{base}/api/v1/plants"), &api));
        assert_eq!(status, 200);
        v.as_array().unwrap().clone()
    };
    let find =
        |plants: &[Value], name: &str| plants.iter().find(|p| p["plant"] == name).cloned().unwrap();
    assert!(admin_add(&hub.data_dir, "nora", "viewer", "fleet viewer 1")
        .status
        .success());
    let cookie = sign_in(&client, &base, "nora", "fleet viewer 1");
    let page = || -> Value {
        let (status, v) = get_as(&client, &format!("{base}/api/v1/fleet"), &cookie);
        assert_eq!(status, 200);
        v
    };
    // arles alerts on its own too: its data disk is "low" by a rule no disk passes.
    let plant_alerts = format!(
        "[alerts]\n[[alerts.rules]]\nwhen = \"disk_low\"\nbelow = 99.99\ntier = \"production\"\n[[alerts.webhooks]]\nurl = \"{hook_url}\"\nsecret_file = \"{}\"\n",
        dir.path().join("hook.key").display()
    );
    let mut plants = Vec::new();
    for (name, device, config) in [("arles", "a", plant_alerts.as_str()), ("brest", "b", "")] {
        let (pd, data, _token) = data_dir_with_token(device);
        assert!(enroll(&data, &hub, &hub.token(name, "1h")).status.success());
        let plant = Plant::start(&data, config);
        plants.push((pd, data, plant));
    }
    let setup_codes: Vec<String> = plants
        .iter()
        .map(|(_, data, _)| {
            // Written as the admin UI starts, which may be just after the daemon answers.
            let file = data.join("admin-setup-code");
            wait_for(10, "the first-run setup code", || file.exists());
            std::fs::read_to_string(file).unwrap().trim().to_string()
        })
        .collect();
    wait_for(30, "arles's own disk alert at the webhook", || {
        !hooks_of(&hooks, "disk_low", "arles").is_empty()
    });
    let (hook, body) = hooks_of(&hooks, "disk_low", "arles").remove(0);
    assert_eq!(
        (body["source"].as_str(), body["state"].as_str()),
        (Some("arles"), Some("firing"))
    );
    assert!(signed(&hook, &secret));
    assert!(admin_add(&plants[0].1, "pia", "viewer", "plant viewer 1")
        .status
        .success());
    let plant_client = client_for(&plants[0].1.join("tls/api.crt"), plants[0].2.addr);
    let plant_base = format!("https://localhost:{}", plants[0].2.addr.port());
    let plant_cookie = sign_in(&plant_client, &plant_base, "pia", "plant viewer 1");
    let (_, alerts) = get_as(
        &plant_client,
        &format!("{plant_base}/api/v1/admin/alerts"),
        &plant_cookie,
    );
    assert_eq!(alerts["firing"][0]["when"], "disk_low", "{alerts}");
    let events: Vec<&str> = alerts["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["sent", "fired"], "{alerts}");
    wait_for(30, "both plants online", || {
        let f = fleet();
        ["arles", "brest"].iter().all(|n| {
            let p = find(&f, n);
            p["state"] == "online" && p["lag_s"] == 0 && p["behind"] == 0
        })
    });

    // The hub holds no backup of either: an info alert, outside business hours, waits.
    wait_for(30, "the backup alerts waiting for business hours", || {
        let history = page()["alerts"]["history"].as_array().unwrap().clone();
        ["arles", "brest"].iter().all(|p| {
            history.iter().any(|e| {
                e["subject"] == *p && e["condition"] == "backup_overdue" && e["event"] == "waiting"
            })
        })
    });

    // Each plant's warnings reach the hub's logs, searchable by plant, level and text; the
    // first-run setup code, which a plant logs at start, never leaves it.
    let logs = |query: &str| -> Vec<Value> {
        let (status, v) = get_as(
            &client,
            &format!("{base}/api/v1/fleet/logs?{query}"),
            &cookie,
        );
        assert_eq!(status, 200, "{query}");
        v["lines"].as_array().unwrap().clone()
    };
    wait_for(30, "the plants' start warnings in the hub's logs", || {
        ["arles", "brest"].iter().all(|p| {
            logs(&format!("plant={p}&level=warn&q=READABLE+by+other"))
                .iter()
                .any(|l| l["plant"] == *p && l["level"] == "warn")
        })
    });
    let all = logs("limit=1000");
    assert!(all
        .iter()
        .all(|l| ["arles", "brest"].contains(&l["plant"].as_str().unwrap())));
    for code in &setup_codes {
        assert!(
            !all.iter()
                .any(|l| l["message"].as_str().unwrap().contains(code.as_str())),
            "a setup code reached the hub: {all:?}"
        );
    }
    assert!(logs("plant=arles&q=no+such+text+anywhere").is_empty());
    assert!(logs("level=error").iter().all(|l| l["level"] == "error"));
    let out = hub.cli(&["logs", "--plant", "brest", "--json"]);
    assert!(out.status.success());
    let cli: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!cli.is_empty() && cli.iter().all(|l| l["plant"] == "brest"));
    let (status, _) = get_as(
        &client,
        &format!("{base}/api/v1/fleet/logs?limit=0"),
        &cookie,
    );
    assert_eq!(status, 400);

    // Rollouts from the fleet page: planned by anyone, started and steered by admins only,
    // refused with a reason and audited when there is nothing to do.
    assert!(admin_add(&hub.data_dir, "olga", "admin", "fleet admin 11")
        .status
        .success());
    let (olga, csrf) = sign_in_csrf(&client, &base, "olga", "fleet admin 11");
    let call = |method: &str, path: &str, cookie: &str, csrf: Option<&str>, body: Option<Value>| {
        rt().block_on(async {
            let mut r = client
                .request(method.parse().unwrap(), format!("{base}{path}"))
                .header("cookie", cookie);
            if let Some(c) = csrf {
                r = r.header("x-csrf-token", c);
            }
            if let Some(b) = body {
                r = r.json(&b);
            }
            let r = r.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        })
    };
    let (status, plan) = call(
        "GET",
        "/api/v1/fleet/rollouts/plan?waves=1,100%25",
        &cookie,
        None,
        None,
    );
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["plan"].as_array().unwrap().len(), 2, "{plan}");
    assert_eq!(
        call(
            "GET",
            "/api/v1/fleet/rollouts/plan?waves=1,2,100%25",
            &cookie,
            None,
            None
        )
        .0,
        400
    );
    let start = json!({"version": "9.9.9", "waves": "1,100%"});
    let (status, _) = call(
        "POST",
        "/api/v1/fleet/rollouts",
        &cookie,
        Some("x"),
        Some(start.clone()),
    );
    assert_eq!(status, 403, "a viewer cannot start one");
    let (status, said) = call(
        "POST",
        "/api/v1/fleet/rollouts",
        &olga,
        Some(&csrf),
        Some(start),
    );
    assert_eq!(status, 409, "{said}");
    assert!(
        said["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no release \"9.9.9\""),
        "{said}"
    );
    let (status, said) = call(
        "POST",
        "/api/v1/fleet/rollouts/pause",
        &olga,
        Some(&csrf),
        Some(json!({})),
    );
    assert_eq!(
        (status, said["error"]["field"].as_str()),
        (422, Some("id")),
        "{said}"
    );
    let (status, said) = call(
        "POST",
        "/api/v1/fleet/rollouts/pause",
        &olga,
        Some(&csrf),
        Some(json!({"id": 1})),
    );
    assert_eq!(status, 409, "{said}");
    assert!(
        said["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not the live one"),
        "{said}"
    );
    let (status, said) = call(
        "POST",
        "/api/v1/fleet/rollouts",
        &olga,
        Some(&csrf),
        Some(json!({"version": "1.0.0", "waves": "5%,1,100%"})),
    );
    assert_eq!(
        (status, said["error"]["field"].as_str()),
        (422, Some("waves")),
        "{said}"
    );

    // kill -9 brest: no goodbye, no last telemetry.
    plants[1].2.kill9();
    let killed = Instant::now();
    wait_for(45, "brest offline", || {
        find(&fleet(), "brest")["state"] == "offline"
    });
    let offline_after = killed.elapsed();
    assert!(
        offline_after <= Duration::from_secs(30),
        "offline after {offline_after:?}: the hub says so within 30 s"
    );
    let f = fleet();
    assert_eq!(f[0]["plant"], "brest", "problem plants first: {f:?}");
    assert!(
        f[0]["since"].is_string() && f[0]["reason"].as_str().unwrap().contains("not heard from")
    );
    assert_eq!(find(&f, "arles")["state"], "online");
    let out = hub.cli(&["plants", "--json"]);
    assert!(out.status.success());
    let cli: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (cli[0]["plant"].as_str(), cli[0]["state"].as_str()),
        (Some("brest"), Some("offline"))
    );

    // One production alert, on each route, signed.
    wait_for(30, "the offline alert at the webhook", || {
        !hooks_of(&hooks, "offline", "brest").is_empty()
    });
    let fired = hooks_of(&hooks, "offline", "brest");
    let (hook, body) = &fired[0];
    let hook_after = hook.at.duration_since(killed);
    assert_eq!(body["state"], "firing");
    assert_eq!(body["tier"], "production");
    assert_eq!(body["source"], "hub");
    assert!(
        signed(hook, &secret),
        "the signature checks: {}",
        hook.signature
    );
    let forged = Hook {
        body: hook
            .body
            .iter()
            .map(|b| if *b == b'b' { b'B' } else { *b })
            .collect(),
        ..hook.clone()
    };
    assert!(!signed(&forged, &secret), "a changed body fails the check");
    let mails = mail.wait_for(1, Duration::from_secs(30));
    let mail_after = killed.elapsed();
    let first = &mails[0];
    assert!(
        first.subject.contains("production")
            && first.subject.contains("brest")
            && first.subject.contains("offline"),
        "{}",
        first.subject
    );
    assert_eq!(first.to.len(), 2, "both recipients: {:?}", first.to);
    assert_eq!(first.authenticated_as.as_deref(), Some(mail.user()));
    eprintln!(
        "FIGURE a killed plant: offline in the API after {:.1} s, the webhook after {:.1} s, the e-mail by {:.1} s",
        offline_after.as_secs_f64(),
        hook_after.as_secs_f64(),
        mail_after.as_secs_f64()
    );

    // The fleet page in Chromium shows it offline with the alert.
    fleet_page_shows_offline(&hub, "brest");

    // The hub's /metrics says the same, to a fleet API token; to nobody else.
    let metrics = |token: Option<&str>| -> (u16, String) {
        rt().block_on(async {
            let mut r = client.get(format!("{base}/metrics"));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    assert_eq!(metrics(None).0, 401);
    assert_eq!(metrics(Some("pda_not-a-token")).0, 401);
    let (status, text) = metrics(Some(&api));
    assert_eq!(status, 200, "{text}");
    for line in [
        "plantd_hub_plants{state=\"offline\"} 1",
        "plantd_hub_plants{state=\"online\"} 1",
        "plantd_hub_plant_up{plant=\"brest\",state=\"offline\"} 0",
        "plantd_hub_plant_up{plant=\"arles\",state=\"online\"} 1",
        "plantd_hub_alerts_firing{tier=\"production\"} 1",
        "plantd_hub_alert_sends{outcome=\"sent\"} 2",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    assert!(
        text.contains("plantd_hub_sessions ")
            && text.contains("plantd_hub_db_connections{state=\"max\"}")
    );

    // Changes from the command line are in the hub's audit log, done or failed, with who.
    assert!(!hub.cli(&["plant", "revoke", "nowhere"]).status.success());
    let out = hub.cli(&["audit", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let entry = |action: &str, target: &str| {
        log.iter()
            .find(|e| e["action"] == action && e["target"] == target)
            .cloned()
            .unwrap_or_else(|| panic!("no {action} of {target} in {log:?}"))
    };
    let revoke = entry("plant.revoke", "nowhere");
    assert_eq!(revoke["outcome"], "failed");
    assert!(revoke["who"].as_str().unwrap().starts_with("cli (uid "));
    assert_eq!(entry("token.create", "brest")["outcome"], "ok");
    let start = entry("rollout.start", "9.9.9");
    assert_eq!(
        (start["who"].as_str(), start["outcome"].as_str()),
        (Some("olga"), Some("refused"))
    );
    assert_eq!(entry("api_token.create", "noc")["outcome"], "ok");

    // Nothing about the waiting info alerts was sent; the offline alert was sent once.
    std::thread::sleep(Duration::from_secs(3));
    assert!(hooks_of(&hooks, "backup_overdue", "arles").is_empty());
    assert!(hooks_of(&hooks, "backup_overdue", "brest").is_empty());
    assert_eq!(hooks_of(&hooks, "offline", "brest").len(), 1, "once");
    assert_eq!(mail.messages().len(), 1);
    let firing = page()["alerts"]["firing"].as_array().unwrap().clone();
    let offline = firing
        .iter()
        .find(|a| a["when"] == "offline" && a["subject"] == "brest")
        .expect("the offline alert is listed as firing");
    assert_eq!(offline["routes"].as_object().unwrap().len(), 2);
    assert!(firing
        .iter()
        .any(|a| a["when"] == "backup_overdue" && a["waiting"] == true));

    // Back: "resolved" on both routes.
    let data = plants[1].1.clone();
    plants[1].2 = Plant::start(&data, "");
    wait_for(60, "the resolved webhook", || {
        hooks_of(&hooks, "offline", "brest")
            .iter()
            .any(|(_, v)| v["state"] == "resolved")
    });
    let mails = mail.wait_for(2, Duration::from_secs(30));
    assert!(
        mails[1].subject.contains("resolved"),
        "{}",
        mails[1].subject
    );
    // Brest's link history at the hub: connected, cut (kill -9), connected again.
    wait_for(30, "brest's link history", || {
        let (_, d) = get_as(
            &client,
            &format!("{base}/api/v1/fleet/plants/brest"),
            &cookie,
        );
        let events: Vec<&str> = d["links"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .map(|l| l["event"].as_str().unwrap())
            .collect();
        events == ["connected", "disconnected", "connected"]
    });
    let history = page()["alerts"]["history"].as_array().unwrap().clone();
    let events: Vec<&str> = history
        .iter()
        .rev()
        .filter(|e| e["subject"] == "brest" && e["condition"] == "offline")
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["fired", "sent", "sent", "resolved", "sent", "sent"],
        "{history:?}"
    );
}

/// `tests/browser/fleet_alerts.mjs`: a viewer sees `plant` offline and its alert.
fn fleet_page_shows_offline(hub: &Hub, plant: &str) {
    run_browser(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/fleet_alerts.mjs"),
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleet-alerts"),
        &[
            (
                "HUB_URL",
                &format!("https://localhost:{}", hub.https.port()),
            ),
            ("PLANT", plant),
            ("VIEWER_USER", "nora"),
            ("VIEWER_PASSWORD", "fleet viewer 1"),
        ],
        &["fleet-offline"],
    );
}
