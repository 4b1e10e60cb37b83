//! The Apply page's API: the local apply's queue (`GET /api/v1/admin/apply`) and its three
//! remedies (`POST /api/v1/admin/apply/retry|park|replay` with `{"seq": N}`).
//!
//! Each remedy is the control service's [`Request::ApplyRetry`] (or park, replay), the one the
//! CLI sends over the socket: the applier decides, and a remedy that does not fit the queue
//! (another seq than where it stopped, a seq that is not parked, Odoo still rejecting it) is
//! refused with 409 and its message, having changed nothing. Every remedy is audited, done or
//! refused. The fleet page on the hub parses its bodies with [`seq_of`] too.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Map, Value};

use super::api::{body, Answer};
use super::{Admin, AdminError};
use crate::control::{Request, Response as ControlResponse};

/// What an admin can do about a stopped or parked transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// Try the transaction the queue stopped at again.
    Retry,
    /// Set it aside and let the rest through.
    Park,
    /// Apply a parked transaction now.
    Replay,
}

impl Remedy {
    /// The audit log's action.
    pub fn action(self) -> &'static str {
        match self {
            Remedy::Retry => "apply.retry",
            Remedy::Park => "apply.park",
            Remedy::Replay => "apply.replay",
        }
    }

    fn request(self, seq: u64) -> Request {
        match self {
            Remedy::Retry => Request::ApplyRetry { seq },
            Remedy::Park => Request::ApplyPark { seq },
            Remedy::Replay => Request::ApplyReplay { seq },
        }
    }
}

/// Why the Apply page is empty on a plant without `[apply] local`.
const OFF: &str = "this plant does not apply transactions to its Odoo: set [apply] local = true in plant.toml (and [odoo]), then restart plantd";

/// The JSON object of a remedy's body, with only the `allowed` fields.
pub fn fields(
    headers: &HeaderMap,
    bytes: &Bytes,
    allowed: &[&str],
) -> Result<Map<String, Value>, AdminError> {
    let example = if allowed.contains(&"plant") {
        r#"{"plant": "lyon", "seq": 61}"#
    } else {
        r#"{"seq": 61}"#
    };
    let Value::Object(map) = body::<Value>(headers, bytes)? else {
        return Err(AdminError::Invalid(format!(
            "body: not a JSON object; send {example}"
        )));
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(AdminError::InvalidField {
            field: unknown.clone(),
            message: format!("unknown field; send {example}"),
        });
    }
    Ok(map)
}

/// The largest seq there can be: the journal's seqs are SQLite integers.
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// The `seq` field: a transaction's seq, a whole number from 1 to [`MAX_SEQ`].
pub fn seq_of(map: &Map<String, Value>) -> Result<u64, AdminError> {
    let invalid = |message: String| AdminError::InvalidField {
        field: "seq".into(),
        message,
    };
    match map.get("seq") {
        None => Err(invalid(
            "is required: the seq of the transaction (`apply status` shows it)".into(),
        )),
        // JSON has numbers, not integers: 61.0 is the seq 61, as JSON Schema's "integer" says.
        Some(v) => v
            .as_u64()
            .or_else(|| {
                v.as_f64()
                    // `i64::MAX as f64` is 2^63: from there on, past any seq.
                    .filter(|f| f.fract() == 0.0 && (1.0..i64::MAX as f64).contains(f))
                    .map(|f| f as u64)
            })
            .filter(|n| (1..=MAX_SEQ).contains(n))
            .ok_or_else(|| {
                invalid(format!(
                    "{v} is not a transaction's seq (a whole number from 1 to {MAX_SEQ})"
                ))
            }),
    }
}

/// The queue with the parked transactions' content: a user's session, not a device token
/// (monitoring tools read the overview's apply figures).
pub async fn status(State(admin): State<Admin>, headers: HeaderMap) -> Answer {
    admin.reader(&headers)?;
    if admin.control.apply.is_none() {
        return Ok(Json(json!({"enabled": false, "note": OFF})).into_response());
    }
    match admin.control.handle(Request::ApplyStatus).await {
        ControlResponse::Apply(r) => {
            let mut view = serde_json::to_value(&r).expect("an apply report serializes");
            view["enabled"] = json!(true);
            view["behind"] = json!(r.last_seq.saturating_sub(r.applied_seq));
            Ok(Json(view).into_response())
        }
        ControlResponse::Error { message } => Err(AdminError::Failed(message)),
        other => Err(AdminError::Internal(format!(
            "unexpected answer: {other:?}"
        ))),
    }
}

async fn remedy(admin: Admin, headers: HeaderMap, bytes: Bytes, remedy: Remedy) -> Answer {
    let action = remedy.action();
    let seq = fields(&headers, &bytes, &["seq"]).and_then(|m| seq_of(&m));
    let target = seq.as_ref().ok().map(|s| format!("seq {s}"));
    let caller = admin.actor(&headers, action, target.as_deref()).await?;
    let outcome = async {
        let seq = seq?;
        if admin.control.apply.is_none() {
            return Err(AdminError::Conflict(format!("{OFF}; nothing was changed")));
        }
        admin.control(remedy.request(seq)).await
    }
    .await;
    admin
        .audit(&caller.user, action, target.as_deref(), outcome.as_deref())
        .await;
    Ok(Json(json!({ "message": outcome? })).into_response())
}

pub async fn retry(State(admin): State<Admin>, headers: HeaderMap, bytes: Bytes) -> Answer {
    remedy(admin, headers, bytes, Remedy::Retry).await
}

pub async fn park(State(admin): State<Admin>, headers: HeaderMap, bytes: Bytes) -> Answer {
    remedy(admin, headers, bytes, Remedy::Park).await
}

pub async fn replay(State(admin): State<Admin>, headers: HeaderMap, bytes: Bytes) -> Answer {
    remedy(admin, headers, bytes, Remedy::Replay).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, HeaderValue};

    fn parse(body: &str) -> Result<u64, AdminError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        fields(&headers, &Bytes::from(body.to_string()), &["seq"]).and_then(|m| seq_of(&m))
    }

    fn field(e: AdminError) -> String {
        match e {
            AdminError::InvalidField { field, .. } => field,
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn a_remedys_body_names_the_field_that_is_wrong() {
        assert_eq!(parse(r#"{"seq": 61}"#), Ok(61));
        // JSON Schema's integers: a whole number however it is written.
        assert_eq!(parse(r#"{"seq": 61.0}"#), Ok(61));
        assert_eq!(parse(r#"{"seq": 1e2}"#), Ok(100));
        assert_eq!(
            parse(r#"{"seq": 9223372036854775807}"#),
            Ok(i64::MAX as u64)
        );
        for bad in [
            r#"{"seq": 0}"#,
            r#"{"seq": -1}"#,
            r#"{"seq": -0.0}"#,
            r#"{"seq": "61"}"#,
            r#"{"seq": 1.5}"#,
            r#"{"seq": 9223372036854775808}"#,
            r#"{"seq": 9.3e18}"#,
            "{}",
            "",
        ] {
            assert_eq!(field(parse(bad).unwrap_err()), "seq", "{bad}");
        }
        assert_eq!(field(parse(r#"{"seq": 1, "sq": 2}"#).unwrap_err()), "sq");
        assert!(matches!(parse("[61]"), Err(AdminError::Invalid(_))));
        assert!(matches!(parse("{"), Err(AdminError::Invalid(_))));
    }
}
