//! Enrollment over HTTPS, and the JSON fleet API (`GET /api/v1/plants`, with a bearer token
//! from `plantd hub api-token create`).
//!
//! A token (see [`crate::enrollment`], which both ends share) is one-time, expiring, stored
//! hashed. The plant first fetches the CA and trusts nothing until its SHA-256 equals the
//! fingerprint in its token; then it posts its certificate request over a connection verified
//! against that CA and gets its certificate and the hub's QUIC addresses (the messages are
//! [`crate::enrollment::protocol`]'s, which both ends share).
//!
//! `GET /api/v1/openapi.json` is the contract of every hub API route (this file's and
//! [`super::fleet`]'s); `tests/contract/hub.rs` holds the routers and a live hub to it.

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

/// Longest certificate request, in characters (a plant's is about 500).
const MAX_CSR: usize = 4096;

/// Largest enrollment request, read before the token is checked: room for every request the
/// OpenAPI document allows (a token and [`MAX_CSR`] characters), however JSON escapes them
/// (up to 12 bytes a character, `\ud83d\ude00`).
const ENROLL_BODY: usize = 64 * 1024;

/// The hub API's OpenAPI document.
const OPENAPI: &str = include_str!("openapi.json");

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route(protocol::CA_PATH, get(ca))
        .route(
            protocol::ENROLL_PATH,
            post(enroll).layer(axum::extract::DefaultBodyLimit::max(ENROLL_BODY)),
        )
        .route("/api/v1/plants", get(plants))
        .route(
            "/api/v1/openapi.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    OPENAPI,
                )
            }),
        )
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; see /api/v1/openapi.json".into(),
            )
        })
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

/// A certificate request the hub cannot sign: the enrollment is refused (422) and its token
/// stays unused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadCsr(String);

/// Checks run in the order the OpenAPI document states: the body (415, 400, 422), the token's
/// form and the csr's length (422), the token (403), then the certificate request (422). A schema-valid request
/// with a token the hub does not know is thus refused as such, whatever its `csr`.
async fn enroll(
    State(hub): State<Arc<Hub>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !crate::ingest::is_json(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with \"Content-Type: application/json\"".into(),
        );
    }
    let req: EnrollRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let (status, code) = match e.classify() {
                serde_json::error::Category::Data => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
                _ => (StatusCode::BAD_REQUEST, "malformed_json"),
            };
            return error(
                status,
                code,
                format!("expected {{\"token\", \"csr\"}}: {e}"),
            );
        }
    };
    // The token exactly as `plantd hub token create` printed it: `plantd enroll` trims what
    // was pasted before sending it.
    if let Err(m) = parse_token(&req.token).and_then(|_| {
        (req.token.trim() == req.token)
            .then_some(())
            .ok_or(crate::enrollment::EnrollError::NotAToken)
    }) {
        return refuse_field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_token",
            "token",
            m.to_string(),
        );
    }
    if req.csr.is_empty() || req.csr.chars().count() > MAX_CSR {
        return refuse_field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_csr",
            "csr",
            format!("csr: a PEM PKCS#10 certificate request of 1 to {MAX_CSR} characters"),
        );
    }
    let csr = rcgen::CertificateSigningRequestParams::from_pem(&req.csr)
        .map(|_| ())
        .map_err(|e| format!("csr is not a valid PEM PKCS#10 certificate request: {e}"));
    let mut store = match hub.database.store().await {
        Ok(s) => s,
        Err(e) => return no_connection(e),
    };
    let token_hash = crate::digest::sha256_hex(req.token.as_bytes());
    let issued = store
        .enroll(&token_hash, |plant| {
            csr.clone().map_err(BadCsr)?;
            let cert = hub
                .ca
                .sign_plant(&req.csr, plant)
                .map_err(|e| BadCsr(format!("csr cannot be signed: {e:#}")))?;
            let der = rustls::pki_types::pem::PemObject::from_pem_slice(cert.as_bytes())
                .map(|d: rustls::pki_types::CertificateDer| crate::digest::sha256_hex(&d))?;
            Ok((cert, der))
        })
        .await;
    match issued {
        Ok((TokenCheck::Enrolled, Some((plant, certificate)))) => {
            tracing::info!(%plant, "plant enrolled");
            // Every replica's addresses, this one's first; this one's alone if the database
            // cannot say (the plant can still be given more by `[replication] hubs`).
            let quic = store
                .replica_addresses(&hub.advertise)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %format!("{e:#}"), "reading the replicas' addresses");
                    hub.advertise.clone()
                });
            // 201: a certificate was made.
            (
                StatusCode::CREATED,
                Json(EnrollAnswer {
                    plant,
                    certificate,
                    ca: hub.ca.cert_pem.clone(),
                    quic: quic.clone(),
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
        Err(e) => match e.downcast::<BadCsr>() {
            Ok(BadCsr(m)) => refuse_field(StatusCode::UNPROCESSABLE_ENTITY, "bad_csr", "csr", m),
            Err(e) => unavailable(e),
        },
    }
}

fn refuse_field(status: StatusCode, code: &str, field: &str, message: String) -> Response {
    (status, Json(ErrorBody::field(code, field, message))).into_response()
}

/// 401 for `/api/v1/plants`, with the challenge RFC 6750 asks for.
fn unauthorized(message: &str) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", message.into());
    r.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer realm=\"plantd hub\""),
    );
    r
}

/// The fleet, as `plantd hub plants --json` shows it.
async fn plants(State(hub): State<Arc<Hub>>, headers: axum::http::HeaderMap) -> Response {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token.filter(|t| t.trim().starts_with("pda_")) else {
        return unauthorized(
            "missing \"Authorization: Bearer TOKEN\"; create one with `plantd hub api-token create --name NAME`",
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
            return unauthorized(
                "unknown token; create one with `plantd hub api-token create --name NAME`",
            )
        }
        Err(e) => return unavailable(e),
    }
    match store.plants().await {
        Ok(rows) => {
            let backups = hub.backups.clone();
            match tokio::task::spawn_blocking(move || super::truth::report(rows, &backups)).await {
                Ok(plants) => Json(plants).into_response(),
                Err(e) => unavailable(e.into()),
            }
        }
        Err(e) => unavailable(e),
    }
}
