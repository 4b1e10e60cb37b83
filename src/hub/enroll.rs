//! Enrollment over HTTPS, and the JSON fleet API (`GET /api/v1/plants`, with a bearer token
//! from `plantd hub api-token create`).
//!
//! A token (see [`crate::enrollment`], which both ends share) is one-time, expiring, stored
//! hashed. The plant first fetches the CA and trusts nothing until its SHA-256 equals the
//! fingerprint in its token; then it posts its certificate request over a connection verified
//! against that CA and gets its certificate and the hub's QUIC addresses (the messages are
//! [`crate::enrollment::protocol`]'s, which both ends share).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::database::DatabaseError;
use super::store::TokenCheck;
use super::Hub;
use crate::enrollment::parse_token;
use crate::enrollment::protocol::{self, EnrollAnswer, EnrollRequest, ErrorBody};

/// A new fleet API token; returns (token, its SHA-256 for storage).
pub fn make_api_token() -> anyhow::Result<(String, String)> {
    let token = format!("pda_{}", crate::digest::random_secret()?);
    let hash = crate::digest::sha256_hex(token.as_bytes());
    Ok((token, hash))
}

/// Largest enrollment request: a token and a PEM certificate request (about 1 KiB), read
/// before the token is checked.
const ENROLL_BODY: usize = 16 * 1024;

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route(protocol::CA_PATH, get(ca))
        .route(
            protocol::ENROLL_PATH,
            post(enroll).layer(axum::extract::DefaultBodyLimit::max(ENROLL_BODY)),
        )
        .route("/api/v1/plants", get(plants))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route".into()) })
        .with_state(hub)
}

/// No database connection to be had: every one busy (429, retry in a second), or the
/// database unreachable (503; the details go to the hub's log, never to the caller).
pub(super) fn no_connection(e: DatabaseError) -> Response {
    match e {
        DatabaseError::Busy { .. } => {
            tracing::warn!(error = %e, "hub database pool");
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "busy", e.to_string());
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            r
        }
        DatabaseError::Unreachable { .. } => unavailable(e.into()),
    }
}

/// The database failed: the details go to the hub's log, never to the caller.
fn unavailable(e: anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "hub database");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the hub cannot reach its database; retry later".into(),
    )
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(ErrorBody::new(code, message))).into_response()
}

async fn ca(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    hub.ca.cert_pem.clone()
}

async fn enroll(State(hub): State<Arc<Hub>>, body: axum::body::Bytes) -> Response {
    let req: EnrollRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("expected {{\"token\", \"csr\"}}: {e}"),
            )
        }
    };
    if let Err(m) = parse_token(&req.token) {
        return error(StatusCode::UNAUTHORIZED, "bad_token", m.to_string());
    }
    if let Err(e) = rcgen::CertificateSigningRequestParams::from_pem(&req.csr) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_csr",
            format!("csr is not a valid PEM PKCS#10 certificate request: {e}"),
        );
    }
    let mut store = match hub.database.store().await {
        Ok(s) => s,
        Err(e) => return no_connection(e),
    };
    let token_hash = crate::digest::sha256_hex(req.token.trim().as_bytes());
    let issued = store
        .enroll(&token_hash, |plant| {
            let cert = hub.ca.sign_plant(&req.csr, plant)?;
            let der = rustls::pki_types::pem::PemObject::from_pem_slice(cert.as_bytes())
                .map(|d: rustls::pki_types::CertificateDer| crate::digest::sha256_hex(&d))?;
            Ok((cert, der))
        })
        .await;
    match issued {
        Ok((TokenCheck::Enrolled, Some((plant, certificate)))) => {
            tracing::info!(%plant, "plant enrolled");
            // 201: a certificate was made.
            (
                StatusCode::CREATED,
                Json(EnrollAnswer {
                    plant,
                    certificate,
                    ca: hub.ca.cert_pem.clone(),
                    quic: hub.advertise.clone(),
                }),
            )
                .into_response()
        }
        Ok((check, _)) => {
            let message = match check {
                TokenCheck::Unknown => "unknown enrollment token; create one with `plantd hub token create --plant NAME`",
                TokenCheck::Expired => "this enrollment token has expired; create a new one",
                TokenCheck::Used => "this enrollment token was already used; each token enrolls once",
                TokenCheck::Revoked => "this plant is revoked at the hub",
                TokenCheck::Enrolled => "enrollment failed",
            };
            tracing::warn!(?check, "enrollment refused");
            error(StatusCode::FORBIDDEN, "enrollment_refused", message.into())
        }
        Err(e) => unavailable(e),
    }
}

/// The fleet, as `plantd hub plants --json` shows it.
async fn plants(State(hub): State<Arc<Hub>>, headers: axum::http::HeaderMap) -> Response {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token.filter(|t| t.trim().starts_with("pda_")) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing \"Authorization: Bearer TOKEN\"; create one with `plantd hub api-token create --name NAME`".into(),
        );
    };
    let store = match hub.database.store().await {
        Ok(s) => s,
        Err(e) => return no_connection(e),
    };
    match store
        .api_token(&crate::digest::sha256_hex(token.trim().as_bytes()))
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown token".into(),
            )
        }
        Err(e) => return unavailable(e),
    }
    match store.plants().await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => unavailable(e),
    }
}
