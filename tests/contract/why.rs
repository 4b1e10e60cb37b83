//! One test per finding of issue 23 on the plant: each failed before the contract was made
//! exact (plain-text 400s, bodies that needed a content type, schemas weaker than the server).

use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{admin_add, create_token, rt, Plant};

const PASSWORD: &str = "contract-test-password-1";

struct Signed {
    cookie: String,
    csrf: String,
}

fn plant() -> (tempfile::TempDir, Plant, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let token = create_token(&data, "why");
    assert!(admin_add(&data, "ana", "admin", PASSWORD).status.success());
    let plant = Plant::start(&data, "");
    (dir, plant, token)
}

async fn sign_in(plant: &Plant) -> Signed {
    let r = plant
        .client()
        .post(plant.url("/api/v1/admin/login"))
        .json(&json!({"user": "ana", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let v: Value = r.json().await.unwrap();
    Signed {
        cookie,
        csrf: v["csrf"].as_str().unwrap().to_string(),
    }
}

/// The answer's status and body, after checking that it is JSON in the error shape.
async fn refusal(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let ctype = r
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    assert_eq!(
        ctype.as_deref(),
        Some("application/json"),
        "{status}: {text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["error"]["code"].is_string(), "{text}");
    assert!(v["error"]["message"].is_string(), "{text}");
    (status, v)
}

#[test]
fn queries_and_paths_that_do_not_parse_are_json_400s_before_authentication() {
    let (_dir, plant, _token) = plant();
    let c = plant.client();
    rt().block_on(async {
        for q in [
            "/api/v1/admin/audit?limit=-1",
            "/api/v1/admin/audit?limit=abc",
            "/api/v1/admin/audit?limit=4294967296",
            "/api/v1/admin/services/odoo/logs?tail=-1",
            "/api/v1/transactions/%FF",
        ] {
            let (status, v) = refusal(c.get(plant.url(q)).send().await.unwrap()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {v}");
            assert_eq!(v["error"]["code"], "bad_request", "{q}");
        }
    });
}

#[test]
fn the_server_refuses_exactly_what_the_document_says() {
    let (_dir, plant, token) = plant();
    let c = plant.client();
    rt().block_on(async {
        let doc: Value = c
            .get(plant.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let admin = sign_in(&plant).await;
        let get = |path: &str| c.get(plant.url(path)).header(COOKIE, &admin.cookie).send();
        // limit and tail: the document's bounds, and the server's.
        let audit = &doc["paths"]["/api/v1/admin/audit"]["get"]["parameters"][0]["schema"];
        assert_eq!(
            (audit["minimum"].as_u64(), audit["maximum"].as_u64()),
            (Some(1), Some(10_000))
        );
        for limit in ["0", "10001"] {
            let (status, v) = refusal(
                get(&format!("/api/v1/admin/audit?limit={limit}"))
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "limit={limit}: {v}");
        }
        assert_eq!(
            get("/api/v1/admin/audit?limit=10000")
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
        let tail = &doc["paths"]["/api/v1/admin/services/{service}/logs"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "tail")
            .unwrap()["schema"];
        assert_eq!(
            (tail["minimum"].as_u64(), tail["maximum"].as_u64()),
            (Some(1), Some(1000))
        );
        let (status, _) = refusal(
            get("/api/v1/admin/services/odoo/logs?tail=0")
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // key: 128 characters, as maxLength counts, and no control characters, as the pattern says.
        let key = &doc["components"]["schemas"]["Transaction"]["properties"]["key"];
        assert_eq!(key["maxLength"], 128);
        let pattern = key["pattern"].as_str().unwrap();
        assert!(pattern.contains("\\u0000-\\u001F"), "{pattern}");
        let post = |body: Value| {
            c.post(plant.url("/api/v1/transactions"))
                .bearer_auth(&token)
                .json(&body)
                .send()
        };
        let r = post(json!({"key": "é".repeat(100), "kind": "scan", "payload": {}}))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "100 × é is 100 characters");
        let (status, v) = refusal(
            post(json!({"key": "é".repeat(129), "kind": "scan", "payload": {}}))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, v["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("key"))
        );
        let (status, _) = refusal(
            post(json!({"key": "a\u{85}b", "kind": "scan", "payload": {}}))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        // 1001 items: the schema's maxItems, refused as invalid (422), not as a byte limit.
        let items: Vec<Value> = (0..1001)
            .map(|i| json!({"key": format!("k{i}"), "kind": "scan", "payload": {}}))
            .collect();
        let (status, v) = refusal(post(Value::Array(items)).await.unwrap()).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("too_many_items"))
        );

        // Bodies the server takes whole: no unknown field, a reason with something in it.
        for path in [
            "/api/v1/admin/setup",
            "/api/v1/admin/login",
            "/api/v1/admin/backups/{id}/restore",
            "/api/v1/admin/island",
            "/api/v1/admin/rejoin",
        ] {
            let body = &doc["paths"][path]["post"]["requestBody"];
            assert_eq!(body["required"], true, "{path}");
            assert_eq!(
                body["content"]["application/json"]["schema"]["additionalProperties"], false,
                "{path}"
            );
        }
        let change = |path: &str, body: Value| {
            c.post(plant.url(path))
                .header(COOKIE, &admin.cookie)
                .header("x-csrf-token", &admin.csrf)
                .json(&body)
                .send()
        };
        for reason in ["", "   ", "\u{1}"] {
            let (status, v) = refusal(
                change("/api/v1/admin/island", json!({"reason": reason}))
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reason:?}: {v}");
        }
        let reason = &doc["paths"]["/api/v1/admin/island"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"]["properties"]["reason"];
        assert!(
            reason["pattern"].is_string(),
            "the reason's pattern says a blank one is refused"
        );
        let (status, _) = refusal(
            change(
                "/api/v1/admin/login",
                json!({"user": "ana", "password": PASSWORD, "extra": 1}),
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        // seq: at most the largest SQLite integer, as the schema's maximum says.
        let seq = &doc["paths"]["/api/v1/admin/apply/retry"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"]["properties"]["seq"];
        assert_eq!(seq["maximum"].as_u64(), Some(i64::MAX as u64));
        let (status, v) = refusal(
            change(
                "/api/v1/admin/apply/retry",
                json!({"seq": i64::MAX as u64 + 1}),
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    });
}

#[test]
fn routes_without_a_body_take_a_request_without_a_content_type() {
    let (_dir, plant, _token) = plant();
    let c = plant.client();
    rt().block_on(async {
        let admin = sign_in(&plant).await;
        for path in [
            "/api/v1/admin/backups/run",
            "/api/v1/admin/backups/20261128T020000Z-none/verify",
            "/api/v1/admin/logout",
        ] {
            let r = c
                .post(plant.url(path))
                .header(COOKIE, &admin.cookie)
                .header("x-csrf-token", &admin.csrf)
                .send()
                .await
                .unwrap();
            assert_ne!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}");
            if path.ends_with("logout") {
                assert_eq!(r.status(), StatusCode::NO_CONTENT);
            } else {
                // No stack on this plant (409 not_configured), no such backup (404): the
                // request got past its content type to the plant's own answer.
                let (status, v) = refusal(r).await;
                let expected = if path.ends_with("run") {
                    (StatusCode::CONFLICT, Some("not_configured"))
                } else {
                    (StatusCode::NOT_FOUND, Some("not_found"))
                };
                assert_eq!((status, v["error"]["code"].as_str()), expected, "{path}");
            }
        }
    });
}

#[test]
fn every_operation_has_examples_and_every_answer_its_documented_shape() {
    let (_dir, plant, _token) = plant();
    rt().block_on(async {
        let doc: Value = plant
            .client()
            .get(plant.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let text = doc.to_string();
        let resolve = |v: &Value| -> Value {
            match v["$ref"].as_str() {
                Some(r) => {
                    let mut at = &doc;
                    for part in r.trim_start_matches("#/").split('/') {
                        at = &at[part];
                    }
                    at.clone()
                }
                None => v.clone(),
            }
        };
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let has_example = |v: &Value| {
                    let v = resolve(v);
                    v["content"].as_object().is_some_and(|c| {
                        c.values().any(|m| {
                            m.get("example").is_some()
                                || m.get("examples").is_some()
                                || resolve(&m["schema"]).get("example").is_some()
                        })
                    })
                };
                let success = op["responses"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .find(|(s, _)| s.starts_with('2'))
                    .map(|(_, r)| r.clone())
                    .unwrap();
                let bodiless = resolve(&success)["content"].is_null();
                assert!(
                    bodiless || has_example(&success),
                    "{method} {path}: no example of its answer"
                );
                if let Some(body) = op.get("requestBody") {
                    assert!(has_example(body), "{method} {path}: no example of its body");
                }
                // Every refusal is documented with the JSON error body.
                for (status, r) in op["responses"].as_object().unwrap() {
                    if status.as_str() >= "400" {
                        let r = resolve(r);
                        assert!(
                            r["content"]["application/json"]["schema"].is_object(),
                            "{method} {path} {status}: no JSON body documented"
                        );
                    }
                }
            }
        }
        for (path, op) in [
            ("/api/v1/admin/login", "post"),
            ("/api/v1/admin/setup", "post"),
        ] {
            assert!(
                doc["paths"][path][op]["responses"]["200"]["headers"]["Set-Cookie"].is_object(),
                "{path}: Set-Cookie"
            );
        }
        assert!(text.contains("\"links\""), "links between operations");
        assert!(doc["components"]["responses"]["MethodNotAllowed"]["headers"]["Allow"].is_object());
    });
}
