//! The admin API's handlers. Reads need a session (or, for monitoring tools, a device token as
//! `Authorization: Bearer`); changes need an admin's session, the session's CSRF token in
//! `X-CSRF-Token`, a JSON body, and (when the browser says where it comes from) this origin.
//! Every change, done or refused, is written to the audit log.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::auth::{self, Session};
use super::jobs::Kind;
use super::monitor::{self, LinkView, Snapshot, Verdict};
use super::store::{AuditEntry, Role};
use super::{Admin, AdminError, SignIn};
use crate::control::{Request, Response as ControlResponse};

pub(crate) type Answer = Result<Response, AdminError>;

/// Who is asking.
pub struct Caller {
    pub user: String,
}

impl SignIn {
    fn session_of(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
        let id = auth::cookie(cookies, auth::COOKIE)?;
        let session = self.auth.session(id, Instant::now())?;
        Some((id.to_string(), session))
    }

    /// A reader with a session.
    pub fn reader(&self, headers: &HeaderMap) -> Result<Caller, AdminError> {
        self.session_of(headers)
            .map(|(_, s)| Caller { user: s.user })
            .ok_or(AdminError::Unauthenticated)
    }

    /// An admin allowed to change something; a refusal of a known user is audited.
    pub async fn actor(
        &self,
        headers: &HeaderMap,
        action: &str,
        target: Option<&str>,
    ) -> Result<Caller, AdminError> {
        let Some((_, session)) = self.session_of(headers) else {
            return Err(AdminError::Unauthenticated);
        };
        let refused = match check_origin(headers).and_then(|()| {
            let sent = headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let ok = !sent.is_empty() && auth::same(sent.as_bytes(), session.csrf.as_bytes());
            if ok {
                Ok(())
            } else {
                Err(AdminError::Csrf(
                    "missing or wrong X-CSRF-Token header; reload the page".into(),
                ))
            }
        }) {
            Err(e) => Some(e),
            Ok(()) if session.role != Role::Admin => Some(AdminError::Forbidden(format!(
                "{} is a viewer: viewers see everything and change nothing",
                session.user
            ))),
            Ok(()) => None,
        };
        match refused {
            Some(e) => {
                self.audit(&session.user, action, target, Err(&e)).await;
                Err(e)
            }
            None => Ok(Caller { user: session.user }),
        }
    }

    /// Writes one audit entry; a failure to write is logged (the action has happened).
    pub async fn audit(
        &self,
        user: &str,
        action: &str,
        target: Option<&str>,
        outcome: Result<&str, &AdminError>,
    ) {
        let (outcome, detail) = match outcome {
            Ok(d) => ("ok", d.to_string()),
            Err(e) => (e.outcome(), e.message()),
        };
        self.audit_entry(AuditEntry {
            at: super::store::now(),
            user: user.into(),
            action: action.into(),
            target: target.map(Into::into),
            outcome: outcome.into(),
            detail,
        })
        .await;
    }

    /// Writes a refused sign-in or setup from `source`, or counts it when one from there was
    /// written in the last minute; the count is written as one entry at the minute's end.
    pub async fn audit_refusal(
        &self,
        source: &str,
        user: &str,
        action: &str,
        target: Option<&str>,
        refusal: &AdminError,
    ) {
        let now = Instant::now();
        // Counted per kind of refusal too: a wrong code, a taken name and a weak password
        // from one address each get their line.
        let kind = format!("{action}/{}", refusal.code());
        match self.auth.refusals.note(source, &kind, now) {
            auth::Refusal::Write => {
                let detail = format!("{} (from {source})", refusal.message());
                self.audit_entry(AuditEntry {
                    at: super::store::now(),
                    user: user.into(),
                    action: action.into(),
                    target: target.map(Into::into),
                    outcome: refusal.outcome().into(),
                    detail,
                })
                .await;
            }
            auth::Refusal::Counted { first: true } => {
                let signin = self.clone();
                let (source, action) = (source.to_string(), action.to_string());
                let code = refusal.code();
                tokio::spawn(async move {
                    tokio::time::sleep(auth::REFUSAL_WINDOW).await;
                    let n = signin.auth.refusals.take_counted(&source, &kind);
                    if n > 0 {
                        signin
                            .audit_entry(AuditEntry {
                                at: super::store::now(),
                                user: "(several)".into(),
                                action,
                                target: None,
                                outcome: "refused".into(),
                                detail: format!(
                                    "{n} more refused ({code}) from {source} within a minute, not written one by one"
                                ),
                            })
                            .await;
                    }
                });
            }
            auth::Refusal::Counted { first: false } => {}
        }
    }

    pub async fn audit_entry(&self, entry: AuditEntry) {
        tracing::info!(user = %entry.user, action = %entry.action, target = ?entry.target, outcome = %entry.outcome, detail = %entry.detail, "audit");
        let store = self.store.clone();
        let written = tokio::task::spawn_blocking(move || store.audit(&entry)).await;
        if let Ok(Err(e)) | Err(e) =
            written.map_err(|e| super::store::StoreError::Hash(e.to_string()))
        {
            tracing::error!(error = %e, "writing the audit log");
        }
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
            return Ok(Caller { user: s.user });
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

/// Largest body of a sign-in, a setup or a sign-out.
pub const SIGN_IN_BODY: usize = 4 * 1024;

/// A change (any POST but sign-in and setup) is refused before its body is read when the
/// request carries no live session: nobody unauthenticated makes the server hold a body.
pub(crate) async fn session_before_body(
    State(signin): State<SignIn>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let open = matches!(
        req.uri().path(),
        "/api/v1/admin/setup" | "/api/v1/admin/login"
    );
    if req.method() == axum::http::Method::POST
        && !open
        && signin.session_of(req.headers()).is_none()
    {
        return AdminError::Unauthenticated.into_response();
    }
    next.run(req).await
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

/// The JSON body of a change; an empty body counts as `{}`.
pub(crate) fn body<T: DeserializeOwned>(
    headers: &HeaderMap,
    bytes: &Bytes,
) -> Result<T, AdminError> {
    if !crate::ingest::is_json(headers) {
        return Err(AdminError::UnsupportedMediaType);
    }
    let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { bytes };
    serde_json::from_slice(bytes).map_err(|e| AdminError::Invalid(format!("body: {e}")))
}

fn signed_in(id: &str, s: &Session) -> Response {
    (
        [(header::SET_COOKIE, auth::set_cookie(Some(id)))],
        Json(json!({"signed_in": true, "user": s.user, "role": s.role, "csrf": s.csrf})),
    )
        .into_response()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AdminError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AdminError::Internal(e.to_string()))
}

pub async fn session(State(admin): State<SignIn>, headers: HeaderMap) -> Json<Value> {
    if admin.auth.setup_pending() {
        // `plantd admin add` may have added the first admin while the daemon ran.
        let store = admin.store.clone();
        if let Ok(Ok(n)) = blocking(move || store.user_count()).await {
            if n > 0 {
                admin.auth.set_setup_code(None);
                let _ = std::fs::remove_file(super::setup_code_file(&admin.data_dir));
            }
        }
    }
    match admin.session_of(&headers) {
        Some((_, s)) => {
            Json(json!({"signed_in": true, "user": s.user, "role": s.role, "csrf": s.csrf}))
        }
        None => Json(json!({"signed_in": false, "setup_required": admin.auth.setup_pending()})),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupBody {
    code: String,
    user: String,
    password: String,
}

pub async fn setup(
    State(admin): State<SignIn>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    check_origin(&headers)?;
    let b: SetupBody = body(&headers, &bytes)?;
    let who = audit_name(&b.user);
    let source = source(&extensions);
    let key = auth::setup_key(&source);
    let locked = admin.auth.locked_for(&key, Instant::now());
    if let Some(left) = locked {
        // Not audited: it costs the sender nothing, and would cost the disk an fsync.
        return Err(AdminError::LockedOut(left));
    }
    let outcome = async {
        let now = Instant::now();
        if !admin.auth.setup_pending() {
            return Err(AdminError::Conflict(
                "an admin exists already: sign in, or add users with `plantd admin add`".into(),
            ));
        }
        if !admin.auth.setup_code_matches(&b.code) {
            admin.auth.failed(&key, now);
            return Err(AdminError::BadSetupCode);
        }
        let _permit = admin.hashing()?;
        let store = admin.store.clone();
        let (user, password) = (b.user.clone(), b.password.clone());
        blocking(move || store.add(&user, Role::Admin, &password, true)).await??;
        admin.auth.set_setup_code(None);
        let _ = std::fs::remove_file(super::setup_code_file(&admin.data_dir));
        admin.auth.succeeded(&key);
        admin
            .auth
            .sign_in(&b.user, Role::Admin, now)
            .map_err(|e| AdminError::Internal(format!("{e:#}")))
    }
    .await;
    match &outcome {
        Ok(_) => {
            admin
                .audit(&who, "admin.setup", Some(&who), Ok("first admin created"))
                .await
        }
        Err(e) => {
            admin
                .audit_refusal(&source, &who, "admin.setup", Some(&who), e)
                .await
        }
    }
    let (id, session) = outcome?;
    Ok(signed_in(&id, &session))
}

/// The address a request came from, as the listener saw it.
fn source(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string())
}

/// A user name as the audit log records it: as typed when it could be one, so that a password
/// typed into the name field, or a megabyte of junk, is never written down.
fn audit_name(name: &str) -> String {
    match super::store::check_name(name) {
        Ok(()) => name.to_string(),
        Err(_) => "(not a user name)".to_string(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    user: String,
    password: String,
}

pub async fn login(
    State(admin): State<SignIn>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    check_origin(&headers)?;
    let b: LoginBody = body(&headers, &bytes)?;
    let who = audit_name(&b.user);
    // Only attempts whose password was checked are audited: refusals that cost nothing (locked,
    // busy, oversized) could otherwise be sent by anyone to fill the disk with fsync'd lines.
    let checked = std::sync::atomic::AtomicBool::new(false);
    let outcome = async {
        if b.user.len() > 64 || b.password.len() > 1024 {
            return Err(AdminError::BadCredentials);
        }
        if let Some(left) = admin.auth.locked_for(&b.user, Instant::now()) {
            return Err(AdminError::LockedOut(left));
        }
        let _permit = admin.hashing()?;
        checked.store(true, std::sync::atomic::Ordering::Relaxed);
        // Counted before the hash, so that guesses sent in parallel cannot pass the limit.
        let lock = admin.auth.failed(&b.user, Instant::now());
        let store = admin.store.clone();
        let (user, password) = (b.user.clone(), b.password.clone());
        let Some(role) = blocking(move || store.check(&user, &password)).await?? else {
            return Err(lock.map_or(AdminError::BadCredentials, AdminError::LockedOut));
        };
        admin.auth.succeeded(&b.user);
        admin
            .auth
            .sign_in(&b.user, role, Instant::now())
            .map_err(|e| AdminError::Internal(format!("{e:#}")))
    }
    .await;
    if checked.load(std::sync::atomic::Ordering::Relaxed) {
        match &outcome {
            Ok(_) => admin.audit(&who, "sign_in", None, Ok("signed in")).await,
            Err(e) => {
                admin
                    .audit_refusal(&source(&extensions), &who, "sign_in", None, e)
                    .await
            }
        }
    }
    let (id, session) = outcome?;
    Ok(signed_in(&id, &session))
}

pub async fn logout(State(admin): State<SignIn>, headers: HeaderMap) -> Answer {
    let Some((id, session)) = admin.session_of(&headers) else {
        return Err(AdminError::Unauthenticated);
    };
    // Signing out is allowed to viewers; it still needs the CSRF token.
    check_origin(&headers)?;
    let sent = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !auth::same(sent.as_bytes(), session.csrf.as_bytes()) {
        return Err(AdminError::Csrf(
            "missing or wrong X-CSRF-Token header".into(),
        ));
    }
    admin.auth.sign_out(&id);
    admin
        .audit(&session.user, "sign_out", None, Ok("signed out"))
        .await;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, auth::set_cookie(None))],
    )
        .into_response())
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
        let (verdict, reasons) = monitor::verdict(&Snapshot {
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
        Overview {
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
    admin.monitor_reader(&headers)?;
    Ok(Json(admin.overview().await).into_response())
}

fn stack(admin: &Admin) -> Result<&crate::stack::Stack, AdminError> {
    admin.control.stack.as_ref().ok_or_else(|| {
        AdminError::Unavailable(
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

fn service_name(service: &str) -> Result<crate::stack::spec::Service, AdminError> {
    crate::stack::spec::Service::parse(service).map_err(AdminError::NotFound)
}

#[derive(Deserialize)]
pub struct Tail {
    tail: Option<usize>,
}

pub async fn service_logs(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(service): Path<String>,
    Query(q): Query<Tail>,
) -> Answer {
    admin.reader(&headers)?;
    let svc = service_name(&service)?;
    let lines = stack(&admin)?
        .logs(svc, q.tail.unwrap_or(50).min(1000))
        .await
        .map_err(AdminError::Failed)?;
    Ok(Json(json!({ "lines": lines })).into_response())
}

async fn service_action(admin: Admin, headers: HeaderMap, service: String, reset: bool) -> Answer {
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
        "history": admin.monitor.history(),
        "errors": admin.monitor.errors(),
    }))
    .into_response())
}

pub async fn backups(State(admin): State<Admin>, headers: HeaderMap) -> Answer {
    admin.reader(&headers)?;
    let data_dir = admin.config.data_dir.clone();
    let listed = blocking(move || crate::backup::list(&data_dir))
        .await?
        .map_err(|e| AdminError::Failed(format!("{e:#}")))?;
    let now = jiff::Timestamp::now();
    let backups: Vec<Value> = listed
        .into_iter()
        .rev()
        .map(|b| {
            let age_s = crate::backup::scheduler::taken_at(&b.id)
                .map(|t| now.duration_since(t).as_secs().max(0));
            json!({
                "id": b.id, "created_at": b.created_at, "age_s": age_s, "size": b.size,
                "verified": b.verified, "encrypted": b.encrypted, "offsite": b.offsite,
                "unreadable": b.unreadable,
            })
        })
        .collect();
    let c = &admin.config.backup;
    let status = admin
        .control
        .health
        .snapshot()
        .into_iter()
        .find(|x| x.name == "backup")
        .map(|x| x.detail);
    Ok(Json(json!({
        "backups": backups,
        "schedule": c.schedule.to_string(),
        "timezone": c.timezone.clone().unwrap_or_else(|| "the server's (/etc/localtime)".into()),
        "retention": c.policy,
        "encrypted_to": c.encrypt_to.len(),
        "status": status,
        "jobs": admin.jobs.list(),
    }))
    .into_response())
}

/// Starts a backup job once `checks` passed, auditing a refusal, or the job's start and end.
async fn start_job<F>(
    admin: Admin,
    caller: Caller,
    kind: Kind,
    backup: Option<String>,
    checks: Result<(), AdminError>,
    work: F,
) -> Answer
where
    F: std::future::Future<Output = anyhow::Result<String>> + Send + 'static,
{
    if let Err(e) = checks {
        admin
            .audit(&caller.user, kind.action(), backup.as_deref(), Err(&e))
            .await;
        return Err(e);
    }
    let done_admin = admin.clone();
    let user = caller.user.clone();
    let target = backup.clone();
    // The work waits for the "started" entry, so that the audit log never shows an end first.
    let (go, ready) = tokio::sync::oneshot::channel::<()>();
    let work = async move {
        let _ = ready.await;
        work.await
    };
    let started = admin
        .jobs
        .start(kind, backup.clone(), &caller.user, work, move |job| {
            tokio::spawn(async move {
                let outcome = match job.state {
                    super::jobs::JobState::Succeeded => "ok",
                    _ => "failed",
                };
                done_admin
                    .audit_entry(AuditEntry {
                        at: super::store::now(),
                        user,
                        action: kind.action().into(),
                        target: job.backup.clone().or(target),
                        outcome: outcome.into(),
                        detail: format!("{}: {}", job.id, job.message),
                    })
                    .await;
            });
        });
    match started {
        Ok(job) => {
            admin
                .audit_entry(AuditEntry {
                    at: super::store::now(),
                    user: caller.user,
                    action: kind.action().into(),
                    target: backup,
                    outcome: "started".into(),
                    detail: job.id.clone(),
                })
                .await;
            let _ = go.send(());
            Ok((StatusCode::ACCEPTED, Json(job)).into_response())
        }
        Err(e) => {
            admin
                .audit(&caller.user, kind.action(), backup.as_deref(), Err(&e))
                .await;
            Err(e)
        }
    }
}

pub async fn backup_run(State(admin): State<Admin>, headers: HeaderMap, bytes: Bytes) -> Answer {
    let caller = admin.actor(&headers, Kind::Run.action(), None).await?;
    let checks = body::<Value>(&headers, &bytes).and_then(|_| stack(&admin).map(drop));
    let config = admin.config.clone();
    start_job(admin, caller, Kind::Run, None, checks, async move {
        let b = crate::backup::take(&config).await?;
        Ok(format!(
            "backup {} taken ({})",
            b.id,
            bytesize::ByteSize::b(b.size)
        ))
    })
    .await
}

fn known_backup(admin: &Admin, id: &str) -> Result<(), AdminError> {
    crate::backup::check_id(id).map_err(|e| AdminError::NotFound(format!("{e:#}")))?;
    let dir = crate::backup::dir(&admin.config.data_dir);
    if dir.join(format!("{id}.tar.zst")).exists() || dir.join(format!("{id}.tar.zst.age")).exists()
    {
        Ok(())
    } else {
        Err(AdminError::NotFound(format!(
            "no backup {id} on this plant"
        )))
    }
}

pub async fn backup_verify(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let caller = admin
        .actor(&headers, Kind::Verify.action(), Some(&id))
        .await?;
    let checks = body::<Value>(&headers, &bytes)
        .and_then(|_| known_backup(&admin, &id))
        .and_then(|()| stack(&admin).map(drop));
    let config = admin.config.clone();
    let backup = id.clone();
    start_job(admin, caller, Kind::Verify, Some(id), checks, async move {
        let keys = crate::backup::archive::keys(&config.data_dir, &[])?;
        let m = crate::backup::verify(&config, &backup, &keys).await?;
        Ok(format!(
            "backup {backup} verified: every part matches its checksum, and the dump restored into a scratch database with the same rows in all {} tables",
            m.tables.len()
        ))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    confirm: String,
}

/// How long a restored Odoo has to answer before the previous data comes back.
const RESTORE_HEALTH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

pub async fn backup_restore(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let caller = admin
        .actor(&headers, Kind::Restore.action(), Some(&id))
        .await?;
    let checks = body::<RestoreBody>(&headers, &bytes).and_then(|b| {
        known_backup(&admin, &id)?;
        stack(&admin)?;
        if b.confirm.trim() == id {
            Ok(())
        } else {
            Err(AdminError::Invalid(format!(
                "confirm: type the backup's id ({id}) to restore it; nothing was changed"
            )))
        }
    });
    let config = admin.config.clone();
    let backup = id.clone();
    // The daemon holds Odoo and rewinds the apply for the admin who asked, as the audit says.
    let daemon = crate::control::Daemon::Within {
        control: admin.control.clone(),
        user: caller.user.clone(),
    };
    start_job(admin, caller, Kind::Restore, Some(id), checks, async move {
        let keys = crate::backup::archive::keys(&config.data_dir, &[])?;
        let r = crate::backup::restore::restore(&config, &backup, &keys, RESTORE_HEALTH_DEADLINE, &daemon).await?;
        Ok(format!(
            "backup {backup} restored into database {} ({} tables); Odoo was down {:.1} s and is healthy; the data it replaced is in backup {}",
            r.database, r.tables, r.odoo_down_s, r.safety_backup
        ))
    })
    .await
}

pub async fn backup_download(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let caller = admin.reader(&headers)?;
    known_backup(&admin, &id)?;
    let dir = crate::backup::dir(&admin.config.data_dir);
    let (path, name) = [format!("{id}.tar.zst"), format!("{id}.tar.zst.age")]
        .into_iter()
        .map(|n| (dir.join(&n), n))
        .find(|(p, _)| p.exists())
        .ok_or_else(|| AdminError::NotFound(format!("no backup {id} on this plant")))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| AdminError::Failed(format!("opening {}: {e}", path.display())))?;
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    admin
        .audit(&caller.user, "backup.download", Some(&id), Ok("downloaded"))
        .await;
    let stream = tokio_util::io::ReaderStream::new(file);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

pub async fn job(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(job): Path<String>,
) -> Answer {
    admin.reader(&headers)?;
    let job = admin
        .jobs
        .get(&job)
        .ok_or_else(|| AdminError::NotFound(format!("no job {job}")))?;
    Ok(Json(job).into_response())
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
fn rebuild_steps(plant: &str) -> Vec<String> {
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
struct ReasonBody {
    reason: String,
}

async fn link_action(admin: Admin, headers: HeaderMap, bytes: Bytes, island: bool) -> Answer {
    let action = if island { "island" } else { "rejoin" };
    let caller = admin.actor(&headers, action, None).await?;
    let mut reason = String::new();
    let outcome = async {
        let b: ReasonBody = body(&headers, &bytes)?;
        reason = b.reason.trim().chars().take(500).collect();
        if reason.is_empty() {
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

pub async fn audit(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Answer {
    admin.reader(&headers)?;
    let store = admin.store.clone();
    let limit = q.limit.unwrap_or(200).min(10_000);
    let entries = blocking(move || store.audit_log(limit)).await??;
    Ok(Json(json!({ "entries": entries })).into_response())
}
