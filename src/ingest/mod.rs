//! The shop-floor HTTP API in front of the journal.
//!
//! A device gets `201`/`200` only after its transaction is fsync'd in the journal. Every refusal
//! is `{"error": {"code", "message", "field"?}}` with a precise status, and a refused request
//! changes nothing. Checks run cheapest first: token, content type, size, JSON, fields.

mod error;
mod scope;
mod validate;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde_json::{json, Value};

pub use error::ApiError;

use crate::field::FieldError;
use crate::health::Health;
use crate::journal::{Cursor, Journal};
use crate::tokens::{Scope, Tokens, Verdict};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// Largest body read (and discarded) to answer 413 properly; beyond it the connection closes.
const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;
/// Most transactions in one array.
pub const MAX_ITEMS: usize = 1000;

use crate::journal::JOURNAL_OK;

const OPENAPI: &str = include_str!("openapi.json");

/// What the API handlers share.
#[derive(Clone)]
pub struct Api {
    pub journal: Journal,
    pub tokens: Arc<Tokens>,
    pub health: Arc<Health>,
    /// The replication link, when the plant is enrolled.
    pub link: tokio::sync::watch::Receiver<Option<crate::replication::plant::LinkReport>>,
    /// The kinds `[apply]` maps to Odoo; with them, other kinds and payloads that cannot be
    /// applied are refused (422) when they arrive.
    pub kinds: Option<Arc<crate::kinds::mapping::Kinds>>,
}

/// The API's routes; unknown routes and methods answer in the same JSON error shape.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/api/v1/transactions", post(post_transactions))
        .route("/api/v1/transactions/{key}", get(get_transaction))
        .route("/api/v1/journal", get(get_journal))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .fallback(|| async { ApiError::NotFound("no such route; see /api/v1/openapi.json".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(api)
}

/// The device behind the request's token; a refusal is recorded (for the device when its
/// token names one, else as an unknown token).
fn authenticate(api: &Api, headers: &HeaderMap) -> Result<(String, Scope), ApiError> {
    let found = token_of(api, headers);
    if let Err(e) = &found {
        let device = match e {
            ApiError::Revoked(device) => Some(device.as_str()),
            _ => None,
        };
        let (status, code, message) = e.summary();
        api.tokens.refused(device, status, code, &message);
    }
    found
}

/// Records what became of an authenticated device's request.
fn record<T>(api: &Api, device: &str, result: &Result<T, ApiError>, accepted: impl Fn(&T) -> u64) {
    match result {
        Ok(v) => api.tokens.seen(device, accepted(v)),
        Err(e) => {
            let (status, code, message) = e.summary();
            api.tokens.refused(Some(device), status, code, &message);
        }
    }
}

fn token_of(api: &Api, headers: &HeaderMap) -> Result<(String, Scope), ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing \"Authorization: Bearer TOKEN\" header; create a token with `plantd token create --device NAME`".into()))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("Authorization header must be \"Bearer TOKEN\"".into())
        })?;
    match api.tokens.verify_scoped(token) {
        (Verdict::Valid { device }, Some(scope)) => Ok((device, scope)),
        (Verdict::Valid { device }, None) => Ok((device, Scope::Kinds(Default::default()))),
        (Verdict::Revoked { device }, _) => Err(ApiError::Revoked(device)),
        (Verdict::Unknown, _) => Err(ApiError::Unauthorized("unknown token".into())),
    }
}

async fn post_transactions(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (device, scope) = authenticate(&api, &headers)?;
    let result = accept(&api, &device, scope, &headers, body).await;
    record(&api, &device, &result, |(_, n)| *n);
    result.map(|(response, _)| response)
}

/// A device's transactions, journaled: the answer, and how many were new.
async fn accept(
    api: &Api,
    device: &str,
    scope: Scope,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Response, u64), ApiError> {
    let device = device.to_string();
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes = read_body(body, declared).await?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::MalformedJson(format!("body is not valid JSON: {e}")))?;
    let (items, is_array) = validate::transactions(value, &device)?;
    for (i, t) in items.iter().enumerate() {
        // What the plant cannot apply first (422 names the field), then what this device may
        // not send (403).
        let applicable = match &api.kinds {
            Some(kinds) => {
                let payload: Value = serde_json::from_str(&t.payload).unwrap_or(Value::Null);
                kinds.step(&t.kind, &payload).map(|_| ()).map_err(
                    |FieldError { field, message }| {
                        let code = if field == "kind" {
                            "unknown_kind"
                        } else {
                            "invalid_payload"
                        };
                        let field = if is_array {
                            format!("[{i}].{field}")
                        } else {
                            field
                        };
                        ApiError::invalid(code, field, message)
                    },
                )
            }
            None => Ok(()),
        };
        let allowed = || scope::check(&device, &scope, api.kinds.as_deref(), t, i, is_array);
        let Err(refusal) = applicable.and_then(|()| allowed()) else {
            continue;
        };
        // A device sending again what it journaled before its scope or the mappings changed
        // gets its original answer from the journal (or a key conflict), not a refusal:
        // either way nothing new is journaled.
        let sent_before = api
            .journal
            .get(device.clone(), t.key.clone())
            .await
            .ok()
            .flatten()
            .is_some();
        if !sent_before {
            return Err(refusal);
        }
    }
    let keys: Vec<String> = items.iter().map(|t| t.key.clone()).collect();
    let appended = api
        .journal
        .append(items)
        .await
        .map_err(|e| ApiError::from_journal(e, is_array))?;
    let new = appended.iter().filter(|a| !a.duplicate).count() as u64;
    let any_new = new > 0;
    let mut answers = keys
        .into_iter()
        .zip(appended)
        .map(|(key, a)| json!({"seq": a.seq, "key": key, "duplicate": a.duplicate}));
    let status = if any_new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = if is_array {
        Value::Array(answers.collect())
    } else {
        answers.next().expect("one item was appended")
    };
    Ok(((status, Json(body)).into_response(), new))
}

/// Whether the request says its body is JSON (`Content-Type: application/json`, any charset).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads the body, at most [`MAX_BODY`] bytes. A body over the limit is still read (up to
/// [`DRAIN_LIMIT`]) and thrown away, so that a device that writes its whole body before reading
/// gets the 413 rather than a broken connection.
async fn read_body(mut body: Body, declared: Option<u64>) -> Result<Bytes, ApiError> {
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return Err(ApiError::BodyTooLarge);
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(MAX_BODY as u64) as usize);
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::BodyUnreadable(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            total += data.len();
            if total <= MAX_BODY {
                buf.extend_from_slice(&data);
            } else if total as u64 > DRAIN_LIMIT {
                break;
            }
        }
    }
    if total > MAX_BODY {
        return Err(ApiError::BodyTooLarge);
    }
    Ok(Bytes::from(buf))
}

async fn get_transaction(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    // A device reads only its own transactions: keys are per device, and another device's
    // is not there for it (the same answer as a key never sent).
    let (device, _) = authenticate(&api, &headers)?;
    let stored = api
        .journal
        .get(device.clone(), key.clone())
        .await
        .map_err(|e| ApiError::from_journal(e, false));
    record(&api, &device, &stored, |_| 0);
    let Some(t) = stored? else {
        return Err(ApiError::NotFound(format!(
            "no transaction with key {key:?} from this device (never sent by it, or pruned after the hub acknowledged it and the retention window passed)"
        )));
    };
    let payload: Value = serde_json::from_str(&t.payload).unwrap_or(Value::Null);
    Ok(Json(json!({
        "seq": t.seq,
        "key": t.key,
        "device": t.device,
        "kind": t.kind,
        "payload": payload,
        "occurred_at": t.occurred_at,
        "received_at": crate::clock::rfc3339_ms(t.received_at_ms),
        "hub_acknowledged": t.seq <= api.journal.cursor(Cursor::HubAcked),
    })))
}

async fn get_journal(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let (device, _) = authenticate(&api, &headers)?;
    api.tokens.seen(&device, 0);
    let s = api
        .journal
        .stats()
        .await
        .map_err(|e| ApiError::from_journal(e, false))?;
    let link = api.link.borrow().as_ref().map(|r| r.state);
    Ok(Json(json!({
        "link": link.map_or(json!("not_enrolled"), |l| json!(l)),
        "depth": s.depth,
        "last_seq": s.last_seq,
        "hub_acked_seq": s.hub_acked_seq,
        "applied_seq": s.applied_seq,
        "oldest_unacked_age_s": s.oldest_unacked_age_s,
    })))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// 200 when a write to the journal commits; 503 with the reason otherwise.
async fn healthz(State(api): State<Api>) -> Response {
    match api.journal.probe().await {
        Ok(()) => {
            api.health
                .set("journal", crate::health::State::Ok, JOURNAL_OK);
            (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
        }
        Err(e) => {
            api.health
                .set("journal", crate::health::State::Unhealthy, e.to_string());
            let mut r = ApiError::from_journal(e, false).into_response();
            if r.status() != StatusCode::INSUFFICIENT_STORAGE {
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            r
        }
    }
}
