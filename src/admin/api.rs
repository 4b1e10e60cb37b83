//! The admin API's handlers. Reads need a session (or, for monitoring tools, a device token as
//! `Authorization: Bearer`); changes need an admin's session, the session's CSRF token in
//! `X-CSRF-Token`, a JSON body, and (when the browser says where it comes from) this origin.
//! Every change, done or refused, is written to the audit log.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::auth::Session;
use super::monitor::{self, LinkView, Snapshot, Verdict};
use super::store::AuditEntry;
use super::{Admin, AdminError};
use crate::control::{Request, Response as ControlResponse};

pub(crate) type Answer = Result<Response, AdminError>;

/// Who is asking.
pub struct Caller {
    pub user: String,
    /// At the hub: the plants they see and act on (`None`: every plant).
    pub plants: Option<Vec<String>>,
}

impl Caller {
    /// Whether they see and act on `plant`.
    pub fn sees(&self, plant: &str) -> bool {
        self.plants
            .as_ref()
            .is_none_or(|p| p.iter().any(|x| x == plant))
    }

    /// A refusal for what is not theirs to see: `plant`, or (`None`) what spans the fleet.
    pub fn out_of_scope(&self, plant: Option<&str>) -> AdminError {
        let theirs = self.plants.as_deref().unwrap_or_default().join(", ");
        AdminError::Forbidden(match plant {
            Some(p) => format!("{} sees only the plants {theirs}, not {p}", self.user),
            None => format!(
                "{} sees only the plants {theirs}; this spans the whole fleet",
                self.user
            ),
        })
    }
}

impl Admin {
    fn session_of(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        self.signin.session_of(headers)
    }

    /// A reader with a session; a device token is not enough (backups, logs, the audit log).
    pub fn reader(&self, headers: &HeaderMap) -> Result<Caller, AdminError> {
        self.signin.reader(headers)
    }

    /// A reader of the monitoring figures (overview, journal, `/metrics`): a signed-in user,
    /// or a device token, so that a monitoring tool needs no user of its own.
    pub fn monitor_reader(&self, headers: &HeaderMap) -> Result<Caller, AdminError> {
        if let Some((_, s)) = self.session_of(headers) {
            return Ok(Caller {
                user: s.user,
                plants: s.plants,
            });
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(token) = bearer {
            if let crate::tokens::Verdict::Valid { device } =
                self.control.tokens.verify(token.trim())
            {
                return Ok(Caller {
                    user: format!("token:{device}"),
                    plants: None,
                });
            }
        }
        Err(AdminError::Unauthenticated)
    }

    /// An admin allowed to change something; a refusal of a known user is audited.
    pub(super) async fn actor(
        &self,
        headers: &HeaderMap,
        action: &str,
        target: Option<&str>,
    ) -> Result<Caller, AdminError> {
        self.signin.actor(headers, action, target).await
    }

    pub async fn audit(
        &self,
        user: &str,
        action: &str,
        target: Option<&str>,
        outcome: Result<&str, &AdminError>,
    ) {
        self.signin.audit(user, action, target, outcome).await
    }

    pub async fn audit_entry(&self, entry: AuditEntry) {
        self.signin.audit_entry(entry).await
    }

    /// Runs a control request and turns its answer into a message.
    pub(super) async fn control(&self, request: Request) -> Result<String, AdminError> {
        match self.control.handle(request).await {
            ControlResponse::Done { message } => Ok(message),
            ControlResponse::Error { message } => Err(AdminError::Failed(message)),
            ControlResponse::Refused { message } => Err(AdminError::Conflict(message)),
            other => Err(AdminError::Internal(format!(
                "unexpected answer: {other:?}"
            ))),
        }
    }
}

/// A browser says where a request comes from; a change from another origin is refused.
pub(crate) fn check_origin(headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.strip_prefix("https://").unwrap_or("");
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(AdminError::Csrf(format!(
            "request from origin {origin:?}, not from this server ({host}); refused"
        )))
    }
}

/// The JSON body of a change. An empty body counts as `{}` whatever its content type (a route
/// without a body takes a request without one); a body that is there must be JSON.
pub(crate) fn body<T: DeserializeOwned>(
    headers: &HeaderMap,
    bytes: &Bytes,
) -> Result<T, AdminError> {
    if bytes.is_empty() {
        return serde_json::from_slice(b"{}")
            .map_err(|e| AdminError::Invalid(format!("body: {e}")));
    }
    if !crate::ingest::is_json(headers) {
        return Err(AdminError::UnsupportedMediaType);
    }
    serde_json::from_slice(bytes).map_err(|e| AdminError::Invalid(format!("body: {e}")))
}

/// The body of a change that takes none: absent, or `{}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Nothing {}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AdminError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AdminError::Internal(e.to_string()))
}

/// The overview, as the UI's first page and `/metrics` read it.
#[derive(Serialize)]
pub struct Overview {
    pub now: String,
    pub version: &'static str,
    pub uptime_s: u64,
    pub plant: String,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub link: Option<LinkView>,
    pub journal: Option<crate::journal::Stats>,
    pub replication_lag_s: Option<u64>,
    pub services: Option<Vec<crate::stack::ServiceStatus>>,
    pub backup: BackupSummary,
    pub host: crate::telemetry::Host,
    pub components: Vec<crate::health::Component>,
    /// The local apply's queue, when `[apply] local` is on.
    pub apply: Option<ApplySummary>,
    /// The backup job running now (a backup, verify or restore from the UI), with its progress.
    pub job: Option<super::jobs::Job>,
}

/// The local apply as the overview shows it; the Apply page has the rest.
#[derive(Serialize)]
pub struct ApplySummary {
    pub applied_seq: u64,
    pub last_seq: u64,
    pub stopped_at: Option<u64>,
    pub waiting: bool,
    pub parked: usize,
}

#[derive(Serialize)]
pub struct BackupSummary {
    /// Whether backups run on a schedule here; without one, none is expected.
    pub scheduled: bool,
    pub last_id: Option<String>,
    pub last_at: Option<String>,
    pub age_s: Option<u64>,
    pub detail: Option<String>,
}

impl Admin {
    fn islanded_on_purpose(&self) -> bool {
        *self.control.replication.islanded.borrow()
    }

    pub async fn overview(&self) -> Overview {
        // Read only: the journal's writer is probed by the sampler, not by every poll.
        let journal = self.control.journal.stats().await.ok();
        let components = self.control.health.snapshot();
        let stack = self.control.stack.as_ref().map(|s| s.report());
        let link = self.monitor.link_view(
            self.control.replication.link.borrow().as_ref(),
            self.islanded_on_purpose(),
        );
        let data_dir = self.config.data_dir.clone();
        let host = self.host.clone();
        let (newest, host) =
            blocking(move || (crate::backup::newest(&data_dir), host.read(&data_dir)))
                .await
                .unwrap_or_default();
        let age_s = newest
            .as_ref()
            .map(|(_, at)| jiff::Timestamp::now().duration_since(*at).as_secs().max(0) as u64);
        let scheduled =
            self.control.stack.is_some() && self.config.backup.schedule.daily_at().is_some();
        let (mut verdict, mut reasons) = monitor::verdict(&Snapshot {
            components: &components,
            stack: stack.as_ref(),
            link: link.as_ref(),
            enrolled: self.control.replication.enrolled,
            journal: journal.as_ref(),
            disk_free_bytes: host.disk_free_bytes,
            disk_total_bytes: host.disk_total_bytes,
            backup_age_s: scheduled.then_some(age_s),
        });
        let apply = match &self.control.apply {
            Some(a) => {
                let r = a.status().await;
                Some(ApplySummary {
                    applied_seq: r.applied_seq,
                    last_seq: r.last_seq,
                    stopped_at: r.stopped_at,
                    waiting: r.waiting.is_some(),
                    parked: r.parked.len(),
                })
            }
            None => None,
        };
        // Parked transactions are in no Odoo until someone replays them: never "all good".
        if let Some(a) = apply.as_ref().filter(|a| a.parked > 0) {
            reasons.push(format!(
                "{} transaction{} parked: {} in Odoo until replayed from the Apply page",
                a.parked,
                if a.parked == 1 { " is" } else { "s are" },
                if a.parked == 1 {
                    "it is not"
                } else {
                    "they are not"
                }
            ));
            if verdict == Verdict::Ok {
                verdict = Verdict::Degraded;
            }
        }
        Overview {
            job: self.jobs.running(),
            apply,
            now: super::store::now(),
            version: crate::release::version(),
            uptime_s: self.control.started.elapsed().as_secs(),
            plant: self.plant.clone(),
            verdict,
            reasons,
            replication_lag_s: journal.and_then(|j| j.oldest_unacked_age_s),
            journal,
            link,
            services: stack.map(|s| s.services),
            backup: BackupSummary {
                scheduled,
                last_at: newest.as_ref().map(|(_, at)| at.to_string()),
                last_id: newest.map(|(id, _)| id),
                age_s,
                detail: components
                    .iter()
                    .find(|c| c.name == "backup")
                    .map(|c| c.detail.clone()),
            },
            host,
            components,
        }
    }
}

pub async fn overview(State(admin): State<Admin>, headers: HeaderMap) -> Answer {
    let caller = admin.monitor_reader(&headers)?;
    let mut overview = admin.overview().await;
    // A device token reads the figures, not who runs a job.
    if caller.user.starts_with("token:") {
        if let Some(job) = overview.job.as_mut() {
            job.user = String::new();
        }
    }
    Ok(Json(overview).into_response())
}

pub(super) fn stack(admin: &Admin) -> Result<&crate::stack::Stack, AdminError> {
    admin.control.stack.as_ref().ok_or_else(|| {
        AdminError::NotConfigured(
            "this plant does not supervise a stack: plant.toml has no [stack] section".into(),
        )
    })
}

pub async fn services(State(admin): State<Admin>, headers: HeaderMap) -> Answer {
    admin.reader(&headers)?;
    let Some(stack) = &admin.control.stack else {
        return Ok(Json(json!({"stack": null, "events": []})).into_response());
    };
    let events = stack.events().await.unwrap_or_default();
    let events: Vec<_> = events.into_iter().rev().take(50).collect();
    Ok(Json(json!({"stack": stack.report(), "events": events})).into_response())
}

pub(super) fn service_name(service: &str) -> Result<crate::stack::spec::Service, AdminError> {
    crate::stack::spec::Service::parse(service).map_err(|e| AdminError::NotFound(e.to_string()))
}

#[derive(Deserialize)]
pub struct Tail {
    tail: Option<u32>,
    /// Only lines holding this text (any case).
    q: Option<String>,
    /// Whether plantd's own health probes of Odoo (`/web/health`) are shown; default yes.
    probes: Option<bool>,
    /// `text` for a download (text/plain, as a file); JSON otherwise.
    format: Option<String>,
}

/// Most log lines one request reads.
pub const MAX_TAIL: u32 = 1000;
/// Most lines read to find `tail` lines that match a search.
const MAX_SCAN: usize = 10_000;
/// Most audit entries one request reads.
pub const MAX_AUDIT: u32 = 10_000;

/// A query parameter's value within `1..=max`, or `default` when it is absent.
fn in_range(name: &str, value: Option<u32>, default: u32, max: u32) -> Result<u32, AdminError> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(AdminError::BadQuery(format!(
            "{name}={n}: give a whole number from 1 to {max}"
        ))),
    }
}

/// The path plantd's health probe of Odoo asks for: its lines are hidden on request.
const PROBE_PATH: &str = "/web/health";

/// The last lines of a service's container (`odoo`, `postgres`, `redis`) or of plantd itself
/// (`plantd`: the daemon's own latest lines, kept in memory), filtered by a search and without
/// the health probes when asked; as JSON, or as a text file to download.
pub async fn service_logs(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(service): Path<String>,
    Query(q): Query<Tail>,
) -> Answer {
    admin.reader(&headers)?;
    let tail = in_range("tail", q.tail, 50, MAX_TAIL)? as usize;
    let search = match q.q.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) if t.chars().count() <= 200 => Some(t.to_lowercase()),
        Some(_) => return Err(AdminError::BadQuery("q: at most 200 characters".into())),
    };
    let text = match q.format.as_deref() {
        None | Some("json") => false,
        Some("text") => true,
        Some(other) => {
            return Err(AdminError::BadQuery(format!(
                "format={other:?}: give json or text"
            )))
        }
    };
    let hide_probes = q.probes == Some(false);
    // A search looks further back; hiding the probes (most of Odoo's lines) a few times the
    // tail, so that following a log with them hidden stays cheap.
    let read = match (&search, hide_probes) {
        (Some(_), _) => MAX_SCAN,
        (None, true) => (tail * 5).min(MAX_SCAN),
        (None, false) => tail,
    };
    let lines = if service == "plantd" {
        crate::telemetry::shareable_log_lines(read)
    } else {
        let svc = service_name(&service)?;
        let stack = stack(&admin)?;
        // The stack's supervisor reads them: two reads at a time, others wait their turn, so
        // that followed logs cannot keep it from its own work.
        static READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
        let _turn = READS
            .acquire()
            .await
            .map_err(|e| AdminError::Internal(e.to_string()))?;
        stack
            .logs(svc, read)
            .await
            .map_err(|e| AdminError::Failed(e.to_string()))?
    };
    let kept: Vec<String> = lines
        .into_iter()
        .filter(|l| !(hide_probes && l.contains(PROBE_PATH)))
        .filter(|l| search.as_ref().is_none_or(|s| l.to_lowercase().contains(s)))
        .collect();
    let skip = kept.len().saturating_sub(tail);
    let kept: Vec<String> = kept.into_iter().skip(skip).collect();
    if text {
        let name = format!(
            "attachment; filename=\"{}-{}-{}.log\"",
            admin
                .plant
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
            service,
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
        );
        let mut body = kept.join("\n");
        body.push('\n');
        return Ok((
            [
                (
                    header::CONTENT_TYPE,
                    "text/plain; charset=utf-8".to_string(),
                ),
                (header::CONTENT_DISPOSITION, name),
            ],
            body,
        )
            .into_response());
    }
    Ok(Json(json!({ "lines": kept, "fetched_at": super::store::now() })).into_response())
}

pub(super) async fn service_action(
    admin: Admin,
    headers: HeaderMap,
    service: String,
    reset: bool,
) -> Answer {
    let action = if reset {
        "service.reset"
    } else {
        "service.restart"
    };
    let caller = admin.actor(&headers, action, Some(&service)).await?;
    let outcome = async {
        service_name(&service)?;
        stack(&admin)?;
        let request = if reset {
            Request::StackReset {
                service: service.clone(),
            }
        } else {
            Request::StackRestart {
                service: service.clone(),
            }
        };
        admin.control(request).await
    }
    .await;
    admin
        .audit(&caller.user, action, Some(&service), outcome.as_deref())
        .await;
    Ok(Json(json!({ "message": outcome? })).into_response())
}

pub async fn service_restart(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(service): Path<String>,
) -> Answer {
    service_action(admin, headers, service, false).await
}

pub async fn service_reset(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(service): Path<String>,
) -> Answer {
    service_action(admin, headers, service, true).await
}

pub async fn journal(State(admin): State<Admin>, headers: HeaderMap) -> Answer {
    admin.monitor_reader(&headers)?;
    let stats = admin.control.journal.stats().await.ok();
    let (ingest, acks) = admin.monitor.rates();
    let link = admin.monitor.link_view(
        admin.control.replication.link.borrow().as_ref(),
        admin.islanded_on_purpose(),
    );
    Ok(Json(json!({
        "journal": stats,
        "ingest_per_s": ingest,
        "acks_per_s": acks,
        "link": link,
        "history": admin.monitor.journal_history().await,
        "errors": admin.monitor.errors(),
    }))
    .into_response())
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    range: Option<String>,
}

/// The charts of the Journal & sync page over `range` (1h, 24h or 7d), from `metrics.db`:
/// kept across restarts, with the markers (starts, island and rejoin, backups, restarts).
pub async fn history(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Query(q): Query<HistoryQuery>,
) -> Answer {
    admin.monitor_reader(&headers)?;
    let range = super::history::Range::parse(q.range.as_deref()).map_err(AdminError::BadQuery)?;
    let Some(store) = admin.monitor.store().cloned() else {
        return Err(AdminError::Unavailable(
            "the metrics history (DATA_DIR/metrics.db) could not be opened when plantd started; plantd's log says why".into(),
        ));
    };
    let tick_s = admin.monitor.every().as_secs().max(1) as i64;
    let now = jiff::Timestamp::now().as_second();
    let chart = blocking(move || store.chart(range, now, tick_s))
        .await?
        .map_err(|e| AdminError::Internal(e.to_string()))?;
    Ok(Json(chart).into_response())
}

pub async fn failover(State(admin): State<Admin>, headers: HeaderMap) -> Answer {
    admin.reader(&headers)?;
    let report = admin.control.replication.link.borrow().clone();
    let link = admin
        .monitor
        .link_view(report.as_ref(), admin.islanded_on_purpose());
    let active = report.as_ref().and_then(|r| r.hub.clone());
    let hubs: Vec<Value> = admin
        .control
        .replication
        .hubs
        .iter()
        .map(|h| json!({"addr": h, "active": active.as_deref() == Some(h.as_str())}))
        .collect();
    Ok(Json(json!({
        "enrolled": admin.control.replication.enrolled,
        "link": link,
        "islanded_on_purpose": admin.islanded_on_purpose(),
        "history": admin.monitor.link_history(),
        "hubs": hubs,
        "rebuild_steps": rebuild_steps(&admin.plant),
    }))
    .into_response())
}

/// How to bring this plant back on a new server from the hub's copy of its last backup.
pub(super) fn rebuild_steps(plant: &str) -> Vec<String> {
    vec![
        "On the hub: `plantd hub backups --plant PLANT` lists the offsite copies; note the newest id.".replace("PLANT", plant),
        "On the hub: `plantd hub token create --plant PLANT` prints a one-time enrollment token.".replace("PLANT", plant),
        "On the new server: install plantd with the same plant.toml (stack and [backup] sections), then `plantd enroll --hub HUB:9443 --token TOKEN`.".into(),
        "Start the daemon (`systemctl start plantd`) and wait for the stack to report healthy (`plantd stack status`).".into(),
        "Fetch the copy: `plantd backup fetch ID`; an encrypted one needs the key it was encrypted to (`--identity FILE`).".into(),
        "Restore it: `plantd backup restore ID` (a safety backup of the empty database is taken first).".into(),
        "Check the data in Odoo, then `plantd status`: the journal replicates again from where this plant's new journal starts.".into(),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReasonBody {
    reason: String,
}

pub(super) async fn link_action(
    admin: Admin,
    headers: HeaderMap,
    bytes: Bytes,
    island: bool,
) -> Answer {
    let action = if island { "island" } else { "rejoin" };
    let caller = admin.actor(&headers, action, None).await?;
    let mut reason = String::new();
    let outcome = async {
        let b: ReasonBody = body(&headers, &bytes)?;
        reason = b.reason.trim().chars().take(500).collect();
        if !reason
            .chars()
            .any(|c| !c.is_whitespace() && !c.is_control() && c != '\u{feff}')
        {
            return Err(AdminError::Invalid(format!(
                "reason: say why you {action} the plant (it goes to the audit log); nothing was changed"
            )));
        }
        if !admin.control.replication.enrolled {
            return Err(AdminError::Conflict(
                "this plant is not enrolled with a hub: there is no link to island or rejoin".into(),
            ));
        }
        admin.control(if island { Request::Island } else { Request::Rejoin }).await
    }
    .await;
    let detail = match &outcome {
        Ok(m) => Ok(format!("{reason}: {m}")),
        Err(e) => Err(e.clone()),
    };
    admin
        .audit(&caller.user, action, None, detail.as_deref())
        .await;
    Ok(Json(json!({ "message": outcome? })).into_response())
}

pub async fn island(State(admin): State<Admin>, headers: HeaderMap, bytes: Bytes) -> Answer {
    link_action(admin, headers, bytes, true).await
}

pub async fn rejoin(State(admin): State<Admin>, headers: HeaderMap, bytes: Bytes) -> Answer {
    link_action(admin, headers, bytes, false).await
}

#[derive(Deserialize)]
pub struct Limit {
    limit: Option<u32>,
}

/// The audit page's query: how many, below which entry, and which.
#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<u32>,
    before: Option<i64>,
    user: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    q: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

impl AuditQuery {
    fn filter(&self) -> Result<super::store::AuditFilter, AdminError> {
        let text =
            |name: &str, v: &Option<String>, max: usize| -> Result<Option<String>, AdminError> {
                match v.as_deref().map(str::trim) {
                    None | Some("") => Ok(None),
                    Some(t) if t.chars().count() <= max => Ok(Some(t.to_string())),
                    Some(_) => Err(AdminError::BadQuery(format!(
                        "{name}: at most {max} characters"
                    ))),
                }
            };
        let time = |name: &str, v: &Option<String>| -> Result<Option<String>, AdminError> {
            match v.as_deref().map(str::trim) {
                None => Ok(None),
                Some(t) => t
                    .parse::<jiff::Timestamp>()
                    .map(|ts| Some(ts.to_string()))
                    .map_err(|e| {
                        AdminError::BadQuery(format!(
                            "{name}={t:?}: not a time ({e}); give RFC 3339, such as 2026-12-07T08:00:00Z"
                        ))
                    }),
            }
        };
        if self.before.is_some_and(|b| b < 1) {
            return Err(AdminError::BadQuery(
                "before: an entry's id, a whole number from 1".into(),
            ));
        }
        Ok(super::store::AuditFilter {
            user: text("user", &self.user, 64)?,
            action: text("action", &self.action, 64)?,
            outcome: text("outcome", &self.outcome, 16)?,
            text: text("q", &self.q, 200)?,
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
        })
    }
}

/// The audit log, newest first, filtered, a page at a time: `next_before` asks for the next.
pub async fn audit(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Answer {
    admin.reader(&headers)?;
    let limit = in_range("limit", q.limit, 200, MAX_AUDIT)?;
    let filter = q.filter()?;
    let store = admin.store.clone();
    let before = q.before;
    let rows = blocking(move || store.audit_page(&filter, before, limit)).await??;
    let next_before = (rows.len() == limit as usize)
        .then(|| rows.last().map(|(id, _)| *id))
        .flatten();
    let entries: Vec<Value> = rows
        .into_iter()
        .map(|(id, e)| {
            let mut v = serde_json::to_value(e).expect("an audit entry serializes");
            v["id"] = json!(id);
            v
        })
        .collect();
    Ok(Json(json!({ "entries": entries, "next_before": next_before })).into_response())
}

/// Most entries one export holds: the whole log.
const MAX_EXPORT: u32 = 100_000;

/// The audit log as CSV (what the filter takes, newest first), for a spreadsheet or an
/// auditor. A cell a spreadsheet would run as a formula is prefixed with `'`.
pub async fn audit_export(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Answer {
    /// One export at a time: each holds the whole log in memory for a moment.
    static EXPORTING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let (caller, _) = admin.signin.reader_role(&headers)?;
    let filter = q.filter()?;
    let _one = EXPORTING.try_acquire().map_err(|_| {
        AdminError::Busy("another export of the audit log is running; try again in a moment".into())
    })?;
    let store = admin.store.clone();
    let rows = blocking(move || store.audit_page(&filter, None, MAX_EXPORT)).await??;
    let mut csv = String::from("id,at,user,action,target,outcome,detail\r\n");
    for (id, e) in &rows {
        let cells = [
            id.to_string(),
            e.at.clone(),
            e.user.clone(),
            e.action.clone(),
            e.target.clone().unwrap_or_default(),
            e.outcome.clone(),
            e.detail.clone(),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        csv.push_str(&line.join(","));
        csv.push_str("\r\n");
    }
    admin
        .signin
        .audit_read(
            &caller.user,
            "audit.export",
            &format!("{} entries", rows.len()),
        )
        .await;
    let name = format!(
        "attachment; filename=\"plantd-audit-{}-{}.csv\"",
        admin
            .plant
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
        jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        csv,
    )
        .into_response())
}

/// One CSV cell (RFC 4180), safe to open in a spreadsheet.
fn csv_cell(text: &str) -> String {
    let guarded = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

/// The plant's alerts: those that hold now, and the newest `limit` (default 100) lines of
/// their history, newest first.
pub async fn alerts(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Answer {
    admin.reader(&headers)?;
    let limit = in_range("limit", q.limit, 100, MAX_AUDIT)?;
    let store = admin.store.clone();
    let (state, history) =
        blocking(move || anyhow::Ok((store.alert_state()?, store.alert_history(limit as i64)?)))
            .await?
            .map_err(|e| AdminError::Internal(format!("{e:#}")))?;
    Ok(Json(json!({
        "firing": state.firing().collect::<Vec<_>>(),
        "history": history,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(super::csv_cell("ana"), "\"ana\"");
        assert_eq!(
            super::csv_cell("say \"hi\", then go"),
            "\"say \"\"hi\"\", then go\""
        );
        assert_eq!(
            super::csv_cell("=HYPERLINK(\"x\")"),
            "\"'=HYPERLINK(\"\"x\"\")\""
        );
        assert_eq!(super::csv_cell("-1"), "\"'-1\"");
        assert_eq!(super::csv_cell("two\nlines"), "\"two\nlines\"");
    }
}
