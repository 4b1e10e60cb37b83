//! The API's refusals: one enum, one exhaustive mapping to status and JSON body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::journal::JournalError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// No token, a malformed header, or a token nobody issued.
    Unauthorized(String),
    /// The device's token was revoked.
    Revoked(String),
    UnsupportedMediaType,
    BodyTooLarge,
    MalformedJson(String),
    /// The body stopped arriving or broke off.
    BodyUnreadable(String),
    /// A field failed validation: `code`, dotted `field`, what is wrong.
    Invalid {
        code: &'static str,
        field: Option<String>,
        message: String,
    },
    TooManyItems(usize),
    /// The device's token does not allow this: a kind outside its scope, a model its kind may
    /// not create.
    Forbidden {
        code: &'static str,
        field: Option<String>,
        message: String,
    },
    /// The key was used before for a different transaction.
    KeyConflict {
        field: String,
        message: String,
    },
    NotFound(String),
    MethodNotAllowed,
    DiskFull(String),
    ShuttingDown,
    /// The journal's storage failed for another reason.
    Storage(String),
}

impl ApiError {
    pub fn invalid(
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ApiError::Invalid {
            code,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// Maps a journal failure; `in_array` says whether item positions prefix field names.
    pub fn from_journal(e: JournalError, in_array: bool) -> ApiError {
        match e {
            JournalError::DiskFull => ApiError::DiskFull(e.to_string()),
            JournalError::KeyConflict { index, ref key, seq } => ApiError::KeyConflict {
                field: if in_array {
                    format!("[{index}].key")
                } else {
                    "key".into()
                },
                message: format!(
                    "key {key:?} was already used by this device for seq {seq} with a different kind or payload; use a new key for a new transaction"
                ),
            },
            JournalError::Closed => ApiError::ShuttingDown,
            JournalError::CursorBeyondEnd { .. }
            | JournalError::Storage(_)
            | JournalError::Open { .. } => {
                tracing::error!(error = %e, "journal failure");
                ApiError::Storage(e.to_string())
            }
        }
    }

    /// The status, code and message a device gets, as its activity records them.
    pub fn summary(&self) -> (u16, &'static str, String) {
        let (status, code, _, message) = self.parts();
        (status.as_u16(), code, message)
    }

    fn parts(&self) -> (StatusCode, &'static str, Option<&str>, String) {
        use ApiError::*;
        match self {
            Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", None, m.clone()),
            Revoked(device) => (
                StatusCode::FORBIDDEN,
                "token_revoked",
                None,
                format!(
                    "the token of device {device:?} was revoked; ask the plant admin for a new one"
                ),
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                None,
                "send the body as JSON with \"Content-Type: application/json\"".into(),
            ),
            BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                None,
                format!(
                    "the body is over {} bytes; split it into smaller requests",
                    super::MAX_BODY
                ),
            ),
            MalformedJson(m) => (StatusCode::BAD_REQUEST, "malformed_json", None, m.clone()),
            BodyUnreadable(m) => (
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                None,
                format!(
                    "the body could not be read to its end ({m}); send it again with the same key"
                ),
            ),
            Invalid {
                code,
                field,
                message,
            } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                field.as_deref(),
                message.clone(),
            ),
            Forbidden {
                code,
                field,
                message,
            } => (
                StatusCode::FORBIDDEN,
                code,
                field.as_deref(),
                message.clone(),
            ),
            TooManyItems(n) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "too_many_items",
                None,
                format!(
                    "the array has {n} transactions; send at most {} per request",
                    super::MAX_ITEMS
                ),
            ),
            KeyConflict { field, message } => (
                StatusCode::CONFLICT,
                "key_conflict",
                Some(field),
                message.clone(),
            ),
            NotFound(m) => (StatusCode::NOT_FOUND, "not_found", None, m.clone()),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                None,
                "this route does not take that method; see /api/v1/openapi.json".into(),
            ),
            DiskFull(m) => (
                StatusCode::INSUFFICIENT_STORAGE,
                "disk_full",
                None,
                m.clone(),
            ),
            ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                None,
                "plantd is shutting down; retry with the same key".into(),
            ),
            Storage(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "journal_unavailable",
                None,
                format!("{m}; retry with the same key"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field, message) = self.parts();
        let mut error = json!({"code": code, "message": message});
        if let Some(f) = field {
            error["field"] = json!(f);
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: tell the client which scheme to use.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"plantd\""),
            );
        }
        response
    }
}
