//! The fleet page on the hub's HTTPS listener: plants with link, lag, version, health, last
//! backup and, with `[apply] central`, their apply to the central Odoo; rollouts with their
//! waves and each plant's outcome. Same sign-in model as the plant's admin UI (local users with
//! argon2id hashes in `DATA_DIR/admin.db`, a one-time setup code, HttpOnly + Secure +
//! SameSite=Strict session cookies, lockout, audit), and the same handlers.
//!
//! Its actions are the central apply's remedies, `POST /api/v1/fleet/apply/retry|park|replay`
//! with `{"plant", "seq"}`, and remote actions at a plant (`super::actions`): an admin's
//! session, the CSRF token and this origin, as on the plant; each goes through the same
//! [`Store`] methods as `plantd hub apply` or `plantd hub action`, and is audited, done or
//! refused (viewers get 403). Everything else is read-only: rollouts are started and steered
//! with `plantd hub rollout`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::admin::assets::Asset;

use super::actions;
use super::apply::PlantApply;
use super::database::{Database, DatabaseError};
use crate::admin::apply::{fields, seq_of, Remedy};
use crate::admin::sign_in::{login, logout, session, setup};
use crate::admin::{AdminError, SignIn};
use crate::apply::RemedyError;
use crate::config::CentralApply;
use crate::enrollment::protocol::is_plant_name;

static FLEET_HTML: Asset = Asset::new(
    include_str!("../../web/fleet.html"),
    "text/html; charset=utf-8",
);
static FLEET_JS: Asset = Asset::new(
    include_str!("../../web/fleet.js"),
    "text/javascript; charset=utf-8",
);

#[derive(Clone)]
pub struct Fleet {
    pub signin: SignIn,
    pub database: Database,
    /// `[apply] central` of hub.toml: the central Odoo that a replay applies to.
    pub central: Option<CentralApply>,
    /// The plants' offsite copies: the newest is each plant's last backup.
    pub backups: crate::backup::offsite::HubBackups,
    /// Remote actions: a new one wakes its plant's stream at this replica.
    pub remote: super::remote::Remote,
    /// Plant sessions this replica serves (for `/metrics`).
    pub sessions: super::metrics::Sessions,
}

impl axum::extract::FromRef<Fleet> for SignIn {
    fn from_ref(fleet: &Fleet) -> SignIn {
        fleet.signin.clone()
    }
}

pub fn router(fleet: Fleet) -> Router {
    let change = crate::admin::change_layer(fleet.signin.clone());
    Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/fleet") }),
        )
        .route(
            "/fleet",
            get(|h: HeaderMap| async move { FLEET_HTML.serve(&h) }),
        )
        .route(
            "/common.js",
            get(|h: HeaderMap| async move { crate::admin::COMMON_JS.serve(&h) }),
        )
        .route(
            "/fleet.js",
            get(|h: HeaderMap| async move { FLEET_JS.serve(&h) }),
        )
        .route(
            "/app.css",
            get(|h: HeaderMap| async move { crate::admin::APP_CSS.serve(&h) }),
        )
        .route("/api/v1/admin/session", get(session))
        // The way out to the company's provider and back (HTML pages, not API).
        .route("/auth/oidc/start", get(crate::admin::oidc::start))
        .route("/auth/oidc/callback", get(crate::admin::oidc::callback))
        .route(
            "/api/v1/admin/setup",
            post(setup).layer(crate::admin::sign_in_body()),
        )
        .route(
            "/api/v1/admin/login",
            post(login).layer(crate::admin::sign_in_body()),
        )
        .route(
            "/api/v1/admin/logout",
            change(post(logout)).layer(crate::admin::sign_in_body()),
        )
        .route(
            "/api/v1/admin/totp/enrol",
            change(post(crate::admin::totp::enrol)).layer(crate::admin::sign_in_body()),
        )
        .route(
            "/api/v1/admin/totp/confirm",
            change(post(crate::admin::totp::confirm)).layer(crate::admin::sign_in_body()),
        )
        .route("/api/v1/fleet", get(overview))
        .route("/metrics", get(super::metrics::serve))
        .route("/api/v1/fleet/logs", get(super::logs::search))
        .route("/api/v1/fleet/plants/{plant}", get(plant_detail))
        .route(
            "/api/v1/fleet/rollouts/plan",
            get(super::fleet_rollouts::plan),
        )
        .route(
            "/api/v1/fleet/rollouts",
            change(post(super::fleet_rollouts::start)),
        )
        .route(
            "/api/v1/fleet/rollouts/pause",
            change(post(super::fleet_rollouts::pause)),
        )
        .route(
            "/api/v1/fleet/rollouts/resume",
            change(post(super::fleet_rollouts::resume)),
        )
        .route(
            "/api/v1/fleet/rollouts/abort",
            change(post(super::fleet_rollouts::abort)),
        )
        .route("/api/v1/fleet/apply/retry", change(post(retry)))
        .route("/api/v1/fleet/apply/park", change(post(park)))
        .route("/api/v1/fleet/apply/replay", change(post(replay)))
        .route(
            "/api/v1/fleet/plants/{plant}/actions",
            change(post(actions::create)).get(actions::list),
        )
        .route("/api/v1/fleet/actions/{id}", get(actions::one))
        .route("/api/v1/fleet/audit", get(actions::audit))
        .layer(axum::middleware::map_request(
            crate::admin::host_from_authority,
        ))
        .with_state(fleet)
}

/// One plant as the fleet page shows it (the hub's account of it first), with its central
/// apply when the hub applies.
fn plant_view(report: &super::truth::PlantReport, apply: Option<&[PlantApply]>) -> Value {
    let (p, truth) = (&report.row, &report.truth);
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
        "state": truth.state,
        "since": truth.since,
        "reason": truth.reason,
        "link": p.link,
        "lag_s": truth.lag_s,
        "behind": truth.behind,
        "last_backup": truth.last_backup,
        "acked_seq": p.acked_seq,
        "stored": p.stored,
        "health": if t.is_none() { "unknown" } else if unhealthy.is_empty() { "ok" } else { "degraded" },
        "unhealthy": unhealthy,
        "backup": backup,
        "apply": apply.and_then(|list| list.iter().find(|a| a.plant == p.plant)).map(apply_view),
    })
}

fn apply_view(a: &PlantApply) -> Value {
    let mut v = serde_json::to_value(a).expect("an apply status serializes");
    v["behind"] = json!((a.last_seq - a.applied_seq).max(0));
    v
}

/// Why the fleet page shows no apply on a hub without `[apply] central`.
const OFF: &str = "this hub does not apply the plants' transactions to a central Odoo: set [apply] central = true (with [odoo]) in hub.toml, then restart the hub";

async fn overview(State(fleet): State<Fleet>, headers: HeaderMap) -> Response {
    let caller = match fleet.signin.reader(&headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let store = match fleet.database.store().await {
        Ok(s) => s,
        Err(e) => return busy_or_down(e, "retrying").into_response(),
    };
    let read = async {
        let mut rows = store.plants().await?;
        // A user who sees some plants reads of those only.
        rows.retain(|r| caller.sees(&r.plant));
        let backups = fleet.backups.clone();
        let plants =
            tokio::task::spawn_blocking(move || super::truth::report(rows, &backups)).await?;
        // Rollouts span the fleet: for users who see every plant.
        let rollouts = match caller.plants {
            None => store.rollouts(5).await?,
            Some(_) => Vec::new(),
        };
        let apply = match fleet.central {
            Some(_) => Some(store.apply_status().await?),
            None => None,
        };
        let of_theirs = |subject: &str| {
            let plant = subject.split(" (").next().unwrap_or(subject);
            caller.sees(plant)
        };
        let alerts = json!({
            "firing": store.alert_state().await?.firing().filter(|a| of_theirs(&a.subject)).collect::<Vec<_>>(),
            "history": store
                .alert_history(None, if caller.plants.is_some() { 1000 } else { 50 })
                .await?
                .into_iter()
                .filter(|a| of_theirs(&a.subject))
                .take(50)
                .collect::<Vec<_>>(),
        });
        anyhow::Ok((plants, rollouts, apply, alerts))
    };
    match read.await {
        Ok((plants, rollouts, apply, alerts)) => Json(json!({
            "plants": plants.iter().map(|p| plant_view(p, apply.as_deref())).collect::<Vec<_>>(),
            "rollouts": rollouts,
            "alerts": alerts,
            "central_apply": match apply {
                Some(_) => json!({"enabled": true}),
                None => json!({"enabled": false, "note": OFF}),
            },
        }))
        .into_response(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "fleet page: hub database");
            AdminError::Unavailable("the hub cannot reach its database; retrying".into())
                .into_response()
        }
    }
}

/// Audits a change of the fleet page in both logs: the sign-in audit of this replica's
/// `admin.db`, and the hub's own `hub_audit` (done, refused or failed).
pub(super) async fn audited(
    fleet: &Fleet,
    user: &str,
    action: &str,
    target: Option<&str>,
    outcome: Result<&str, &AdminError>,
) {
    fleet.signin.audit(user, action, target, outcome).await;
    let (done, detail) = match outcome {
        Ok(m) => ("ok", m.to_string()),
        Err(AdminError::Conflict(m)) => ("refused", m.clone()),
        Err(e) => ("failed", e.to_string()),
    };
    match fleet.database.store().await {
        Ok(store) => {
            if let Err(e) = store.hub_audit(user, action, target, done, &detail).await {
                tracing::error!(error = %format!("{e:#}"), "writing the hub's audit log");
            }
        }
        Err(e) => tracing::error!(error = %e, "writing the hub's audit log"),
    }
}

/// One remedy for one plant's central apply: checked, carried out through the [`Store`] as
/// `plantd hub apply` does, and audited.
async fn remedy(fleet: Fleet, headers: HeaderMap, bytes: Bytes, remedy: Remedy) -> Response {
    let action = remedy.action();
    let asked = fields(&headers, &bytes, &["plant", "seq"]).and_then(|m| {
        let plant = match m.get("plant") {
            Some(Value::String(p)) if is_plant_name(p) => p.clone(),
            None => {
                return Err(AdminError::InvalidField {
                    field: "plant".into(),
                    message: "is required: the plant's name, as the fleet page shows it".into(),
                })
            }
            Some(_) => {
                return Err(AdminError::InvalidField {
                    field: "plant".into(),
                    message: "is not a plant's name: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'".into(),
                })
            }
        };
        Ok((plant, seq_of(&m)?))
    });
    let target = asked.as_ref().ok().map(|(p, s)| format!("{p} seq {s}"));
    let plant = asked.as_ref().ok().map(|(p, _)| p.clone());
    let caller = match plant {
        Some(p) => {
            fleet
                .signin
                .actor_on(&headers, action, target.as_deref(), Some(&p))
                .await
        }
        None => {
            fleet
                .signin
                .actor(&headers, action, target.as_deref())
                .await
        }
    };
    let caller = match caller {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let outcome = async {
        let (plant, seq) = asked?;
        let seq = i64::try_from(seq).map_err(|_| AdminError::InvalidField {
            field: "seq".into(),
            message: format!("{seq} is past any seq"),
        })?;
        let mut store = fleet
            .database
            .store()
            .await
            .map_err(|e| busy_or_down(e, "nothing was changed"))?;
        let done = match remedy {
            Remedy::Retry => store.apply_retry(&plant, seq).await,
            Remedy::Park => store.apply_park(&plant, seq).await,
            // Retry and park touch only the hub's database (as `plantd hub apply` does); a
            // replay needs the central Odoo.
            Remedy::Replay => match &fleet.central {
                Some(central) => store.apply_replay(central, &plant, seq).await,
                None => Err(RemedyError::Refused(format!("{OFF}; nothing was changed"))),
            },
        };
        done.map_err(|e| match e {
            RemedyError::Refused(m) => AdminError::Conflict(m),
            RemedyError::Failed(m) => AdminError::Failed(m),
        })
    }
    .await;
    audited(
        &fleet,
        &caller.user,
        action,
        target.as_deref(),
        outcome.as_deref(),
    )
    .await;
    match outcome {
        Ok(message) => Json(json!({ "message": message })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// No database connection for the fleet page: busy (all taken for `[postgres] pool_wait`) or
/// unreachable; either way a 503 that says which, and `then`.
pub(super) fn busy_or_down(e: DatabaseError, then: &str) -> AdminError {
    match e {
        DatabaseError::Busy { .. } => AdminError::Unavailable(format!("{e}; {then}")),
        DatabaseError::Unreachable { .. } => {
            tracing::error!(error = %e, "fleet page: hub database");
            AdminError::Unavailable(format!("the hub cannot reach its database; {then}"))
        }
    }
}

async fn retry(State(fleet): State<Fleet>, headers: HeaderMap, bytes: Bytes) -> Response {
    remedy(fleet, headers, bytes, Remedy::Retry).await
}

async fn park(State(fleet): State<Fleet>, headers: HeaderMap, bytes: Bytes) -> Response {
    remedy(fleet, headers, bytes, Remedy::Park).await
}

async fn replay(State(fleet): State<Fleet>, headers: HeaderMap, bytes: Bytes) -> Response {
    remedy(fleet, headers, bytes, Remedy::Replay).await
}

/// `GET /api/v1/fleet/plants/{plant}`: one plant in full, for its page: the hub's account of
/// it with its own last report (components, host, link), the backup copies the hub holds, its
/// central apply, its alerts (holding, and their history: link losses and returns among them),
/// its recent remote actions and its newest log lines.
pub async fn plant_detail(
    State(fleet): State<Fleet>,
    axum::extract::Path(plant): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = fleet.signin.reader_on(&headers, Some(&plant)) {
        return e.into_response();
    }
    if !is_plant_name(&plant) {
        return AdminError::NotFound("no such plant at this hub".into()).into_response();
    }
    let mut store = match fleet.database.store().await {
        Ok(s) => s,
        Err(e) => return busy_or_down(e, "retrying").into_response(),
    };
    let read = async {
        // Not counted (a count of every plant's rows): its seqs run from 1 without gaps, so
        // what it stored is its acked seq.
        let rows = store.plants_counting(false).await?;
        let Some(mut row) = rows.into_iter().find(|r| r.plant == plant) else {
            return anyhow::Ok(None);
        };
        row.stored = row.acked_seq;
        let backups = fleet.backups.clone();
        let name = plant.clone();
        let (report, held) = tokio::task::spawn_blocking(move || {
            let held = backups.list(&name).unwrap_or_default();
            (super::truth::report(vec![row], &backups), held)
        })
        .await?;
        let apply = match fleet.central {
            Some(_) => Some(store.apply_status().await?),
            None => None,
        };
        let alerts = store.alert_state().await?;
        let firing: Vec<_> = alerts
            .firing()
            .filter(|a| a.subject == plant || a.subject.starts_with(&format!("{plant} (")))
            .cloned()
            .collect();
        let history = store.alert_history(Some(&plant), 50).await?;
        let actions = store.remote_actions(&plant, 10).await?;
        let links = store.link_history(&plant, 50).await?;
        let logs = store
            .search_logs(&super::store::LogQuery {
                plant: Some(plant.clone()),
                limit: 50,
                ..Default::default()
            })
            .await?;
        let report = report.into_iter().next().expect("one row in, one out");
        Ok(Some(json!({
            "plant": plant_view(&report, apply.as_deref()),
            "telemetry": report.row.telemetry,
            "backups_held": held,
            "alerts": {"firing": firing, "history": history},
            "actions": actions,
            "links": links,
            "logs": logs,
        })))
    };
    match read.await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => AdminError::NotFound(format!("no plant {plant:?} at this hub")).into_response(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "fleet page: hub database");
            AdminError::Unavailable("the hub cannot reach its database; retrying".into())
                .into_response()
        }
    }
}
