//! Signing in, shared by the plant's admin UI and the hub's fleet page: the session (and the
//! CSRF token) a cookie names, first-run setup with its one-time code, sign-in with lockout,
//! sign-out, and who is asking a change (with its audit entry).

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::*;
use super::auth::{self, Session};
use super::store::{AuditEntry, Role};
use super::{AdminError, SignIn};

impl SignIn {
    pub(super) fn session_of(&self, headers: &HeaderMap) -> Option<(String, Session)> {
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

/// Largest body of a sign-in, a setup or a sign-out: the longest fields the document allows
/// (a 1 024-character password), each character JSON-escaped, fit.
pub const SIGN_IN_BODY: usize = 16 * 1024;

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

pub(super) fn signed_in(id: &str, s: &Session) -> Response {
    (
        [(header::SET_COOKIE, auth::set_cookie(Some(id)))],
        Json(json!({"signed_in": true, "user": s.user, "role": s.role, "csrf": s.csrf})),
    )
        .into_response()
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
pub(super) struct SetupBody {
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
pub(super) fn source(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string())
}

/// A user name as the audit log records it: as typed when it could be one, so that a password
/// typed into the name field, or a megabyte of junk, is never written down.
pub(super) fn audit_name(name: &str) -> String {
    match super::store::check_name(name) {
        Ok(()) => name.to_string(),
        Err(_) => "(not a user name)".to_string(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
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
