//! Remote actions: the hub asks a plant to do something (take a backup, collect diagnostics,
//! restart a service…) on a stream of their own beside the session.
//!
//! The plant opens a bi stream with [`Frame::RemoteReady`]; the hub pushes
//! [`Frame::RemoteAction`] frames on it, and the plant answers each with a
//! [`Frame::RemoteResult`] of the same id, in whatever order they finish. This file holds what
//! both ends share: the actions' arguments ([`Command::parse`], pure), and the plant's side of
//! the stream ([`Responder`], a [`ConnectionTask`]), which hands each action to an
//! [`Executor`] (the plant root's, which audits and carries it out).
//!
//! Promises: the session stream is never touched, so an action (a backup of many minutes) never
//! blocks or slows replication, and the stream is opened only once the session's hello was
//! answered; actions run concurrently, at most [`MAX_RUNNING`] at a time, each bounded by its
//! [`time_limit`] (past it, it is answered `failed`); a frame from the hub over
//! [`MAX_ACTION_FRAME`] bytes, or one that is not an action, ends the stream, and the plant opens
//! a new one (with backoff) for as long as the connection lives; a result's body is cut to
//! [`MAX_REMOTE_BODY`] before it is sent, and NUL characters (which the hub's PostgreSQL cannot
//! store) are taken out of it and of its detail.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use quinn::Connection;
use serde_json::Value;

use super::plant::{ConnectionTask, TaskFuture};
use super::transport::{read_frame_within, write_frame};
use super::wire::{Frame, RemoteOutcome, MAX_REMOTE_BODY, MAX_REMOTE_DETAIL};
use crate::config::RemoteAction;
use crate::field::FieldError;

/// Largest frame the plant reads from the hub on the remote stream (an action and its args).
pub const MAX_ACTION_FRAME: usize = 64 * 1024;
/// Largest `args` object of an action, as JSON.
pub const MAX_ARGS: usize = 4 * 1024;
/// Actions a plant carries out at once; more wait for one to end (the hub sends no more
/// than this many either).
pub const MAX_RUNNING: usize = 4;
/// Default and largest number of log lines per container and of plantd in a diagnostics
/// bundle.
pub const DEFAULT_LOG_LINES: usize = 200;
pub const MAX_LOG_LINES: usize = 2000;

/// How long the plant lets an action run before it answers `failed` (a hung action must not
/// hold one of the [`MAX_RUNNING`] slots for ever).
pub fn time_limit(action: RemoteAction) -> Duration {
    match action {
        RemoteAction::Backup | RemoteAction::Verify => Duration::from_secs(3600),
        RemoteAction::Restart => Duration::from_secs(5 * 60),
        RemoteAction::Diagnostics => Duration::from_secs(2 * 60),
        RemoteAction::Island
        | RemoteAction::Rejoin
        | RemoteAction::ApplyRetry
        | RemoteAction::ApplyPark => Duration::from_secs(60),
    }
}

/// How long the hub waits for the answer to an action it sent before it ends it as `failed`
/// (the plant's [`time_limit`], and room for a link that comes and goes); an action whose
/// replica crashed, or whose answer was lost, does not stay `sent` for ever.
pub fn answer_deadline(action: RemoteAction) -> Duration {
    match action {
        RemoteAction::Backup | RemoteAction::Verify => Duration::from_secs(2 * 3600),
        _ => Duration::from_secs(10 * 60),
    }
}

/// The actions the hub may be asked for: every one but `rejoin`, which can never reach a plant
/// that needs it.
pub fn requestable() -> String {
    RemoteAction::ALL
        .iter()
        .filter(|a| **a != RemoteAction::Rejoin)
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An action with its arguments checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Backup,
    /// `None`: the newest backup.
    Verify {
        id: Option<String>,
    },
    Restart {
        service: String,
    },
    Diagnostics {
        lines: usize,
    },
    Island,
    Rejoin,
    ApplyRetry {
        seq: u64,
    },
    ApplyPark {
        seq: u64,
    },
}

impl Command {
    /// The action's name.
    pub fn action(&self) -> RemoteAction {
        match self {
            Command::Backup => RemoteAction::Backup,
            Command::Verify { .. } => RemoteAction::Verify,
            Command::Restart { .. } => RemoteAction::Restart,
            Command::Diagnostics { .. } => RemoteAction::Diagnostics,
            Command::Island => RemoteAction::Island,
            Command::Rejoin => RemoteAction::Rejoin,
            Command::ApplyRetry { .. } => RemoteAction::ApplyRetry,
            Command::ApplyPark { .. } => RemoteAction::ApplyPark,
        }
    }

    /// Checks `args` (a JSON object; `null` is `{}`) for `action`: every field known, of its
    /// type and range, the required ones present. The error names the field as `args.NAME`
    /// (or `action` for an unknown action).
    pub fn parse(action: &str, args: &Value) -> Result<Command, FieldError> {
        let Some(known) = RemoteAction::parse(action) else {
            return Err(FieldError::new(
                "action",
                format!(
                    "{:?} is not a remote action; use one of {}",
                    shown(action),
                    RemoteAction::names()
                ),
            ));
        };
        if args.to_string().len() > MAX_ARGS {
            return Err(FieldError::new(
                "args",
                format!("over {MAX_ARGS} bytes as JSON; no action takes that much"),
            ));
        }
        let empty = serde_json::Map::new();
        let map = match args {
            Value::Null => &empty,
            Value::Object(m) => m,
            _ => return Err(FieldError::new("args", "must be a JSON object")),
        };
        let allowed: &[&str] = match known {
            RemoteAction::Verify => &["id"],
            RemoteAction::Restart => &["service"],
            RemoteAction::Diagnostics => &["lines"],
            RemoteAction::ApplyRetry | RemoteAction::ApplyPark => &["seq"],
            _ => &[],
        };
        if let Some(extra) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            let takes = match allowed {
                [] => format!("{known} takes no arguments"),
                _ => format!("{known} takes only {}", allowed.join(", ")),
            };
            return Err(FieldError::new(
                format!("args.{}", shown(extra)),
                format!("is not an argument of {known}: {takes}"),
            ));
        }
        let string = |name: &str| -> Result<Option<String>, FieldError> {
            match map.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(FieldError::new(format!("args.{name}"), "must be a string")),
            }
        };
        let number = |name: &str| -> Result<Option<u64>, FieldError> {
            match map.get(name) {
                None => Ok(None),
                // 61.0 is 61, as JSON Schema's "integer" has it.
                Some(v) => v
                    .as_u64()
                    .or_else(|| {
                        v.as_f64()
                            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                            .map(|f| f as u64)
                    })
                    .map(Some)
                    .ok_or_else(|| {
                        FieldError::new(format!("args.{name}"), "must be a whole number from 0 up")
                    }),
            }
        };
        Ok(match known {
            RemoteAction::Backup => Command::Backup,
            RemoteAction::Island => Command::Island,
            RemoteAction::Rejoin => Command::Rejoin,
            RemoteAction::Verify => {
                let id = string("id")?;
                if let Some(id) = &id {
                    let ok = (1..=64).contains(&id.len())
                        && id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                    if !ok {
                        return Err(FieldError::new(
                            "args.id",
                            format!(
                                "{:?} is not a backup id such as \"20261128T020000Z-abcdef\"",
                                shown(id)
                            ),
                        ));
                    }
                }
                Command::Verify { id }
            }
            RemoteAction::Restart => {
                let service = string("service")?.ok_or_else(|| {
                    FieldError::new("args.service", "is required: postgres, redis or odoo")
                })?;
                if !["postgres", "redis", "odoo"].contains(&service.as_str()) {
                    return Err(FieldError::new(
                        "args.service",
                        format!(
                            "{:?} is not a stack service; use postgres, redis or odoo",
                            shown(&service)
                        ),
                    ));
                }
                Command::Restart { service }
            }
            RemoteAction::Diagnostics => {
                let lines = number("lines")?.unwrap_or(DEFAULT_LOG_LINES as u64);
                if !(1..=MAX_LOG_LINES as u64).contains(&lines) {
                    return Err(FieldError::new(
                        "args.lines",
                        format!("{lines} is out of range; use 1 to {MAX_LOG_LINES} (default {DEFAULT_LOG_LINES})"),
                    ));
                }
                Command::Diagnostics {
                    lines: lines as usize,
                }
            }
            RemoteAction::ApplyRetry | RemoteAction::ApplyPark => {
                let seq = number("seq")?.ok_or_else(|| {
                    FieldError::new(
                        "args.seq",
                        "is required: the seq the apply stopped at, as the plant shows it",
                    )
                })?;
                if seq == 0 || seq > i64::MAX as u64 {
                    return Err(FieldError::new(
                        "args.seq",
                        format!("{seq} is not a seq; seqs start at 1"),
                    ));
                }
                match known {
                    RemoteAction::ApplyRetry => Command::ApplyRetry { seq },
                    _ => Command::ApplyPark { seq },
                }
            }
        })
    }

    /// [`Command::parse`] for a request made at the hub (its API and CLI): `rejoin` is refused
    /// there, since an islanded plant has no link to receive it and a connected plant is not
    /// islanded.
    pub fn parse_request(action: &str, args: &Value) -> Result<Command, FieldError> {
        match Command::parse(action, args) {
            Ok(Command::Rejoin) => Err(FieldError::new(
                "action",
                format!(
                    "rejoin cannot be asked from the hub: an islanded plant has no link to receive it, and a connected plant is not islanded; rejoin at the plant (`plantd rejoin`, or its admin UI's Failover page). Ask for one of {}",
                    requestable()
                ),
            )),
            Err(e) if e.field == "action" => Err(FieldError::new(
                "action",
                format!(
                    "{:?} is not a remote action; use one of {}",
                    shown(action),
                    requestable()
                ),
            )),
            other => other,
        }
    }

    /// The arguments as the hub stores and sends them (defaults filled in).
    pub fn args(&self) -> Value {
        match self {
            Command::Backup | Command::Island | Command::Rejoin => serde_json::json!({}),
            Command::Verify { id } => match id {
                Some(id) => serde_json::json!({ "id": id }),
                None => serde_json::json!({}),
            },
            Command::Restart { service } => serde_json::json!({ "service": service }),
            Command::Diagnostics { lines } => serde_json::json!({ "lines": lines }),
            Command::ApplyRetry { seq } | Command::ApplyPark { seq } => {
                serde_json::json!({ "seq": seq })
            }
        }
    }
}

/// A name as an error message shows it: cut to 40 characters.
fn shown(s: &str) -> String {
    s.chars().take(40).collect()
}

/// An action as the plant received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub id: u64,
    pub command: Command,
    /// The hub admin who asked.
    pub requested_by: String,
}

/// How an action ended at the plant, and what it returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    pub outcome: RemoteOutcome,
    pub detail: String,
    pub body: Value,
}

impl Done {
    pub fn ok(detail: impl Into<String>) -> Done {
        Done {
            outcome: RemoteOutcome::Ok,
            detail: detail.into(),
            body: Value::Null,
        }
    }

    pub fn refused(detail: impl Into<String>) -> Done {
        Done {
            outcome: RemoteOutcome::Refused,
            detail: detail.into(),
            body: Value::Null,
        }
    }

    pub fn failed(detail: impl Into<String>) -> Done {
        Done {
            outcome: RemoteOutcome::Failed,
            detail: detail.into(),
            body: Value::Null,
        }
    }

    /// The result frame for action `id`, its detail and body cut to their bounds (a body over
    /// its bound is replaced by a note, never sent cut inside its JSON).
    pub fn frame(&self, id: u64) -> Frame {
        let mut body = without_nul(self.body.clone()).to_string();
        let mut detail = cut(&self.detail.replace('\0', ""), MAX_REMOTE_DETAIL);
        if body.len() > MAX_REMOTE_BODY {
            body = serde_json::json!({
                "cut": format!("the result was {} bytes, over the {MAX_REMOTE_BODY}-byte limit; ask for fewer lines", body.len())
            })
            .to_string();
            detail = cut(
                &format!("{detail} (result too large; not sent)"),
                MAX_REMOTE_DETAIL,
            );
        }
        Frame::RemoteResult {
            id,
            outcome: self.outcome,
            detail,
            body,
        }
    }
}

/// `v` with every NUL character taken out of its strings and keys: PostgreSQL's text and jsonb
/// cannot hold one, and the hub would have to drop the whole result.
fn without_nul(v: Value) -> Value {
    match v {
        Value::String(s) if s.contains('\0') => Value::String(s.replace('\0', "")),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nul).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.replace('\0', ""), without_nul(v)))
                .collect(),
        ),
        other => other,
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// What an action does once its result is on its way (an island takes the link down).
pub type Then = Option<BoxFuture<'static, ()>>;

/// Carries out the hub's actions at the plant (the plant root implements it over the daemon's
/// control actions, audited as `hub:<requested_by>`).
pub trait Executor: Send + Sync + 'static {
    /// Carries out `action` (the plant's `[remote] allow` is the executor's to check) and says
    /// how it ended; `Then` runs after the result is written.
    fn execute(&self, action: Received) -> BoxFuture<'static, (Done, Then)>;

    /// Called when `action` ran past its [`time_limit`] and was answered with `done` (so that the
    /// plant's audit log says so); by default nothing.
    fn timed_out(&self, action: Received, done: Done) -> BoxFuture<'static, ()> {
        let _ = (action, done);
        Box::pin(async {})
    }
}

/// The answer to an action that ran past its time limit.
pub fn timed_out(action: RemoteAction, limit: Duration) -> Done {
    Done::failed(format!(
        "{action} did not finish within {} at the plant, so the plant stopped waiting for it and answered this; part of it may have been done or may still finish there: look at the plant (its audit log, backups, services) before asking again",
        humantime::format_duration(limit)
    ))
}

/// Where the plant root puts its [`Executor`] once the daemon's actions exist (the
/// replicator's tasks are made before them).
pub type ExecutorSlot = Arc<OnceLock<Arc<dyn Executor>>>;

/// The plant's side of the remote-action stream, on each connection.
pub struct Responder {
    pub executor: ExecutorSlot,
}

impl ConnectionTask for Responder {
    fn run(&self, conn: Connection) -> TaskFuture {
        let slot = self.executor.clone();
        Box::pin(async move {
            // One stream at a time, opened again whenever it ends, for as long as the
            // connection lives (the hub takes one remote stream per connection).
            let mut backoff = Backoff::default();
            loop {
                let opened = Instant::now();
                let ended = respond(&conn, slot.clone()).await;
                if conn.close_reason().is_some() {
                    return;
                }
                match ended {
                    Ok(()) => {
                        tracing::info!("the hub ended the remote-action stream; opening another")
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "remote-action stream ended; opening another")
                    }
                }
                if opened.elapsed() >= STREAM_LASTED {
                    backoff = Backoff::default();
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = conn.closed() => return,
                }
            }
        })
    }
}

/// A stream that lasted this long starts the backoff over.
const STREAM_LASTED: Duration = Duration::from_secs(60);

/// Waits between attempts at something that failed: from 1 s, doubling, at most 30 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    /// The next wait, each twice the last, up to 30 s.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(30));
        d
    }
}

/// Opens the remote-action stream and answers the hub's actions until the connection ends.
async fn respond(conn: &Connection, slot: ExecutorSlot) -> anyhow::Result<()> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut out = Vec::new();
    write_frame(&mut send, &Frame::RemoteReady, &mut out).await?;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<(u64, Done, Then)>(MAX_RUNNING);
    let running = Arc::new(tokio::sync::Semaphore::new(MAX_RUNNING));
    let mut buf = Vec::new();
    loop {
        tokio::select! {
            frame = read_frame_within(&mut recv, &mut buf, MAX_ACTION_FRAME) => {
                let (id, action, args, requested_by) = match frame? {
                    Some(Frame::RemoteAction { id, action, args, requested_by }) => (id, action, args, requested_by),
                    Some(Frame::Refuse { message, .. }) => anyhow::bail!("the hub refused the remote-action stream: {message}"),
                    Some(other) => anyhow::bail!("the hub sent a {} frame on the remote-action stream", super::session::frame_name(&other)),
                    None => return Ok(()),
                };
                let permit = running.clone().acquire_owned().await?;
                let (slot, done_tx) = (slot.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let parsed = serde_json::from_str::<Value>(&args)
                        .map_err(|e| FieldError::new("args", format!("not JSON: {e}")))
                        .and_then(|args| Command::parse(&action, &args));
                    let (done, then) = match (parsed, slot.get()) {
                        (Err(e), _) => (Done::refused(format!("{e}; nothing was done")), None),
                        (Ok(_), None) => (Done::failed("the plant is still starting; ask again in a moment"), None),
                        (Ok(command), Some(executor)) => {
                            let received = Received { id, command, requested_by };
                            let kind = received.command.action();
                            let limit = time_limit(kind);
                            match tokio::time::timeout(limit, executor.execute(received.clone())).await {
                                Ok(done) => done,
                                Err(_) => {
                                    let done = timed_out(kind, limit);
                                    tracing::warn!(id, action = %kind, "remote action ran past its time limit");
                                    executor.timed_out(received, done.clone()).await;
                                    (done, None)
                                }
                            }
                        }
                    };
                    let _ = done_tx.send((id, done, then)).await;
                });
            }
            Some((id, done, then)) = done_rx.recv() => {
                tracing::info!(id, outcome = done.outcome.as_str(), detail = %done.detail, "remote action answered");
                write_frame(&mut send, &done.frame(id), &mut out).await?;
                if let Some(then) = then {
                    // Off this task: an island ends this connection, and with it this task.
                    tokio::spawn(then);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn args_are_checked_per_action_and_errors_name_the_field() {
        let ok = |a: &str, v: Value| Command::parse(a, &v).unwrap();
        let bad = |a: &str, v: Value| Command::parse(a, &v).unwrap_err();
        assert_eq!(ok("backup", json!(null)), Command::Backup);
        assert_eq!(ok("backup", json!({})), Command::Backup);
        assert_eq!(ok("verify", json!({})), Command::Verify { id: None });
        assert_eq!(
            ok("verify", json!({"id": "20261128T020000Z-abcdef"})),
            Command::Verify {
                id: Some("20261128T020000Z-abcdef".into())
            }
        );
        assert_eq!(
            ok("restart", json!({"service": "odoo"})),
            Command::Restart {
                service: "odoo".into()
            }
        );
        assert_eq!(
            ok("diagnostics", json!({})),
            Command::Diagnostics {
                lines: DEFAULT_LOG_LINES
            }
        );
        assert_eq!(
            ok("apply_park", json!({"seq": 7})),
            Command::ApplyPark { seq: 7 }
        );
        for (action, args, field) in [
            ("reboot", json!({}), "action"),
            ("backup", json!([]), "args"),
            ("backup", json!({"id": "x"}), "args.id"),
            ("verify", json!({"id": "../etc/passwd"}), "args.id"),
            ("verify", json!({"id": 3}), "args.id"),
            ("restart", json!({}), "args.service"),
            ("restart", json!({"service": "nginx"}), "args.service"),
            ("diagnostics", json!({"lines": 0}), "args.lines"),
            ("diagnostics", json!({"lines": 100000}), "args.lines"),
            ("apply_retry", json!({}), "args.seq"),
            ("apply_retry", json!({"seq": -1}), "args.seq"),
            ("apply_retry", json!({"seq": 0}), "args.seq"),
            ("apply_retry", json!({"seq": "7"}), "args.seq"),
        ] {
            assert_eq!(bad(action, args.clone()).field, field, "{action} {args}");
        }
        // Parsed args give back the same command.
        for c in [
            Command::Verify { id: None },
            Command::Diagnostics { lines: 5 },
            Command::ApplyRetry { seq: 3 },
            Command::Restart {
                service: "redis".into(),
            },
        ] {
            assert_eq!(Command::parse(c.action().as_str(), &c.args()), Ok(c));
        }
    }

    #[test]
    fn a_result_over_its_bound_is_replaced_by_a_note_not_cut_inside_its_json() {
        let huge = Done {
            outcome: RemoteOutcome::Ok,
            detail: "é".repeat(MAX_REMOTE_DETAIL),
            body: json!({"lines": "x".repeat(MAX_REMOTE_BODY)}),
        };
        let Frame::RemoteResult { detail, body, .. } = huge.frame(3) else {
            panic!()
        };
        assert!(detail.len() <= MAX_REMOTE_DETAIL);
        assert!(body.len() < 1024);
        let note: Value = serde_json::from_str(&body).unwrap();
        assert!(note["cut"].as_str().unwrap().contains("over the"));
        let small = Done::ok("fine").frame(4);
        assert_eq!(
            small,
            Frame::RemoteResult {
                id: 4,
                outcome: RemoteOutcome::Ok,
                detail: "fine".into(),
                body: "null".into()
            }
        );
    }

    #[test]
    fn rejoin_is_refused_at_the_hub_saying_where_it_is_done() {
        let e = Command::parse_request("rejoin", &json!({})).unwrap_err();
        assert_eq!(e.field, "action");
        assert!(e.message.contains("plantd rejoin"), "{e}");
        // The plant still reads one (from an older hub).
        assert_eq!(Command::parse("rejoin", &json!({})), Ok(Command::Rejoin));
        let unknown = Command::parse_request("reboot", &json!({})).unwrap_err();
        assert_eq!(unknown.field, "action");
        assert!(!unknown.message.contains("rejoin"), "{unknown}");
        assert_eq!(
            Command::parse_request("backup", &json!({})),
            Ok(Command::Backup)
        );
        let e = Command::parse_request("restart", &json!({})).unwrap_err();
        assert_eq!(e.field, "args.service");
    }

    #[test]
    fn every_action_has_a_time_limit_within_the_hubs_deadline() {
        for a in RemoteAction::ALL {
            assert!(time_limit(a) >= Duration::from_secs(60), "{a}");
            assert!(
                answer_deadline(a) >= time_limit(a) * 2,
                "{a}: the hub waits well past the plant's limit"
            );
        }
        assert_eq!(time_limit(RemoteAction::Backup), Duration::from_secs(3600));
        assert_eq!(
            time_limit(RemoteAction::Diagnostics),
            Duration::from_secs(120)
        );
        let done = timed_out(RemoteAction::Restart, time_limit(RemoteAction::Restart));
        assert_eq!(done.outcome, RemoteOutcome::Failed);
        assert!(done.detail.contains("within 5m"), "{}", done.detail);
    }

    #[test]
    fn nul_characters_never_leave_the_plant() {
        let done = Done {
            outcome: RemoteOutcome::Ok,
            detail: "bad\0line".into(),
            body: json!({"logs": ["a\u{0}b"], "k\u{0}ey": 1}),
        };
        let Frame::RemoteResult { detail, body, .. } = done.frame(9) else {
            panic!()
        };
        assert_eq!(detail, "badline");
        assert!(!body.contains("\\u0000") && !body.contains('\0'), "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"logs": ["ab"], "key": 1})
        );
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
    }
}
