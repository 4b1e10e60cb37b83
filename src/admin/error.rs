//! The admin API's refusals: one enum, one exhaustive mapping to status and JSON body, in the
//! same shape as the ingest API's (`{"error": {"code", "message", "field"?}}`).

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// No session, or it ended.
    Unauthenticated,
    /// A viewer (or a monitoring token) asked for a change.
    Forbidden(String),
    /// A change without the session's CSRF token, or from another origin.
    Csrf(String),
    BadCredentials,
    LockedOut(Duration),
    BadSetupCode,
    UnsupportedMediaType,
    /// A query parameter out of its range (one that does not parse is axum's 400, in the same
    /// shape and code through `listen::errors`).
    BadQuery(String),
    Invalid(String),
    /// One field of the body is wrong: which, and why.
    InvalidField {
        field: String,
        message: String,
    },
    /// The first admin exists already, or the name is taken.
    Conflict(String),
    /// Another backup job runs.
    Busy(String),
    NotFound(String),
    /// What was asked for is not part of this plant (no stack, not enrolled): 409, as it
    /// stays so until plant.toml changes (a 5xx would say the server failed).
    NotConfigured(String),
    /// Something the answer needs is down for now (the hub's database): 503, retry later.
    Unavailable(String),
    /// Two password checks run already: 429 with `Retry-After: 1`.
    TooManySignIns,
    /// The action ran and failed; the message says why.
    Failed(String),
    Internal(String),
}

impl AdminError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        use AdminError::*;
        match self {
            Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "sign in first (your session may have ended)".into(),
            ),
            Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            Csrf(m) => (StatusCode::FORBIDDEN, "csrf", m.clone()),
            BadCredentials => (
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "wrong user name or password".into(),
            ),
            LockedOut(d) => (
                StatusCode::TOO_MANY_REQUESTS,
                "locked_out",
                format!(
                    "too many wrong passwords: this user name is locked for {}; try again then",
                    super::monitor::human(d.as_secs().div_ceil(60).max(1) * 60)
                ),
            ),
            BadSetupCode => (
                StatusCode::FORBIDDEN,
                "bad_setup_code",
                "wrong setup code; it is in plantd's log (journalctl -u plantd) and in DATA_DIR/admin-setup-code".into(),
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with \"Content-Type: application/json\"".into(),
            ),
            BadQuery(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
            Invalid(m) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", m.clone()),
            InvalidField { field, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("{field}: {message}"),
            ),
            Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone()),
            Busy(m) => (StatusCode::CONFLICT, "busy", m.clone()),
            NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            NotConfigured(m) => (StatusCode::CONFLICT, "not_configured", m.clone()),
            Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m.clone()),
            TooManySignIns => (
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                "too many sign-ins at once; try again in a moment".into(),
            ),
            Failed(m) => (StatusCode::INTERNAL_SERVER_ERROR, "failed", m.clone()),
            Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", m.clone()),
        }
    }

    /// The audit log's outcome for a refusal or a failure.
    /// The `code` of the JSON error body, such as `bad_setup_code`.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    pub fn outcome(&self) -> &'static str {
        match self {
            AdminError::Failed(_) | AdminError::Internal(_) => "failed",
            _ => "refused",
        }
    }

    pub fn message(&self) -> String {
        self.parts().2
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let mut error = json!({"code": code, "message": message});
        if let AdminError::InvalidField { field, .. } = &self {
            error["field"] = json!(field);
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        let retry_after = match &self {
            AdminError::TooManySignIns => Some(1),
            AdminError::LockedOut(d) => Some(d.as_secs().max(1)),
            _ => None,
        };
        if let Some(s) = retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(s),
            );
        }
        response
    }
}

impl From<super::store::StoreError> for AdminError {
    fn from(e: super::store::StoreError) -> Self {
        use super::store::StoreError;
        match e {
            StoreError::Invalid(m) => AdminError::Invalid(m),
            StoreError::Exists(_) => AdminError::Conflict(e.to_string()),
            StoreError::Sqlite { .. } | StoreError::Hash(_) => AdminError::Internal(e.to_string()),
        }
    }
}
