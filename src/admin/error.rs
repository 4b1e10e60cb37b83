//! The admin API's refusals: one enum, one exhaustive mapping to status and JSON body, in the
//! same shape as the ingest API's (`{"error": {"code", "message", "field"?}}`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::auth::{LockScope, Lockout};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// No session, or it ended.
    Unauthenticated,
    /// A viewer (or a monitoring token) asked for a change.
    Forbidden(String),
    /// A change without the session's CSRF token, or from another origin.
    Csrf(String),
    BadCredentials,
    /// The password is right; the user's second factor is needed too.
    TotpRequired,
    /// A wrong (or already used) code of the second factor.
    BadTotp,
    /// Too many wrong passwords or setup codes: for how long, and for whom.
    LockedOut(Lockout),
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
            TotpRequired => (
                StatusCode::UNAUTHORIZED,
                "totp_required",
                "enter the six-digit code of your authenticator app, or one of your recovery codes".into(),
            ),
            BadTotp => (
                StatusCode::UNAUTHORIZED,
                "bad_totp",
                "wrong code, or one used already: enter the app's current code (or an unused recovery code)".into(),
            ),
            LockedOut(lock) => (
                StatusCode::TOO_MANY_REQUESTS,
                "locked_out",
                locked_out(lock),
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
        let wait = match &self {
            AdminError::TooManySignIns => Some(1),
            AdminError::LockedOut(lock) => Some(retry_after(lock)),
            _ => None,
        };
        if let Some(s) = wait {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// Whole seconds until the lock ends, rounded up.
fn retry_after(lock: &Lockout) -> u64 {
    lock.left.as_secs() + u64::from(lock.left.subsec_nanos() > 0)
}

fn locked_out(lock: &Lockout) -> String {
    use super::auth::{FAILURE_WINDOW, MAX_FAILURES, MAX_NAME_FAILURES};
    let left = super::monitor::human(retry_after(lock).div_ceil(60).max(1) * 60);
    let window = super::monitor::human(FAILURE_WINDOW.as_secs());
    match lock.scope {
        LockScope::Address => format!(
            "too many wrong passwords from your address ({MAX_FAILURES} within {window}): this user name is locked for {left} for your address; try again then"
        ),
        LockScope::Everyone => format!(
            "too many wrong passwords for this user name from many addresses ({MAX_NAME_FAILURES} within {window}): it is locked for {left} for everyone; try again then (sessions already open keep working)"
        ),
        LockScope::Setup => format!(
            "too many wrong setup codes from your address ({MAX_FAILURES} within {window}): setup is locked for {left} for your address; try again then"
        ),
    }
}

impl From<super::store::StoreError> for AdminError {
    fn from(e: super::store::StoreError) -> Self {
        use super::store::StoreError;
        match e {
            StoreError::Invalid(m) => AdminError::Invalid(m),
            StoreError::Exists(_) | StoreError::LastAdmin(_) => AdminError::Conflict(e.to_string()),
            StoreError::NoUser(_) => AdminError::NotFound(e.to_string()),
            StoreError::Sqlite { .. } | StoreError::Hash(_) => AdminError::Internal(e.to_string()),
        }
    }
}
