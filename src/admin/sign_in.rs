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
use super::refusals;
use super::store::{AuditEntry, Role};
use super::{AdminError, SignIn};

impl SignIn {
    pub(super) fn session_of(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
        let id = auth::cookie(cookies, auth::COOKIE)?;
        let session = self.auth.session(id, Instant::now())?;
        if session.subject.is_some() {
            // A directory's user: the directory checked them at sign-in, and the session
            // lasts its time (an hour unused, twelve in all), whether or not it can be reached.
            return Some((id.to_string(), session));
        }
        // The user may have been removed, given a new password or role, or signed out
        // everywhere since, here or by `plantd admin` beside the daemon: then it is over.
        match self.store.user_state(&session.user) {
            Ok(Some(u)) if u.role == session.role && u.epoch == session.epoch => {}
            Ok(_) => {
                self.auth.sign_out(id);
                return None;
            }
            // Refused this once, not ended: the store may answer the next request.
            Err(e) => {
                tracing::error!(error = %e, "reading the admin users; the request is refused");
                return None;
            }
        }
        Some((id.to_string(), session))
    }

    /// A reader with a session.
    pub fn reader(&self, headers: &HeaderMap) -> Result<Caller, AdminError> {
        self.session_of(headers)
            .map(|(_, s)| Caller {
                user: s.user,
                plants: s.plants,
            })
            .ok_or(AdminError::Unauthenticated)
    }

    /// A reader with a session, and their role (for what only admins may read: a backup's
    /// download, a remote action's result). An admin who must still set up a second factor
    /// is refused: their password alone must not take the whole database away.
    pub fn reader_role(&self, headers: &HeaderMap) -> Result<(Caller, Role), AdminError> {
        let (_, s) = self
            .session_of(headers)
            .ok_or(AdminError::Unauthenticated)?;
        if s.must_enrol {
            return Err(enrol_first(&s.user));
        }
        Ok((
            Caller {
                user: s.user,
                plants: s.plants,
            },
            s.role,
        ))
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
            Ok(()) if session.must_enrol && !action.starts_with("totp.") => {
                Some(enrol_first(&session.user))
            }
            Ok(()) if session.role < Role::needed_for(action) => {
                Some(AdminError::Forbidden(format!(
                    "{} is {} {}: {}",
                    session.user,
                    if session.role == Role::Admin {
                        "an"
                    } else {
                        "a"
                    },
                    session.role,
                    session.role.scope()
                )))
            }
            Ok(()) => None,
        };
        match refused {
            Some(e) => {
                self.audit(&session.user, action, target, Err(&e)).await;
                Err(e)
            }
            None => Ok(Caller {
                user: session.user,
                plants: session.plants,
            }),
        }
    }

    /// [`SignIn::actor`], who must also see `plant` (at the hub, a scoped user sees some
    /// plants only); `None`: what spans the whole fleet, for users who see every plant. A
    /// refusal is audited.
    pub async fn actor_on(
        &self,
        headers: &HeaderMap,
        action: &str,
        target: Option<&str>,
        plant: Option<&str>,
    ) -> Result<Caller, AdminError> {
        let caller = self.actor(headers, action, target).await?;
        let sees = match plant {
            Some(p) => caller.sees(p),
            None => caller.plants.is_none(),
        };
        if sees {
            return Ok(caller);
        }
        let e = caller.out_of_scope(plant);
        self.audit(&caller.user, action, target, Err(&e)).await;
        Err(e)
    }

    /// [`SignIn::reader`], who must also see `plant` (`None`: the whole fleet).
    pub fn reader_on(
        &self,
        headers: &HeaderMap,
        plant: Option<&str>,
    ) -> Result<Caller, AdminError> {
        let caller = self.reader(headers)?;
        let sees = match plant {
            Some(p) => caller.sees(p),
            None => caller.plants.is_none(),
        };
        if sees {
            Ok(caller)
        } else {
            Err(caller.out_of_scope(plant))
        }
    }

    /// Writes one audit entry; a failure to write is logged (the action has happened). A
    /// refusal is written once a minute per user, action and kind of refusal; the others in
    /// that minute are counted and written as one entry, before the user's next entry or at
    /// the minute's end. Done and failed actions are always written, and end the run of their
    /// action's refusals (the next one is written).
    pub async fn audit(
        &self,
        user: &str,
        action: &str,
        target: Option<&str>,
        outcome: Result<&str, &AdminError>,
    ) {
        let (outcome, detail) = match outcome {
            Ok(d) => ("ok", d.to_string()),
            Err(e) if e.outcome() == "refused" => {
                return self.audit_refused(user, action, target, e).await;
            }
            Err(e) => (e.outcome(), e.message()),
        };
        self.audit_folded(self.auth.refused_actions.settle(user, action))
            .await;
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

    /// A signed-in user's refused action: written, or counted ([`SignIn::audit`]).
    async fn audit_refused(
        &self,
        user: &str,
        action: &str,
        target: Option<&str>,
        refusal: &AdminError,
    ) {
        let refusals = &self.auth.refused_actions;
        let message = refusal.message();
        match refusals.note(user, action, refusal.code(), &message, Instant::now()) {
            refusals::Refusal::Write { overdue } => {
                let mut folded = refusals.take_early(user);
                folded.extend(overdue);
                self.audit_folded(folded).await;
                self.audit_entry(AuditEntry {
                    at: super::store::now(),
                    user: user.into(),
                    action: action.into(),
                    target: target.map(Into::into),
                    outcome: refusal.outcome().into(),
                    detail: message,
                })
                .await;
            }
            refusals::Refusal::Counted {
                summary: Some(start),
            } => self.sum_up_at_the_window_end(
                |auth| &auth.refused_actions,
                (user, action, refusal.code()),
                start,
            ),
            refusals::Refusal::Counted { summary: None } => {}
        }
    }

    /// A signed-in user's read that is audited (an export of the audit log): written, or
    /// counted when the same user's was written in the last minute, the count written as one
    /// entry at the minute's end. A viewer exporting in a loop thus writes a few rows a minute
    /// and cannot push admins' entries out of the bounded log.
    pub async fn audit_read(&self, user: &str, action: &str, detail: &str) {
        let reads = &self.auth.repeated_reads;
        match reads.note(user, action, "ok", detail, Instant::now()) {
            refusals::Refusal::Write { overdue } => {
                self.audit_folded(overdue).await;
                self.audit_entry(AuditEntry {
                    at: super::store::now(),
                    user: user.into(),
                    action: action.into(),
                    target: None,
                    outcome: "ok".into(),
                    detail: detail.into(),
                })
                .await;
            }
            refusals::Refusal::Counted {
                summary: Some(start),
            } => self.sum_up_at_the_window_end(
                |auth| &auth.repeated_reads,
                (user, action, "ok"),
                start,
            ),
            refusals::Refusal::Counted { summary: None } => {}
        }
    }

    /// Writes the summary of the window that began at `start` when it ends.
    fn sum_up_at_the_window_end(
        &self,
        which: fn(&auth::Auth) -> &refusals::Refusals,
        (user, action, code): (&str, &str, &'static str),
        start: Instant,
    ) {
        let signin = self.clone();
        let (user, action) = (user.to_string(), action.to_string());
        tokio::spawn(async move {
            tokio::time::sleep_until((start + refusals::REFUSAL_WINDOW).into()).await;
            let folded = which(&signin.auth).take_window(&user, &action, code, start);
            signin.audit_folded(folded).await;
        });
    }

    /// Writes the summaries of a user's refusals counted and not written.
    async fn audit_folded(&self, folded: impl IntoIterator<Item = refusals::Folded>) {
        for f in folded {
            // Folded reads are done ones; everything else folded was refused.
            let (outcome, mut detail) = match f.code {
                "ok" => (
                    "ok",
                    format!(
                        "{} more like it within a minute of the first, not written one by one",
                        f.count
                    ),
                ),
                code => (
                    "refused",
                    format!(
                        "{} more like it ({code}) within a minute of the first, not written one by one",
                        f.count
                    ),
                ),
            };
            if !f.examples.is_empty() {
                detail.push_str(&format!("; among them: {}", f.examples.join("; ")));
            }
            self.audit_entry(AuditEntry {
                at: super::store::now(),
                user: f.who,
                action: f.action,
                target: None,
                outcome: outcome.into(),
                detail,
            })
            .await;
        }
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
        let refusals = &self.auth.refused_sign_ins;
        // Counted per kind of refusal too: a wrong code, a taken name and a weak password
        // from one address each get their line.
        let message = refusal.message();
        // An IPv6 host counts as its /64, as for the lockout: it cannot walk its own prefix
        // for fresh rows.
        let whose = auth::source_key(source);
        match refusals.note(&whose, action, refusal.code(), &message, Instant::now()) {
            refusals::Refusal::Write { overdue } => {
                if let Some(f) = overdue {
                    self.audit_entry(sign_in_summary(f)).await;
                }
                self.audit_entry(AuditEntry {
                    at: super::store::now(),
                    user: user.into(),
                    action: action.into(),
                    target: target.map(Into::into),
                    outcome: refusal.outcome().into(),
                    detail: format!("{message} (from {source})"),
                })
                .await;
            }
            refusals::Refusal::Counted {
                summary: Some(start),
            } => {
                let signin = self.clone();
                let (source, action, code) = (whose.clone(), action.to_string(), refusal.code());
                tokio::spawn(async move {
                    tokio::time::sleep_until((start + refusals::REFUSAL_WINDOW).into()).await;
                    let folded = signin
                        .auth
                        .refused_sign_ins
                        .take_window(&source, &action, code, start);
                    if let Some(f) = folded {
                        signin.audit_entry(sign_in_summary(f)).await;
                    }
                });
            }
            refusals::Refusal::Counted { summary: None } => {}
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

/// The refusal of an admin who must set up a second factor first.
pub(super) fn enrol_first(user: &str) -> AdminError {
    AdminError::Forbidden(format!(
        "{user} must set up a second factor first (this server requires one for admins): the Users page's \"Your second factor\", or POST /api/v1/admin/totp/enrol"
    ))
}

/// The entry that sums up refused sign-ins or setups from one address.
fn sign_in_summary(f: refusals::Folded) -> AuditEntry {
    AuditEntry {
        at: super::store::now(),
        user: "(several)".into(),
        action: f.action,
        target: None,
        outcome: "refused".into(),
        detail: format!(
            "{} more refused ({}) from {} within a minute, not written one by one",
            f.count, f.code, f.who
        ),
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
        Json(session_json(s)),
    )
        .into_response()
}

/// A session as the UI reads it: who, their role, the CSRF token, and whether the directory
/// vouched for them (`via`).
fn session_json(s: &Session) -> Value {
    json!({"signed_in": true, "user": s.user, "role": s.role, "csrf": s.csrf, "via": s.via,
        "plants": s.plants,
        "totp": s.totp, "must_enrol": s.must_enrol})
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
        Some((_, s)) => Json(session_json(&s)),
        None => {
            let mut v = json!({"signed_in": false, "setup_required": admin.auth.setup_pending()});
            // What the sign-in page offers of the provider, and whether it can be reached.
            if let Some(p) = &admin.oidc {
                let reach = p.reach();
                v["oidc"] = json!({
                    "name": p.display_name(),
                    "start": super::oidc::START,
                    "url": p.issuer(),
                    "reachable": reach.as_ref().map(|r| r.reachable),
                    "detail": reach.and_then(|r| r.detail),
                });
            }
            // What the sign-in page says of the directory: whether its users can sign in now.
            if let Some(d) = &admin.directory {
                v["directory"] = match d.reach() {
                    Some(r) => json!(r),
                    None => {
                        json!({"kind": "ldap", "url": d.url(), "reachable": null, "detail": null})
                    }
                };
            }
            Json(v)
        }
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
    if let Some(lock) = admin.auth.setup_locked_for(&source, Instant::now()) {
        // Not audited: it costs the sender nothing, and would cost the disk an fsync.
        return Err(AdminError::LockedOut(lock));
    }
    let outcome = async {
        let now = Instant::now();
        if !admin.auth.setup_pending() {
            return Err(AdminError::Conflict(
                "an admin exists already: sign in, or add users with `plantd admin add`".into(),
            ));
        }
        // The code is typed by hand (dashes and case do not matter), 64 characters at most as
        // the document says.
        if b.code.chars().count() > 64 || !admin.auth.setup_code_matches(&b.code) {
            admin.auth.setup_failed(&source, now);
            return Err(AdminError::BadSetupCode);
        }
        let _permit = admin.hashing()?;
        let store = admin.store.clone();
        let (user, password) = (b.user.clone(), b.password.clone());
        let state = blocking(move || {
            store.add(&user, Role::Admin, &password, true)?;
            store.user_state(&user)
        })
        .await??
        .ok_or_else(|| AdminError::Internal("the first admin is gone at once".into()))?;
        admin.auth.set_setup_code(None);
        let _ = std::fs::remove_file(super::setup_code_file(&admin.data_dir));
        admin.auth.setup_succeeded(&source);
        let (id, session) = admin
            .auth
            .sign_in(&b.user, state, now)
            .map_err(|e| AdminError::Internal(format!("{e:#}")))?;
        // The first admin has no second factor yet: where admins need one, they set it up
        // before anything else, as any admin would.
        let session = admin
            .auth
            .set_second_factor(&id, false, admin.require_totp_for_admins)
            .unwrap_or(session);
        Ok((id, session))
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
    /// The second factor, for a user who has one: the app's code or a recovery code.
    #[serde(default)]
    code: Option<String>,
}

/// Who signed in, and how, for the audit log.
enum Through {
    Local { second: Option<super::totp::Used> },
    Directory(super::directory::DirectoryUser),
}

pub async fn login(
    State(admin): State<SignIn>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    check_origin(&headers)?;
    let b: LoginBody = body(&headers, &bytes)?;
    let from = source(&extensions);
    if b.user.chars().count() > 64
        || b.password.chars().count() > 1024
        || b.code.as_ref().is_some_and(|c| c.chars().count() > 64)
    {
        return Err(AdminError::BadCredentials);
    }
    // A local user signs in under their name as typed; a name that is no local user's goes to
    // the directory, when there is one, under its canonical form (trimmed, lower case), so
    // that "Ada" and "ada " are one name to the lockout and the audit log as to the directory.
    let local = match &admin.directory {
        None => true,
        Some(_) => {
            let store = admin.store.clone();
            let name = b.user.trim().to_lowercase();
            super::store::check_name(&name).is_ok()
                && blocking(move || store.user_state(&name)).await??.is_some()
        }
    };
    let directory = match &admin.directory {
        Some(d) if !local => Some(d.clone()),
        _ => None,
    };
    let name = match &directory {
        Some(_) => super::directory::canonical_name(&b.user).ok_or(AdminError::BadCredentials)?,
        None => b.user.clone(),
    };
    let who = match &directory {
        Some(_) => name.clone(),
        None => audit_name(&b.user),
    };
    // Only attempts whose password was checked are audited: refusals that cost nothing (locked,
    // busy, oversized) could otherwise be sent by anyone to fill the disk with fsync'd lines.
    let checked = std::sync::atomic::AtomicBool::new(false);
    let outcome = async {
        if let Some(lock) = admin.auth.locked_for(&from, &name, Instant::now()) {
            return Err(AdminError::LockedOut(lock));
        }
        if let Some(directory) = directory {
            // Its own turns: a directory that hangs never holds the password checks local
            // users need to get in.
            let _turn = directory.turn().ok_or(AdminError::TooManySignIns)?;
            checked.store(true, std::sync::atomic::Ordering::Relaxed);
            let lock = admin.auth.failed(&from, &name, Instant::now());
            return directory_sign_in(&admin, &directory, &from, &name, &b.password, lock).await;
        }
        let _permit = admin.hashing()?;
        checked.store(true, std::sync::atomic::Ordering::Relaxed);
        // Counted before the hash, so that guesses sent in parallel cannot pass the limit.
        let lock = admin.auth.failed(&from, &name, Instant::now());
        let wrong = || lock.map_or(AdminError::BadCredentials, AdminError::LockedOut);
        let store = admin.store.clone();
        let (user, password) = (name.clone(), b.password.clone());
        let Some(state) = blocking(move || store.check(&user, &password)).await?? else {
            return Err(wrong());
        };
        let store = admin.store.clone();
        let user = name.clone();
        let totp = blocking(move || store.has_totp(&user)).await??;
        let mut second = None;
        if totp {
            let Some(code) = b.code.as_deref().filter(|c| !c.trim().is_empty()) else {
                // The password was right; the attempt is not held against the name.
                admin.auth.not_checked(&from, &name);
                return Err(AdminError::TotpRequired);
            };
            let store = admin.store.clone();
            let (user, code) = (name.clone(), code.trim().to_string());
            match blocking(move || store.totp_check(&user, &code)).await?? {
                super::totp::Check::Passed(used) => second = Some(used),
                // Counted: five wrong codes lock the name as five wrong passwords do; and
                // the user's own count of wrong codes, from everywhere, locks code checks.
                super::totp::Check::Wrong => {
                    return Err(lock.map_or(AdminError::BadTotp, AdminError::LockedOut))
                }
                super::totp::Check::Locked(left) => {
                    return Err(AdminError::Forbidden(format!(
                        "too many wrong codes for {name}: codes are checked again in {} min; an admin can reset the second factor",
                        left.div_ceil(60)
                    )))
                }
            }
        }
        admin.auth.succeeded(&from, &name);
        let (id, session) = admin
            .auth
            .sign_in(&name, state, Instant::now())
            .map_err(|e| AdminError::Internal(format!("{e:#}")))?;
        let must_enrol = !totp && admin.require_totp_for_admins && state.role == Role::Admin;
        let session = admin
            .auth
            .set_second_factor(&id, totp, must_enrol)
            .unwrap_or(session);
        Ok(((id, session), Through::Local { second }))
    }
    .await;
    if checked.load(std::sync::atomic::Ordering::Relaxed) {
        match &outcome {
            Ok((_, Through::Local { second })) => {
                let detail = match second {
                    None => "signed in".to_string(),
                    Some(super::totp::Used::Code) => "signed in with a second factor".to_string(),
                    Some(super::totp::Used::Recovery(left)) => {
                        format!("signed in with a recovery code ({left} left)")
                    }
                };
                admin.audit(&who, "sign_in", None, Ok(&detail)).await
            }
            // The directory's subject, and the group that gave the role.
            Ok((_, Through::Directory(found))) => {
                let detail = format!(
                    "signed in through LDAP as {} ({} by group {})",
                    found.dn, found.role, found.group
                );
                admin.audit(&who, "sign_in", None, Ok(&detail)).await
            }
            Err(e) => admin.audit_refusal(&from, &who, "sign_in", None, e).await,
        }
    }
    let ((id, session), _) = outcome?;
    Ok(signed_in(&id, &session))
}

/// A sign-in the directory checks; `lock` is what counting the attempt started.
async fn directory_sign_in(
    admin: &SignIn,
    directory: &super::directory::Directory,
    from: &str,
    name: &str,
    password: &str,
    lock: Option<auth::Lockout>,
) -> Result<((String, Session), Through), AdminError> {
    use super::directory::DirectoryError;
    match directory.sign_in(name, password).await {
        Ok(found) => {
            admin.auth.succeeded(from, name);
            let who = auth::External {
                via: auth::Via::Ldap,
                role: found.role,
                subject: found.dn.clone(),
                logout: None,
                plants: found.plants.clone(),
            };
            let started = admin
                .auth
                .sign_in_external(name, who, Instant::now())
                .map_err(|e| AdminError::Internal(format!("{e:#}")))?;
            Ok((started, Through::Directory(found)))
        }
        Err(DirectoryError::BadCredentials) => {
            Err(lock.map_or(AdminError::BadCredentials, AdminError::LockedOut))
        }
        // Counted all the same: otherwise a stranger could try passwords of every company
        // account through here without a lockout, this answer telling the right ones.
        Err(DirectoryError::NoRole { dn, mapped }) => {
            tracing::warn!(dn = %dn, mapped = %mapped, "a directory user of no mapped group was refused");
            Err(AdminError::Forbidden(
                "your company account is in none of the groups that give a role on this server; ask your IT to add you to one"
                    .into(),
            ))
        }
        // At the hub, a role but no plants: as for no role.
        Err(e @ DirectoryError::NoPlants { .. }) => {
            if let DirectoryError::NoPlants { dn } = &e {
                tracing::warn!(dn = %dn, "a directory user of no group given plants was refused");
            }
            Err(AdminError::Forbidden(e.to_string()))
        }
        // Not the user's doing: not held against the name.
        Err(e @ DirectoryError::Unreachable { .. }) => {
            admin.auth.not_checked(from, name);
            Err(AdminError::Unavailable(e.to_string()))
        }
        // Counted (the password may have been tried); the details go to the log only, not to
        // a client that has not signed in.
        Err(e @ DirectoryError::Misconfigured { .. }) => {
            tracing::error!(error = %e, "a sign-in through LDAP");
            Err(AdminError::Unavailable(format!(
                "the directory {} refused the sign-in in a way that lets nobody in; its details are in plantd's log for your IT; local users can still sign in",
                directory.url()
            )))
        }
    }
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
    // Signed in through the provider: the browser goes on to sign out there too.
    if let Some(url) = session.logout {
        return Ok((
            [(header::SET_COOKIE, auth::set_cookie(None))],
            Json(json!({ "logout": url })),
        )
            .into_response());
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, auth::set_cookie(None))],
    )
        .into_response())
}
