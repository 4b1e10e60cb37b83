//! The plant's API (`GET /api/v1/openapi.json` on its HTTPS listener) against a live plant.

use serde_json::Value;

use crate::harness::{admin_add, create_token, rt, Plant};
use crate::{routes, schemathesis};

/// The admin the Schemathesis hooks sign in as: not the documents' example user (`ana`), whose
/// wrong example password the examples phase sends again and again, and which would lock the
/// name for this address (as it should) in a longer run.
const ADMIN: &str = "contract-admin";
const PASSWORD: &str = "contract-test-password-1";

/// Where the plant's routers are declared.
pub const ROUTERS: [&str; 2] = ["src/ingest/mod.rs", "src/admin/mod.rs"];

fn plant() -> (tempfile::TempDir, Plant, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let token = create_token(&data, "contract");
    let out = admin_add(&data, ADMIN, "admin", PASSWORD);
    assert!(out.status.success(), "{out:?}");
    let plant = Plant::start(&data, "");
    (dir, plant, token)
}

async fn document(plant: &Plant) -> Value {
    plant
        .client()
        .get(plant.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[test]
fn the_document_is_valid_openapi_3_1_and_lists_exactly_the_routes() {
    let (_dir, plant, _token) = plant();
    rt().block_on(async {
        let doc = document(&plant).await;
        assert_eq!(doc["openapi"], "3.1.0");
        if let Err(e) = schemathesis::validate(&doc) {
            panic!("the plant's document is not valid OpenAPI:\n{e}");
        }
        routes::same_paths(&doc, &routes::declared(&ROUTERS, &[]));
        let fill = |p: &str| {
            p.replace("{key}", "some-key")
                .replace("{service}", "redis")
                .replace("{id}", "20261128T000000Z-none")
                .replace("{job}", "job-1")
        };
        routes::probe(&plant.client(), &plant.url(""), &doc, fill).await;
        routes::changes_refused_before_the_body(
            plant.addr,
            &plant.data_dir.join("tls/api.crt"),
            &doc,
            fill,
            // Sign-in and setup take a body without a session; a device's transactions need
            // its token, checked before the body (tested in tests/plant/bad_input.rs).
            &[
                "/api/v1/admin/login",
                "/api/v1/admin/setup",
                "/api/v1/transactions",
            ],
        )
        .await;
    });
}

#[test]
fn schemathesis_finds_every_answer_of_a_live_plant_as_documented() {
    let (_dir, plant, token) = plant();
    let ca = plant.data_dir.join("tls/api.crt");
    let (passed, output) = schemathesis::run(&schemathesis::Target {
        name: "plant",
        base: plant.url(""),
        ca: &ca,
        bearer: &token,
        user: ADMIN,
        password: PASSWORD,
        max_examples: 40,
    });
    assert!(
        passed,
        "Schemathesis found answers that are not as documented:\n{output}"
    );
    // The daemon is still up, and says so.
    rt().block_on(async {
        let r = plant
            .client()
            .get(plant.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success() || r.status().as_u16() == 503);
    });
    schemathesis::log_rss("plant", plant.pid());
}
