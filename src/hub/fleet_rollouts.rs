//! Rollouts from the fleet page, as `plantd hub rollout` does them: plan (any signed-in
//! user; nothing starts), start, pause, resume and abort (admins, with the CSRF token and this
//! origin). Each change goes through the same [`Store`](super::store::Store) methods as the
//! command line, and is audited in the sign-in audit and the hub's own log, done or refused.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::fleet::{audited, busy_or_down, Fleet};
use super::rollouts::RolloutControl;
use crate::admin::apply::fields;
use crate::admin::AdminError;
use crate::update::rollout::Waves;

/// The waves when none are given, as on the command line.
const DEFAULT_WAVES: &str = "1,10%,100%";

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanQuery {
    waves: Option<String>,
}

/// The waves the page may ask for: up to three, a count, a percentage, then 100%, each but
/// the last optional (what JSON Schema can say exactly; the command line takes longer lists).
fn waves_of(text: Option<&str>) -> Result<Waves, AdminError> {
    let text = text.unwrap_or(DEFAULT_WAVES);
    let invalid = |message: String| AdminError::InvalidField {
        field: "waves".into(),
        message,
    };
    let parts: Vec<&str> = text.split(',').collect();
    let (last, rest) = parts.split_last().expect("split yields one part at least");
    let count = |p: &str| {
        !p.is_empty()
            && p.len() <= 4
            && !p.starts_with('0')
            && p.bytes().all(|b| b.is_ascii_digit())
    };
    let percent = |p: &str| {
        p.strip_suffix('%').is_some_and(|n| {
            !n.is_empty()
                && n.len() <= 2
                && !n.starts_with('0')
                && n.bytes().all(|b| b.is_ascii_digit())
        })
    };
    let shaped = *last == "100%"
        && match rest {
            [] => true,
            [a] => count(a) || percent(a),
            [a, b] => count(a) && percent(b),
            _ => false,
        };
    if !shaped {
        return Err(invalid(format!(
            "{:?}: up to three waves, a count of plants, a percentage of the fleet, then 100%, such as \"1,10%,100%\"; `plantd hub rollout start --waves` takes longer lists",
            text.chars().take(80).collect::<String>()
        )));
    }
    Waves::parse(text).map_err(|e| invalid(format!("{e}")))
}

async fn fleet_names(fleet: &Fleet) -> Result<Vec<String>, AdminError> {
    let store = fleet
        .database
        .store()
        .await
        .map_err(|e| busy_or_down(e, "retrying"))?;
    let rows = store.plants_counting(false).await.map_err(unavailable)?;
    Ok(rows
        .into_iter()
        .filter(|p| p.enrolled && !p.revoked)
        .map(|p| p.plant)
        .collect())
}

fn unavailable(e: anyhow::Error) -> AdminError {
    tracing::error!(error = %format!("{e:#}"), "fleet page rollouts: hub database");
    AdminError::Unavailable("the hub cannot reach its database; nothing was changed".into())
}

/// `GET /api/v1/fleet/rollouts/plan?waves=`: which plants each wave would update.
pub async fn plan(
    State(fleet): State<Fleet>,
    query: Result<Query<PlanQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    // A plan spans the fleet: for users who see every plant.
    if let Err(e) = fleet.signin.reader_on(&headers, None) {
        return e.into_response();
    }
    let answer = async {
        let Query(q) = query.map_err(|e| AdminError::BadQuery(e.body_text()))?;
        let waves = waves_of(q.waves.as_deref()).map_err(|e| match e {
            AdminError::InvalidField { message, .. } => {
                AdminError::BadQuery(format!("waves: {message}"))
            }
            other => other,
        })?;
        let names = fleet_names(&fleet).await?;
        Ok::<_, AdminError>(json!({ "waves": waves.to_string(), "plan": waves.plan(&names) }))
    }
    .await;
    match answer {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/v1/fleet/rollouts` `{"version", "waves"?, "max_failures"?}`: starts a rollout
/// (a running or paused one is superseded).
pub async fn start(State(fleet): State<Fleet>, headers: HeaderMap, bytes: Bytes) -> Response {
    let asked = fields(&headers, &bytes, &["version", "waves", "max_failures"]).and_then(|m| {
        let version = match m.get("version") {
            Some(Value::String(v)) if crate::release::check_version(v).is_ok() => v.clone(),
            Some(Value::String(v)) => {
                return Err(AdminError::InvalidField {
                    field: "version".into(),
                    message: format!(
                        "{:?} is not a release version such as \"1.4.0\"",
                        v.chars().take(64).collect::<String>()
                    ),
                })
            }
            _ => {
                return Err(AdminError::InvalidField {
                    field: "version".into(),
                    message: "is required: a published release's version".into(),
                })
            }
        };
        let waves = match m.get("waves") {
            None | Some(Value::Null) => waves_of(None)?,
            Some(Value::String(w)) => waves_of(Some(w))?,
            Some(_) => {
                return Err(AdminError::InvalidField {
                    field: "waves".into(),
                    message: "must be a string such as \"1,10%,100%\"".into(),
                })
            }
        };
        let max_failures = match m.get("max_failures") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                        .map(|f| f as u64)
                })
                .filter(|n| *n <= 10_000)
                .ok_or_else(|| AdminError::InvalidField {
                    field: "max_failures".into(),
                    message: "must be a whole number from 0 to 10000".into(),
                })? as u32,
        };
        Ok((version, waves, max_failures))
    });
    let target = asked.as_ref().ok().map(|(v, _, _)| v.clone());
    let caller = match fleet
        .signin
        .actor_on(&headers, "rollout.start", target.as_deref(), None)
        .await
    {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let outcome = async {
        let (version, waves, max_failures) = asked?;
        let names = fleet_names(&fleet).await?;
        let plan = waves.plan(&names);
        let mut store = fleet
            .database
            .store()
            .await
            .map_err(|e| busy_or_down(e, "nothing was started"))?;
        let id = store
            .start_rollout(&version, &waves.to_string(), &plan, max_failures)
            .await
            .map_err(|e| AdminError::Conflict(format!("{e:#}; nothing was started")))?;
        Ok((
            id,
            format!(
                "rollout {id}: version {version} in {} wave(s) ({waves}); it pauses itself after more than {max_failures} failure(s)",
                plan.len()
            ),
        ))
    }
    .await;
    audited(
        &fleet,
        &caller.user,
        "rollout.start",
        target.as_deref(),
        outcome.as_ref().map(|(_, m)| m.as_str()),
    )
    .await;
    match outcome {
        Ok((id, message)) => (
            StatusCode::CREATED,
            Json(json!({ "id": id, "message": message })),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn control(fleet: Fleet, headers: HeaderMap, bytes: Bytes, what: RolloutControl) -> Response {
    let action = match what {
        RolloutControl::Pause => "rollout.pause",
        RolloutControl::Resume => "rollout.resume",
        RolloutControl::Abort => "rollout.abort",
    };
    // The rollout the admin saw: after a supersede, "abort rollout 7" must not abort 8.
    let asked = fields(&headers, &bytes, &["id"]).and_then(|m| match m.get("id") {
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .filter(|id| *id >= 1)
            .ok_or_else(|| AdminError::InvalidField {
                field: "id".into(),
                message: "must be a rollout's id, from 1".into(),
            }),
        None => Err(AdminError::InvalidField {
            field: "id".into(),
            message: "is required: the id of the rollout to steer, as the page shows it".into(),
        }),
    });
    let target = asked.as_ref().ok().map(|id| format!("rollout {id}"));
    let caller = match fleet
        .signin
        .actor_on(&headers, action, target.as_deref(), None)
        .await
    {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let outcome = async {
        let id = asked?;
        let store = fleet
            .database
            .store()
            .await
            .map_err(|e| busy_or_down(e, "nothing was changed"))?;
        let live = store.rollout(None).await.map_err(unavailable)?;
        if live.as_ref().map(|r| r.id) != Some(id)
            || !live
                .as_ref()
                .is_some_and(|r| matches!(r.state.as_str(), "running" | "paused"))
        {
            return Err(AdminError::Conflict(format!(
                "rollout {id} is not the live one{}; nothing was changed",
                match &live {
                    Some(r) => format!(" (rollout {} is {})", r.id, r.state),
                    None => String::new(),
                }
            )));
        }
        let view = store
            .control_rollout(what)
            .await
            .map_err(|e| AdminError::Conflict(format!("{e:#}")))?;
        Ok(view)
    }
    .await;
    let said = outcome
        .as_ref()
        .map(|v| format!("rollout {} is {}", v.id, v.state));
    audited(
        &fleet,
        &caller.user,
        action,
        target.as_deref(),
        said.as_deref().map_err(|e| *e),
    )
    .await;
    match outcome {
        Ok(view) => {
            let message = format!("rollout {} is {}", view.id, view.state);
            Json(json!({ "message": message, "rollout": view })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

pub async fn pause(State(fleet): State<Fleet>, headers: HeaderMap, bytes: Bytes) -> Response {
    control(fleet, headers, bytes, RolloutControl::Pause).await
}

pub async fn resume(State(fleet): State<Fleet>, headers: HeaderMap, bytes: Bytes) -> Response {
    control(fleet, headers, bytes, RolloutControl::Resume).await
}

pub async fn abort(State(fleet): State<Fleet>, headers: HeaderMap, bytes: Bytes) -> Response {
    control(fleet, headers, bytes, RolloutControl::Abort).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_takes_up_to_three_waves_ending_in_all() {
        for ok in ["100%", "1,100%", "10%,100%", "1,10%,100%", "9999,99%,100%"] {
            assert!(waves_of(Some(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "50%",
            "10%,1,100%",
            "0,100%",
            "1,2,100%",
            "1,10%,50%,100%",
            "01,100%",
            "1, 100%",
        ] {
            assert!(waves_of(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(waves_of(None).unwrap().to_string(), DEFAULT_WAVES);
    }
}
