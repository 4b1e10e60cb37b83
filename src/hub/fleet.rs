//! The fleet page on the hub's HTTPS listener: plants with link, lag, version, health and last
//! backup; rollouts with their waves and each plant's outcome. Same sign-in model as the
//! plant's admin UI (local users with argon2id hashes in `DATA_DIR/admin.db`, a one-time setup
//! code, HttpOnly + Secure + SameSite=Strict session cookies, lockout, audit), and the same
//! handlers. Read-only: rollouts are started and steered with `plantd hub rollout`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::store::{PlantRow, Store};
use crate::admin::api::{login, logout, session, setup};
use crate::admin::{AdminError, SignIn};

const FLEET_HTML: &str = include_str!("../../web/fleet.html");
const FLEET_JS: &str = include_str!("../../web/fleet.js");

#[derive(Clone)]
pub struct Fleet {
    pub signin: SignIn,
    pub database: String,
}

impl axum::extract::FromRef<Fleet> for SignIn {
    fn from_ref(fleet: &Fleet) -> SignIn {
        fleet.signin.clone()
    }
}

pub fn router(fleet: Fleet) -> Router {
    use crate::admin::asset;
    Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/fleet") }),
        )
        .route(
            "/fleet",
            get(|| async { asset(FLEET_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/fleet.js",
            get(|| async { asset(FLEET_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/app.css",
            get(|| async { asset(crate::admin::APP_CSS, "text/css; charset=utf-8") }),
        )
        .route("/api/v1/admin/session", get(session))
        .route("/api/v1/admin/setup", post(setup))
        .route("/api/v1/admin/login", post(login))
        .route("/api/v1/admin/logout", post(logout))
        .route("/api/v1/fleet", get(overview))
        .layer(axum::middleware::map_request(
            crate::admin::host_from_authority,
        ))
        .with_state(fleet)
}

/// One plant as the fleet page shows it.
fn plant_view(p: &PlantRow) -> Value {
    let t = p.telemetry.as_ref();
    let components = t
        .and_then(|t| t["components"].as_array())
        .cloned()
        .unwrap_or_default();
    let unhealthy: Vec<Value> = components
        .iter()
        .filter(|c| c["state"] != "ok")
        .map(|c| json!({"name": c["name"], "state": c["state"], "detail": c["detail"]}))
        .collect();
    let backup = components
        .iter()
        .find(|c| c["name"] == "backup")
        .map(|c| json!({"state": c["state"], "detail": c["detail"]}));
    json!({
        "plant": p.plant,
        "enrolled": p.enrolled,
        "revoked": p.revoked,
        "last_seen": p.last_seen,
        "version": p.version,
        "pinned_version": p.pinned_version,
        "link": p.link,
        "lag_s": p.lag_s,
        "acked_seq": p.acked_seq,
        "stored": p.stored,
        "health": if t.is_none() { "unknown" } else if unhealthy.is_empty() { "ok" } else { "degraded" },
        "unhealthy": unhealthy,
        "backup": backup,
    })
}

async fn overview(State(fleet): State<Fleet>, headers: HeaderMap) -> Response {
    if let Err(e) = fleet.signin.reader(&headers) {
        return e.into_response();
    }
    let read = async {
        let store = Store::open(&fleet.database).await?;
        let plants = store.plants().await?;
        let rollouts = store.rollouts(5).await?;
        anyhow::Ok((plants, rollouts))
    };
    match read.await {
        Ok((plants, rollouts)) => Json(json!({
            "plants": plants.iter().map(plant_view).collect::<Vec<_>>(),
            "rollouts": rollouts,
        }))
        .into_response(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "fleet page: hub database");
            AdminError::Unavailable("the hub cannot reach its database; retrying".into())
                .into_response()
        }
    }
}
