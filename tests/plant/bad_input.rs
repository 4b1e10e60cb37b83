//! Bad input gets a precise answer and changes nothing.

use serde_json::{json, Value};

use crate::harness::*;

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    token: Tok,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

#[derive(Clone, Copy)]
enum Tok {
    Good,
    Revoked,
    Unknown,
    None,
    NotBearer,
}

fn json_body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn cases() -> Vec<Case> {
    let ok = |key: &str| json!({"key": key, "kind": "scan", "payload": {"q": 1}});
    let post = |name, body: Vec<u8>, status, code, field| Case {
        name,
        method: "POST",
        path: "/api/v1/transactions",
        token: Tok::Good,
        content_type: Some("application/json"),
        body,
        status,
        code,
        field,
    };
    let big_payload =
        json!({"key": "big", "kind": "scan", "payload": {"blob": "x".repeat(1024 * 1024)}});
    let mut many = Vec::new();
    for i in 0..1001 {
        many.push(ok(&format!("many-{i}")));
    }
    let mut conflict_array = vec![ok("fresh-in-array")];
    conflict_array.push(json!({"key": "existing", "kind": "scan", "payload": {"q": 2}}));
    vec![
        post(
            "malformed JSON",
            b"{\"key\": \"a\",".to_vec(),
            400,
            "malformed_json",
            None,
        ),
        post(
            "not JSON at all",
            b"key=a&kind=b".to_vec(),
            400,
            "malformed_json",
            None,
        ),
        Case {
            content_type: Some("text/plain"),
            ..post(
                "wrong content type",
                json_body(ok("ct")),
                415,
                "unsupported_media_type",
                None,
            )
        },
        Case {
            content_type: None,
            ..post(
                "no content type",
                json_body(ok("ct2")),
                415,
                "unsupported_media_type",
                None,
            )
        },
        post(
            "missing key",
            json_body(json!({"kind": "scan", "payload": {}})),
            422,
            "missing_field",
            Some("key"),
        ),
        post(
            "empty key",
            json_body(json!({"key": "", "kind": "scan", "payload": {}})),
            422,
            "empty_field",
            Some("key"),
        ),
        post(
            "missing kind",
            json_body(json!({"key": "k1", "payload": {}})),
            422,
            "missing_field",
            Some("kind"),
        ),
        post(
            "empty kind",
            json_body(json!({"key": "k2", "kind": "", "payload": {}})),
            422,
            "empty_field",
            Some("kind"),
        ),
        post(
            "key over 128 bytes",
            json_body(json!({"key": "k".repeat(129), "kind": "scan", "payload": {}})),
            422,
            "field_too_long",
            Some("key"),
        ),
        post(
            "key not a string",
            json_body(json!({"key": 12, "kind": "scan", "payload": {}})),
            422,
            "invalid_field",
            Some("key"),
        ),
        post(
            "payload not an object",
            json_body(json!({"key": "k3", "kind": "scan", "payload": "x"})),
            422,
            "invalid_field",
            Some("payload"),
        ),
        post(
            "occurred_at not RFC 3339",
            json_body(
                json!({"key": "k4", "kind": "scan", "payload": {}, "occurred_at": "27/11/2026"}),
            ),
            422,
            "invalid_field",
            Some("occurred_at"),
        ),
        post(
            "unknown field",
            json_body(json!({"key": "k5", "kind": "scan", "payload": {}, "qty": 3})),
            422,
            "unknown_field",
            Some("qty"),
        ),
        post(
            "bad item inside an array",
            json_body(json!([ok("arr-1"), {"key": "arr-2", "payload": {}}])),
            422,
            "missing_field",
            Some("[1].kind"),
        ),
        post("empty array", b"[]".to_vec(), 422, "empty_array", None),
        post(
            "body over 1 MiB",
            json_body(big_payload),
            413,
            "body_too_large",
            None,
        ),
        post(
            "array over 1000 items",
            json_body(Value::Array(many)),
            422,
            "too_many_items",
            None,
        ),
        post(
            "key reused for another payload",
            json_body(json!({"key": "existing", "kind": "scan", "payload": {"q": 2}})),
            409,
            "key_conflict",
            Some("key"),
        ),
        post(
            "array with a reused key is refused whole",
            json_body(Value::Array(conflict_array)),
            409,
            "key_conflict",
            Some("[1].key"),
        ),
        Case {
            token: Tok::None,
            ..post("no token", json_body(ok("t1")), 401, "unauthorized", None)
        },
        Case {
            token: Tok::Unknown,
            ..post(
                "unknown token",
                json_body(ok("t2")),
                401,
                "unauthorized",
                None,
            )
        },
        Case {
            token: Tok::NotBearer,
            ..post(
                "not a bearer token",
                json_body(ok("t3")),
                401,
                "unauthorized",
                None,
            )
        },
        Case {
            token: Tok::Revoked,
            ..post(
                "revoked token",
                json_body(ok("t4")),
                403,
                "token_revoked",
                None,
            )
        },
        Case {
            method: "GET",
            path: "/api/v1/nothing-here",
            body: vec![],
            ..post("unknown route", vec![], 404, "not_found", None)
        },
        Case {
            method: "DELETE",
            path: "/api/v1/transactions",
            body: vec![],
            ..post("wrong method", vec![], 405, "method_not_allowed", None)
        },
        Case {
            method: "GET",
            path: "/api/v1/transactions/never-sent",
            body: vec![],
            ..post("unknown key", vec![], 404, "not_found", None)
        },
        Case {
            method: "GET",
            path: "/api/v1/journal",
            token: Tok::None,
            body: vec![],
            ..post("journal without token", vec![], 401, "unauthorized", None)
        },
    ]
}

#[test]
fn bad_inputs_are_refused_precisely_and_change_nothing() {
    let (_dir, data, good) = data_dir_with_token("good-device");
    let revoked = create_token(&data, "old-device");
    let out = plantd(&[
        "token",
        "revoke",
        "--data-dir",
        data.to_str().unwrap(),
        "old-device",
    ]);
    assert!(out.status.success());
    let plant = Plant::start(&data, "");
    let client = plant.client();
    let rt = rt();
    rt.block_on(async {
        // One transaction that the conflict cases collide with.
        let r = client
            .post(plant.url("/api/v1/transactions"))
            .bearer_auth(&good)
            .json(&json!({"key": "existing", "kind": "scan", "payload": {"q": 1}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let before = journal_rows(&data);
        let cases = cases();
        assert!(cases.len() >= 15);
        for case in cases {
            let mut req = client.request(case.method.parse().unwrap(), plant.url(case.path));
            req = match case.token {
                Tok::Good => req.bearer_auth(&good),
                Tok::Revoked => req.bearer_auth(&revoked),
                Tok::Unknown => req.bearer_auth("pdt_made-up"),
                Tok::NotBearer => req.header("authorization", format!("Basic {good}")),
                Tok::None => req,
            };
            if let Some(ct) = case.content_type {
                req = req.header("content-type", ct);
            }
            let r = req.body(case.body).send().await.unwrap();
            let status = r.status().as_u16();
            let v: Value = r
                .json()
                .await
                .unwrap_or_else(|e| panic!("{}: body is not JSON: {e}", case.name));
            let err = &v["error"];
            assert_eq!(status, case.status, "{}: {v}", case.name);
            assert_eq!(err["code"], case.code, "{}: {v}", case.name);
            assert_eq!(err["field"].as_str(), case.field, "{}: {v}", case.name);
            assert!(
                err["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{}: no message",
                case.name
            );
            assert_eq!(
                journal_rows(&data),
                before,
                "{} changed the journal",
                case.name
            );
        }
        // A 401 tells the client which scheme to use (RFC 6750).
        let r = client
            .get(plant.url("/api/v1/journal"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"plantd\"");
        // The stored transaction still has its first payload.
        let url = plant.url("/api/v1/transactions/existing");
        let (_, v) = get_json(&client, &url, &good).await;
        assert_eq!(
            (v["seq"].as_u64(), &v["payload"]),
            (Some(1), &json!({"q": 1}))
        );
    });
}

#[test]
fn healthz_and_openapi_need_no_token_and_every_documented_operation_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plant = Plant::start(&data, "");
    let client = plant.client();
    rt().block_on(async {
        let r = client.get(plant.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let doc: Value = client
            .get(plant.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        // That the document lists exactly the routers' API routes is tests/contract/routes.rs's
        // to check, from the router source; here every documented operation is answered.
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.contains_key("/api/v1/transactions") && paths.contains_key("/metrics"));
        // Every documented operation answers (not 404/405) on the real server.
        for (path, ops) in paths {
            for method in ops.as_object().unwrap().keys() {
                let url = plant.url(
                    &path
                        .replace("{key}", "some-key")
                        .replace("{service}", "redis")
                        .replace("{id}", "20261128T000000Z-none")
                        .replace("{job}", "job-1"),
                );
                let r = client
                    .request(method.to_uppercase().parse().unwrap(), url)
                    .send()
                    .await
                    .unwrap();
                let s = r.status().as_u16();
                assert!(
                    s != 405 && (s != 404 || path.contains('{')),
                    "{method} {path}: {s}"
                );
                let documented_statuses = ops[method]["responses"].as_object().unwrap();
                assert!(
                    documented_statuses.contains_key(&s.to_string()),
                    "{method} {path} answered {s}, which the document does not list"
                );
            }
        }
    });
}
