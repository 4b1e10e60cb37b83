//! Signing in through the company's directory (`[identity.ldap]`) against Debian's OpenLDAP
//! slapd, started by the test: StartTLS with the directory's CA, each mapped group's role,
//! a user of no mapped group refused with why, a wrong password refused and audited, and the
//! directory down: local users still get in, the sign-in page says why company accounts
//! cannot, and sessions already open go on.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::admin::{act, audit_of, code, read, refused, sign_in};
use crate::harness::{self, Plant};
use plantd_testkit::ldap::{Directory, Person};

fn directory_toml(d: &Directory) -> String {
    format!(
        r#"
[identity.ldap]
url = "{url}"
ca_file = "{ca}"
user_dn = "uid={{user}},ou=people,dc=plant,dc=test"
group_base = "ou=groups,dc=plant,dc=test"
timeout = "2s"

[identity.ldap.roles]
admin = ["{it}"]
operator = ["{leads}"]
viewer = ["{staff}"]
"#,
        url = d.url(),
        ca = d.ca_file().display(),
        it = Directory::group_dn("plant-it"),
        // As people write DNs by hand: case and spaces do not matter.
        leads = Directory::group_dn("Shift-Leads").replace(",", ", "),
        staff = Directory::group_dn("plant-staff"),
    )
}

fn login(user: &str, password: &str) -> Value {
    json!({"user": user, "password": password})
}

#[test]
fn ldap_users_sign_in_to_their_groups_role_and_local_admins_stay_the_way_in() {
    let mut ldap = Directory::start(&[
        Person {
            uid: "ada",
            password: "ada's secret 1",
            groups: &["plant-it", "plant-staff"],
        },
        Person {
            uid: "olga",
            password: "olga's secret 1",
            groups: &["shift-leads"],
        },
        Person {
            uid: "vik",
            password: "vik's secret 1",
            groups: &["plant-staff"],
        },
        Person {
            uid: "carl",
            password: "carl's secret 1",
            groups: &["cafeteria"],
        },
    ]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut plant = Plant::start(&data, &directory_toml(&ldap));
    // The break-glass admin, local to this plant.
    let out = harness::admin_add(&plant.data_dir, "ana", "admin", "correct horse");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rt = harness::rt();
    rt.block_on(async {
        // Each group's role; the highest of a user's groups wins.
        let ada = sign_in(
            &plant,
            "/api/v1/admin/login",
            login("ada", "ada's secret 1"),
        )
        .await
        .unwrap();
        let olga = sign_in(
            &plant,
            "/api/v1/admin/login",
            login("olga", "olga's secret 1"),
        )
        .await
        .unwrap();
        let vik = sign_in(
            &plant,
            "/api/v1/admin/login",
            login("vik", "vik's secret 1"),
        )
        .await
        .unwrap();
        for (who, s, role) in [
            ("ada", &ada, "admin"),
            ("olga", &olga, "operator"),
            ("vik", &vik, "viewer"),
        ] {
            let (status, body) = read(&plant, Some(s), "/api/v1/admin/session").await;
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                (
                    body["user"].as_str(),
                    body["role"].as_str(),
                    body["via"].as_str()
                ),
                (Some(who), Some(role), Some("ldap")),
                "{body}"
            );
        }

        // What each role may do. Islanding is an operator's (this plant is not enrolled, so
        // it is refused after the role check, with 409); a backup and a new user are an admin's.
        let island = json!({"reason": "planned WAN work"});
        let (status, body) = act(
            &plant,
            Some(&vik),
            Some(&vik.csrf),
            "/api/v1/admin/island",
            island.clone(),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{body}"
        );
        let (status, body) = act(
            &plant,
            Some(&olga),
            Some(&olga.csrf),
            "/api/v1/admin/island",
            island.clone(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "an operator may island: {body}"
        );
        let (status, body) = act(
            &plant,
            Some(&olga),
            Some(&olga.csrf),
            "/api/v1/admin/backups/run",
            json!({}),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("operator"),
            "{body}"
        );
        let new_user = json!({"user": "ola", "role": "viewer", "password": "ola password 1"});
        let (status, body) = act(
            &plant,
            Some(&olga),
            Some(&olga.csrf),
            "/api/v1/admin/users",
            new_user.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, body) = act(
            &plant,
            Some(&ada),
            Some(&ada.csrf),
            "/api/v1/admin/users",
            new_user,
        )
        .await;
        assert!(
            status.is_success(),
            "an LDAP admin adds a user: {status} {body}"
        );

        // Right password, no mapped group: refused, with why.
        let (status, body) = refused(
            &plant,
            "/api/v1/admin/login",
            login("carl", "carl's secret 1"),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{body}"
        );
        let why = body["error"]["message"].as_str().unwrap();
        assert!(why.contains("none of the groups"), "{why}");

        // A wrong password, an empty one, and one for nobody: refused alike.
        for (user, password) in [
            ("ada", "not her password"),
            ("ada", ""),
            ("nobody", "whatever 123"),
        ] {
            let (status, body) =
                refused(&plant, "/api/v1/admin/login", login(user, password)).await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::UNAUTHORIZED, "bad_credentials"),
                "{user}: {body}"
            );
        }

        // Audited with the directory's subject; the refusals too.
        let ana = sign_in(&plant, "/api/v1/admin/login", login("ana", "correct horse"))
            .await
            .unwrap();
        let ada_in = audit_of(&plant, &ana, "ada", "sign_in").await;
        assert!(
            ada_in.iter().any(|(o, d)| o == "ok"
                && d.contains("through LDAP as uid=ada,ou=people,dc=plant,dc=test")
                && d.contains("admin")),
            "{ada_in:?}"
        );
        assert!(
            ada_in
                .iter()
                .any(|(o, d)| o == "refused" && d.contains("wrong user name or password")),
            "{ada_in:?}"
        );
        let carl_in = audit_of(&plant, &ana, "carl", "sign_in").await;
        assert!(
            carl_in
                .iter()
                .any(|(o, d)| o == "refused" && d.contains("none of the groups")),
            "{carl_in:?}"
        );

        // The directory goes down.
        ldap.stop();
        let (status, body) = refused(
            &plant,
            "/api/v1/admin/login",
            login("vik", "vik's secret 1"),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("local users can still sign in"),
            "{body}"
        );
        // The sign-in page, unauthenticated, says so.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, body) = read(&plant, None, "/api/v1/admin/session").await;
            let body: Value = serde_json::from_str(&body).unwrap();
            if body["directory"]["reachable"] == false {
                assert_eq!(body["directory"]["url"], ldap.url(), "{body}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the sign-in page never said the directory is down: {body}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // The local admin still gets in; an LDAP session already open goes on.
        sign_in(&plant, "/api/v1/admin/login", login("ana", "correct horse"))
            .await
            .unwrap();
        let (status, _) = read(&plant, Some(&olga), "/api/v1/admin/overview").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "olga's session goes on while the directory is down"
        );
        // Attempts while it was down were not counted against anyone: five more now would
        // lock; after the outage, the right password works at once.
        for _ in 0..5 {
            let (status, _) = refused(
                &plant,
                "/api/v1/admin/login",
                login("vik", "vik's secret 1"),
            )
            .await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        }
        ldap.restart();
        // For a few seconds after an attempt found it down, plantd says so without trying
        // (a directory that drops packets would hold every sign-in for its timeout).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match sign_in(
                &plant,
                "/api/v1/admin/login",
                login("vik", "vik's secret 1"),
            )
            .await
            {
                Ok(_) => break,
                Err((status, body)) => {
                    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
                    assert!(
                        Instant::now() < deadline,
                        "the directory is back, vik is not: {body}"
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        // A name is one name whatever its case and spaces, to the directory and to the lockout.
        let (status, body) = refused(&plant, "/api/v1/admin/login", login(" VIK ", "wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let vik_in = audit_of(&plant, &ana, "vik", "sign_in").await;
        assert!(vik_in.iter().any(|(o, _)| o == "refused"), "{vik_in:?}");
    });
    plant.stop();

    // A plant that trusts another CA does not send the password to this directory: its
    // certificate is refused during StartTLS.
    let other_ca = Directory::start(&[]);
    let strict = dir.path().join("strict");
    let config = directory_toml(&ldap).replace(
        &ldap.ca_file().display().to_string(),
        &other_ca.ca_file().display().to_string(),
    );
    let mut plant = Plant::start(&strict, &config);
    rt.block_on(async {
        let (status, body) = refused(
            &plant,
            "/api/v1/admin/login",
            login("ada", "ada's secret 1"),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            "{body}"
        );
        let why = body["error"]["message"].as_str().unwrap().to_lowercase();
        assert!(why.contains("certificate"), "{why}");
    });
    plant.stop();
}

/// The hub's fleet page signs in through `[identity.ldap]` of hub.toml the same way, with the
/// same roles: an operator may apply a remedy to a plant's central apply, not steer a rollout.
#[test]
fn the_fleet_page_signs_in_through_the_directory_with_the_same_roles() {
    use plantd_testkit::fleet::{free_udp_addr, Hub, Pg};
    let ldap = Directory::start(&[
        Person {
            uid: "olga",
            password: "olga's secret 1",
            groups: &["shift-leads"],
        },
        Person {
            uid: "vik",
            password: "vik's secret 1",
            groups: &["plant-staff"],
        },
    ]);
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_with(
        &dir.path().join("hub"),
        &pg,
        free_udp_addr(),
        &directory_toml(&ldap),
    );
    let client = harness::client_for(&hub.data_dir.join("ca/ca.crt"), hub.https);
    let base = format!("https://localhost:{}", hub.https.port());
    harness::rt().block_on(async {
        let sign_in = |user: &'static str, password: &'static str| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let r = client
                    .post(format!("{base}/api/v1/admin/login"))
                    .json(&login(user, password))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    r.status(),
                    StatusCode::OK,
                    "{user} signs in to the fleet page"
                );
                let cookie = r.headers()["set-cookie"]
                    .to_str()
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap()
                    .to_string();
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["via"], "ldap", "{body}");
                (
                    cookie,
                    body["csrf"].as_str().unwrap().to_string(),
                    body["role"].as_str().unwrap().to_string(),
                )
            }
        };
        let post = |who: &(String, String, String), path: &str, body: Value| {
            let req = client
                .post(format!("{base}{path}"))
                .header("cookie", &who.0)
                .header("x-csrf-token", &who.1)
                .json(&body);
            async move {
                let r = req.send().await.unwrap();
                (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        let olga = sign_in("olga", "olga's secret 1").await;
        let vik = sign_in("vik", "vik's secret 1").await;
        assert_eq!((olga.2.as_str(), vik.2.as_str()), ("operator", "viewer"));
        let remedy = json!({"plant": "lyon", "seq": 1});
        // No central apply on this hub: the operator passes the role check and is told so.
        let (status, body) = post(&olga, "/api/v1/fleet/apply/retry", remedy.clone()).await;
        assert_ne!(status, StatusCode::FORBIDDEN, "an operator retries: {body}");
        let (status, body) = post(&vik, "/api/v1/fleet/apply/retry", remedy).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{body}"
        );
        let (status, body) = post(&olga, "/api/v1/fleet/rollouts/abort", json!({"id": 1})).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{body}"
        );
    });
}

/// The current (or, with `ahead`, the next) code of a base32 TOTP secret, as an app shows it.
fn totp_code(secret: &str, ahead: u64) -> String {
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    let totp = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .build()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    totp.generate(now + ahead * 30).to_string()
}

/// Local users' second factor: required for admins when configured, set up with a code the
/// app makes, checked at sign-in (a wrong or used code refused), a recovery code working
/// once, and an admin (or the shell) taking it away for a lost phone.
#[test]
fn totp_is_required_for_admins_checked_once_and_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut plant = Plant::start(&data, "[identity]\nrequire_totp_for_admins = true\n");
    for (user, role) in [("ana", "admin"), ("bob", "admin"), ("vik", "viewer")] {
        let out = harness::admin_add(&plant.data_dir, user, role, "correct horse");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rt = harness::rt();
    rt.block_on(async {
        let island = json!({"reason": "planned WAN work"});
        let session = |s: &crate::admin::Session| {
            let cookie = s.cookie.clone();
            let plant = &plant;
            async move {
                let r = plant
                    .client()
                    .get(plant.url("/api/v1/admin/session"))
                    .header("cookie", cookie)
                    .send()
                    .await
                    .unwrap();
                r.json::<Value>().await.unwrap()
            }
        };
        // An admin without a second factor gets in, and may only set one up.
        let ana = sign_in(&plant, "/api/v1/admin/login", login("ana", "correct horse"))
            .await
            .unwrap();
        let s = session(&ana).await;
        assert_eq!(s["must_enrol"], true, "{s}");
        let (status, body) = act(
            &plant,
            Some(&ana),
            Some(&ana.csrf),
            "/api/v1/admin/island",
            island.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("second factor"),
            "{body}"
        );
        // A viewer is not asked.
        let vik = sign_in(&plant, "/api/v1/admin/login", login("vik", "correct horse"))
            .await
            .unwrap();
        assert_eq!(session(&vik).await["must_enrol"], false);

        // A second session of hers, with the password alone.
        let other = sign_in(&plant, "/api/v1/admin/login", login("ana", "correct horse"))
            .await
            .unwrap();
        // Reads that take the whole database away wait for the factor too.
        let (status, _) = read(&plant, Some(&other), "/api/v1/admin/audit/export").await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "an admin without the required factor exports the audit log"
        );
        let (status, enrolment) = act(
            &plant,
            Some(&ana),
            Some(&ana.csrf),
            "/api/v1/admin/totp/enrol",
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{enrolment}");
        let secret = enrolment["secret"].as_str().unwrap().to_string();
        assert!(
            enrolment["uri"]
                .as_str()
                .unwrap()
                .starts_with("otpauth://totp/"),
            "{enrolment}"
        );
        assert!(enrolment["qr"]
            .as_str()
            .unwrap()
            .starts_with("data:image/svg+xml;base64,"));
        let wrong = if totp_code(&secret, 0) == "123456" {
            "654321"
        } else {
            "123456"
        };
        let (status, body) = act(
            &plant,
            Some(&ana),
            Some(&ana.csrf),
            "/api/v1/admin/totp/confirm",
            json!({"code": wrong}),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "bad_totp"),
            "{body}"
        );
        let (status, body) = act(
            &plant,
            Some(&ana),
            Some(&ana.csrf),
            "/api/v1/admin/totp/confirm",
            json!({"code": totp_code(&secret, 0)}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let recovery: Vec<String> = serde_json::from_value(body["recovery_codes"].clone()).unwrap();
        assert_eq!(recovery.len(), 10);
        // Her other session gave no code: it ended.
        let (status, _) = read(&plant, Some(&other), "/api/v1/admin/overview").await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "the session without a code goes on"
        );
        // A second enrolment over a factor that is set up is refused: a new phone goes
        // through an admin's reset.
        let (status, body) = act(
            &plant,
            Some(&ana),
            Some(&ana.csrf),
            "/api/v1/admin/totp/enrol",
            json!({}),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::CONFLICT, "conflict"),
            "{body}"
        );
        // Set up: her session may act now (409: this plant is not enrolled with a hub).
        let (status, body) = act(
            &plant,
            Some(&ana),
            Some(&ana.csrf),
            "/api/v1/admin/island",
            island.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");

        // Signing in now takes the code: none, a wrong one, the one used already, then the next.
        let ask = |code: Option<String>| {
            let mut b = login("ana", "correct horse");
            if let Some(c) = code {
                b["code"] = json!(c);
            }
            b
        };
        let (status, body) = refused(&plant, "/api/v1/admin/login", ask(None)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "totp_required"),
            "{body}"
        );
        let (status, body) = refused(&plant, "/api/v1/admin/login", ask(Some(wrong.into()))).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "bad_totp"),
            "{body}"
        );
        let (status, body) = refused(
            &plant,
            "/api/v1/admin/login",
            ask(Some(totp_code(&secret, 0))),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "bad_totp"),
            "a code works once: {body}"
        );
        let wrong_password =
            json!({"user": "ana", "password": "not it", "code": totp_code(&secret, 1)});
        let (status, _) = refused(&plant, "/api/v1/admin/login", wrong_password).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "the code does not stand in for the password"
        );
        let ana = sign_in(
            &plant,
            "/api/v1/admin/login",
            ask(Some(totp_code(&secret, 1))),
        )
        .await
        .unwrap();
        assert_eq!(session(&ana).await["totp"], true);
        // A recovery code works once, whatever its case.
        sign_in(
            &plant,
            "/api/v1/admin/login",
            ask(Some(recovery[0].to_lowercase())),
        )
        .await
        .unwrap();
        let (status, body) = refused(
            &plant,
            "/api/v1/admin/login",
            ask(Some(recovery[0].clone())),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "bad_totp"),
            "{body}"
        );
        let ana_in = audit_of(&plant, &ana, "ana", "sign_in").await;
        assert!(
            ana_in
                .iter()
                .any(|(o, d)| o == "ok" && d.contains("recovery code (9 left)")),
            "{ana_in:?}"
        );
        assert!(
            ana_in
                .iter()
                .any(|(o, d)| o == "refused" && d.contains("wrong code")),
            "{ana_in:?}"
        );

        // A lost phone: another admin takes the factor away; ana's sessions end.
        let bob = sign_in(&plant, "/api/v1/admin/login", login("bob", "correct horse"))
            .await
            .unwrap();
        let (status, body) = act(
            &plant,
            Some(&bob),
            Some(&bob.csrf),
            "/api/v1/admin/users/ana/totp-reset",
            json!({}),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "bob must set up his own first: {body}"
        );
        let (_, e) = act(
            &plant,
            Some(&bob),
            Some(&bob.csrf),
            "/api/v1/admin/totp/enrol",
            json!({}),
        )
        .await;
        let bob_secret = e["secret"].as_str().unwrap().to_string();
        let (status, _) = act(
            &plant,
            Some(&bob),
            Some(&bob.csrf),
            "/api/v1/admin/totp/confirm",
            json!({"code": totp_code(&bob_secret, 0)}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = act(
            &plant,
            Some(&bob),
            Some(&bob.csrf),
            "/api/v1/admin/users/ana/totp-reset",
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _) = read(&plant, Some(&ana), "/api/v1/admin/overview").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "ana's session ended");
        let ana = sign_in(&plant, "/api/v1/admin/login", login("ana", "correct horse"))
            .await
            .unwrap();
        assert_eq!(session(&ana).await["must_enrol"], true);
        let (status, users) = read(&plant, Some(&bob), "/api/v1/admin/users").await;
        assert_eq!(status, StatusCode::OK);
        let users: Value = serde_json::from_str(&users).unwrap();
        let totp_of = |name: &str| {
            users["users"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["name"] == name)
                .unwrap()["totp"]
                .clone()
        };
        assert_eq!(
            (totp_of("ana"), totp_of("bob")),
            (json!(false), json!(true))
        );
    });
    // And from the shell, beside the running daemon, for the last admin's lost phone.
    let out = harness::plantd(&[
        "admin",
        "totp-reset",
        "bob",
        "--data-dir",
        plant.data_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rt.block_on(async {
        let bob = sign_in(&plant, "/api/v1/admin/login", login("bob", "correct horse")).await;
        assert!(
            bob.is_ok(),
            "bob signs in with his password alone after the reset"
        );
    });
    plant.stop();
}
