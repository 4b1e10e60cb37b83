//! The Apply page's API: the local apply's queue (`GET /api/v1/admin/apply`) and its three
//! remedies (`POST /api/v1/admin/apply/retry|park|replay` with `{"seq": N}`).
//!
//! Each remedy is the control service's [`Request::ApplyRetry`] (or park, replay), the one the
//! CLI sends over the socket: the applier decides, and a remedy that does not fit the queue
//! (another seq than where it stopped, a seq that is not parked, Odoo still rejecting it) is
//! refused with 409 and its message, having changed nothing. Every remedy is audited, done or
//! refused. The fleet page on the hub parses its bodies with [`seq_of`] too.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
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
    match map.get("seq") {
        None => Err(AdminError::InvalidField {
            field: "seq".into(),
            message: "is required: the seq of the transaction (`apply status` shows it)".into(),
        }),
        Some(v) => seq_in("seq", v),
    }
}

/// A seq given in field `field`, as JSON writes it.
fn seq_in(field: &str, v: &Value) -> Result<u64, AdminError> {
    // JSON has numbers, not integers: 61.0 is the seq 61, as JSON Schema's "integer" says.
    v.as_u64()
        .or_else(|| {
            v.as_f64()
                // `i64::MAX as f64` is 2^63: from there on, past any seq.
                .filter(|f| f.fract() == 0.0 && (1.0..i64::MAX as f64).contains(f))
                .map(|f| f as u64)
        })
        .filter(|n| (1..=MAX_SEQ).contains(n))
        .ok_or_else(|| AdminError::InvalidField {
            field: field.into(),
            message: format!("{v} is not a transaction's seq (a whole number from 1 to {MAX_SEQ})"),
        })
}

/// Most parked transactions one page of the list holds.
pub const MAX_PAGE: u32 = 500;

/// Which parked transactions a page or a bulk remedy takes: of a kind, within seqs, whose
/// message holds a text (any of them when absent).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    kind: Option<String>,
    from_seq: Option<u64>,
    to_seq: Option<u64>,
    message: Option<String>,
}

impl Filter {
    fn check(&self) -> Result<(), AdminError> {
        let field = |field: &str, message: String| AdminError::InvalidField {
            field: field.into(),
            message,
        };
        for (name, seq) in [("from_seq", self.from_seq), ("to_seq", self.to_seq)] {
            if seq.is_some_and(|n| !(1..=MAX_SEQ).contains(&n)) {
                return Err(field(
                    name,
                    format!("not a transaction's seq (a whole number from 1 to {MAX_SEQ})"),
                ));
            }
        }
        // A range that ends before it begins takes nothing (a bulk park of it is refused).
        for (name, text, max) in [("kind", &self.kind, 128), ("message", &self.message, 500)] {
            if let Some(t) = text {
                let n = t.chars().count();
                if n == 0 || n > max {
                    return Err(field(
                        name,
                        format!("give 1 to {max} characters, or leave it out for any"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn takes(&self, p: &crate::apply::Parked) -> bool {
        self.from_seq.is_none_or(|a| p.seq >= a)
            && self.to_seq.is_none_or(|b| p.seq <= b)
            && self.kind.as_deref().is_none_or(|k| k == p.kind)
            && self
                .message
                .as_deref()
                .is_none_or(|m| p.message.to_lowercase().contains(&m.to_lowercase()))
    }

    /// In words, for messages and the audit log.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(k) = &self.kind {
            parts.push(format!("kind {k}"));
        }
        match (self.from_seq, self.to_seq) {
            (Some(a), Some(b)) => parts.push(format!("seqs {a} to {b}")),
            (Some(a), None) => parts.push(format!("seqs from {a}")),
            (None, Some(b)) => parts.push(format!("seqs up to {b}")),
            (None, None) => {}
        }
        if let Some(m) = &self.message {
            parts.push(format!("message holding {m:?}"));
        }
        if parts.is_empty() {
            "every one".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A page of the parked list, and which parked transactions it takes.
#[derive(Debug, Deserialize)]
pub struct Page {
    offset: Option<u32>,
    limit: Option<u32>,
    kind: Option<String>,
    from_seq: Option<u64>,
    to_seq: Option<u64>,
    message: Option<String>,
}

/// The queue with the parked transactions' content (a page of them, filtered): a user's
/// session, not a device token (monitoring tools read the overview's apply figures).
pub async fn status(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Answer {
    admin.reader(&headers)?;
    let limit = match page.limit {
        None => 50,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(n) => {
            return Err(AdminError::BadQuery(format!(
                "limit={n}: give a whole number from 1 to {MAX_PAGE}"
            )))
        }
    } as usize;
    let offset = page.offset.unwrap_or(0) as usize;
    let filter = Filter {
        kind: page.kind,
        from_seq: page.from_seq,
        to_seq: page.to_seq,
        message: page.message,
    };
    filter
        .check()
        .map_err(|e| AdminError::BadQuery(e.message()))?;
    if admin.control.apply.is_none() {
        return Ok(Json(json!({"enabled": false, "note": OFF})).into_response());
    }
    match admin.control.handle(Request::ApplyStatus).await {
        ControlResponse::Apply(mut r) => {
            let total = r.parked.len();
            let matching: Vec<_> = std::mem::take(&mut r.parked)
                .into_iter()
                .filter(|p| filter.takes(p))
                .collect();
            let shown = matching.len();
            r.parked = matching.into_iter().skip(offset).take(limit).collect();
            let mut view = serde_json::to_value(&r).expect("an apply report serializes");
            view["enabled"] = json!(true);
            view["behind"] = json!(r.last_seq.saturating_sub(r.applied_seq));
            view["parked_total"] = json!(total);
            view["parked_matching"] = json!(shown);
            view["offset"] = json!(offset);
            view["limit"] = json!(limit);
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

/// A bulk remedy's body: which transactions, and whether to only count them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bulk {
    kind: Option<String>,
    /// Seqs as JSON numbers (61.0 is 61), checked by [`seq_in`].
    from_seq: Option<Value>,
    to_seq: Option<Value>,
    message: Option<String>,
    #[serde(default)]
    preview: bool,
    /// Bulk park only: end the bulk park in force.
    #[serde(default)]
    cancel: bool,
}

impl Bulk {
    fn filter(&self) -> Result<Filter, AdminError> {
        let seq = |field: &str, v: &Option<Value>| v.as_ref().map(|v| seq_in(field, v)).transpose();
        let filter = Filter {
            kind: self.kind.clone(),
            from_seq: seq("from_seq", &self.from_seq)?,
            to_seq: seq("to_seq", &self.to_seq)?,
            message: self.message.clone(),
        };
        filter.check()?;
        Ok(filter)
    }
}

/// Most parked transactions one bulk replay takes (each is a call to Odoo).
pub const MAX_BULK_REPLAY: usize = 1000;
/// Most journal rows a bulk park's preview counts.
const PREVIEW_CAP: u64 = 200_000;

fn applier(admin: &Admin) -> Result<&crate::apply::Applier, AdminError> {
    admin
        .control
        .apply
        .as_ref()
        .ok_or_else(|| AdminError::Conflict(format!("{OFF}; nothing was changed")))
}

fn remedy_error(e: crate::apply::RemedyError) -> AdminError {
    match e {
        crate::apply::RemedyError::Refused(m) => AdminError::Conflict(m),
        crate::apply::RemedyError::Failed(m) => AdminError::Failed(m),
    }
}

/// `POST /api/v1/admin/apply/bulk-park`: park each transaction Odoo rejects among seqs
/// `from_seq..=to_seq` (default: from where the queue is to the last seq now), of `kind`,
/// whose message holds `message`; `preview` only counts the transactions it could park;
/// `cancel` ends the one in force. One audit entry per bulk park, not one per transaction.
pub async fn bulk_park(State(admin): State<Admin>, headers: HeaderMap, bytes: Bytes) -> Answer {
    let action = "apply.bulk_park";
    let parsed: Result<Bulk, _> = body(&headers, &bytes);
    let preview = parsed.as_ref().is_ok_and(|b| b.preview && !b.cancel);
    let caller = admin.actor(&headers, action, None).await?;
    let outcome: Result<(Value, String), AdminError> = async {
        let b = parsed?;
        let filter = b.filter()?;
        let applier = applier(&admin)?;
        if b.cancel {
            let m = applier.cancel_bulk_park().await.map_err(remedy_error)?;
            return Ok((json!({ "message": m }), m));
        }
        let r = applier.status().await;
        let from = filter
            .from_seq
            .unwrap_or_else(|| r.stopped_at.unwrap_or(r.applied_seq.saturating_add(1)));
        // Never past the last seq now: a bulk park covers what was sent before it was made.
        let to = filter.to_seq.unwrap_or(r.last_seq).min(r.last_seq);
        let (count, capped) = applier
            .pending_matching(from, to, filter.kind.as_deref(), PREVIEW_CAP)
            .await
            .map_err(remedy_error)?;
        let up_to = format!("{}{count}", if capped { "at least " } else { "" });
        let rule = crate::apply::ParkRule {
            from,
            to,
            kind: filter.kind.clone(),
            message: filter.message.clone(),
            by: caller.user.clone(),
            at: super::store::now(),
            parked: 0,
        };
        if b.preview {
            let m = format!(
                "{}: {up_to} transaction{} not yet applied there; only those Odoo rejects are parked",
                rule.describe(),
                if count == 1 { "" } else { "s" }
            );
            return Ok((
                json!({"preview": true, "matching": count, "at_least": capped, "from_seq": from, "to_seq": to, "message": m}),
                m,
            ));
        }
        let m = applier.bulk_park(rule).await.map_err(remedy_error)?;
        let detail = format!("{m} (up to {up_to})");
        Ok((json!({ "message": m, "matching": count, "from_seq": from, "to_seq": to }), detail))
    }
    .await;
    if !preview {
        admin
            .audit(
                &caller.user,
                action,
                None,
                outcome.as_ref().map(|(_, d)| d.as_str()),
            )
            .await;
    }
    Ok(Json(outcome?.0).into_response())
}

/// `POST /api/v1/admin/apply/bulk-replay`: replay the parked transactions the filter takes
/// (at most [`MAX_BULK_REPLAY`] at once), in seq order; those Odoo takes leave the parked
/// list, the others stay. `preview` only counts them. One audit entry per bulk replay, written
/// by the task that replays, so that a client that gives up waiting cannot leave it unsaid.
pub async fn bulk_replay(State(admin): State<Admin>, headers: HeaderMap, bytes: Bytes) -> Answer {
    /// One bulk replay at a time.
    static RUNNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let action = "apply.bulk_replay";
    let parsed: Result<Bulk, _> = body(&headers, &bytes);
    let caller = admin.actor(&headers, action, None).await?;
    let prepared: Result<(Vec<u64>, String, bool), AdminError> = async {
        let b = parsed?;
        if b.cancel {
            return Err(AdminError::InvalidField {
                field: "cancel".into(),
                message: "a bulk replay has nothing to cancel: it ends when it answers".into(),
            });
        }
        let filter = b.filter()?;
        let applier = applier(&admin)?;
        let mut seqs: Vec<u64> = applier
            .status()
            .await
            .parked
            .iter()
            .filter(|p| filter.takes(p))
            .map(|p| p.seq)
            .collect();
        seqs.sort_unstable();
        Ok((seqs, filter.describe(), b.preview))
    }
    .await;
    let (seqs, which, preview) = match prepared {
        Ok(p) => p,
        Err(e) => {
            admin.audit(&caller.user, action, None, Err(&e)).await;
            return Err(e);
        }
    };
    if preview {
        let m = format!(
            "{} parked transaction{} match ({which}){}",
            seqs.len(),
            if seqs.len() == 1 { "" } else { "s" },
            if seqs.len() > MAX_BULK_REPLAY {
                format!("; one bulk replay takes the first {MAX_BULK_REPLAY}")
            } else {
                String::new()
            }
        );
        return Ok(
            Json(json!({"preview": true, "matching": seqs.len(), "message": m})).into_response(),
        );
    }
    let Ok(one) = RUNNING.try_lock() else {
        let e = AdminError::Busy("another bulk replay is running; wait for its answer".into());
        admin.audit(&caller.user, action, None, Err(&e)).await;
        return Err(e);
    };
    let task_admin = admin.clone();
    let user = caller.user.clone();
    let replays = tokio::spawn(async move {
        let _one = one;
        let outcome = replay_all(&task_admin, seqs, &which).await;
        task_admin
            .audit(
                &user,
                action,
                None,
                outcome.as_ref().map(|(_, d)| d.as_str()),
            )
            .await;
        outcome
    });
    let outcome = replays
        .await
        .map_err(|e| AdminError::Internal(format!("the bulk replay stopped: {e}")))?;
    Ok(Json(outcome?.0).into_response())
}

/// Replays `seqs` in order, at most [`MAX_BULK_REPLAY`]; the answer and the audit's detail.
async fn replay_all(
    admin: &Admin,
    mut seqs: Vec<u64>,
    which: &str,
) -> Result<(Value, String), AdminError> {
    let applier = applier(admin)?;
    let left = seqs.len().saturating_sub(MAX_BULK_REPLAY);
    seqs.truncate(MAX_BULK_REPLAY);
    let (mut applied, mut still) = (0usize, Vec::new());
    for seq in &seqs {
        match applier.replay(*seq).await {
            Ok(_) => applied += 1,
            Err(crate::apply::RemedyError::Refused(m)) => still.push(m),
            Err(crate::apply::RemedyError::Failed(m)) => {
                return Err(AdminError::Failed(format!(
                    "after {applied} applied, seq {seq}: {m}; the rest was not tried"
                )))
            }
        }
    }
    let mut m = format!(
        "replayed {} parked ({which}): {applied} applied, {} still parked",
        seqs.len(),
        still.len()
    );
    if let Some(first) = still.first() {
        m.push_str(&format!(" (the first: {first})"));
    }
    if left > 0 {
        m.push_str(&format!("; {left} more match: replay again for them"));
    }
    Ok((
        json!({"message": m, "applied": applied, "still_parked": still.len(), "left": left}),
        m,
    ))
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
