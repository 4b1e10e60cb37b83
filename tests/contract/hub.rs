//! The hub's API (`GET /api/v1/openapi.json` on its HTTPS listener) against a live hub, and
//! the refusals the document promises that the hub did not give before it had one.

use serde_json::{json, Value};

use crate::fleet::{enroll, free_udp_addr, Hub, Pg};
use crate::harness::{admin_add, client_for, last_line, rt};
use crate::{routes, schemathesis};

/// The admin the Schemathesis hooks sign in as: not the documents' example user (`ana`), whose
/// wrong example password the examples phase sends again and again, and which would lock the
/// name for this address (as it should) in a longer run.
const ADMIN: &str = "contract-admin";
const PASSWORD: &str = "contract-test-password-1";

/// Where the hub's routers are declared, and the constants they name paths with.
pub const ROUTERS: [&str; 2] = ["src/hub/enroll.rs", "src/hub/fleet.rs"];
const PATHS: [(&str, &str); 2] = [
    ("protocol::CA_PATH", "/api/v1/enroll/ca"),
    ("protocol::ENROLL_PATH", "/api/v1/enroll"),
];

/// A live hub with an API token, an admin (ana) and one enrolled plant (lyon), so that the
/// fleet's lists are not empty and the document's links have something to follow.
struct Live {
    hub: Hub,
    api: String,
    _pg: Pg,
    _dir: tempfile::TempDir,
}

impl Live {
    fn start() -> Live {
        let pg = Pg::start();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("hub");
        std::fs::create_dir_all(&data).unwrap();
        // Before the hub starts, so that it has no setup code pending.
        let out = admin_add(&data, ADMIN, "admin", PASSWORD);
        assert!(out.status.success(), "{out:?}");
        let hub = Hub::start(&data, &pg, free_udp_addr(), None);
        let api = last_line(&hub.cli(&["api-token", "create", "--name", "contract"]));
        let plant = dir.path().join("plant");
        std::fs::create_dir_all(&plant).unwrap();
        let out = enroll(&plant, &hub, &hub.token("lyon", "1h"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Live {
            hub,
            api,
            _pg: pg,
            _dir: dir,
        }
    }

    /// The hub's CA: its TLS certificate is issued by it for `localhost`.
    fn ca(&self) -> std::path::PathBuf {
        self.hub.data_dir.join("ca/ca.crt")
    }

    fn client(&self) -> reqwest::Client {
        client_for(&self.ca(), self.hub.https)
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.hub.https.port())
    }

    /// Signs ana in: (the `Cookie` header, the CSRF token).
    async fn sign_in(&self) -> (String, String) {
        let r = self
            .client()
            .post(self.url("/api/v1/admin/login"))
            .json(&json!({"user": ADMIN, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let cookie = r.headers()["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_string();
        let csrf = r.json::<Value>().await.unwrap()["csrf"]
            .as_str()
            .unwrap()
            .to_string();
        (cookie, csrf)
    }
}

/// (status, headers, body as JSON) of an answer that must be in the error shape.
async fn refusal(r: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    assert_eq!(
        headers.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/json"),
        "{status}"
    );
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    (status, headers, body)
}

#[test]
fn the_document_is_valid_openapi_3_1_and_lists_exactly_the_routes() {
    let live = Live::start();
    rt().block_on(async {
        let doc: Value = live
            .client()
            .get(live.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        if let Err(e) = schemathesis::validate(&doc) {
            panic!("the hub's document is not valid OpenAPI:\n{e}");
        }
        routes::same_paths(&doc, &routes::declared(&ROUTERS, &PATHS));
        routes::probe(&live.client(), &live.url(""), &doc, str::to_string).await;
        routes::changes_refused_before_the_body(
            live.hub.https,
            &live.ca(),
            &doc,
            str::to_string,
            &[
                "/api/v1/admin/login",
                "/api/v1/admin/setup",
                "/api/v1/enroll",
            ],
        )
        .await;
    });
}

#[test]
fn schemathesis_finds_every_answer_of_a_live_hub_as_documented() {
    let live = Live::start();
    let ca = live.ca();
    let (passed, output) = schemathesis::run(&schemathesis::Target {
        name: "hub",
        base: live.url(""),
        ca: &ca,
        bearer: &live.api,
        user: ADMIN,
        password: PASSWORD,
        max_examples: 30,
    });
    assert!(
        passed,
        "Schemathesis found answers that are not as documented:\n{output}"
    );
    rt().block_on(async {
        let r = live
            .client()
            .get(live.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the hub is still up");
    });
    schemathesis::log_rss("hub", live.hub.pid());
}

/// An enrollment is refused in the order and with the statuses the document gives: not JSON
/// 415, a field more, a token of the wrong form or a csr over 4096 characters 422 naming the
/// field, a body over 64 KiB 413, and a well-formed token
/// the hub does not know 403 whatever the csr (it was 422 `bad_csr` first, so that no
/// well-formed request could get the documented refusal of an unknown token).
#[test]
fn enrollment_refusals_are_as_documented() {
    let live = Live::start();
    let token = format!("pdh1.{}.{}", "A".repeat(43), "0".repeat(64));
    rt().block_on(async {
        let post = |body: String, json: bool| {
            let mut r = live.client().post(live.url("/api/v1/enroll")).body(body);
            if json {
                r = r.header("content-type", "application/json");
            }
            async move { refusal(r.send().await.unwrap()).await }
        };
        let (status, _, body) = post(json!({"token": token, "csr": "x"}).to_string(), false).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (415, Some("unsupported_media_type")),
            "{body}"
        );
        let (status, _, body) = post("{\"token\":".into(), true).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("malformed_json")),
            "{body}"
        );
        let extra = json!({"token": token, "csr": "x", "plant": "lyon"}).to_string();
        let (status, _, body) = post(extra, true).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (422, Some("invalid")),
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("unknown field"),
            "{body}"
        );
        for bad in [
            "pdh1.x.y".to_string(),
            format!(" {token}"),
            format!("pdh1.{}.{}", "*".repeat(43), "0".repeat(64)),
        ] {
            let (status, _, body) = post(json!({"token": bad, "csr": "x"}).to_string(), true).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (422, Some("bad_token")),
                "{bad:?}: {body}"
            );
            assert_eq!(body["error"]["field"], "token", "{body}");
        }
        let long = json!({"token": token, "csr": "x".repeat(4097)}).to_string();
        let (status, _, body) = post(long, true).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some("csr")),
            "{body}"
        );
        let over = json!({"token": token, "csr": "x".repeat(70_000)}).to_string();
        let (status, _, body) = post(over, true).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (413, Some("body_too_large")),
            "{body}"
        );
        let (status, _, body) = post(json!({"token": token, "csr": "x"}).to_string(), true).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("enrollment_refused")),
            "{body}"
        );
        // A token the hub issued, with a csr it cannot read: 422 naming the csr, and the
        // token is not used up.
        let issued = live.hub.token("nantes", "1h");
        let (status, _, body) = post(json!({"token": issued, "csr": "x"}).to_string(), true).await;
        assert_eq!(
            (
                status,
                body["error"]["code"].as_str(),
                body["error"]["field"].as_str()
            ),
            (422, Some("bad_csr"), Some("csr")),
            "{body}"
        );
        let plant = live._dir.path().join("nantes");
        std::fs::create_dir_all(&plant).unwrap();
        let out = enroll(&plant, &live.hub, &issued);
        assert!(
            out.status.success(),
            "the token after a refused csr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// `/api/v1/plants` refuses with the challenge of RFC 6750, with and without a token.
#[test]
fn the_fleet_list_refuses_with_a_bearer_challenge() {
    let live = Live::start();
    rt().block_on(async {
        for token in [None, Some("pda_unknown")] {
            let mut r = live.client().get(live.url("/api/v1/plants"));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let (status, headers, body) = refusal(r.send().await.unwrap()).await;
            assert_eq!(status, 401, "{token:?}: {body}");
            assert_eq!(
                headers["www-authenticate"], "Bearer realm=\"plantd hub\"",
                "{token:?}"
            );
        }
        let r = live
            .client()
            .get(live.url("/api/v1/plants"))
            .bearer_auth(&live.api)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
}

/// A remedy's body is held to the document's Remedy: `seq` 61.0 is the integer 61 (JSON
/// Schema's), and `plant` a plant's name, not any non-blank string.
#[test]
fn a_remedy_body_is_held_to_the_documented_schema() {
    let live = Live::start();
    rt().block_on(async {
        let (cookie, csrf) = live.sign_in().await;
        let remedy = |body: Value| {
            let r = live
                .client()
                .post(live.url("/api/v1/fleet/apply/retry"))
                .header("cookie", &cookie)
                .header("x-csrf-token", &csrf)
                .json(&body);
            async move { refusal(r.send().await.unwrap()).await }
        };
        let (status, _, body) = remedy(json!({"plant": "lyon", "seq": 61.0})).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (409, Some("conflict")),
            "61.0 is a seq: {body}"
        );
        for plant in [" lyon", "ly on", ".lyon", "lyon\n"] {
            let (status, _, body) = remedy(json!({"plant": plant, "seq": 61})).await;
            assert_eq!(
                (status, body["error"]["field"].as_str()),
                (422, Some("plant")),
                "{plant:?}: {body}"
            );
        }
        let (status, _, body) = remedy(json!({"plant": "lyon", "seq": 1.5})).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some("seq")),
            "{body}"
        );
    });
}

/// A method a fleet API path does not take is 405 with `Allow`, even without a session (the
/// session check ran first and answered a POST to a read 401).
#[test]
fn an_undocumented_method_is_405_before_the_session_check() {
    let live = Live::start();
    rt().block_on(async {
        for path in ["/api/v1/admin/session", "/api/v1/fleet"] {
            let r = live.client().post(live.url(path)).send().await.unwrap();
            let (status, headers, body) = refusal(r).await;
            assert_eq!(status, 405, "POST {path}: {body}");
            assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
            assert_eq!(headers["allow"], "GET,HEAD", "POST {path}");
        }
        // A change without a session is still refused before its body is read.
        let r = live
            .client()
            .post(live.url("/api/v1/fleet/apply/park"))
            .json(&json!({"plant": "lyon", "seq": 1}))
            .send()
            .await
            .unwrap();
        let (status, _, body) = refusal(r).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthenticated"))
        );
    });
}
