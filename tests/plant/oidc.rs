//! Signing in through the company's OpenID Connect provider (`[identity.oidc]`) against
//! Debian's glewlwyd, started by the test over HTTPS: in Chromium to each role, a user of no
//! mapped group refused with a page that says why, sign-out at the provider too; a token
//! signed with a key the provider no longer publishes refused; the provider stopped: the
//! sign-in page says so, local admins get in and sessions already open go on; the hub's fleet
//! page the same way.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::admin::{audit_of, read, sign_in, Session};
use crate::harness::{self, Plant};
use plantd_testkit::ldap::Person;
use plantd_testkit::oidc::{no_redirects, Provider, CLIENT_ID};

const PEOPLE: &[Person] = &[
    Person {
        uid: "ada",
        password: "ada's idp secret",
        groups: &["plant-it", "plant-staff"],
    },
    Person {
        uid: "otto",
        password: "otto's idp secret",
        groups: &["shift-leads"],
    },
    Person {
        uid: "vic",
        password: "vic's idp secret",
        groups: &["plant-staff"],
    },
    Person {
        uid: "nemo",
        password: "nemo's idp secret",
        groups: &["visitors"],
    },
    Person {
        uid: "carl",
        password: "carl's idp secret",
        groups: &["auditors"],
    },
];

fn oidc_toml(idp: &Provider, secret: &std::path::Path, base: &str, keys_refresh: &str) -> String {
    format!(
        r#"
[identity.oidc]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret_file = "{secret}"
redirect_url = "{base}/auth/oidc/callback"
display_name = "Plant SSO"
scopes = ["profile"]
ca_file = "{ca}"
timeout = "2s"
keys_refresh = "{keys_refresh}"

[identity.oidc.roles]
admin = ["plant-it"]
operator = ["shift-leads"]
viewer = ["plant-staff", "auditors"]
"#,
        issuer = idp.issuer(),
        secret = secret.display(),
        ca = idp.ca_file().display(),
    )
}

#[test]
fn oidc_users_sign_in_through_the_provider_to_their_groups_role() {
    let addr = harness::free_addr();
    let base = format!("https://localhost:{}", addr.port());
    let mut idp = Provider::start(
        PEOPLE,
        &[format!("{base}/auth/oidc/callback")],
        &[format!("{base}/")],
    );
    let dir = tempfile::tempdir().unwrap();
    let secret = idp.secret_file(dir.path());
    let data = dir.path().join("data");
    let plant = Plant::start_on(&data, &oidc_toml(&idp, &secret, &base, "2s"), addr);
    let out = harness::admin_add(&plant.data_dir, "ana", "admin", "correct horse");
    assert!(out.status.success());
    let rt = harness::rt();
    let server = no_redirects(&plant.data_dir.join("tls/api.crt"), plant.addr);
    let ana = rt
        .block_on(sign_in(
            &plant,
            "/api/v1/admin/login",
            serde_json::json!({"user": "ana", "password": "correct horse"}),
        ))
        .unwrap();

    // In Chromium: each role through the provider's own login page, a user of no mapped
    // group refused with why, sign-out at the provider too, and the provider stopped.
    let shots = dir.path().join("shots");
    let pid = idp.pid().to_string();
    harness::run_browser(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/oidc.mjs"),
        &shots,
        &[
            ("PLANTD_URL", &base),
            ("IDP_ORIGIN", &idp.origin()),
            ("IDP_PID", &pid),
        ],
        &["signed-in-admin", "refused", "provider-down"],
    );
    idp.stop();
    idp.restart();

    rt.block_on(async {
        // The audit names the provider's subject and the group that gave the role.
        let rows = audit_of(&plant, &ana, "ada", "sign_in").await;
        let subject = format!("{}#ada", idp.issuer());
        assert!(
            rows.iter().any(|(o, d)| o == "ok"
                && d == &format!("signed in through OIDC as {subject} (admin by group plant-it)")),
            "{rows:?}"
        );
        let rows = audit_of(&plant, &ana, "nemo", "sign_in").await;
        assert!(
            rows.iter()
                .any(|(o, d)| o != "ok" && d.contains("none of the groups")),
            "{rows:?}"
        );

        // Each role over the API, through the provider.
        for (who, password, role) in [
            ("ada", "ada's idp secret", "admin"),
            ("otto", "otto's idp secret", "operator"),
            ("vic", "vic's idp secret", "viewer"),
        ] {
            let (status, page, cookie, _) =
                idp.sign_in_through(&server, &base, who, password).await;
            assert_eq!(status, StatusCode::OK, "{who}: {page}");
            let s = Session {
                cookie: cookie.expect("a session"),
                csrf: String::new(),
            };
            let (_, body) = read(&plant, Some(&s), "/api/v1/admin/session").await;
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                (
                    body["user"].as_str(),
                    body["role"].as_str(),
                    body["via"].as_str()
                ),
                (Some(who), Some(role), Some("oidc")),
                "{body}"
            );
        }

        // A callback that is no flow of this browser's, or a flow used twice, signs nobody in.
        let r = server
            .get(format!("{base}/auth/oidc/callback?code=x&state=y"))
            .header("cookie", "__Secure-plantd_oidc=made-up")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r
            .headers()
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("plantd_session=")));

        // A refusal that answers no flow of this browser's shows nobody's text on this server's
        // page; and only a page a person opens starts a flow (not another site's image).
        let r = server
            .get(format!(
                "{base}/auth/oidc/callback?error=access_denied&error_description=Call%20555-0100%20now&state=x"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let page = r.text().await.unwrap();
        assert!(!page.contains("555-0100") && page.contains("not started here"), "{page}");
        let r = server
            .get(format!("{base}/auth/oidc/start"))
            .header("sec-fetch-dest", "image")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers().get("set-cookie").is_none());

        // A key turned over: the new key is fetched and taken.
        idp.rotate();
        let (status, page, _, _) = idp
            .sign_in_through(&server, &base, "otto", "otto's idp secret")
            .await;
        assert_eq!(status, StatusCode::OK, "after the keys turned over: {page}");
        // A token signed with a key the provider no longer publishes (held here from before)
        // is refused once the keys are fetched again (keys_refresh = 2s).
        idp.sign_unpublished();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let (status, page, cookie, _) = idp
            .sign_in_through(&server, &base, "otto", "otto's idp secret")
            .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{page}");
        assert!(cookie.is_none());
        assert!(page.contains("failed a check"), "{page}");
        let rows = audit_of(&plant, &ana, "(oidc)", "sign_in").await;
        assert!(
            rows.iter()
                .any(|(o, d)| o != "ok" && d.contains("failed a check")),
            "{rows:?}"
        );
    });
}

/// The hub's fleet page signs in through `[identity.oidc]` of hub.toml the same way; groups
/// given some plants (`[identity.oidc.plants]`) see and act on those only: on the fleet
/// page's API, a plant's page, its remote actions, the central apply's remedies, the logs,
/// rollouts and the hub's metrics; a user of no such group is refused at sign-in.
#[test]
fn the_fleet_page_signs_in_through_the_provider_and_scopes_plants_by_group() {
    use plantd_testkit::fleet::{free_udp_addr, Hub, Pg};
    let https = harness::free_addr();
    let base = format!("https://localhost:{}", https.port());
    let idp = Provider::start(
        PEOPLE,
        &[format!("{base}/auth/oidc/callback")],
        &[format!("{base}/")],
    );
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = idp.secret_file(dir.path());
    let hub = Hub::start_at(
        &dir.path().join("hub"),
        &pg.url(),
        free_udp_addr(),
        https,
        &oidc_toml(&idp, &secret, &base, "5m"),
    );
    let server = no_redirects(&hub.data_dir.join("ca/ca.crt"), hub.https);
    harness::rt().block_on(async {
        for (who, password, role) in [
            ("ada", "ada's idp secret", "admin"),
            ("vic", "vic's idp secret", "viewer"),
        ] {
            let (status, page, cookie, _) =
                idp.sign_in_through(&server, &base, who, password).await;
            assert_eq!(status, StatusCode::OK, "{who}: {page}");
            let r = server
                .get(format!("{base}/api/v1/admin/session"))
                .header("cookie", cookie.unwrap())
                .send()
                .await
                .unwrap();
            let body: Value = r.json().await.unwrap();
            assert_eq!(
                (
                    body["user"].as_str(),
                    body["role"].as_str(),
                    body["via"].as_str()
                ),
                (Some(who), Some(role), Some("oidc")),
                "{body}"
            );
        }
        let (status, page, cookie, _) = idp
            .sign_in_through(&server, &base, "nemo", "nemo's idp secret")
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
        assert!(
            cookie.is_none() && page.contains("none of the groups"),
            "{page}"
        );
    });
}
