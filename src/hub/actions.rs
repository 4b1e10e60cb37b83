//! The fleet API's remote actions: an admin asks a plant to do something
//! (`POST /api/v1/fleet/plants/{plant}/actions`, 202 with the queued action), and anyone
//! signed in follows it (`GET /api/v1/fleet/plants/{plant}/actions`,
//! `GET /api/v1/fleet/actions/{id}`, whose result only admins read: a diagnostics bundle holds
//! a plant's logs and configuration) and reads the hub's audit log (`GET /api/v1/fleet/audit`).
//! `rejoin` is refused here (422): it can never reach a plant that needs it.
//!
//! A request needs an admin's session, the CSRF token and this origin (viewers get 403), as the
//! central apply's remedies do; its arguments are checked here with the same rules the plant
//! applies ([`Command::parse`]), and each request is written to the hub's audit log
//! (`hub_audit`) with the database row, and to the sign-in audit like every change.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::fleet::{busy_or_down, Fleet};
use super::store::{NotCreated, RemoteActionRow};
use crate::admin::apply::fields;
use crate::admin::store::Role;
use crate::admin::AdminError;
use crate::enrollment::protocol::is_plant_name;
use crate::replication::remote::Command;

/// Default time an action waits for its plant before it expires.
pub const DEFAULT_EXPIRY_S: i64 = 3600;
/// The longest an action may wait for its plant.
pub const MAX_EXPIRY_S: i64 = 7 * 24 * 3600;
/// How many actions a plant's list shows.
const LIST: i64 = 20;

/// The plant in the path, checked.
fn plant_of(plant: &str) -> Result<(), AdminError> {
    if is_plant_name(plant) {
        Ok(())
    } else {
        Err(AdminError::NotFound(format!(
            "no plant {:?} at this hub",
            plant.chars().take(64).collect::<String>()
        )))
    }
}

/// A request's body: the action, its arguments and how long it may wait.
fn asked(headers: &HeaderMap, bytes: &Bytes) -> Result<(Command, i64), AdminError> {
    let m = fields(headers, bytes, &["action", "args", "expires_in_s"])?;
    let action = match m.get("action") {
        Some(Value::String(a)) => a.clone(),
        None => {
            return Err(AdminError::InvalidField {
                field: "action".into(),
                message: format!(
                    "is required: one of {}",
                    crate::replication::remote::requestable()
                ),
            })
        }
        Some(_) => {
            return Err(AdminError::InvalidField {
                field: "action".into(),
                message: "must be a string".into(),
            })
        }
    };
    let args = m.get("args").cloned().unwrap_or(Value::Null);
    let command = Command::parse_request(&action, &args).map_err(|e| AdminError::InvalidField {
        field: e.field,
        message: e.message,
    })?;
    let expires_in_s = match m.get("expires_in_s") {
        None | Some(Value::Null) => DEFAULT_EXPIRY_S,
        // 60.0 is 60, as JSON Schema's "integer" has it.
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .filter(|n| (1..=MAX_EXPIRY_S).contains(n))
            .ok_or_else(|| AdminError::InvalidField {
                field: "expires_in_s".into(),
                message: format!(
                    "{v} is not a number of seconds from 1 to {MAX_EXPIRY_S} (default {DEFAULT_EXPIRY_S})"
                ),
            })?,
    };
    Ok((command, expires_in_s))
}

/// `POST /api/v1/fleet/plants/{plant}/actions`.
pub async fn create(
    State(fleet): State<Fleet>,
    Path(plant): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let asked = plant_of(&plant).and_then(|()| asked(&headers, &bytes));
    let action = match &asked {
        Ok((c, _)) => format!("remote.{}", c.action()),
        Err(_) => "remote".to_string(),
    };
    let caller = match fleet
        .signin
        .actor_on(&headers, &action, Some(&plant), Some(&plant))
        .await
    {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let outcome = async {
        let (command, expires_in_s) = asked?;
        let mut store = fleet
            .database
            .store()
            .await
            .map_err(|e| busy_or_down(e, "nothing was asked of the plant"))?;
        let created = store
            .create_remote_action(
                &plant,
                command.action().as_str(),
                &command.args(),
                &caller.user,
                expires_in_s,
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %format!("{e:#}"), "fleet page: queueing a remote action");
                AdminError::Unavailable(
                    "the hub could not store the action; nothing was asked of the plant".into(),
                )
            })?;
        created.map_err(|e| match e {
            NotCreated::UnknownPlant(_) => AdminError::NotFound(e.to_string()),
            NotCreated::Revoked(_) => AdminError::Conflict(e.to_string()),
        })
    }
    .await;
    let said = match &outcome {
        Ok(a) => Ok(format!(
            "action #{} queued, expires at {}",
            a.id, a.expires_at
        )),
        Err(e) => Err(e),
    };
    fleet
        .signin
        .audit(
            &caller.user,
            &action,
            Some(&plant),
            said.as_deref().map_err(|e| *e),
        )
        .await;
    // The hub's own log has the request too when it was refused here (a queued one was
    // written with its row).
    if let Err(e) = &outcome {
        if !matches!(e, AdminError::Unavailable(_)) {
            if let Ok(store) = fleet.database.store().await {
                let written = store
                    .hub_audit(
                        &caller.user,
                        &action,
                        Some(&plant),
                        "refused",
                        &e.to_string(),
                    )
                    .await;
                if let Err(w) = written {
                    tracing::warn!(error = %format!("{w:#}"), "writing the hub's audit log");
                }
            }
        }
    }
    match outcome {
        Ok(row) => {
            fleet.remote.wake(&plant);
            (StatusCode::ACCEPTED, Json(row)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/fleet/plants/{plant}/actions`: the newest actions, newest first.
pub async fn list(
    State(fleet): State<Fleet>,
    Path(plant): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = fleet.signin.reader_on(&headers, Some(&plant)) {
        return e.into_response();
    }
    let read = async {
        plant_of(&plant)?;
        let store = fleet
            .database
            .store()
            .await
            .map_err(|e| busy_or_down(e, "retrying"))?;
        let found = async {
            if !store.plant_exists(&plant).await? {
                return anyhow::Ok(None);
            }
            Ok(Some(store.remote_actions(&plant, LIST).await?))
        }
        .await
        .map_err(unavailable)?;
        found.ok_or_else(|| AdminError::NotFound(format!("no plant {plant:?} at this hub")))
    };
    match read.await {
        Ok(actions) => Json(json!({ "plant": plant, "actions": actions })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// What a viewer reads in place of a result.
pub const RESULT_WITHHELD: &str = "the result is shown to admins only: it can hold a plant's logs and configuration (a diagnostics bundle)";

/// `GET /api/v1/fleet/actions/{id}`: one action, with its result for admins (a viewer gets
/// `result: null` and `result_note` saying why).
pub async fn one(
    State(fleet): State<Fleet>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (caller, role) = match fleet.signin.reader_role(&headers) {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let read = async {
        let not_found = || AdminError::NotFound(format!("no remote action {id:?} at this hub"));
        let n: i64 = id.parse().ok().filter(|n| *n >= 1).ok_or_else(not_found)?;
        let store = fleet
            .database
            .store()
            .await
            .map_err(|e| busy_or_down(e, "retrying"))?;
        store
            .remote_action(n)
            .await
            .map_err(unavailable)?
            .ok_or_else(not_found)
    };
    match read.await {
        // Another plant's action is as no action to a user who does not see that plant.
        Ok(row) if !caller.sees(&row.plant) => {
            AdminError::NotFound(format!("no remote action {id:?} at this hub")).into_response()
        }
        Ok(row) => Json(shown_to(row, role)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `row` as `role` may read it: a viewer's has no result, and a note in its place.
fn shown_to(row: RemoteActionRow, role: Role) -> Value {
    let had = row.result.is_some();
    let mut v = serde_json::to_value(row).expect("a row is JSON");
    if role != Role::Admin {
        v["result"] = Value::Null;
        if had {
            v["result_note"] = RESULT_WITHHELD.into();
        }
    }
    v
}

#[derive(serde::Deserialize)]
pub struct AuditQuery {
    limit: Option<i64>,
}

/// `GET /api/v1/fleet/audit`: the hub's audit log, newest first.
pub async fn audit(
    State(fleet): State<Fleet>,
    Query(q): Query<AuditQuery>,
    headers: HeaderMap,
) -> Response {
    let caller = match fleet.signin.reader(&headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let read = async {
        let limit = match q.limit {
            None => 100,
            Some(n @ 1..=1000) => n,
            Some(n) => {
                return Err(AdminError::BadQuery(format!(
                    "limit: {n} is out of range; use 1 to 1000 (default 100)"
                )))
            }
        };
        let store = fleet
            .database
            .store()
            .await
            .map_err(|e| busy_or_down(e, "retrying"))?;
        // A user who sees some plants reads what was done to those: read deeper, then filter.
        let read = if caller.plants.is_some() { 1000 } else { limit };
        let mut entries = store.hub_audit_log(read).await.map_err(unavailable)?;
        if caller.plants.is_some() {
            entries.retain(|e| plant_of_entry(e).is_some_and(|p| caller.sees(p)));
            entries.truncate(usize::try_from(limit).unwrap_or(100));
        }
        Ok(entries)
    };
    match read.await {
        Ok(entries) => Json(json!({ "entries": entries })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The plant an audit entry is about: the first word of the target of a plant's action (its
/// central apply's remedies, remote actions, enrollment tokens); `None` for what spans the
/// fleet (rollouts, releases, API tokens).
fn plant_of_entry(e: &crate::hub::store::HubAuditEntry) -> Option<&str> {
    let of_a_plant = ["apply.", "remote.", "plant.", "token."]
        .iter()
        .any(|p| e.action.starts_with(p));
    of_a_plant
        .then_some(e.target.as_deref())
        .flatten()
        .and_then(|t| t.split(' ').next())
}

fn unavailable(e: anyhow::Error) -> AdminError {
    tracing::error!(error = %format!("{e:#}"), "fleet page: hub database");
    AdminError::Unavailable("the hub cannot read its database; retrying".into())
}
