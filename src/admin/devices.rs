//! The devices page's API: every device token (never the token itself), when its device was
//! last seen, how many of its transactions were accepted and refused, and its latest refusals
//! with the status, code and message it got; requests with no token or one nobody issued are
//! counted apart. An admin may revoke a device's token here, as `plantd token revoke` does.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::api::{blocking, body, Answer, Nothing};
use super::{Admin, AdminError};
use crate::clock::rfc3339_ms;
use crate::tokens::{Activity, TokenError};

fn activity(a: &Activity) -> Value {
    json!({
        "last_seen_at": a.last_seen_ms.map(rfc3339_ms),
        "accepted": a.accepted,
        "refused": a.refused,
        // Newest first, as the page lists them.
        "recent_refusals": a.recent_refusals.iter().rev().map(|r| json!({
            "at": rfc3339_ms(r.at_ms),
            "status": r.status,
            "code": r.code,
            "message": r.message,
        })).collect::<Vec<_>>(),
    })
}

pub async fn list(State(admin): State<Admin>, headers: HeaderMap) -> Answer {
    admin.reader(&headers)?;
    let tokens = admin.control.tokens.clone();
    let (devices, unknown) = blocking(move || (tokens.list(), tokens.unknown_activity())).await?;
    let devices = devices.map_err(|e| AdminError::Internal(e.to_string()))?;
    let devices: Vec<Value> = devices
        .iter()
        .map(|d| {
            let mut v = activity(&d.activity);
            v["name"] = json!(d.name);
            v["created_at"] = json!(rfc3339_ms(d.created_at_ms));
            v["revoked_at"] = json!(d.revoked_at_ms.map(rfc3339_ms));
            v["kinds"] = json!(d.scope.describe());
            v
        })
        .collect();
    Ok(Json(json!({ "devices": devices, "unknown_token": activity(&unknown) })).into_response())
}

pub async fn revoke(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Answer {
    let target = name.chars().take(64).collect::<String>();
    let caller = admin.actor(&headers, "token.revoke", Some(&target)).await?;
    let outcome = async {
        let Nothing {} = body(&headers, &bytes)?;
        let tokens = admin.control.tokens.clone();
        let n = name.clone();
        blocking(move || tokens.revoke(&n))
            .await?
            .map_err(|e| match e {
                TokenError::Unknown(_) => AdminError::NotFound(e.to_string()),
                TokenError::AlreadyRevoked(_) => AdminError::Conflict(e.to_string()),
                other => AdminError::Internal(other.to_string()),
            })?;
        Ok(format!(
            "revoked the token of device {name:?}: its requests are refused from now on"
        ))
    }
    .await;
    admin
        .audit(
            &caller.user,
            "token.revoke",
            Some(&target),
            outcome.as_deref(),
        )
        .await;
    Ok(Json(json!({ "message": outcome? })).into_response())
}
